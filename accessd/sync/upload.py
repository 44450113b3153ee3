"""Log upload: the door's events after the last acknowledged sequence number go to
the store in batches of gzip NDJSON, each named by door, log identity and range,
and signed with the door's own log key (sync/batch.py).

  logs/<door>/<log id>/<first seq, 12 digits>-<last seq, 12 digits>.ndjson.gz

Every record carries the log's identity (`"log"`: created-at + random id, made
with the log). A batch is acknowledged once the store has it (the file store
writes with fsync and rename); the door then records the log id and the batch's
last sequence number in `<data_dir>/upload-state.json`. A retried or interrupted
upload sends the same batches again under the same names, so the office sees
each record once. A log that was reset (a new file) has a new identity and is
uploaded from its start.

A log identity is never used for two histories. Before sending, the upload
reads back what the store already holds of this log beyond the acknowledged
number: its own earlier batches (an upload cut off before it was acknowledged)
match the log record for record; anything else means the data directory was
put back from a backup, and its new records would reuse numbers the office
already has. Then the upload records the conflict in the state file and the
daemon gives the log a new identity (`log.reset`, at once through the control
socket, or at its next start), and the log is uploaded again from its start
under it: nothing genuine is refused as tampering, nothing is skipped. A log
that lost records the office acknowledged gets a new identity at start for the
same reason. A state file from before log identities ("legacy") is bound to the
log once, when that log is given its first identity, and is otherwise taken for
another log's: its log is uploaded from the start (copies, never a gap).
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import AccessdError, EventLogError, KeyFileError
from ..storage.cursor import read_cursor, read_extra, write_cursor
from ..storage.eventlog import iter_events, open_reader, read_log_id
from ..storage.keys import load_key_file
from .batch import BatchError, decode as decode_batch, encode as encode_batch

BATCH = 5000
LEGACY = "(before log identities)"   # the log id of a legacy state taken for another log
_RANGE = re.compile(r"(\d{12})-(\d{12})\.ndjson\.gz$")


class LogForked(AccessdError, RuntimeError):
    """This log's identity was used for another history (a data directory restored
    from a backup): the daemon must give the log a new identity before it uploads."""


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / "upload-state.json"


def read_state(data_dir: Path) -> tuple[str | None, int]:
    """(log id, acknowledged seq) from the state file; (None, 0) if there is none, and
    (None, seq) for a legacy one (see adopt_legacy_state)."""
    try:
        return read_cursor(state_path(data_dir))
    except ValueError:
        raise ValueError(f"{state_path(data_dir)}: not an upload state file; remove it to "
                         "upload everything again") from None


def adopt_legacy_state(data_dir: Path, log_id: str, *, bind: bool) -> None:
    """A legacy state (no log id) is bound to `log_id` when `bind` (the log was just
    given its first identity, and holds the records that state counted); otherwise it
    belonged to a log gone since (a reset), and this one is uploaded from its start."""
    state_log, seq = read_state(data_dir)
    if state_log is None and state_path(data_dir).exists():
        write_cursor(state_path(data_dir), log_id if bind else LEGACY, seq)


def acked(data_dir: Path, log_id: str | None = None) -> int:
    """The last sequence number the office acknowledged of the log `log_id` (0 when
    the acknowledgements were for another log, or from a legacy state)."""
    state_log, seq = read_state(data_dir)
    if log_id is not None and state_log != log_id:
        return 0
    return seq


def _set_acked(data_dir: Path, log_id: str, seq: int) -> None:
    write_cursor(state_path(data_dir), log_id, seq)


def batch_name(door: str, log_id: str, first: int, last: int) -> str:
    return f"logs/{door}/{log_id}/{first:012d}-{last:012d}.ndjson.gz"


def lost_tail(data_dir: Path, log_id: str, last_seq: int) -> int | None:
    """The acknowledged seq if this log holds fewer records than the office has
    acknowledged of it (restored from a backup, a damaged file cut short), else None."""
    state_log, seq = read_state(data_dir)
    if state_log == log_id and seq > last_seq:
        return seq
    return None


def conflict(data_dir: Path, log_id: str) -> str | None:
    """Why this log needs a new identity, as an upload found (None: it does not)."""
    found = read_extra(state_path(data_dir), "conflict")
    if isinstance(found, dict) and found.get("log_id") == log_id:
        return str(found.get("reason") or "its identity was used for another history")
    return None


def _record_conflict(data_dir: Path, log_id: str, seq: int, reason: str) -> None:
    write_cursor(state_path(data_dir), log_id, seq,
                 conflict={"log_id": log_id, "reason": reason})


def _store_conflict(store, door: str, log_id: str, after: int, conn, public) -> str | None:
    """Why what the store holds of this log beyond `after` is not this log's (None
    when it is: batches of an upload cut off before it was acknowledged)."""
    for name in sorted(store.list(f"logs/{door}/{log_id}")):
        m = _RANGE.search(name)
        if not m or int(m.group(2)) <= after:
            continue
        data = store.get(name)
        if data is None:
            continue
        try:
            _, rows = decode_batch(data, door=door, log_id=log_id, public_key=public)
        except BatchError:
            continue       # not signed by this door: not its own (the office refuses it)
        mine = dict(conn.execute("SELECT seq, hash FROM events WHERE seq BETWEEN ? AND ?",
                                 (int(m.group(1)), int(m.group(2)))))
        if any(isinstance(r, dict) and isinstance(r.get("seq"), int) and r["seq"] > after
               and mine.get(r["seq"]) != r.get("hash") for r in rows):
            return (f"the store already holds records #{int(m.group(1))}..#{int(m.group(2))} "
                    f"of log {log_id}, signed by this door but not in its log as it is "
                    f"(the office acknowledged #{after}): the data directory was put back "
                    "from a backup")
    return None


def _log_key(cfg) -> bytes:
    log_key = load_key_file(cfg.storage.key_file).log_key
    if log_key is None:
        raise KeyFileError(f"{cfg.storage.key_file}: this key file has no log key, and the "
                           "office takes only signed logs: install a key file made by "
                           "'accessctl door keys' (or 'door provision') of this version; the "
                           "records wait in the log meanwhile")
    return log_key


def upload(cfg, store, *, batch: int = BATCH, progress=None) -> dict:
    """Send everything not yet acknowledged. Returns counts; raises StoreError on failure
    (what was sent before the failure stays acknowledged), and LogForked when the log
    needs a new identity first (the daemon gives it one)."""
    data_dir = cfg.storage.data_dir
    conn = open_reader(cfg.storage.eventlog_path)
    sent = batches = 0
    try:
        log_id = read_log_id(conn)
        if log_id is None:
            raise EventLogError(f"{cfg.storage.eventlog_path}: the log has no identity yet; "
                                "start accessd once (it gives the log one), then upload")
        adopt_legacy_state(data_dir, log_id, bind=False)   # (the daemon binds its own)
        last_in_log = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        if lost_tail(data_dir, log_id, last_in_log) is not None:
            raise EventLogError(
                f"the event log ends at #{last_in_log} but the office acknowledged "
                f"#{acked(data_dir, log_id)} of it: records were lost. Restart accessd "
                "(it gives the log a new identity), then upload again")
        start = last_seq = acked(data_dir, log_id)
        log_key = _log_key(cfg)
        why = conflict(data_dir, log_id) or _store_conflict(
            store, cfg.door.id, log_id, start, conn,
            Ed25519PrivateKey.from_private_bytes(log_key).public_key())
        if why:
            _record_conflict(data_dir, log_id, start, why)
            raise LogForked(why)
        while True:
            rows = list(iter_events(conn, after_seq=last_seq, limit=batch))
            if not rows:
                break
            first, last = rows[0]["seq"], rows[-1]["seq"]
            store.put(batch_name(cfg.door.id, log_id, first, last),
                      encode_batch(cfg.door.id, log_id, rows, log_key))
            _set_acked(data_dir, log_id, last)
            last_seq = last
            sent += len(rows)
            batches += 1
            if progress:
                progress(len(rows))
    finally:
        conn.close()
    return {"door": cfg.door.id, "log_id": log_id, "events": sent, "batches": batches,
            "acked_seq": last_seq, "from_seq": start}

