"""A site database several staff terminals share: PostgreSQL through psycopg (and the
SQLite file, which must behave the same), against a real server the tests start."""

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from accessd.errors import KeyFileError, StoreError
from accessd.site.db import SiteDB
from accessd.site.publish import publish
from accessd.sync.store import FileStore
from accessd.testing import free_tcp_port

from .helpers import SiteLocation


def ctl(loc, *args, env=None):
    """accessctl as a staff terminal runs it: a process of its own."""
    return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", *loc.args, *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def run_together(*jobs):
    """Run the jobs in threads released at the same moment; re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    errors = []

    def run(job):
        try:
            barrier.wait()
            job()
        except BaseException as exc:   # noqa: B902 - reported to the test below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]


def test_two_terminals_enrolling_at_once_cannot_both_take_a_fob(site_at):
    """Two staff enrol, at the same moment, two fobs a Wiegand-26 reader could not tell
    apart: exactly one is enrolled, the other refused; nothing else is lost."""
    site = site_at.init()
    site.group_add("g")
    site.door_add("gate", "g", readers=["wiegand-26", "rdm6300", "keypad"])
    people = [site.person_add(f"Staff Pick {i}", f"{i}A", "resident") for i in range(2)]
    outcome: dict[tuple[int, int], str] = {}
    rounds = 12
    each_round = threading.Barrier(2, timeout=60)

    def enrol(who):
        def job():
            term = site_at.open()          # a terminal of its own: its own connection
            for r in range(rounds):
                each_round.wait()          # both staff press enter at the same moment
                # the same low 24 bits (what Wiegand-26 gives), another version byte
                value = f"{(who + 1) << 32 | 0x00A00000 | r:010x}"
                try:
                    term.credential_add(people[who], "fob", value)
                    outcome[r, who] = "enrolled"
                except StoreError as exc:
                    outcome[r, who] = str(exc)
                term.credential_add(people[who], "pin", f"{who}{r:05d}")  # never clashes
            term.close()
        return job
    run_together(enrol(0), enrol(1))
    for r in range(rounds):
        winners = [outcome[r, who] == "enrolled" for who in (0, 1)]
        assert winners.count(True) == 1, (r, outcome[r, 0], outcome[r, 1])
        loser = outcome[r, 0] if outcome[r, 1] == "enrolled" else outcome[r, 1]
        assert "could not be told apart" in loser
    creds = site.credentials()
    assert sum(c["kind"] == "fob" for c in creds) == rounds
    assert sum(c["kind"] == "pin" for c in creds) == 2 * rounds
    shared = site.db.execute("SELECT lookup FROM credential_aliases WHERE family = 'em24' "
                             "GROUP BY lookup HAVING count(*) > 1").fetchall()
    assert shared == []
    rows, ambiguous = site.group_whitelist("g")
    assert ambiguous == []


def test_publishing_while_others_enrol_and_publish(site_at, tmp_path):
    """One terminal enrols residents one by one while two others publish: every
    publish has its own version, the store ends with the newest, and the last
    publish carries everyone."""
    site = site_at.init()
    for g in ("a", "b"):
        site.group_add(g)
        site.door_add(f"door-{g}", g)
    store = FileStore(tmp_path / "store")
    published: list[list[dict]] = []
    n = 40

    def enrol():
        term = site_at.open()
        for i in range(n):
            pid = term.person_add(f"Resident {i}", f"{i}B", "resident")
            term.credential_add(pid, "nfc", f"{0x04100000 + i:08X}")
            term.grant(pid, "a" if i % 2 else "b")
        term.close()

    def publisher():
        term = site_at.open()
        for _ in range(6):
            published.append(publish(term, store))
        term.close()
    run_together(enrol, publisher, publisher)
    versions = [res[0]["version"] for res in published]
    assert sorted(versions) == list(range(1, 13))              # 12 publishes, 12 versions
    for res in published:
        assert len({r["version"] for r in res}) == 1            # one version per publish
    from accessd.sync import bundle
    for g in ("a", "b"):
        header = bundle.peek(store.get(f"bundles/{g}.bundle"))
        assert header["version"] == 12                            # the newest was written last
    final = {r["group"]: r["credentials"] for r in publish(site, store)}
    assert final == {"a": n // 2, "b": n // 2}


def test_a_postgresql_site_from_the_command_line(postgres, tmp_path):
    """Staff at two terminals: the first creates the site in PostgreSQL, the second
    uses it with a copy of the keys; the password never shows; mistakes are named."""
    url = postgres.database()
    first = SiteLocation(tmp_path / "office-1", url)
    r = ctl(first, "site", "init", "riverside")
    assert r.returncode == 0, r.stderr
    assert postgres.password not in r.stdout + r.stderr
    assert f"created in postgresql://accessd:***@127.0.0.1:{postgres.port}/" in r.stdout
    assert not (first.dir / "site.db").exists()                # the data is in PostgreSQL
    assert ctl(first, "group", "add", "bldg-a").returncode == 0
    assert ctl(first, "door", "add", "front", "--group", "bldg-a").returncode == 0

    second = SiteLocation(tmp_path / "office-2", url)
    r = ctl(second, "person", "list")
    assert r.returncode == 2 and "office-2/keys: no site keys here (copy" in r.stderr
    shutil.copytree(first.dir / "keys", second.dir / "keys")
    r = ctl(second, "person", "add", "--name", "Anna Berg", "--unit", "12A", "--group",
            "bldg-a", "--json")
    assert r.returncode == 0, r.stderr
    pid = json.loads(r.stdout)["person"]
    r = ctl(first, "enroll", "--person", pid, "--kind", "fob", "--uid", "176:42493")
    assert r.returncode == 0, r.stderr
    shown = json.loads(ctl(second, "site", "show", "--json").stdout)
    assert (shown["site"], shown["doors"], shown["people"], shown["credentials"]) == (
        "riverside", 1, 1, 1)

    # another site's keys, a second site in the same database, no --site-dir
    other = SiteLocation(tmp_path / "other", postgres.database())
    assert ctl(other, "site", "init", "elsewhere").returncode == 0
    shutil.rmtree(second.dir / "keys")
    shutil.copytree(other.dir / "keys", second.dir / "keys")
    r = ctl(second, "person", "list")
    assert r.returncode == 2 and "these are not the keys of site 'riverside'" in r.stderr
    r = ctl(SiteLocation(tmp_path / "office-3", url), "site", "init", "again")
    assert r.returncode == 1 and "already holds site 'riverside'" in r.stderr
    assert not (tmp_path / "office-3" / "keys").exists()      # refused before any keys
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site", url,
                        "person", "list"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs --site-dir DIR" in r.stderr


def test_an_unreachable_or_wrong_database_is_named_without_the_password(postgres, tmp_path):
    gone = f"postgresql://accessd:hunter2secret@127.0.0.1:{free_tcp_port()}/site"
    home = tmp_path / "t"
    SiteDB.init(tmp_path / "keysrc", "x").close()
    shutil.copytree(tmp_path / "keysrc" / "keys", home / "keys")
    r = ctl(SiteLocation(home, gone), "person", "list")
    assert r.returncode == 1 and "hunter2secret" not in r.stderr + r.stdout
    assert "postgresql://accessd:***@127.0.0.1:" in r.stderr and "cannot connect" in r.stderr
    wrong_pw = postgres.url("postgres").replace(postgres.password, "not-it")
    r = ctl(SiteLocation(home, wrong_pw), "person", "list")
    assert r.returncode == 1 and "password authentication failed" in r.stderr
    assert "not-it" not in r.stderr
    empty = postgres.database()
    r = ctl(SiteLocation(home, empty), "person", "list")
    assert r.returncode == 1 and "no site in this database" in r.stderr
    r = ctl(SiteLocation(home, "mysql://x@y/z"), "person", "list")
    assert r.returncode == 2 and "--site mysql://... is not a site" in r.stderr


def test_a_newer_schema_is_refused_and_reopening_changes_nothing(postgres, tmp_path):
    loc = SiteLocation(tmp_path / "s", postgres.database())
    site = loc.init()
    site.group_add("g")
    site.close()
    site = loc.open()                                          # migrations run once only
    assert [g["id"] for g in site.groups()] == ["g"]
    site.db.execute("UPDATE accessd_schema SET version = 99")
    site.close()
    with pytest.raises(StoreError, match="schema version 99 is newer than this accessd"):
        loc.open()


def test_wrong_keys_for_a_sqlite_site_are_refused(tmp_path):
    SiteDB.init(tmp_path / "a", "one").close()
    SiteDB.init(tmp_path / "b", "two").close()
    shutil.rmtree(tmp_path / "a" / "keys")
    shutil.copytree(tmp_path / "b" / "keys", tmp_path / "a" / "keys")
    with pytest.raises(KeyFileError, match="not the keys of site 'one'"):
        SiteDB.open(tmp_path / "a")


def test_records_neither_database_could_store_are_refused_and_the_rest_loaded(site_at,
                                                                              tmp_path):
    """A door's batch with a record whose number is text, too big, or whose reason has
    a NUL byte (PostgreSQL text cannot hold one): each is named, the good records
    around them are loaded, and the batch is loaded once."""
    from accessd.site import intake
    from accessd.storage.eventlog import GENESIS, record_hash
    from accessd.sync.batch import encode
    site = site_at.init()
    site.group_add("g")
    site.door_add("door-a", "g")
    store = FileStore(tmp_path / "store")
    rows, prev = [], GENESIS
    for seq in range(1, 7):
        reason = "granted" if seq != 4 else "nul\0byte"
        r = {"seq": seq, "ts": f"2026-11-23T10:00:0{seq}.000Z", "door": "door-a",
             "kind": "access.granted", "credential": None, "reason": reason, "detail": "{}",
             "prev_hash": prev}
        r["hash"] = prev = record_hash(*(r[k] for k in ("seq", "ts", "door", "kind",
                                                          "credential", "reason", "detail",
                                                          "prev_hash")))
        rows.append(r)
    rows[1]["seq"] = "2"                       # text where a number belongs
    rows[2]["seq"] = 2 ** 40                   # beyond any log
    # signed by the door's own key: the door itself wrote these (a bug, a bad disk)
    store.put("logs/door-a/1-6.ndjson.gz", encode("door-a", "", rows,
                                                   site.keys.door_log_seed("door-a")))
    rep = intake.pull(site, store)["door-a"]
    assert rep.added == 3                       # 1, 5 and 6
    assert [why for _, why in rep.bad].count(
        "logs/door-a/1-6.ndjson.gz: a record with a field of the wrong type") == 3
    assert rep.gaps == [(2, 4)]
    assert [s for (s,) in site.db.execute("SELECT seq FROM events ORDER BY seq")] == [1, 5, 6]
    assert intake.pull(site, store) == {}      # loaded once
