"""Log intake at the office: load the doors' uploaded batches into the site
database (each signed by its door's own key: sync/batch.py; an unsigned or
forged batch, or one from a door the site does not have, is refused with the
reason), verify each door's hash chain across batches, and answer questions
about who opened which door.
"""

from __future__ import annotations

import json
import time
from hashlib import sha256
from dataclasses import dataclass, field

from ..alarms import ALARM_KINDS
from ..storage.eventlog import GENESIS, record_hash, utc_iso
from ..sync.batch import BatchError, decode as decode_batch
from .db import SiteDB

COLS = ("seq", "ts", "door", "kind", "credential", "reason", "detail", "prev_hash", "hash")
_SEQ, _TS, _KIND, _REASON, _HASH = (COLS.index(c) for c in ("seq", "ts", "kind", "reason",
                                                           "hash"))


def _well_typed(r: dict) -> bool:
    """Fields of the types a door writes (what either database can store as they are)."""
    seq = r["seq"]
    if type(seq) is not int or not 0 < seq < 2 ** 31:
        return False
    texts = [r[c] for c in COLS if c not in ("seq", "credential")]
    if r["credential"] is not None:
        texts.append(r["credential"])
    return all(type(t) is str and "\0" not in t for t in texts)


@dataclass
class DoorIntake:
    door: str
    batches: int = 0
    added: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)   # (missing from, to)
    bad: list[tuple[int, str]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)               # log identities seen
    tampered: list[str] = field(default_factory=list)           # batches replaced after loading
    refused: list[str] = field(default_factory=list)            # batches not loaded, and why

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.bad and not self.tampered and not self.refused


def parse_batch_name(name: str) -> tuple[str, str] | None:
    """(door, log id) of logs/<door>/<log>/<range>.ndjson.gz; log '' for the names
    doors used before logs had identities (logs/<door>/<range>.ndjson.gz)."""
    parts = name.split("/")
    if not name.endswith(".ndjson.gz") or parts[0] != "logs":
        return None
    if len(parts) == 4:
        return parts[1], parts[2]
    if len(parts) == 3:
        return parts[1], ""
    return None


def pull(site: SiteDB, store, *, progress=None) -> dict[str, DoorIntake]:
    """Load every batch not loaded yet; verify hashes and continuity door by door and
    log by log. A batch replaced in the store after it was loaded, or a record that
    differs from the one already loaded under its number, is reported as tampering;
    what was loaded first is kept."""
    loaded = {name: (sha, tag, pulled) for name, sha, tag, pulled in site.db.execute(
        "SELECT name, sha256, tag, pulled FROM batches")}
    doors = {d["id"] for d in site.doors()}
    keys: dict[str, object] = {}
    out: dict[str, DoorIntake] = {}
    touched: dict[str, set[str]] = {}
    for name, tag in sorted(store.versions("logs").items()):
        parsed = parse_batch_name(name)
        if parsed is None:
            continue
        door, log_id = parsed
        if name in loaded:
            _check_replaced(site, store, name, tag, loaded[name], out)
            continue
        rep = out.setdefault(door, DoorIntake(door))
        data = store.get(name)
        if data is None:
            continue
        if door not in keys:
            keys[door] = site.keys.door_log_public(door) if door in doors else None
        try:
            _, rows = decode_batch(data, door=door, log_id=log_id, public_key=keys[door])
        except BatchError as exc:
            _refuse(site, rep, name, door, str(exc))
            continue
        checked = [v for v in (_checked(name, door, log_id, r, rep) for r in rows) if v]
        with site.db.atomic():
            site.db.execute("DELETE FROM refused_batches WHERE name = ?", [name])
            _store(site, name, door, log_id, checked, rep)
            site.db.execute("INSERT INTO batches (name, door, first, last, pulled, log, sha256, "
                            "tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [name, door, checked[0][_SEQ] if checked else 0,
                             checked[-1][_SEQ] if checked else 0, time.time(), log_id,
                             sha256(data).hexdigest(), tag])
        rep.batches += 1
        if log_id not in rep.logs:
            rep.logs.append(log_id)
        touched.setdefault(door, set()).add(log_id)
        if progress:
            progress(name)
    for door, logs in touched.items():
        rep = out[door]
        for log_id in sorted(logs):
            gaps, links = verify_door(site, door, log_id)
            rep.gaps += gaps
            rep.bad += [(seq, f"{why} (log {log_id})" if len(logs) > 1 else why)
                        for seq, why in links]
    return out


