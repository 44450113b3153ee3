"""How far a reader of the event log got: (log identity, last acknowledged seq) in a
small JSON file, replaced atomically and fsynced. The nightly upload and the live
publisher each keep one, so each resumes after a crash where it was confirmed."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_cursor(path: Path) -> tuple[str | None, int]:
    """(log id, seq); (None, 0) when there is no file; ValueError when it is not one.
    A cursor written before log identities has no log id."""
    try:
        doc = json.loads(Path(path).read_text())
        seq, log_id = doc["acked_seq"], doc.get("log_id")
    except FileNotFoundError:
        return None, 0
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{path}: not a cursor file") from None
    if type(seq) is not int or seq < 0 or not (log_id is None or isinstance(log_id, str)):
        raise ValueError(f"{path}: not a cursor file")
    return log_id, seq


def read_extra(path: Path, key: str):
    """Another field of a cursor file (None when absent, or no file)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc.get(key) if isinstance(doc, dict) else None


def write_cursor(path: Path, log_id: str | None, seq: int, **extra) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump({"log_id": log_id, "acked_seq": seq, **extra}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
