"""The hash-chained event log and its writer thread."""

import sqlite3
import time

import pytest

from accessd.clock import FakeClock
from accessd.storage.eventlog import EventLog, LogWriter, open_reader, verify_chain


@pytest.fixture
def logpath(tmp_path):
    return tmp_path / "events.db"


def write(path, n, start_kind="access.granted"):
    writer = LogWriter(EventLog(path, "d1"), wall=FakeClock().wall)
    writer.start()
    futs = [writer.submit(start_kind, f"reason {i}", credential=f"c{i}") for i in range(n)]
    seqs = [f.result(5) for f in futs]
    assert writer.stop()
    writer.log.close()
    return seqs


def test_records_are_numbered_and_chained_across_restarts(logpath):
    assert write(logpath, 3) == [1, 2, 3]
    assert write(logpath, 2) == [4, 5]
    rep = verify_chain(open_reader(logpath))
    assert rep.ok and rep.records == 5 and rep.last_seq == 5


def test_edit_is_detected(logpath):
    write(logpath, 5)
    with sqlite3.connect(logpath) as c:
        c.execute("UPDATE events SET reason='granted' WHERE seq=3")
    rep = verify_chain(open_reader(logpath))
    assert not rep.ok and rep.bad == [(3, "record hash does not match its contents")]


def test_deletion_is_a_gap_and_a_broken_link(logpath):
    write(logpath, 5)
    with sqlite3.connect(logpath) as c:
        c.execute("DELETE FROM events WHERE seq=3")
    rep = verify_chain(open_reader(logpath))
    assert rep.gaps == [(3, 4)] and (4, "previous-hash link broken") in rep.bad


def test_locked_log_degrades_holds_events_and_recovers(logpath):
    """A real fault: another process holds the write lock. The door keeps going,
    events wait in memory, and a log.degraded record is written on recovery."""
    el = EventLog(logpath, "d1", busy_timeout=0.01)
    writer = LogWriter(el, wall=FakeClock().wall, retry_initial=0.01, retry_max=0.05)
    writer.start()
    writer.submit("daemon.started", "x").result(5)
    blocker = sqlite3.connect(logpath, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    futs = [writer.submit("access.granted", f"r{i}") for i in range(3)]
    # the writer notices the fault; nothing is committed while the lock is held
    deadline = time.monotonic() + 10
    while writer.degraded_since is None and time.monotonic() < deadline:
        pass
    assert not any(f.done() for f in futs) and writer.pending == 3
    assert "locked" in writer.last_error
    blocker.execute("ROLLBACK")
    blocker.close()
    assert [f.result(5) for f in futs] == [3, 4, 5]
    assert writer.stop()
    rows = list(open_reader(logpath).execute("SELECT seq, kind, detail FROM events"))
    assert [r["kind"] for r in rows] == ["daemon.started", "log.degraded"] + ["access.granted"] * 3
    assert '"held":3' in rows[1]["detail"]
    assert verify_chain(open_reader(logpath)).ok


def test_corrupt_log_file_is_a_clear_error(tmp_path):
    from accessd.errors import EventLogError
    p = tmp_path / "events.db"
    p.write_bytes(b"garbage" * 1000)
    with pytest.raises(EventLogError, match="cannot open event log"):
        EventLog(p, "d1")


def test_cap_drops_oldest_and_records_unacknowledged_losses(logpath, mocker):
    mocker.patch.object(LogWriter, "PRUNE_EVERY", 5)
    writer = LogWriter(EventLog(logpath, "d1"), wall=FakeClock().wall, max_events=10,
                       acked=lambda: 12)
    writer.start()
    for i in range(25):
        writer.submit("access.granted", f"r{i}").result(5)
    assert writer.stop()
    rows = list(open_reader(logpath).execute("SELECT seq, kind, reason FROM events ORDER BY seq"))
    assert len(rows) <= 11
    dropped = [r for r in rows if r["kind"] == "events.dropped"]
    # first prune (after 5): nothing over; later ones cut seqs beyond 12 that were not uploaded
    assert dropped and "events dropped before upload (storage.max_events 10)" in dropped[0]["reason"]
    assert rows[-1]["seq"] >= 25
    rep = verify_chain(open_reader(logpath))
    assert not rep.bad and not rep.gaps   # the remaining chain is whole from its first record


def test_cap_within_acknowledged_events_drops_silently(logpath, mocker):
    mocker.patch.object(LogWriter, "PRUNE_EVERY", 5)
    writer = LogWriter(EventLog(logpath, "d1"), wall=FakeClock().wall, max_events=10,
                       acked=lambda: 1000)
    writer.start()
    for i in range(25):
        writer.submit("access.granted", f"r{i}").result(5)
    assert writer.stop()
    kinds = [r["kind"] for r in open_reader(logpath).execute("SELECT kind FROM events")]
    assert "events.dropped" not in kinds and len(kinds) <= 10
