"""The door's event log: sequence-numbered, hash-chained, durable SQLite (WAL, FULL).

Each record carries the hash of the one before it and its own SHA-256 hash, so
an edit, a deletion or a reordering shows up in `verify_chain`. The core never
waits for the disk: it hands records to a `LogWriter` thread, which commits them
in batches and resolves a Future per record once it is durable. If the file
cannot be written (disk full, locked), records wait in memory, are retried with
back-off, and a `log.degraded` record is written first once it recovers.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Callable, Iterator

import sqlite_utils

from ..core.text import printable
from ..errors import EventLogError
from .migrations import EVENTLOG_MIGRATIONS, migrate

log = logging.getLogger(__name__)
GENESIS = "0" * 64
MAX_PENDING = 200_000


def utc_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def record_hash(seq: int, ts: str, door: str, kind: str, credential: str | None,
                reason: str, detail: str, prev_hash: str) -> str:
    body = json.dumps([seq, ts, door, kind, credential, reason, detail, prev_hash],
                      separators=(",", ":"))
    return sha256(body.encode()).hexdigest()


@dataclass
class PendingRecord:
    ts: str
    kind: str
    credential: str | None
    reason: str
    detail: dict
    future: Future = field(default_factory=Future)
    new_identity: bool = False   # the log takes a new identity just before this record


class EventLog:
    """Direct access to the log file. Writes come from one thread only."""

    COLUMNS = ("seq", "ts", "door", "kind", "credential", "reason", "detail", "prev_hash", "hash")

    def __init__(self, path: Path, door_id: str, *, busy_timeout: float = 0.2):
        self.path = Path(path)
        self.door_id = door_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite_utils.Database(sqlite3.connect(
                self.path, timeout=busy_timeout, check_same_thread=False,
                isolation_level=None))
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = FULL")
            migrate(self.db.conn, EVENTLOG_MIGRATIONS)
            last = self.db.execute(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"{self.path}: cannot open event log: {exc}") from None
        self.last_seq, self.last_hash = last if last else (0, GENESIS)
        found = read_log_id(self.db.conn)
        self.identity_new = found is None   # given its first identity just now
        self.log_id = found or self.new_identity()

    def new_identity(self) -> str:
        """Give this log a new identity (created-at + random): done when it is created,
        and when it has lost records the office already has, so that what follows is
        uploaded as a log of its own, never under names the office loaded already."""
        log_id = make_log_id()
        try:
            self.db.execute("INSERT OR REPLACE INTO log_meta VALUES ('log_id', ?)", [log_id])
        except sqlite3.Error as exc:
            raise EventLogError(f"{self.path}: cannot write the log's identity: {exc}") from None
        self.log_id = log_id
        return log_id

    def append(self, records: list[PendingRecord]) -> list[int]:
        """Commit records in one transaction; return their sequence numbers.

        On failure nothing is committed and the in-memory chain head is unchanged.
        """
        conn = self.db.conn
        seq, prev = self.last_seq, self.last_hash
        rows = []
        for r in records:
            seq += 1
            detail = json.dumps(r.detail, separators=(",", ":"), sort_keys=True)
            h = record_hash(seq, r.ts, self.door_id, r.kind, r.credential, r.reason, detail, prev)
            rows.append((seq, r.ts, self.door_id, r.kind, r.credential, r.reason, detail, prev, h))
            prev = h
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise EventLogError(f"{self.path}: cannot write event log: {exc}") from exc
        first = self.last_seq + 1
        self.last_seq, self.last_hash = seq, prev
        return list(range(first, seq + 1))

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM events").fetchone()[0]

    def prune(self, max_events: int, acked_seq: int) -> int:
        """Delete the oldest records beyond `max_events`. Returns how many of them had
        not been acknowledged by the office (the caller logs that as events.dropped)."""
        excess = self.count() - max_events
        if excess <= 0:
            return 0
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            cut = conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?",
                               (excess - 1,)).fetchone()[0]
            unacked = conn.execute("SELECT count(*) FROM events WHERE seq <= ? AND seq > ?",
                                   (cut, acked_seq)).fetchone()[0]
            _keep_checkpoint(conn, cut)
            conn.execute("DELETE FROM events WHERE seq <= ?", (cut,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise EventLogError(f"{self.path}: cannot prune: {exc}") from exc
        return unacked

    def close(self) -> None:
        self.db.conn.close()


def _keep_checkpoint(conn, cut: int) -> None:
    """Before records up to `cut` are deleted: its hash, to verify the rest from."""
    row = conn.execute("SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
                       (cut,)).fetchone()
    if row:
        conn.execute("INSERT OR REPLACE INTO log_meta VALUES ('checkpoint', ?)",
                     [json.dumps({"seq": row[0], "hash": row[1]})])


def read_checkpoint(conn) -> dict | None:
    """Where the log was last cut (retention or its cap): {seq, hash}, or None."""
    try:
        row = conn.execute("SELECT value FROM log_meta WHERE key = 'checkpoint'").fetchone()
    except sqlite3.OperationalError:
        return None
    return json.loads(row[0]) if row else None


def purge_uploaded(path: Path, *, before: str, acked_seq: int, chunk: int = 500,
                   busy_timeout: float = 10.0, pause: float = 0.005, progress=None) -> int:
    """Retention at the door: delete records the office has (seq <= acked_seq) and that
    are older than `before` (UTC timestamp text), oldest first, `chunk` per
    transaction with a pause between (the daemon's writer waits at most 0.2 s for the
    file before it holds records in memory: it must get its turn); never the newest record (the
    chain goes on from it). A checkpoint (seq, hash) is kept where it was cut. Safe
    while the daemon runs (its own connection, WAL). Returns how many went."""
    import time
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")   # (a delete lost to a power cut is redone)
    gone = 0
    try:
        newest = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        young = conn.execute("SELECT min(seq) FROM events WHERE ts >= ?", (before,)).fetchone()[0]
        limit = min(acked_seq, newest - 1, (young - 1) if young is not None else newest)
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute("SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?",
                                    (limit, chunk)).fetchall()
                if rows:
                    _keep_checkpoint(conn, rows[-1][0])
                    gone += conn.execute("DELETE FROM events WHERE seq <= ?",
                                         (rows[-1][0],)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if len(rows) < chunk:
                return gone
            if progress:
                progress(gone)
            time.sleep(pause)
    except sqlite3.Error as exc:
        raise EventLogError(f"{path}: cannot purge: {exc}") from exc
    finally:
        conn.close()


def make_log_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def read_log_id(conn: sqlite3.Connection) -> str | None:
    """The log's identity; None for a log made before identities (or not yet given one)."""
    try:
        row = conn.execute("SELECT value FROM log_meta WHERE key = 'log_id'").fetchone()
    except sqlite3.OperationalError:  # no log_meta table: written by an older accessd
        return None
    return row[0] if row else None


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for staff tools (safe while the daemon writes)."""
    if not Path(path).exists():
        raise EventLogError(f"{path}: event log does not exist")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def iter_events(conn: sqlite3.Connection, *, after_seq: int = 0, since_ts: str | None = None,
                limit: int | None = None) -> Iterator[dict]:
    sql = "SELECT * FROM events WHERE seq > ?"
    params: list = [after_seq]
    if since_ts:
        sql += " AND ts >= ?"
        params.append(since_ts)
    sql += " ORDER BY seq"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    for row in conn.execute(sql, params):
        yield dict(row)


@dataclass
class ChainReport:
    records: int
    first_seq: int | None
    last_seq: int | None
    gaps: list[tuple[int, int]]  # (expected seq, found seq)
    bad: list[tuple[int, str]]   # (seq, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.bad


def verify_chain(conn: sqlite3.Connection, *, start_prev: str | None = None) -> ChainReport:
    """Recompute every hash and link; report gaps and bad records. A log cut by its
    retention or its cap is verified from its checkpoint."""
    gaps, bad = [], []
    count, first, prev_seq, prev_hash = 0, None, None, start_prev
    cp = read_checkpoint(conn) if start_prev is None else None
    if cp:
        prev_seq, prev_hash = cp["seq"], cp["hash"]
    for row in conn.execute(f"SELECT {', '.join(EventLog.COLUMNS)} FROM events ORDER BY seq"):
        seq, ts, door, kind, cred, reason, detail, prev, h = row
        count += 1
        if prev_seq is None:             # the first record, and no checkpoint before it
            if seq == 1 and prev != GENESIS:
                bad.append((seq, "first record does not start the chain"))
        elif seq != prev_seq + 1:
            gaps.append((prev_seq + 1, seq))
        if prev_hash is not None and prev != prev_hash:
            bad.append((seq, "previous-hash link broken"))
        if record_hash(seq, ts, door, kind, cred, reason, detail, prev) != h:
            bad.append((seq, "record hash does not match its contents"))
        first = seq if first is None else first
        prev_seq, prev_hash = seq, h
    return ChainReport(count, first, prev_seq if count else None, gaps, bad)


def reply_when_committed(reply: Future | None, futs: list[Future], payload: dict) -> None:
    """Answer `reply` with `payload` once the records behind `futs` are committed
    (with the first one's sequence number), or say they could not be logged."""
    if reply is None:
        return
    if not futs:
        reply.set_result(payload)
        return
    last = futs[-1]  # the writer commits in order: the last one done means all done

    def done(f: Future) -> None:
        if reply.done():
            return
        failed = next((x.exception() for x in futs if x.exception() is not None), None)
        if failed is not None:
            reply.set_result({**payload, "ok": False,
                              "error": f"action taken but not logged: {failed}"})
        else:  # the request's own record comes first; alarms it raised follow it
            reply.set_result({**payload, "seq": futs[0].result()})
    last.add_done_callback(done)


class LogWriter:
    """The one thread that writes the event log; the core hands it records."""

    PRUNE_EVERY = 1000  # records between two checks of the cap

    def __init__(self, eventlog: EventLog, *, wall: Callable[[], float],
                 retry_initial: float = 0.05, retry_max: float = 5.0,
                 max_events: int | None = None, acked: Callable[[], int] = lambda: 0):
        self.log = eventlog
        self.max_events = max_events
        self._acked = acked
        self._since_prune = 0
        self._wall = wall
        self._pending: deque[PendingRecord] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self.degraded_since: float | None = None
        self.last_error: str | None = None
        self.dropped = 0
        self.last_future: Future | None = None
        self._inflight: list[PendingRecord] = []  # taken from _pending, not yet committed
        self._reader = None  # count_grants' own connection (the core thread's)
        self._give_up = False
        self.on_commit: Callable[[int], None] | None = None  # told each committed batch's last seq
        self._thread = threading.Thread(target=self._run, name="eventlog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, kind: str, reason: str, *, credential: str | None = None,
               detail: dict | None = None, ts: float | None = None) -> Future:
        # (a store server's reply or a reader's frame may carry a NUL or a newline: it is
        # escaped here, so no record forges a line or is refused by the office)
        rec = PendingRecord(utc_iso(self._wall() if ts is None else ts), kind, credential,
                            printable(reason, 2000), detail or {})
        with self._cond:
            if len(self._pending) >= MAX_PENDING:
                # Keep the oldest (they say what happened first); count the rest.
                self.dropped += 1
                rec.future.set_exception(EventLogError("dropped: event log unavailable too long"))
                return rec.future
            self._pending.append(rec)
            self.last_future = rec.future
            self._cond.notify()
        return rec.future

    def reidentify(self, reason: str) -> Future:
        """Give the log a new identity, on this thread between two commits, and record
        `log.reset` (with the old and new ids) under it; the future has its seq."""
        rec = PendingRecord(utc_iso(self._wall()), "log.reset", None, reason, {},
                            new_identity=True)
        with self._cond:
            self._pending.append(rec)
            self.last_future = rec.future
            self._cond.notify()
        return rec.future

    def count_grants(self, credential: str) -> int:
        """access.granted records for a credential: committed ones, read on a connection
        of the caller's own, plus those still waiting to be written."""
        if self._reader is None:
            self._reader = open_reader(self.log.path)
        committed = self._reader.execute(
            "SELECT count(*) FROM events WHERE credential = ? AND kind = 'access.granted'",
            (credential,)).fetchone()[0]
        with self._cond:
            waiting = sum(1 for r in list(self._inflight) + list(self._pending)
                          if r.credential == credential and r.kind == "access.granted")
        return committed + waiting

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._inflight)

    def _run(self) -> None:
        delay = self._retry_initial
        while True:
            with self._cond:
                while not self._pending and not self._inflight and not self._stop:
                    self._cond.wait()
                if not self._pending and not self._inflight:
                    return
                self._inflight.extend(self._pending)
                self._pending.clear()
            batch = self._inflight
            to_write = batch
            if self.degraded_since is not None:
                note = PendingRecord(utc_iso(self._wall()), "log.degraded",
                                     None, "event log was unwritable; held events follow",
                                     {"since": utc_iso(self.degraded_since),
                                      "error": self.last_error, "held": len(batch),
                                      "dropped": self.dropped})
                to_write = [note] + batch
            for rec in to_write:
                if rec.new_identity:
                    try:
                        old = self.log.log_id
                        rec.detail = {**rec.detail, "old_log": old,
                                      "log": self.log.new_identity()}
                        rec.new_identity = False
                    except EventLogError as exc:   # tried again with the batch
                        log.error("event log: %s", exc)
            try:
                seqs = self.log.append(to_write)
            except EventLogError as exc:
                self.last_error = str(exc.__cause__ or exc)  # before degraded_since: readers
                if self.degraded_since is None:              # check that one first
                    self.degraded_since = self._wall()
                    log.error("event log degraded, holding events in memory: %s", exc)
                with self._cond:
                    if self._give_up:
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            if self.degraded_since is not None:
                log.warning("event log recovered; %d held events written", len(batch))
                seqs = seqs[1:]
            self.degraded_since, self.last_error, delay = None, None, self._retry_initial
            self.dropped = 0
            self._inflight = []
            for rec, seq in zip(batch, seqs):
                rec.future.set_result(seq)
            if self.on_commit is not None and seqs:
                try:
                    self.on_commit(seqs[-1])
                except Exception:  # a listener must never stop the log
                    log.exception("event log: commit listener failed")
            self._since_prune += len(to_write)
            if self.max_events and self._since_prune >= self.PRUNE_EVERY:
                self._since_prune = 0
                self._prune()

    def _prune(self) -> None:
        """Keep the log under its cap; dropped unacknowledged events are recorded."""
        try:
            lost = self.log.prune(self.max_events, self._acked())
            if lost:
                log.warning("event log over its cap: %d unacknowledged events dropped", lost)
                self.log.append([PendingRecord(
                    utc_iso(self._wall()), "events.dropped",
                    None, f"{lost} events dropped before upload (storage.max_events "
                          f"{self.max_events})", {"dropped": lost})])
        except (EventLogError, ValueError) as exc:
            log.error("event log prune failed: %s", exc)

    def stop(self, timeout: float = 5.0) -> bool:
        """Flush what is pending (bounded by timeout), then stop. True if all flushed."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self._give_up = True
                self._cond.notify()
            self._thread.join(1.0)
            return False
        return True
