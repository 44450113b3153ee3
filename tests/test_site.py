"""The office side: site database, CSV import, personal data at rest."""

import os
import stat

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.errors import KeyFileError, StoreError
from accessd.site import csvimport


@pytest.fixture
def site(site_at):
    """A site with two door groups, on SQLite and on PostgreSQL."""
    s = site_at.init()
    s.loc = site_at
    s.group_add("bldg-a")
    s.group_add("bldg-b")
    yield s
    s.close()


def stored_bytes(site) -> bytes:
    """Everything the site keeps outside its keys: the SQLite files, or a pg_dump."""
    if site.loc.url is None:
        return b"".join(p.read_bytes() for p in site.dir.iterdir() if p.is_file())
    import subprocess
    from accessd.testing import postgres_bindir
    return subprocess.run([str(postgres_bindir() / "pg_dump"), "--data-only", site.loc.url],
                          capture_output=True, check=True).stdout


GOOD = """name,unit,role,phone,kind,uid,groups,valid_from,valid_until
Anna Berg,12A,resident,+4712345678,nfc,04A1B2C3,bldg-a,,
Bo Lind,12B,resident,,fob,12648430,bldg-a;bldg-b,,2030-01-01
Cy Courier,,courier,,nfc,04:C0:C0:C0,bldg-b,2026-01-01,2026-12-31T18:00
Dee Nocard,14C,resident,,,,bldg-a,,
"""


def test_site_init_makes_0600_keys_and_refuses_twice(tmp_path, site):
    for name in ("signing.pem", "lookup.key", "data.key"):
        assert stat.S_IMODE(os.stat(site.dir / "keys" / name).st_mode) == 0o600
    with pytest.raises(StoreError, match="already exist"):
        site.loc.init("again")
    os.chmod(site.dir / "keys/data.key", 0o644)
    with pytest.raises(KeyFileError, match="readable by other users"):
        site.loc.open()


def test_names_and_phones_are_encrypted_at_rest(site):
    pid = site.person_add("Anna Berg", "12A", "resident", "+4712345678")
    site.credential_add(pid, "nfc", "04A1B2C3")
    assert site.person(pid).name == "Anna Berg"
    site.close()
    blob = stored_bytes(site)
    assert b"riverside" in blob          # (what was read is the site's data)
    for secret in (b"Anna Berg", b"Anna", b"+4712345678", b"04A1B2C3", bytes.fromhex("04A1B2C3")):
        assert secret not in blob, secret


def test_import_good_file_and_rerun_changes_nothing(site):
    rep = csvimport.import_csv(site, GOOD)
    assert rep.imported and not rep.errors
    assert (rep.people_added, rep.credentials_added, rep.grants_added) == (4, 3, 5)
    again = csvimport.import_csv(site, GOOD)
    assert again.imported and again.unchanged == 4 and again.people_added == 0
    bo = site.find_person("12B", "bo  LIND")          # matched by unit and name
    assert site.grants(bo) == ["bldg-a", "bldg-b"]
    assert len(site.credentials()) == 3


BAD = """name,unit,role,phone,kind,uid,groups,valid_from,valid_until
Anna Berg,12A,resident,,nfc,04A1B2CZ,bldg-a,,
Bo Lind,12B,resident,,fob,12648430,bldg-x,,
Cy,12C,resident,,fob,12648430,bldg-a,,
Di,12D,resident,,nfc,04000000,bldg-a,,2026-13-40
Ed,12E,landlord,,,,bldg-a,,
Fi,12F,resident,,pin,1234,bldg-a,,
Gus,12G,resident,,nfc,04111111,bldg-a,,
Cy2,12H,resident,,fob,0x00C0FFEE,bldg-a,,
"""


def test_bad_rows_are_all_reported_with_lines_and_nothing_is_imported(site):
    rep = csvimport.import_csv(site, BAD)
    assert not rep.imported and site.people() == []
    errors = dict(rep.errors)
    assert "uid: nfc UID must be hexadecimal" in errors[2]
    assert "unknown door group 'bldg-x'" in errors[3]
    assert "valid_until '2026-13-40' is not a date" in errors[5]
    assert "role 'landlord' is not one of" in errors[6]
    assert "PINs are not imported from files" in errors[7]
    assert "the same fob is on line 4 too" in errors[9]   # 0x00C0FFEE == 12648430
    assert 8 not in errors and 4 not in errors


def test_skip_bad_imports_the_good_rows(site):
    rep = csvimport.import_csv(site, BAD, skip_bad=True)
    assert rep.imported and rep.people_added == 2     # Cy (line 4) and Gus (line 8)


def test_credential_enrolled_to_someone_else_is_a_bad_row(site):
    pid = site.person_add("Zed", "1A", "resident")
    site.credential_add(pid, "nfc", "04A1B2C3")
    rep = csvimport.import_csv(site, GOOD)
    assert not rep.imported and "already enrolled to Zed (1A)" in dict(rep.errors)[2]