def _refuse(site: SiteDB, rep: DoorIntake, name: str, door: str, why: str) -> None:
    """Not loaded: said now, and kept for the doctor until a later pull loads it."""
    rep.refused.append(f"{name}: {why}")
    now = time.time()
    with site.db.atomic():
        site.db.execute("INSERT INTO refused_batches (name, door, reason, first_seen, "
                        "last_seen) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                        "reason = excluded.reason, last_seen = excluded.last_seen",
                        [name, door, why, now, now])


def load_live(site: SiteDB, door: str, payload: bytes,
              rep: DoorIntake | None = None) -> DoorIntake:
    """One record received on the live channel (accessd/<site>/<door>/events): checked
    and stored exactly as an uploaded one, so a record that came live and again in the
    nightly upload (or twice live) is kept once; `door` is the topic's, and a record
    claiming another door is refused."""
    rep = rep or DoorIntake(door)
    try:
        r = json.loads(payload)
        if not isinstance(r, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        rep.bad.append((0, f"live: unreadable record ({str(exc)[:80]})"))
        return rep
    log_id = r.get("log", "")
    log_id = log_id if isinstance(log_id, str) else ""
    checked = _checked("live", door, log_id, r, rep)
    with site.db.atomic():
        _store(site, "live", door, log_id, [checked] if checked else [], rep)
    return rep


def _checked(name: str, door: str, log_id: str, r, rep: DoorIntake) -> list | None:
    """A record's column values (COLS order), or None with the reason in rep.bad."""
    try:
        seq = r["seq"]
        if not _well_typed(r):
            rep.bad.append((0, f"{name}: a record with a field of the wrong type"))
            return None
        if r.get("door") != door:
            rep.bad.append((seq, f"{name}: record of door {r.get('door')!r}"))
            return None
        if r.get("log", "") != log_id:
            rep.bad.append((seq, f"{name}: record of log {r.get('log')!r}"))
            return None
        if record_hash(seq, r["ts"], r["door"], r["kind"], r["credential"],
                       r["reason"], r["detail"], r["prev_hash"]) != r["hash"]:
            rep.bad.append((seq, "record hash does not match its contents"))
            if name == "live":   # never let a forged live record stand in for the real one
                return None
        return [r[c] for c in COLS]
    except (KeyError, TypeError):
        rep.bad.append((0, f"{name}: a record lacks a field"))
        return None


def _store(site: SiteDB, name: str, door: str, log_id: str, records: list[list],
           rep: DoorIntake) -> None:
    """Add checked records not loaded yet (in one statement per table, not one per
    record: a round trip each on PostgreSQL); one already loaded under its number is
    a duplicate, or tampering if it differs. Call inside site.db.atomic()."""
    if not records:
        return
    cut = site.db.execute("SELECT seq FROM log_checkpoints WHERE door = ? AND log = ?",
                          [door, log_id]).fetchone()
    if cut is not None:    # purged already (older than the site keeps): not loaded again
        rep.duplicates += sum(1 for v in records if v[_SEQ] <= cut[0])
        records = [v for v in records if v[_SEQ] > cut[0]]
        if not records:
            return
    seqs = [v[_SEQ] for v in records]
    had = dict(site.db.execute("SELECT seq, hash FROM events WHERE door = ? AND log = ? "
                               "AND seq BETWEEN ? AND ?", [door, log_id, min(seqs), max(seqs)]))
    new, alarms, now = [], [], time.time()
    for v in records:
        seq = v[_SEQ]
        if seq in had:
            if had[seq] != v[_HASH]:
                rep.bad.append((seq, f"{name}: differs from record #{seq} loaded before "
                                     "(tampering?); the first one is kept"))
            else:
                rep.duplicates += 1
            continue
        had[seq] = v[_HASH]
        new.append([log_id, *v])
        if v[_KIND] in ALARM_KINDS:   # open until staff acknowledge it
            alarms.append([door, log_id, seq, v[_TS], v[_KIND], v[_REASON], now])
    # under the write lock no one else adds these rows: ON CONFLICT only as a guard
    site.db.executemany(f"INSERT INTO events (log, {', '.join(COLS)}) VALUES "
                        f"(?, {', '.join('?' * len(COLS))}) ON CONFLICT DO NOTHING", new)
    site.db.executemany("INSERT INTO alarms (door, log, seq, ts, kind, reason, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", alarms)
    rep.added += len(new)


def _check_replaced(site: SiteDB, store, name: str, tag: str, was, out) -> None:
    """A batch loaded before: if the store's version tag moved, compare the content."""
    sha, old_tag, pulled = was
    if tag == old_tag:
        return
    data = store.get(name)
    if data is None:
        return
    now_sha = sha256(data).hexdigest()
    if sha and now_sha != sha:
        door = name.split("/")[1]
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(pulled))
        out.setdefault(door, DoorIntake(door)).tampered.append(
            f"{name}: replaced after it was loaded on {when} UTC, with different content "
            "(tampering?); the records loaded then are kept")
    site.db.execute("UPDATE batches SET tag = ?, sha256 = ? WHERE name = ?",
                    [tag, sha or now_sha, name])


