"""Residents' personal data at the office (#28): sealed everywhere, erasable for good
(crypto-shredding, old backups included), kept only as long as the site says, and
every look at it in a hash-chained audit trail. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.errors import KeyFileError, StoreError
from accessd.site import intake, passes as site_passes, subject
from accessd.site.db import FORMER, SiteDB
from accessd.storage.eventlog import GENESIS, record_hash, utc_iso

NAMES = ["Zelda Quinnsworth", "Anna Berg", "Bo Lund", "Yrsa Visitorsen", "Greta Gästsson"]
PHONES = ["+47 912 34 567", "+86 138 0013 8000"]
DAY = 86400


def cli(loc, *args, ok=True, stdin=None):
    r = CliRunner().invoke(accessctl.main, [*loc.args, *args], input=stdin)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def records(door: str, specs, *, start=1, prev=GENESIS):
    """Chained door records: specs are (ts epoch, kind, credential)."""
    out = []
    for i, (ts, kind, cred) in enumerate(specs):
        seq = start + i
        r = {"seq": seq, "ts": utc_iso(ts), "door": door, "kind": kind, "credential": cred,
             "reason": "test", "detail": "{}", "prev_hash": prev}
        r["hash"] = prev = record_hash(seq, r["ts"], door, kind, cred, "test", "{}", r["prev_hash"])
        out.append(r)
    return out


def feed(site, door, recs):
    for r in recs:
        rep = intake.load_live(site, door, json.dumps(r).encode())
        assert not rep.bad, rep.bad


def backup(site_at, site, postgres, dest):
    """A copy of the site database as a backup would take it: bytes, and a way to open it."""
    if site_at.url:
        return postgres.dump(site_at.url)
    src = sqlite3.connect(site_at.dir / "site.db")
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()
    return dest.read_bytes()


def open_backup(site_at, postgres, blob, dest):
    """The backup opened with this terminal's keys as they are now."""
    if site_at.url:
        return SiteDB.open(site_at.dir, postgres.restore(blob))
    d = dest.parent / f"restored-{time.monotonic_ns()}"
    (d).mkdir()
    shutil.copy(dest, d / "site.db")
    (d / "keys").symlink_to(site_at.dir / "keys")
    return SiteDB.open(d)


@pytest.fixture
def day(site_at, tmp_path):
    """A realistic office day: a CSV import, a PIN clash, passes, an alarm note, a log
    search, door events; returns (site, ids)."""
    site = site_at.init()
    if site_at.url:
        site.store_url_set((tmp_path / "store").as_uri())
    site.timezone_set("Asia/Shanghai")
    site.group_add("lobby")
    site.door_add("front", "lobby")
    csv = ("name,unit,role,phone,kind,uid,groups\n"
           f"Anna Berg,12A,resident,{PHONES[0]},nfc,04A1B2C3D4E5F6,lobby\n"
           f"Bo Lund,14C,resident,{PHONES[1]},fob,0012345678,lobby\n"
           "Zelda Quinnsworth,3B,resident,,,,lobby\n")
    (tmp_path / "people.csv").write_text(csv)
    cli(site_at, "import", str(tmp_path / "people.csv"))
    ids = {p.name: p.id for p in site.people()}
    site.enrol(ids["Zelda Quinnsworth"], "pin", "482913")
    with pytest.raises(StoreError, match="this PIN cannot be used"):
        site.enrol(ids["Bo Lund"], "pin", "482913")
    now = time.time()
    site_passes.issue(site, group="lobby", role="visitor", label="Yrsa Visitorsen",
                      valid_from=now, valid_until=now + DAY, uses=2)
    site_passes.resident_issue(site, ids["Anna Berg"], group="lobby", role="visitor",
                               label="Greta Gästsson (Anna Berg's guest)", hours=4, entries=1)
    anna_card = site.credentials(ids["Anna Berg"])[0]["id"]
    feed(site, "front", records("front", [(now - 60, "access.granted", anna_card),
                                          (now - 30, "door.forced", None)]))
    alarm = site.alarms()[0]["id"]
    site.alarm_ack(alarm, "spoke to Zelda Quinnsworth, +47 912 34 567, door closer loose")
    assert intake.show(site, person=ids["Anna Berg"])[0]["person"] == "Anna Berg (12A)"
    return site, ids