def test_a_failed_step_inside_a_transaction_saves_nothing_even_if_caught(site):
    """Two staff steps in one transaction: if the second fails and the caller goes on,
    the first is not saved half-done either."""
    site.person_add("Zed", "1A", "resident")
    with pytest.raises(StoreError, match="a step inside the transaction failed"):
        with site.db.atomic():
            site.person_add("Yan", "1B", "resident")
            with pytest.raises(StoreError, match="already registered"):
                site.person_add("Zed", "1A", "resident")
    assert [p.name for p in site.people()] == ["Zed"]
    site.person_add("Yan", "1B", "resident")            # the database is usable again
    assert sorted(p.name for p in site.people()) == ["Yan", "Zed"]


def test_a_taken_card_inside_a_larger_change_names_its_holder(site):
    """Found before the insert, not from a failed one (which would end a PostgreSQL
    transaction and leave no way to ask whose it is)."""
    a, b = site.person_add("Anna", "1A", "resident"), site.person_add("Bo", "1B", "resident")
    site.credential_add(a, "nfc", "04A1B2C3")
    with pytest.raises(StoreError, match=r"that nfc is already enrolled to Anna \(1A\)"):
        with site.db.atomic():
            site.grant(b, "bldg-a")
            site.credential_add(b, "nfc", "04A1B2C3")
    assert site.grants(b) == []                         # the larger change is not half-saved


def test_header_errors(site):
    rows, errors = csvimport.parse("name,flat,role\nA,1,resident\n", site)
    assert errors == [(1, "header: missing column(s) unit; unknown column(s) flat (columns: "
                          "name, unit, role, phone, kind, uid, groups, valid_from, valid_until)")]