def verify_door(site: SiteDB, door: str, log_id: str = "") -> tuple[list[tuple[int, int]],
                                                                     list[tuple[int, str]]]:
    """Sequence gaps and broken links in one of a door's logs, as collected: from its
    first record, or from the signed checkpoint where the office last purged it."""
    gaps, bad = [], []
    prev_seq, prev_hash = 0, GENESIS
    cp = checkpoint(site, door, log_id)
    if cp is not None:
        if not cp["ok"]:
            bad.append((cp["seq"], "the purge checkpoint's signature is wrong (forged?)"))
        prev_seq, prev_hash = cp["seq"], cp["hash"]
    for seq, ph, h in site.db.execute(
            "SELECT seq, prev_hash, hash FROM events WHERE door = ? AND log = ? AND seq > ? "
            "ORDER BY seq", [door, log_id, prev_seq]):
        if seq != prev_seq + 1:
            gaps.append((prev_seq + 1, seq - 1))
        elif ph != prev_hash:
            bad.append((seq, "previous-hash link broken"))
        prev_seq, prev_hash = seq, h
    return gaps, bad


# ---- retention ------------------------------------------------------------------------
RETENTION_DAYS = 180       # the office keeps door events this long (site setting)
PURGE_CHUNK = 20_000       # rows deleted per transaction (other terminals wait no longer)


def _checkpoint_text(site: SiteDB, door: str, log_id: str, seq: int, h: str, cut: float):
    return f"accessd log checkpoint\0{site.site_id}\0{door}\0{log_id}\0{seq}\0{h}\0{cut!r}".encode()


def checkpoint(site: SiteDB, door: str, log_id: str) -> dict | None:
    """Where the office last purged a door's log: {seq, hash, cut, ok} (ok: signed by
    this site), or None if it never did."""
    row = site.db.execute("SELECT seq, hash, cut, signature FROM log_checkpoints WHERE "
                          "door = ? AND log = ?", [door, log_id]).fetchone()
    if row is None:
        return None
    from cryptography.exceptions import InvalidSignature
    seq, h, cut, sig = row
    try:
        site.keys.public.verify(bytes(sig), _checkpoint_text(site, door, log_id, seq, h, cut))
        ok = True
    except InvalidSignature:
        ok = False
    return {"seq": seq, "hash": h, "cut": cut, "ok": ok}


def retention_days(site: SiteDB) -> int:
    try:
        return int(site.meta("retention_days") or RETENTION_DAYS)
    except ValueError:
        return RETENTION_DAYS