def scan(blob: bytes) -> list[str]:
    text = blob.decode("utf-8", "replace")
    return [s for s in NAMES + PHONES if s in text or s.encode() in blob]


def test_a_realistic_day_leaves_no_name_or_phone_anywhere_and_an_erasure_is_for_good(
        day, site_at, tmp_path, request):
    site, ids = day
    postgres = request.getfixturevalue("postgres") if site_at.url else None
    anna, bo = ids["Anna Berg"], ids["Bo Lund"]
    old = backup(site_at, site, postgres, tmp_path / "before.db")
    # the backup works with the keys of its day (so the test below is not vacuous)
    was = open_backup(site_at, postgres, old, tmp_path / "before.db")
    assert was.person(anna).name == "Anna Berg" and was.person(anna).phone == PHONES[0]
    was.close()

    r = cli(site_at, "person", "forget", anna, "--reason", "moved out 2026-11-30", "--yes")
    assert f"{anna} erased: 1 credential revoked, 1 pass revoked" in r.stdout
    assert "published version" in r.stdout

    # nothing in clear: the database (file, or pg_dump), the store, the backup
    if site_at.url:
        now_db = postgres.dump(site_at.url)
    else:
        now_db = b"".join(p.read_bytes() for p in site_at.dir.glob("site.db*"))
    store = site.store()
    store_bytes = b"".join(store.get(n) or b"" for n in store.list(""))
    assert store_bytes and len(now_db) > 10_000
    for what, blob in (("database", now_db), ("store", store_bytes), ("backup", old)):
        assert scan(blob) == [], what

    # the erased person: "former resident" with the unit, everywhere the office shows them
    p = site.person(anna)
    assert (p.name, p.phone, p.unit) == (FORMER, None, "12A") and p.forgotten
    shown = intake.show(site, door="front")
    assert shown[0]["person"] == "former resident (12A)"   # (the card was good then)
    assert anna not in {x.id for x in site.people()}
    with pytest.raises(StoreError):
        site.person_named("Anna Berg")
    assert site.grants(anna) == [] and site.credentials(anna) == []
    mine = site_passes.issued_by(site, f"resident:{anna}")
    assert [x["label"] for x in mine] == ["(erased)"] and mine[0]["revoked"]
    # everyone else is still readable (their keys moved to the new ring generation)
    assert site.person(bo).name == "Bo Lund" and site.person(bo).phone == PHONES[1]
    assert [x["label"] for x in site_passes.listing(site)] == ["Yrsa Visitorsen"]
    assert "Zelda Quinnsworth" in site.alarms(open_only=False)[0]["note"]

    # the backup from before: with this terminal's keys now, Anna cannot be read back
    restored = open_backup(site_at, postgres, old, tmp_path / "before.db")
    with pytest.raises(KeyFileError, match="ring generation"):
        restored.person(anna)
    restored.close()
    # a fresh terminal's view agrees, and the trail is intact and names the erasure
    again = site_at.open()
    assert again.person(anna).name == FORMER
    forget = again.audit_log(action="person.forget")[0]
    assert forget["note"] == "moved out 2026-11-30" and forget["person"] == anna
    assert again.audit_verify()["problems"] == []


def test_forget_refuses_bad_input_and_changes_nothing(site_at):
    site = site_at.init()
    pid = site.person_add("Anna Berg", "12A", "resident", phone=PHONES[0])
    r = cli(site_at, "person", "forget", "nobody", "--reason", "x", "--yes", ok=False)
    assert r.exit_code == 1 and "no person with the id or name 'nobody'" in r.output
    r = cli(site_at, "person", "forget", pid, "--reason", "   ", "--yes", ok=False)
    assert r.exit_code == 1 and "the reason" in r.output
    r = cli(site_at, "person", "forget", pid, "--reason", "moved", stdin="n\n", ok=False)
    assert r.exit_code == 1 and "aborted" in r.output
    assert site_at.open().person(pid).name == "Anna Berg"
    cli(site_at, "person", "forget", pid, "--reason", "moved", "--yes")
    r = cli(site_at, "person", "forget", pid, "--reason", "again", "--yes", ok=False)
    assert r.exit_code == 1 and r.output == f"accessctl: person {pid} was already erased\n"
    with pytest.raises(StoreError, match="already erased"):
        site_at.open().person_forget(pid, "again")
    with pytest.raises(StoreError, match="was erased"):
        site_at.open().person_edit(pid, name="Anna B")


