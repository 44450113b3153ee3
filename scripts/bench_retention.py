"""Retention figures (scripts/bench --no-retention skips them): the office purging
1,000,000 door events older than the site keeps them (SQLite and PostgreSQL), and a
door purging 100,000 uploaded records while taps stream in, with the decision latency
during the purge (the nightly `accessd upload` runs it beside the daemon).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def bench_office_purge(directory: Path, database: str, events: int = 1_000_000) -> dict:
    """`events` records 181-400 days old over 225 doors, plus a day of young ones:
    `accessctl logs purge` (intake.purge) deletes the old ones."""
    from accessd.site import intake
    from accessd.site.db import SiteDB
    from accessd.storage.eventlog import GENESIS, utc_iso
    pg = None
    if database == "postgresql":
        from accessd.testing import Postgres
        pg = Postgres()
    try:
        site = SiteDB.init(directory, "bench", pg.database() if pg else None)
        site.group_add("g")
        doors = [f"door-{i:03d}" for i in range(225)]
        with site.db.atomic():
            for d in doors:
                site.db.insert("doors", {"id": d, "group_id": "g", "description": "",
                                         "readers": ""})
        now = time.time()
        t0, step = now - 400 * 86400, 219 * 86400 / events
        per = -(-events // len(doors))
        cols = "door, log, seq, ts, kind, credential, reason, detail, prev_hash, hash"

        def rows():
            for i in range(events + len(doors) * 20):
                d = doors[i % len(doors)]
                ts = t0 + i * step if i < events else now - 3600
                prev = f"h{i - len(doors)}" if i >= len(doors) else GENESIS   # (linked)
                yield (d, "bench", i // len(doors) + 1, utc_iso(ts), "access.granted",
                       "c1", "granted", "", prev, f"h{i}")
        t = time.monotonic()
        if pg:
            with site.db.conn.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as cp:
                for r in rows():
                    cp.write_row(r)
            site.db.conn.execute("ANALYZE events")
        else:
            site.db.conn.execute("BEGIN")
            site.db.conn.executemany(f"INSERT INTO events ({cols}) VALUES "
                                     "(?,?,?,?,?,?,?,?,?,?)", rows())
            site.db.conn.execute("COMMIT")
        load_s = time.monotonic() - t
        t = time.monotonic()
        res = intake.purge(site, now=now)
        purge_s = time.monotonic() - t
        left = site.db.count("events")
        t = time.monotonic()
        bad = [d for d in doors if intake.verify_door(site, d, "bench") != ([], [])]
        verify_s = time.monotonic() - t
        site.close()
        return {"events": events, "per_door": per, "load_s": round(load_s, 1),
                "purged": res["events"], "purge_s": round(purge_s, 1),
                "events_per_s": round(res["events"] / purge_s), "left": left,
                "verify_225_doors_s": round(verify_s, 2), "chains_broken": len(bad)}
    finally:
        if pg:
            pg.stop()


def bench_door_purge(directory: Path, records: int = 100_000, taps: int | None = None) -> dict:
    """A door with `records` uploaded records 31-60 days old: purge_uploaded (in a
    thread of its own, on its own connection, as the upload process does) while the
    core decides taps 2 ms apart and its log writer commits each tap."""
    from bench import build_door, start_engine, summary_ms, uid_for
    from accessd.config import load_config
    from accessd.core.events import CredentialPresented
    from accessd.storage.eventlog import EventLog, PendingRecord, purge_uploaded, utc_iso
    config = build_door(directory, 10_000, unlock_seconds=0.001)
    cfg = load_config(config)
    el = EventLog(cfg.storage.eventlog_path, cfg.door.id)
    now = time.time()
    step = 29 * 86400 / records
    for i in range(0, records, 10_000):
        el.append([PendingRecord(utc_iso(now - 60 * 86400 + (i + j) * step), "access.granted",
                                 "c1", "granted", {}) for j in range(min(10_000, records - i))])
    el.close()
    engine, factory, stop = start_engine(config)
    rng = random.Random(7)
    baseline_n = len(engine.decision_latency_us)
    for _ in range(500):            # the same taps without a purge, for comparison
        engine.post(CredentialPresented("bench", "nfc", uid_for(rng.randrange(10_000))))
        time.sleep(0.002)
    baseline = list(engine.decision_latency_us)[baseline_n:]
    done = threading.Event()
    out: dict = {}

    def purge():
        t = time.monotonic()
        out["purged"] = purge_uploaded(cfg.storage.eventlog_path, acked_seq=records,
                                       before=utc_iso(now - 30 * 86400))
        out["purge_s"] = round(time.monotonic() - t, 2)
        done.set()
    before = len(engine.decision_latency_us)
    th = threading.Thread(target=purge)
    th.start()
    while not done.is_set():
        engine.post(CredentialPresented("bench", "nfc", uid_for(rng.randrange(10_000))))
        time.sleep(0.002)
    th.join()
    during = list(engine.decision_latency_us)[before:]
    degraded = engine.logw.degraded_since is not None
    stop()
    return {"records": records, **out, "decision_ms_during": summary_ms(during),
            "decision_ms_without": summary_ms(baseline), "taps_during": len(during),
            "log_degraded": degraded}


def bench_retention(directory: Path, *, events: int = 1_000_000, records: int = 100_000) -> dict:
    out = {"targets": {"decision_p99_ms_during_purge": 5}}
    out["door"] = bench_door_purge(directory / "door", records)
    print("bench: door purge done", file=sys.stderr)
    for db in ("sqlite", "postgresql"):
        out[f"office_{db}"] = bench_office_purge(directory / db, db, events)
        print(f"bench: office purge on {db} done", file=sys.stderr)
    return out


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--records", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="accessd-bench-retention-") as tmp:
        print(json.dumps(bench_retention(Path(tmp), events=a.events, records=a.records),
                         indent=2))