def retention_set(site: SiteDB, days: int) -> None:
    if not 1 <= days <= 3650:
        from ..errors import StoreError
        raise StoreError(f"retention must be 1-3650 days, got {days}")
    site.meta_set("retention_days", str(days))
    site.audit("retention", f"door events kept {days} days at the office")


def purge(site: SiteDB, *, now: float | None = None, progress=None) -> dict:
    """Delete door events (and acknowledged alarms) older than the site keeps them.
    Each door's log loses a prefix only (up to its first record inside the window, so
    nothing younger goes), and a signed checkpoint (seq, hash) is kept where it was cut:
    `verify_door` and the next intake go on from there. Also signs the audit trail's
    newest line (an anchor for `audit --verify`). Returns what was deleted."""
    now = time.time() if now is None else now
    days = retention_days(site)
    cutoff = utc_iso(now - days * 86400)
    out = {"days": days, "before": cutoff, "events": 0, "alarms": 0, "doors": {}}
    logs = site.db.execute("SELECT door, log FROM events GROUP BY door, log "
                           "HAVING min(ts) < ?", [cutoff]).fetchall()
    for door, log_id in logs:
        young = site.db.execute("SELECT min(seq) FROM events WHERE door = ? AND log = ? AND "
                                "ts >= ?", [door, log_id, cutoff]).fetchone()[0]
        last = site.db.execute(
            "SELECT seq, hash FROM events WHERE door = ? AND log = ?"
            + (" AND seq < ?" if young is not None else "") + " ORDER BY seq DESC LIMIT 1",
            [door, log_id] + ([young] if young is not None else [])).fetchone()
        if last is None:
            continue
        cut_seq, cut_hash = last
        sig = site.keys.signing.sign(_checkpoint_text(site, door, log_id, cut_seq, cut_hash,
                                                      now))
        with site.db.atomic():
            site.db.execute("INSERT INTO log_checkpoints (door, log, seq, hash, cut, signature) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (door, log) DO UPDATE SET "
                            "seq = excluded.seq, hash = excluded.hash, cut = excluded.cut, "
                            "signature = excluded.signature",
                            [door, log_id, cut_seq, cut_hash, now, sig])
        low = site.db.execute("SELECT min(seq) FROM events WHERE door = ? AND log = ?",
                              [door, log_id]).fetchone()[0]
        n = 0
        while low is not None and low <= cut_seq:
            top = min(cut_seq, low + PURGE_CHUNK - 1)
            with site.db.atomic():
                n += site.db.execute("DELETE FROM events WHERE door = ? AND log = ? AND "
                                     "seq BETWEEN ? AND ?", [door, log_id, low, top]).rowcount
            low = top + 1
            if progress:
                progress(door, n)
        out["events"] += n
        out["doors"][door] = out["doors"].get(door, 0) + n
    with site.db.atomic():
        out["alarms"] = site.db.execute("DELETE FROM alarms WHERE acked IS NOT NULL AND ts < ?",
                                        [cutoff]).rowcount
    site.audit("logs.purge", f"door events before {cutoff} ({days} days): {out['events']} "
                             f"records of {len(out['doors'])} doors, {out['alarms']} alarms")
    site.audit_anchor()
    return out


_WHAT = {"nfc": "card", "fob": "fob", "pin": "PIN"}


