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
uploaded from its start; one that lost records the office already acknowledged
is given a new identity by the daemon at start (`log.reset`) for the same end.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EventLogError, KeyFileError
from ..storage.keys import load_key_file
from .batch import encode as encode_batch
from ..storage.cursor import read_cursor, write_cursor
from ..storage.eventlog import iter_events, open_reader, read_log_id

BATCH = 5000


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / "upload-state.json"


def read_state(data_dir: Path) -> tuple[str | None, int]:
    """(log id, acknowledged seq) from the state file; (None, 0) if there is none. A
    state written before log identities has no log id: it counts for the current log."""
    try:
        return read_cursor(state_path(data_dir))
    except ValueError:
        raise ValueError(f"{state_path(data_dir)}: not an upload state file; remove it to "
                         "upload everything again") from None


def acked(data_dir: Path, log_id: str | None = None) -> int:
    """The last sequence number the office acknowledged of the log `log_id`
    (0 when the acknowledgements were for another log)."""
    state_log, seq = read_state(data_dir)
    if log_id is not None and state_log is not None and state_log != log_id:
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
    if (state_log is None or state_log == log_id) and seq > last_seq:
        return seq
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
    (what was sent before the failure stays acknowledged)."""
    conn = open_reader(cfg.storage.eventlog_path)
    sent = batches = 0
    try:
        log_id = read_log_id(conn)
        if log_id is None:
            raise EventLogError(f"{cfg.storage.eventlog_path}: the log has no identity yet; "
                                "start accessd once (it gives the log one), then upload")
        last_in_log = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        if lost_tail(cfg.storage.data_dir, log_id, last_in_log) is not None:
            raise EventLogError(
                f"the event log ends at #{last_in_log} but the office acknowledged "
                f"#{acked(cfg.storage.data_dir)} of it: records were lost. Restart accessd "
                "(it gives the log a new identity), then upload again")
        start = last_seq = acked(cfg.storage.data_dir, log_id)
        log_key = _log_key(cfg)
        while True:
            rows = list(iter_events(conn, after_seq=last_seq, limit=batch))
            if not rows:
                break
            first, last = rows[0]["seq"], rows[-1]["seq"]
            store.put(batch_name(cfg.door.id, log_id, first, last),
                      encode_batch(cfg.door.id, log_id, rows, log_key))
            _set_acked(cfg.storage.data_dir, log_id, last)
            last_seq = last
            sent += len(rows)
            batches += 1
            if progress:
                progress(len(rows))
    finally:
        conn.close()
    return {"door": cfg.door.id, "log_id": log_id, "events": sent, "batches": batches,
            "acked_seq": last_seq, "from_seq": start}