def test_import_cli_progress_and_exit_codes(site, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(GOOD)
    bad.write_text(BAD)
    runner = CliRunner()
    r = runner.invoke(accessctl.main, [*site.loc.args, "import", str(bad)])
    assert r.exit_code == 1 and f"{bad}:2: uid: nfc UID must be hexadecimal" in r.output
    assert "nothing imported: 6 bad rows" in r.output
    r = runner.invoke(accessctl.main, [*site.loc.args, "import", str(good)])
    assert r.exit_code == 0 and "4 people, 3 credentials, 5 grants added" in r.output
    r = runner.invoke(accessctl.main, [*site.loc.args, "export"])
    assert "Anna Berg" in r.output and "04A1B2C3" not in r.output and "fp:" in r.output


def test_office_commands_need_a_site(tmp_path):
    r = CliRunner().invoke(accessctl.main, ["person", "list"], env={"ACCESSD_SITE": ""})
    assert r.exit_code == 2 and "this is an office command: give --site DIR" in r.output


def test_people_and_grants_cli(site):
    runner = CliRunner()

    def ctl(*a):
        return runner.invoke(accessctl.main, [*site.loc.args, *a])
    r = ctl("person", "add", "--name", "Anna Berg", "--unit", "12A", "--group", "bldg-a", "--json")
    assert r.exit_code == 0, r.output
    import json
    pid = json.loads(r.output)["person"]
    assert "Anna Berg" in ctl("person", "show", pid).output
    r = ctl("enroll", "--person", pid, "--kind", "nfc", "--uid", "04A1B2C3")
    assert r.exit_code == 0 and "run 'accessctl publish'" in r.output
    r = ctl("enroll", "--person", pid, "--kind", "pin", "--pin-stdin")
    assert r.exit_code == 1 and "--pin-stdin: no PIN on standard input" in r.output
    cid = site.credentials(pid)[0]["id"]
    assert ctl("lost", cid).exit_code == 0
    assert site.credentials(pid)[0]["status"] == "lost"
    assert ctl("ungrant", pid, "bldg-a").exit_code == 0 and site.grants(pid) == []
    r = ctl("grant", pid, "nope")
    assert r.exit_code == 1 and "no door group 'nope'" in r.output
    r = ctl("person", "add", "--name", "Anna Berg", "--unit", "12A")
    assert r.exit_code == 1 and "already registered" in r.output
    assert ctl("person", "edit", pid, "--unit", "14C").exit_code == 0
    assert site.person(pid).unit == "14C"
    assert ctl("person", "remove", pid).exit_code == 0 and site.people() == []


def test_a_single_credential_can_be_granted_a_group(site):
    from accessd.site.publish import publish
    from accessd.sync.store import FileStore
    pid = site.person_add("Cy Courier", "", "courier")
    van = site.credential_add(pid, "nfc", "04C0C0C0")
    spare = site.credential_add(pid, "fob", "777")
    site.door_add("mail-door", "bldg-b")
    assert site.grant(van["id"], "bldg-b") == "credential"
    ids = sorted(row["id"] for _, row in site.group_credentials("bldg-b"))
    assert ids == [van["id"]]                          # not the spare fob
    site.grant(pid, "bldg-b")                          # the person: every credential
    assert sorted(r["id"] for _, r in site.group_credentials("bldg-b")) == sorted(
        [van["id"], spare["id"]])
    site.ungrant(pid, "bldg-b")
    assert [r["id"] for _, r in site.group_credentials("bldg-b")] == [van["id"]]
    with pytest.raises(StoreError, match="no person or credential 'zz'"):
        site.grant("zz", "bldg-b")
    res = publish(site, FileStore(site.dir / "store"))
    assert [r["credentials"] for r in res if r["group"] == "bldg-b"] == [1]


def test_unreadable_csv_files_are_refused_with_the_line(site, tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("name,unit,role\nBjørn,1A,resident\n".encode("latin-1"))
    huge = tmp_path / "huge.csv"
    huge.write_text('name,unit,role\nA,1,resident\n"' + "x" * 200_000 + '",1,resident\n')
    runner = CliRunner()
    r = runner.invoke(accessctl.main, [*site.loc.args, "import", str(latin1)])
    assert r.exit_code == 1 and f"{latin1}:2: not UTF-8 (byte 0xf8)" in r.output
    r = runner.invoke(accessctl.main, [*site.loc.args, "import", str(huge)])
    assert r.exit_code == 1 and f"{huge}:3: not readable as CSV: field larger" in r.output
    assert site.people() == []


def test_a_short_report_puts_each_record_in_its_local_day_across_a_dst_change(tmp_path,
                                                                                monkeypatch):
    """report() folds a short span's days in SQL by the days' UTC boundaries; it must
    give what the minute-by-minute way gives, on the 25-hour day a clock goes back."""
    from accessd.core import when
    from accessd.site import intake
    from accessd.site.db import SiteDB
    from accessd.storage.eventlog import utc_iso
    site = SiteDB.init(tmp_path / "site", "oslo")
    site.timezone_set("Europe/Oslo")
    start = when.parse("2026-10-23", "Europe/Oslo", now=0)
    rows = [("front" if i % 2 else "back", "L", i, utc_iso(start + i * 1777),
             ("access.granted", "access.denied", "door.forced")[i % 3], None, "", "", "", "h")
            for i in range(1, 300)]
    with site.db.atomic():
        site.db.executemany("INSERT INTO events (door, log, seq, ts, kind, credential, reason, "
                            "detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    since = utc_iso(start + 3600)
    now = start + 7 * 86400
    fast = intake.report(site, since=since, now=now)
    monkeypatch.setattr(intake, "DAYS_IN_SQL", 0)
    slow = intake.report(site, since=since, now=now)
    assert fast == slow and {r["day"] for r in fast} >= {"2026-10-25", "2026-10-26"}
    assert sum(r["granted"] + r["denied"] + r["alarms"] for r in fast) == 297   # (2 before)
    site.close()


def test_a_subject_access_export_holds_everything_about_one_person_and_is_recorded(tmp_path):
    import json

    from click.testing import CliRunner

    from accessd.cli import accessctl
    from accessd.site.db import SiteDB
    site = SiteDB.init(tmp_path / "site", "riverside")
    site.timezone_set("Asia/Shanghai")
    site.group_add("bldg-a")
    site.door_add("front", "bldg-a")
    anna = site.person_add('Anna <b>Berg</b>', "12A", "resident", "+8613800000000")
    site.grant(anna, "bldg-a")
    bo = site.person_add("Bo Lind", "3C", "resident")
    fob = site.enrol(anna, "fob", "0004512345")["id"]
    other = site.enrol(bo, "fob", "0004599999")["id"]
    rows = [("front", "L", 1, "2026-12-01T00:30:00.000Z", "access.granted", fob),
            ("front", "L", 2, "2026-12-01T01:00:00.000Z", "access.granted", other)]
    with site.db.atomic():
        site.db.executemany("INSERT INTO events (door, log, seq, ts, kind, credential, reason, "
                            "detail, prev_hash, hash) VALUES (?,?,?,?,?,?,'r','','','h')", rows)
    site.close()
    out = tmp_path / "anna.json"
    r = CliRunner().invoke(accessctl.main, ["--site", str(tmp_path / "site"), "person", "export",
                                            anna, "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["person"]["name"] == "Anna <b>Berg</b>" and doc["door_groups"] == ["bldg-a"]
    assert [c["id"] for c in doc["credentials"]] == [fob]
    assert "4512345" not in out.read_text()               # fingerprints, never the number
    assert [e["credential"] for e in doc["door_events"]] == [fob]     # not Bo's
    assert doc["door_events"][0]["time"]["local"] == "2026-12-01 08:30:00"   # site's zone
    assert any(a["action"] == "credential.add" for a in doc["office_access"])
    page = out.with_suffix(".html").read_text()
    assert "Anna &lt;b&gt;Berg&lt;/b&gt;" in page and "<b>Berg" not in page
    site = SiteDB.open(tmp_path / "site")
    assert site.audit_log()[-1]["event"] == "person.export"
    site.close()
    r = CliRunner().invoke(accessctl.main, ["--site", str(tmp_path / "site"), "person", "export",
                                            "nobody", "--out", str(out)])
    assert r.exit_code == 1 and "nobody" in r.output
    r = CliRunner().invoke(accessctl.main, ["--site", str(tmp_path / "site"), "person", "export",
                                            anna, "--out", str(tmp_path / "x.txt")])
    assert r.exit_code == 1 and ".json" in r.output