def show(site: SiteDB, *, door=None, person=None, since=None, kinds=(), limit=None,
         until=None, newest_first: bool = False, before=None, credentials=None) -> list[dict]:
    """Events with the person behind each credential (names from the sealed records).

    A door logs its credential id, or for a credential it does not hold (another
    group's, a revoked one, a wrong PIN) a fingerprint of the same keyed HMAC the
    office keeps. Revoked credentials keep their holder at the office, so an
    ex-tenant's old card reads "revoked card of Anna Berg (12A)", not a stranger's.

    since/until: UTC timestamp text (until excluded). newest_first with before=(ts,
    door, seq) of the last row shown pages backwards through a long log (keyset
    paging: each page costs the same however deep). credentials: only these ids.
    """
    holders = site.holders()
    sql = "SELECT e.door, e.seq, e.ts, e.kind, e.credential, e.reason FROM events e WHERE 1=1"
    args: list = []
    if door:
        sql += " AND e.door = ?"
        args.append(door)
    if person:
        site.person(person)  # exists?
        site.audit("logs.search", f"door events of person {person}", person=person)
        mine = [k for k, v in holders.items() if v[0] == person]
        if not mine:
            return []
        sql += f" AND e.credential IN ({', '.join('?' * len(mine))})"
        args.extend(mine)
    if credentials is not None:
        if not credentials:
            return []
        sql += f" AND e.credential IN ({', '.join('?' * len(credentials))})"
        args.extend(credentials)
    if since:
        sql += " AND e.ts >= ?"
        args.append(since)
    if until:
        sql += " AND e.ts < ?"
        args.append(until)
    if kinds:
        sql += f" AND e.kind IN ({', '.join('?' * len(kinds))})"
        args.extend(kinds)
    if before is not None:
        ts, d, seq = before
        sql += " AND (e.ts < ? OR (e.ts = ? AND (e.door < ? OR (e.door = ? AND e.seq < ?))))"
        args.extend([ts, ts, d, d, seq])
    sql += (" ORDER BY e.ts DESC, e.door DESC, e.seq DESC" if newest_first
            else " ORDER BY e.ts, e.door, e.seq")
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    people: dict[str, str] = {}
    out = []
    for d, seq, ts, kind, cred, reason in site.db.execute(sql, args):
        name, status = holder_of(site, holders, cred, ts, people)
        out.append({"door": d, "seq": seq, "ts": ts, "kind": kind, "credential": cred,
                    "person": name, "credential_status": status, "reason": reason})
    return out


def holder_of(site: SiteDB, holders: dict, cred: str | None, ts: str,
              people: dict[str, str]) -> tuple[str, str]:
    """(name, status) behind a logged credential id or fingerprint at the time `ts`:
    ("Anna Berg (12A)", ""), ("revoked card of Anna Berg (12A)", "revoked"), or ("", "")
    for a stranger. `holders` is site.holders(); `people` caches labels."""
    if cred and cred.startswith("pass-"):   # a QR pass: its label, from the office's list
        if cred not in people:
            from .passes import label as pass_label
            row = site.db.execute("SELECT label_sealed, issued_by, role, revoked FROM passes "
                                  "WHERE id = ?", [cred[5:]]).fetchone()
            people[cred] = row and (pass_label(site, cred[5:], row[0], row[1]), *row[2:])
        row = people[cred]
        if row is None:
            return "", ""
        label, role, revoked = row
        if revoked is not None and ts >= utc_iso(revoked):
            return f"revoked QR pass of {label}", "revoked"
        return f"{label} ({role}'s QR pass)", ""
    held = holders.get(cred) if cred else None
    if not held:
        return "", ""
    pid, ckind, status, since = held
    if pid not in people:
        people[pid] = site.label(site.person(pid))
    name = people[pid]
    if status not in ("revoked", "lost", "suspended") or (
            since is not None and ts < utc_iso(since)):
        status = ""  # it was still good when this happened
    if status:
        name = f"{status} {_WHAT.get(ckind, ckind)} of {name}"
    return name, status


def strangers(site: SiteDB, *, since=None, min_doors: int = 2) -> list[dict]:
    """Unknown credentials (fingerprints no enrolled or revoked credential has) tried at
    several doors; a revoked card's tries are in `show` under its holder's name."""
    sql = ("SELECT e.credential, count(DISTINCT e.door), count(*), min(e.ts), max(e.ts), "
           f"{site.db.group_concat('DISTINCT e.door')} FROM events e "
           "WHERE e.kind = 'access.denied' AND e.credential LIKE 'fp:%' "
           "AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.fingerprint = e.credential) "
           "AND NOT EXISTS (SELECT 1 FROM retired_credentials r "
           "WHERE r.fingerprint = e.credential)")
    args: list = []
    if since:
        sql += " AND e.ts >= ?"
        args.append(since)
    sql += " GROUP BY e.credential HAVING count(DISTINCT e.door) >= ? ORDER BY 2 DESC, 3 DESC"
    args.append(min_doors)
    return [{"fingerprint": fp, "doors": n, "tries": t, "first": a, "last": b,
             "door_list": sorted(ds.split(","))}
            for fp, n, t, a, b, ds in site.db.execute(sql, args)]