def test_a_second_terminal_follows_an_erasure_made_at_another(postgres, tmp_path):
    from tests.helpers import SiteLocation
    url = postgres.database()
    a = SiteLocation(tmp_path / "a", url).init()
    anna = a.person_add("Anna Berg", "12A", "resident")
    bo = a.person_add("Bo Lund", "14C", "resident")
    shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")
    b = SiteDB.open(tmp_path / "b", url)
    assert b.person(anna).name == "Anna Berg"      # (B has Anna's key in its cache now)
    a.person_forget(anna, "moved out")
    c = a.person_add("Cai Wu", "2A", "resident")   # sealed under the new generation
    assert b.person(anna).name == FORMER
    assert b.person(bo).name == "Bo Lund" and b.person(c).name == "Cai Wu"
    gen_a = json.loads((tmp_path / "a" / "keys" / "people.key").read_text())
    gen_b = json.loads((tmp_path / "b" / "keys" / "people.key").read_text())
    assert gen_a == gen_b and gen_a["gen"] == 1      # B moved on and kept only the newest
    # a terminal without the people key is told what to copy
    shutil.copytree(tmp_path / "a" / "keys", tmp_path / "c" / "keys")
    (tmp_path / "c" / "keys" / "people.key").unlink()
    with pytest.raises(KeyFileError, match="copy keys/people.key"):
        SiteDB.open(tmp_path / "c", url).person(bo)


def test_the_audit_trail_says_who_from_where_filters_and_verifies(site_at, tmp_path):
    site = site_at.init()
    anna = site.person_add("Anna Berg", "12A", "resident")
    site.actor, site.terminal = "web:bo", "web 10.0.0.5"
    intake.show(site, person=anna)                          # a look at Anna's movements
    site.actor, site.terminal = "root", "office-pc pts/1"
    site.enrol(anna, "nfc", "04A1B2C3D4E5F6")
    out = json.loads(cli(site_at, "audit", "--person", "Anna Berg", "--json").stdout)
    assert [a["event"] for a in out] == ["person.add", "logs.search", "credential.add"]
    look = out[1]
    assert (look["actor"], look["terminal"]) == ("web:bo", "web 10.0.0.5")
    assert "Anna Berg (12A)" in look["text"] and "Anna" not in look["detail"]
    assert [a["event"] for a in json.loads(
        cli(site_at, "audit", "--staff", "bo", "--json").stdout)] == ["logs.search"]
    assert [a["event"] for a in json.loads(
        cli(site_at, "audit", "--action", "credential", "--json").stdout)] == ["credential.add"]
    assert json.loads(cli(site_at, "audit", "--since", "1d", "--until", "2d", "--json").stdout) \
        == []   # (--until 2d ago: before all of them)
    r = cli(site_at, "audit", "--since", "yesterday-ish", ok=False)
    assert r.exit_code == 1 and "--since" in r.output and "yesterday-ish" in r.output
    # the person's own export lists who looked
    doc = subject.export(site, anna)
    assert ("web:bo", "logs.search") in {(x["by"], x["action"]) for x in doc["office_access"]}

    assert "chain intact" in cli(site_at, "audit", "--verify").stdout
    intake.purge(site)                                      # signs the newest line
    db = site_at.open().db
    with db.atomic():
        db.execute("UPDATE audit SET actor = 'someone-else' WHERE event = 'logs.search'")
    r = cli(site_at, "audit", "--verify", ok=False)
    assert r.exit_code == 1 and "line 2: its content does not match its hash" in r.output
    # rewritten with a fresh, consistent chain: the signed anchor still tells
    from accessd.site.db import audit_hash
    prev = GENESIS
    rows = db.execute("SELECT id, ts, actor, terminal, event, person, detail, note "
                      "FROM audit ORDER BY id").fetchall()
    with db.atomic():
        for aid, ts, actor, term, event, person, detail, note in rows:
            h = audit_hash(aid, ts, actor, term, event, person, detail, note, prev)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", [prev, h, aid])
            prev = h
    r = cli(site_at, "audit", "--verify", ok=False)
    assert r.exit_code == 1 and "the trail was rewritten" in r.output
    with db.atomic():
        db.execute("DELETE FROM audit WHERE id = 2")
    assert "lines 2-2 are missing" in cli(site_at, "audit", "--verify", ok=False).output


