"""Log upload: the door's events after the last acknowledged sequence number go to
the store in batches of gzip NDJSON, each named by door and sequence range.

  logs/<door>/<first seq, 12 digits>-<last seq, 12 digits>.ndjson.gz

A batch is acknowledged once the store has it (the file store writes with
fsync and rename); the door then records the batch's last sequence number in
`<data_dir>/upload-state.json`. A retried or interrupted upload sends the same
batches again under the same names, so the office sees each record once.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from ..storage.eventlog import iter_events, open_reader

BATCH = 5000


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / "upload-state.json"


def acked(data_dir: Path) -> int:
    try:
        return int(json.loads(state_path(data_dir).read_text())["acked_seq"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{state_path(data_dir)}: not an upload state file; remove it to "
                         "upload everything again") from None


def _set_acked(data_dir: Path, seq: int) -> None:
    path = state_path(data_dir)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump({"acked_seq": seq}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def batch_name(door: str, first: int, last: int) -> str:
    return f"logs/{door}/{first:012d}-{last:012d}.ndjson.gz"


def upload(cfg, store, *, batch: int = BATCH, progress=None) -> dict:
    """Send everything not yet acknowledged. Returns counts; raises StoreError on failure
    (what was sent before the failure stays acknowledged)."""
    start = acked(cfg.storage.data_dir)
    conn = open_reader(cfg.storage.eventlog_path)
    sent = batches = 0
    last_seq = start
    try:
        while True:
            rows = list(iter_events(conn, after_seq=last_seq, limit=batch))
            if not rows:
                break
            body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
            first, last = rows[0]["seq"], rows[-1]["seq"]
            store.put(batch_name(cfg.door.id, first, last),
                      gzip.compress(body.encode(), compresslevel=6, mtime=0))
            _set_acked(cfg.storage.data_dir, last)
            last_seq = last
            sent += len(rows)
            batches += 1
            if progress:
                progress(len(rows))
    finally:
        conn.close()
    return {"door": cfg.door.id, "events": sent, "batches": batches, "acked_seq": last_seq}