# grants, denials and alarms of a group of records (its parameters: sorted(ALARM_KINDS))
_COUNTS = ("count(*) FILTER (WHERE kind = 'access.granted'), "
           "count(*) FILTER (WHERE kind = 'access.denied'), "
           f"count(*) FILTER (WHERE kind IN ({', '.join('?' * len(ALARM_KINDS))}))")


def report(site: SiteDB, *, since=None, now: float | None = None,
           doors: list[str] | None = None) -> list[dict]:
    """Per door and day in the site's time zone: grants, denials and alarms (of the
    doors named, or of all)."""
    from ..core import when
    tz = site.timezone
    if since:
        days = _local_days(when.from_iso(since), time.time() if now is None else now, tz)
        if len(days) <= DAYS_IN_SQL:
            rows = _report_days(site, since, days, doors)
            if rows is not None:
                return rows
    # count per UTC minute in SQL (every zone's day starts on a whole minute), then
    # fold the minutes into the site's local days
    sql = f"SELECT door, substr(ts, 1, 16) AS minute, {_COUNTS} FROM events"
    args: list = sorted(ALARM_KINDS)
    sql += " WHERE 1=1"
    if since:
        sql += " AND ts >= ?"
        args.append(since)
    if doors is not None:
        sql += f" AND door IN ({', '.join('?' * len(doors))})" if doors else " AND 0=1"
        args.extend(doors)
    sql += " GROUP BY door, minute"
    days: dict[str, str] = {}
    out: dict[tuple[str, str], list[int]] = {}
    for d, minute, g, n, a in site.db.execute(sql, args):
        if minute not in days:
            days[minute] = when.day(when.from_iso(minute), tz)
        c = out.setdefault((days[minute], d), [0, 0, 0])
        c[0] += g
        c[1] += n
        c[2] += a
    return [{"door": d, "day": day, "granted": g, "denied": n, "alarms": a}
            for (day, d), (g, n, a) in sorted(out.items())]


DAYS_IN_SQL = 62     # a report this short folds its days in SQL (the console's chart)


def _local_days(start: float, end: float, tz: str) -> list[tuple[str, str]]:
    """(day, UTC timestamp text of the next day's start) for each local day from the
    one holding `start` to the one holding `end` (zoneinfo: DST days are 23 or 25 h)."""
    from datetime import date, timedelta

    from ..core import when
    out = []
    d = date.fromisoformat(when.day(start, tz))
    last = date.fromisoformat(when.day(max(start, end), tz))
    while d <= last and len(out) <= DAYS_IN_SQL:
        nxt = d + timedelta(days=1)
        out.append((d.isoformat(), utc_iso(when.parse(nxt.isoformat(), tz, now=start))))
        d = nxt
    return out


def _report_days(site: SiteDB, since: str, days: list[tuple[str, str]],
                 doors: list[str] | None) -> list[dict] | None:
    """report() for a short span: each record put in its local day by comparing its
    timestamp with the days' UTC boundaries, in SQL (one row per door and day back)."""
    case = " ".join("WHEN ts < ? THEN ?" for _ in days)
    args: list = [x for day, end in days for x in (end, day)]
    sql = f"SELECT door, CASE {case} ELSE NULL END AS day, {_COUNTS} FROM events WHERE ts >= ?"
    args += sorted(ALARM_KINDS) + [since]
    if doors is not None:
        sql += f" AND door IN ({', '.join('?' * len(doors))})" if doors else " AND 0=1"
        args.extend(doors)
    sql += " GROUP BY door, day"
    rows = [{"door": d, "day": day, "granted": g, "denied": n, "alarms": a}
            for d, day, g, n, a in site.db.execute(sql, args)]
    if any(r["day"] is None for r in rows):   # a record stamped after today (a door's
        return None                           # clock ahead): the minute-by-minute way
    return sorted(rows, key=lambda r: (r["day"], r["door"]))