def test_the_office_purges_old_events_and_verifies_on_from_a_signed_checkpoint(site_at):
    site = site_at.init()
    site.group_add("lobby")
    site.door_add("front", "lobby")
    now = time.time()
    old = records("front", [(now - (200.5 - i) * DAY, "access.denied", None) for i in range(30)]
                  + [(now - 10 * DAY, "door.forced", None), (now - DAY, "access.denied", None)])
    feed(site, "front", old)
    for a in site.alarms():
        site.alarm_ack(a["id"], "checked")
    assert cli(site_at, "site", "retention").stdout.startswith("door events are kept 180 days")
    r = json.loads(cli(site_at, "logs", "purge", "--json").stdout)
    # records 1..21 are 200.5 to 180.5 days old
    assert r["events"] == 21 and r["doors"] == {"front": 21} and r["alarms"] == 0
    assert intake.verify_door(site, "front") == ([], [])
    cli(site_at, "site", "retention", "9")
    r = json.loads(cli(site_at, "logs", "purge", "--json").stdout)
    assert r["events"] == 10 and r["alarms"] == 1   # the forced door (10 days) went too
    rows = site.db.execute("SELECT seq FROM events WHERE door = 'front'").fetchall()
    assert rows == [(32,)]
    # the next record goes on from the checkpoint; a re-sent purged one is not loaded again
    nxt = records("front", [(now, "access.denied", None)], start=33, prev=old[-1]["hash"])
    feed(site, "front", nxt + [old[3]])
    assert intake.verify_door(site, "front") == ([], [])
    assert site.db.count("events") == 2
    # a checkpoint edited by hand is caught
    with site.db.atomic():
        site.db.execute("UPDATE log_checkpoints SET seq = 30")
    gaps, bad = intake.verify_door(site, "front")
    assert bad and "checkpoint's signature is wrong" in bad[0][1]
    r = cli(site_at, "site", "retention", "0", ok=False)
    assert r.exit_code != 0 and "0 is not in the range 1<=x<=3650" in r.output


def test_a_door_purges_only_records_the_office_has_and_that_are_old(tmp_path):
    from accessd.storage.eventlog import (EventLog, PendingRecord, open_reader,
                                          purge_uploaded, verify_chain)
    log = EventLog(tmp_path / "events.db", "front")
    now = time.time()
    log.append([PendingRecord(utc_iso(now - (40 - i) * DAY), "access.denied", None, "x", {})
                for i in range(20)])            # 40..21 days old
    log.append([PendingRecord(utc_iso(now - DAY), "access.denied", None, "x", {})])
    before = utc_iso(now - 30 * DAY)
    # the office has acknowledged only #5: nothing it has not got goes
    assert purge_uploaded(log.path, before=before, acked_seq=5, chunk=2) == 5
    assert purge_uploaded(log.path, before=before, acked_seq=21) == 5    # #6..#10 (>30 d)
    conn = open_reader(log.path)
    assert [r[0] for r in conn.execute("SELECT seq FROM events")][:1] == [11]
    rep = verify_chain(conn)
    assert rep.ok and rep.first_seq == 11 and rep.last_seq == 21
    # the newest record always stays (the chain goes on from it)
    assert purge_uploaded(log.path, before=utc_iso(now), acked_seq=21) == 10
    assert [r[0] for r in conn.execute("SELECT seq FROM events")] == [21]
    log.close()
    log = EventLog(tmp_path / "events.db", "front")
    log.append([PendingRecord(utc_iso(now), "access.granted", "c1", "x", {})])
    assert verify_chain(conn).ok and log.last_seq == 22
    # a record edited after the cut is still caught
    conn.close()
    raw = sqlite3.connect(log.path)
    raw.execute("UPDATE log_meta SET value = ? WHERE key = 'checkpoint'",
                [json.dumps({"seq": 20, "hash": "0" * 64})])
    raw.commit()
    assert verify_chain(raw).bad == [(21, "previous-hash link broken")]
