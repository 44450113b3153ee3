"""Log intake at the office: load the doors' uploaded batches into the site
database, verify each door's hash chain across batches, and answer questions
about who opened which door.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from dataclasses import dataclass, field

from ..storage.eventlog import GENESIS, record_hash
from .db import SiteDB

ALARMS = ("door.forced", "door.held_open", "tamper", "reader.fault", "sync.rejected",
          "sync.stale", "log.degraded", "core.error")
COLS = ("seq", "ts", "door", "kind", "credential", "reason", "detail", "prev_hash", "hash")


@dataclass
class DoorIntake:
    door: str
    batches: int = 0
    added: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)   # (missing from, to)
    bad: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.bad


def pull(site: SiteDB, store, *, progress=None) -> dict[str, DoorIntake]:
    """Load every batch not loaded yet; verify hashes and continuity door by door."""
    done = {r[0] for r in site.db.execute("SELECT name FROM batches")}
    names = [n for n in store.list("logs") if n.endswith(".ndjson.gz") and n not in done]
    out: dict[str, DoorIntake] = {}
    for name in sorted(names):
        door = name.split("/")[1]
        rep = out.setdefault(door, DoorIntake(door))
        data = store.get(name)
        try:
            rows = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
        except (OSError, ValueError, EOFError) as exc:
            rep.bad.append((0, f"{name}: unreadable batch ({exc})"))
            continue
        with site.db.atomic():
            for r in rows:
                if r.get("door") != door:
                    rep.bad.append((r.get("seq", 0), f"{name}: record of door {r.get('door')!r}"))
                    continue
                if record_hash(r["seq"], r["ts"], r["door"], r["kind"], r["credential"],
                               r["reason"], r["detail"], r["prev_hash"]) != r["hash"]:
                    rep.bad.append((r["seq"], "record hash does not match its contents"))
                try:
                    site.db.execute(f"INSERT INTO events ({', '.join(COLS)}) VALUES "
                                    f"({', '.join('?' * len(COLS))})", [r[c] for c in COLS])
                    rep.added += 1
                except sqlite3.IntegrityError:
                    rep.duplicates += 1
            site.db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                            [name, door, rows[0]["seq"] if rows else 0,
                             rows[-1]["seq"] if rows else 0, time.time()])
        rep.batches += 1
        if progress:
            progress(name)
    for door, rep in out.items():
        gaps, links = verify_door(site, door)
        rep.gaps, rep.bad = gaps, rep.bad + links
    return out


def verify_door(site: SiteDB, door: str) -> tuple[list[tuple[int, int]], list[tuple[int, str]]]:
    """Sequence gaps and broken links in one door's collected log."""
    gaps, bad = [], []
    prev_seq, prev_hash = 0, GENESIS
    for seq, ph, h in site.db.execute(
            "SELECT seq, prev_hash, hash FROM events WHERE door = ? ORDER BY seq", [door]):
        if seq != prev_seq + 1:
            gaps.append((prev_seq + 1, seq - 1))
        elif ph != prev_hash:
            bad.append((seq, "previous-hash link broken"))
        prev_seq, prev_hash = seq, h
    return gaps, bad


def show(site: SiteDB, *, door=None, person=None, since=None, kinds=(), limit=None) -> list[dict]:
    """Events with the person behind each credential (names from the sealed records)."""
    # A door logs its credential id, or for a credential it does not hold (another
    # group's, a revoked one) a fingerprint of the same keyed HMAC the office keeps.
    sql = ("SELECT e.door, e.seq, e.ts, e.kind, e.credential, e.reason, c.person_id "
           "FROM events e LEFT JOIN credentials c ON c.id = e.credential "
           "OR (e.credential LIKE 'fp:%' AND c.fingerprint = e.credential) WHERE 1=1")
    args: list = []
    if door:
        sql += " AND e.door = ?"
        args.append(door)
    if person:
        sql += " AND c.person_id = ?"
        args.append(person)
    if since:
        sql += " AND e.ts >= ?"
        args.append(since)
    if kinds:
        sql += f" AND e.kind IN ({', '.join('?' * len(kinds))})"
        args.extend(kinds)
    sql += " ORDER BY e.ts, e.door, e.seq"
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    people: dict[str, str] = {}
    out = []
    for d, seq, ts, kind, cred, reason, pid in site.db.execute(sql, args):
        name = ""
        if pid:
            if pid not in people:
                p = site.person(pid)
                people[pid] = f"{p.name} ({p.unit})" if p.unit else p.name
            name = people[pid]
        out.append({"door": d, "seq": seq, "ts": ts, "kind": kind, "credential": cred,
                    "person": name, "reason": reason})
    return out


def strangers(site: SiteDB, *, since=None, min_doors: int = 2) -> list[dict]:
    """Unknown credentials (fingerprints no enrolled credential has) tried at several doors."""
    sql = ("SELECT e.credential, count(DISTINCT e.door), count(*), min(e.ts), max(e.ts), "
           "group_concat(DISTINCT e.door) FROM events e "
           "WHERE e.kind = 'access.denied' AND e.credential LIKE 'fp:%' "
           "AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.fingerprint = e.credential)")
    args: list = []
    if since:
        sql += " AND e.ts >= ?"
        args.append(since)
    sql += " GROUP BY e.credential HAVING count(DISTINCT e.door) >= ? ORDER BY 2 DESC, 3 DESC"
    args.append(min_doors)
    return [{"fingerprint": fp, "doors": n, "tries": t, "first": a, "last": b,
             "door_list": sorted(ds.split(","))}
            for fp, n, t, a, b, ds in site.db.execute(sql, args)]


def report(site: SiteDB, *, since=None) -> list[dict]:
    """Per door and day: grants, denials and alarms."""
    sql = ("SELECT door, substr(ts, 1, 10) AS day, "
           "sum(kind = 'access.granted'), sum(kind = 'access.denied'), "
           f"sum(kind IN ({', '.join('?' * len(ALARMS))})) FROM events")
    args: list = list(ALARMS)
    if since:
        sql += " WHERE ts >= ?"
        args.append(since)
    sql += " GROUP BY door, day ORDER BY day, door"
    return [{"door": d, "day": day, "granted": g, "denied": n, "alarms": a}
            for d, day, g, n, a in site.db.execute(sql, args)]
