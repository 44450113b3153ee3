"""Office console figures (scripts/bench --no-console skips them): server time per
page with 5,000 residents, 225 doors and 1,000,000 log events, on SQLite and on
PostgreSQL; search-as-you-type; and a door alarm reaching an open dashboard's
event stream through a real Mosquitto.

Server time is measured in process (the ASGI app through Starlette's test client:
routing, session, permission check, library calls, template), as a page costs the
server; the browser's own rendering is not in it.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "correct horse battery"


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _ms(values: list[float]) -> dict:
    return {"p50": round(_pct(values, 50) * 1000, 1), "p95": round(_pct(values, 95) * 1000, 1),
            "max": round(max(values) * 1000, 1), "n": len(values)}


def _events(site, doors: list[str], count: int, people_creds: list[str], postgres: bool) -> None:
    """`count` office log events over the doors in the last 90 days (written directly,
    as `logs pull` would leave them)."""
    from accessd.storage.eventlog import utc_iso
    t0 = time.time() - 90 * 86400
    step = 90 * 86400 / count

    def rows():
        for i in range(count):
            door = doors[i % len(doors)]
            granted = i % 10 != 0
            yield (door, "bench", i // len(doors) + 1, utc_iso(t0 + i * step),
                   "access.granted" if granted else "access.denied",
                   people_creds[i % len(people_creds)] if granted else "fp:00c0ffee00",
                   "granted" if granted else "unknown credential", "", "", f"h{i}")
    cols = "door, log, seq, ts, kind, credential, reason, detail, prev_hash, hash"
    if postgres:
        with site.db.conn.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as cp:
            for r in rows():
                cp.write_row(r)
        site.db.conn.execute("ANALYZE events")   # as autovacuum would, after a load
    else:
        site.db.conn.execute("BEGIN")
        site.db.conn.executemany(f"INSERT INTO events ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 rows())
        site.db.conn.execute("COMMIT")


def bench_pages(directory: Path, database: str, *, residents: int = 5000,
                events: int = 1_000_000, rounds: int = 20) -> dict:
    from scripts.bench import _estate_files
    from accessd.site import csvimport, staff
    from accessd.site.db import SiteDB
    from accessd.site.provision import import_doors
    from accessd.web.app import Console, create_app
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    server = url = None
    if database == "postgresql":
        from accessd.testing import Postgres
        try:
            server = Postgres()
        except (FileNotFoundError, RuntimeError) as exc:
            return {"skipped": str(exc)}
        url = server.database("console")
    res: dict = {"database": database}
    try:
        site_dir = directory / f"site-{database}"
        site = SiteDB.init(site_dir, "estate", url)
        doors_csv, people_csv = _estate_files(residents=residents)
        import_doors(site, doors_csv)
        csvimport.import_csv(site, people_csv)
        creds = [c["id"] for c in site.credentials()]
        doors = [d["id"] for d in site.doors()]
        t0 = time.monotonic()
        _events(site, doors, events, creds, database == "postgresql")
        res["setup"] = {"residents": len(site.people()), "doors": len(doors),
                        "events": site.db.execute("SELECT count(*) FROM events").fetchone()[0],
                        "events_load_s": round(time.monotonic() - t0, 1)}
        staff.add(site, "bench", "admin", PASSWORD)
        person = site.people()[1234].id
        site.close()
        console = Console(site_dir, url, live=False)
        app = create_app(console)
        pages = {"dashboard": "/", "people": "/people", "person": f"/people/{person}",
                 "logs": "/logs", "logs_one_door": f"/logs?door={doors[7]}",
                 "logs_one_person": f"/logs?person={person}",
                 "logs_between": f"/logs?door={doors[7]}&since=2026-01-01&until=2030-01-01",
                 "chart_14_days": "/logs/chart", "passes": "/passes", "doors": "/doors",
                 "publish": "/publish", "audit": "/audit"}
        with TestClient(app) as c:
            c.get("/login")
            c.post("/login", data={"name": "bench", "password": PASSWORD,
                                   "csrf": c.cookies.get("accessd_pre")})
            out = {}
            for name, path in pages.items():
                c.get(path)                              # warm
                times = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    r = c.get(path)
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                out[name] = _ms(times)
            res["page_ms"] = out
            res["page_p95_ms_worst"] = max(v["p95"] for v in out.values())
            # search as you type: each keystroke of a few names and units
            times = []
            for word in ("Resident 12", "Resident 4711", "12A", "999B", "resid"):
                for n in range(1, len(word) + 1):
                    t = time.perf_counter()
                    r = c.get(f"/people?q={word[:n]}", headers={"HX-Request": "true"})
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200
            res["search_ms"] = _ms(times)
    finally:
        if server:
            server.stop()
    return res


def bench_alarm_to_dashboard(directory: Path, alarms: int = 40) -> dict:
    """A forced door on a running simulated door, to the `alarm` event on an open
    dashboard's stream (door -> Mosquitto -> the console's live feed -> SSE)."""
    import subprocess

    import httpx

    from accessd.testing import free_tcp_port, mosquitto_path, terminate
    if not mosquitto_path():
        return {"skipped": "mosquitto is not installed"}
    from tests.test_live_office import Estate
    from accessd.site import staff
    from accessd.site.db import SiteDB
    estate = Estate(directory)
    site = SiteDB.open(estate.site_dir)
    staff.add(site, "bench", "admin", PASSWORD)
    site.close()
    port = free_tcp_port()
    proc = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                             str(estate.site_dir), "web", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies: list[float] = []
    try:
        door = estate.door("door-a")
        base = f"http://127.0.0.1:{port}"
        c = httpx.Client(base_url=base, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                c.get("/login")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        c.post("/login", data={"name": "bench", "password": PASSWORD,
                               "csrf": c.cookies.get("accessd_pre")})
        arrived = threading.Event()
        got: list[float] = []
        opened = threading.Event()

        def listen():
            try:
                with c.stream("GET", "/live", timeout=60) as s:
                    opened.set()
                    for line in s.iter_lines():
                        if line == "event: alarm":
                            got.append(time.monotonic())
                            arrived.set()
            except httpx.HTTPError:      # the console stopped at the end of the run
                pass
        threading.Thread(target=listen, daemon=True).start()
        opened.wait(10)
        for _ in range(alarms):
            arrived.clear()
            t = time.monotonic()
            door.request({"op": "sim", "input": "door", "state": "open"})
            if not arrived.wait(10):
                continue
            latencies.append(got[-1] - t)
            door.request({"op": "sim", "input": "door", "state": "closed"})
    finally:
        terminate(proc)
        estate.close()
    if not latencies:
        return {"alarms": alarms, "arrived": 0}
    return {"alarms": alarms, "arrived": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(_pct(latencies, 99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1)}


def bench_console(directory: Path, *, events: int = 1_000_000) -> dict:
    out = {"targets": {"page_p95_ms": 150, "search_p95_ms": 100, "alarm_to_dashboard_p99_ms":
                       1000}}
    for db in ("sqlite", "postgresql"):
        out[db] = bench_pages(directory / db, db, events=events)
        print(f"bench: console pages on {db} done", file=sys.stderr)
    out["alarm_to_dashboard"] = bench_alarm_to_dashboard(directory / "alarm")
    return out


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="accessd-bench-console-") as tmp:
        print(json.dumps(bench_console(Path(tmp), events=a.events), indent=2))
