"""The office console in process (Starlette's test client over the real app and a
real SQLite site): who may reach what (every route x every role, from the route
table), sign-in, lockout and idle expiry on an injected clock, CSRF, escaping and
the security headers, a resident kept to their own data, paging a long log,
the CSV import's all-or-nothing, and the Chinese pages.

The journeys a person takes in a browser (sign in, enrol, publish, an alarm
arriving live, a resident's pass opening a door) are in test_web_browser.py."""

from __future__ import annotations

import re
import time

import pytest

import warnings  # noqa: E402

with warnings.catch_warnings():        # (its note about httpx2: httpx is what we install)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from accessd.site import staff  # noqa: E402
from accessd.site.db import SiteDB  # noqa: E402
from accessd.web.app import COOKIE, Console, create_app  # noqa: E402
from accessd.web.permissions import ROLES  # noqa: E402
from accessd.web.routes import ROUTES  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PASSWORD = "correct horse battery"

# What each role may do, written out as the product promises it (not read from
# permissions.py): auditors read; staff also enrol/revoke/passes/publish/alarms;
# admins also doors and staff; residents only their own page.
MAY = {
    "anonymous": {"anyone"},
    "resident": {"anyone", "signed-in", "resident"},
    "auditor": {"anyone", "signed-in", "read"},
    "staff": {"anyone", "signed-in", "read", "people.write", "passes.write", "publish",
              "alarms.ack"},
    "admin": {"anyone", "signed-in", "read", "people.write", "passes.write", "publish",
              "alarms.ack", "doors.command", "doors.write", "staff.manage"},
}


class Clock:
    def __init__(self):
        self.t = time.time()

    def __call__(self):
        return self.t


class Office:
    """A site with a building, two doors, two residents with fobs, and one staff
    account per role; the console over it (live channel off)."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "site"
        site = SiteDB.init(self.dir, "riverside")
        site.group_add("bldg-a")
        site.group_add("bldg-b")
        site.door_add("front", "bldg-a")
        site.door_add("back", "bldg-b")
        site.store_url_set((tmp_path / "store").as_uri())
        self.anna = site.person_add("Anna Berg", "12A", "resident")
        site.grant(self.anna, "bldg-a")
        self.bo = site.person_add("Bo Lind", "3C", "resident")
        site.grant(self.bo, "bldg-b")
        self.anna_fob = site.enrol(self.anna, "fob", "0004512345")["id"]
        self.bo_fob = site.enrol(self.bo, "fob", "0004599999")["id"]
        for role in ("admin", "staff", "auditor"):
            staff.add(site, f"{role}1", role, PASSWORD)
        self.site = site
        self.clock = Clock()
        self.console = Console(self.dir, live=False, clock=self.clock)
        self.app = create_app(self.console)

    def client(self, role: str | None = None) -> TestClient:
        c = TestClient(self.app, base_url="http://testserver")
        if role in ("admin", "staff", "auditor"):
            self.sign_in(c, f"{role}1", PASSWORD)
        elif role == "resident":
            code = staff.resident_code(self.site, self.anna, now=self.clock())
            c.get("/me/login")
            r = c.post("/me/login", data={"code": code, "csrf": c.cookies.get("accessd_pre")},
                       follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/me", r.text
        return c

    def sign_in(self, c, name, password, next_="/"):
        c.get("/login")
        return c.post("/login", data={"name": name, "password": password, "next": next_,
                                      "csrf": c.cookies.get("accessd_pre")},
                      follow_redirects=False)


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.site.close()


def _fill(path: str, o: Office) -> str:
    values = {"alarm_id": "1", "person_id": o.anna, "credential_id": o.anna_fob,
              "version": "1", "pass_id": "0000000000000000", "door_id": "front",
              "name": "staff1", "lang": "zh_CN"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)


def _session_csrf(o: Office, c: TestClient) -> str:
    token = c.cookies.get(COOKIE)
    if not token:
        return ""
    actor = staff.session(o.site, token, now=o.clock())
    return actor.csrf if actor else ""


@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_each_role_as_the_roles_promise(office, role):
    """Generated from the route table: every route for this role; a role that may
    take the route's action reaches the handler (a page, a redirect, or a refusal
    of the empty form: never 401/403), any other is turned away (to the sign-in
    page when signed out, 401/403 otherwise) and nothing changes."""
    c = office.client(None if role == "anonymous" else role)
    csrf = _session_csrf(office, c)
    audit_before = len(office.site.audit_log())
    checked = 0
    for route in sorted(ROUTES, key=lambda r: r.path == "/logout"):   # sign out last
        if route.stream is not None:
            continue
        for method in route.methods:
            path = _fill(route.path, office)
            if method == "GET":
                r = c.get(path, follow_redirects=False)
            elif route.csrf == "pre":     # a sign-in form: its own token, and no password
                c.get(path)
                r = c.post(path, data={"csrf": c.cookies.get("accessd_pre")},
                           follow_redirects=False)
                assert r.status_code == 401 and "wrong" in r.text, (role, path, r.status_code)
                checked += 1
                continue
            else:
                r = c.post(path, data={"csrf": csrf}, follow_redirects=False)
            allowed = route.action in MAY[role]
            if allowed:
                assert r.status_code not in (401, 403), (role, method, path, r.status_code)
                assert r.status_code < 500, (role, method, path, r.text[:300])
            elif role == "anonymous" and method == "GET":
                assert r.status_code == 303 and "/login?next=" in r.headers["location"], \
                    (method, path, r.status_code)
            else:
                assert r.status_code in (401, 403), (role, method, path, r.status_code)
            checked += 1
    assert checked >= 40
    if role in ("anonymous", "resident", "auditor"):
        # nobody here may change the site: the only audit lines are sign-ins and outs
        events = {a["event"] for a in office.site.audit_log()[audit_before:]}
        assert events <= {"login", "logout", "login.failed", "resident.code"}, events


def test_the_live_stream_is_for_staff_only(office):
    r = office.client().get("/live")
    assert r.status_code == 401
    r = office.client("resident").get("/live")
    assert r.status_code == 401


def test_sign_in_lockout_and_idle_expiry_follow_the_clock(office):
    c = office.client()
    for _ in range(staff.MAX_FAILURES):
        r = office.sign_in(c, "staff1", "wrong password!")
        assert r.status_code == 401 and "wrong name or password" in r.text
    r = office.sign_in(c, "staff1", PASSWORD)
    assert r.status_code == 401 and "too many failed sign-ins" in r.text
    office.clock.t += staff.LOCK_SECONDS + 1
    r = office.sign_in(c, "staff1", PASSWORD)
    assert r.status_code == 303
    assert c.get("/people").status_code == 200
    office.clock.t += staff.IDLE_SECONDS + 1
    r = c.get("/people", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    events = [a["event"] for a in office.site.audit_log()]
    assert "login.locked" in events and events.count("login.failed") >= staff.MAX_FAILURES


def test_the_password_is_kept_only_as_an_argon2id_hash(office):
    rows = office.site.db.execute("SELECT pw_hash FROM staff").fetchall()
    assert all(r[0].startswith("$argon2id$") for r in rows)
    raw = (office.dir / "site.db").read_bytes()
    assert PASSWORD.encode() not in raw


def test_a_post_without_the_sessions_token_changes_nothing(office):
    c = office.client("staff")
    r = c.post("/people", data={"name": "Eve Forged", "unit": "1A"}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text
    r = c.post("/people", data={"name": "Eve Forged", "unit": "1A", "csrf": "guess"},
               follow_redirects=False)
    assert r.status_code == 403
    assert not [p for p in office.site.people() if p.name == "Eve Forged"]
    # the same with the right token works, under the staff member's name
    r = c.post("/people", data={"name": "Eve Real", "unit": "1A",
                                "csrf": _session_csrf(office, c)}, follow_redirects=False)
    assert r.status_code == 303
    assert [p for p in office.site.people() if p.name == "Eve Real"]
    assert office.site.audit_log()[-1]["actor"] == "web:staff1"


def test_names_render_as_text_and_every_page_carries_the_security_headers(office):
    office.site.person_add('<script>alert("x")</script>', "9Z", "resident")
    c = office.client("auditor")
    r = c.get("/people?q=9Z")
    assert "<script>alert" not in r.text and "&lt;script&gt;alert" in r.text
    for path in ("/", "/people", "/login", "/static/console.css"):
        h = c.get(path).headers
        assert "unsafe-inline" not in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
    # no page has inline script or style (the CSP would block it anyway)
    for path in ("/", "/people", f"/people/{office.anna}", "/logs", "/passes", "/doors"):
        html = c.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "<style" not in html and " style=" not in html and " onclick=" not in html


def test_pages_answer_json_for_scripts_and_tests(office):
    c = office.client("auditor")
    r = c.get(f"/people/{office.anna}", headers={"Accept": "application/json"})
    doc = r.json()
    assert doc["person"]["name"] == "Anna Berg" and doc["grants"] == ["bldg-a"]
    assert {x["kind"] for x in doc["credentials"]} == {"fob"}
    assert "lookup" not in str(doc) and "4512345" not in str(doc)


def test_search_as_you_type_finds_by_name_or_unit(office):
    c = office.client("staff")
    r = c.get("/people?q=lind", headers={"HX-Request": "true"})
    assert "Bo Lind" in r.text and "Anna Berg" not in r.text and "<html" not in r.text
    r = c.get("/people?q=12a", headers={"Accept": "application/json"})
    assert [p["name"] for p in r.json()["people"]] == ["Anna Berg"]


def test_enrol_a_fob_by_its_printed_number_and_a_pin_never_shown(office):
    c = office.client("staff")
    csrf = _session_csrf(office, c)
    r = c.post(f"/people/{office.bo}/enrol", data={"kind": "fob", "value": "068,58905",
                                                    "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    r = c.post(f"/people/{office.bo}/enrol", data={"kind": "pin", "value": "482913",
                                                    "csrf": csrf})
    assert r.status_code == 200 and "482913" not in r.text
    kinds = sorted(x["kind"] for x in office.site.credentials(office.bo))
    assert kinds == ["fob", "fob", "pin"]
    r = c.post(f"/people/{office.bo}/enrol", data={"kind": "fob", "value": "not a number",
                                                    "csrf": csrf})
    assert r.status_code == 400 and "not a number" not in r.text.split("<main>")[0]
    assert len(office.site.credentials(office.bo)) == 3


def test_revoke_asks_first_then_revokes_under_the_staff_members_name(office):
    c = office.client("staff")
    csrf = _session_csrf(office, c)
    r = c.post(f"/credentials/{office.anna_fob}", data={"action": "revoke", "csrf": csrf})
    assert r.status_code == 200 and "Yes, revoke it" in r.text
    assert office.site.credentials(office.anna)[0]["status"] == "active"
    r = c.post(f"/credentials/{office.anna_fob}", data={"action": "revoke", "confirm": "yes",
                                                         "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert office.site.credentials(office.anna) == []
    last = office.site.audit_log()[-1]
    assert last["event"] == "credential.revoke" and last["actor"] == "web:staff1"


def test_a_resident_sees_and_touches_only_their_own_data(office):
    # Bo has events at his door; Anna must never see them, nor his fob
    office.site.db.execute(
        "INSERT INTO events (door, log, seq, ts, kind, credential, reason, detail, prev_hash, "
        "hash) VALUES ('back', 'L', 1, '2026-12-01T08:00:00.000Z', 'access.granted', ?, "
        "'granted', '', '', 'h')", [office.bo_fob])
    c = office.client("resident")
    page = c.get("/me", headers={"Accept": "application/json"}).json()
    assert page["person"]["name"] == "Anna Berg" and page["events"] == []
    assert [x["id"] for x in page["credentials"]] == [office.anna_fob]
    html = c.get("/me").text
    assert "Bo Lind" not in html and office.bo_fob not in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    # Bo's fob cannot be reported lost by Anna
    r = c.post(f"/me/credentials/{office.bo_fob}/lost", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 404
    assert office.site.credentials(office.bo)[0]["status"] == "active"
    # nor a pass issued for Bo's building
    r = c.post("/me/passes", data={"csrf": csrf, "group": "bldg-b", "label": "guest",
                                   "hours": "2", "entries": "1"})
    assert r.status_code == 400 and "your own building" in r.text
    # and no staff page, whatever the id
    for path in (f"/people/{office.bo}", "/logs?person=Bo+Lind", "/people/export.csv"):
        assert c.get(path).status_code == 403


def test_a_residents_lost_report_is_published_at_once(office):
    from accessd.site.publish import publish
    publish(office.site, office.site.store())
    before = int(office.site.meta("bundle_version"))
    c = office.client("resident")
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/me").text).group(1)
    r = c.post(f"/me/credentials/{office.anna_fob}/lost", data={"csrf": csrf, "confirm": "yes"},
               follow_redirects=False)
    assert r.status_code == 303 and "doors have been told" in r.headers["location"].replace(
        "%20", " ")
    assert office.site.credentials(office.anna)[0]["status"] == "lost"
    assert int(office.site.meta("bundle_version")) == before + 1


def test_residents_passes_are_held_to_the_offices_limits(office):
    office.site.meta_set("resident_pass_per_month", "2")
    c = office.client("resident")
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/me").text).group(1)
    form = {"csrf": csrf, "group": "bldg-a", "label": "Grandson Tom", "role": "visitor",
            "hours": "4", "entries": "1"}
    r = c.post("/me/passes", data={**form, "hours": "48"})
    assert r.status_code == 400 and "at most 24 hours" in r.text
    for _ in range(2):
        r = c.post("/me/passes", data=form)
        assert r.status_code == 200 and "<svg" in r.text
    r = c.post("/me/passes", data=form)
    assert r.status_code == 400 and "2 passes in the last 30 days" in r.text


def test_logs_page_backwards_without_overlap_and_export_everything(office):
    rows = [("front", "L", i, f"2026-12-01T{8 + i // 3600:02d}:{i // 60 % 60:02d}:"
             f"{i % 60:02d}.000Z", "access.granted" if i % 3 else "access.denied",
             office.anna_fob, "r", "", "", f"h{i}") for i in range(1, 251)]
    with office.site.db.atomic():
        office.site.db.executemany(
            "INSERT INTO events (door, log, seq, ts, kind, credential, reason, detail, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    c = office.client("auditor")
    seen, url = [], "/logs?door=front"
    while url:
        r = c.get(url)
        doc = c.get(url, headers={"Accept": "application/json"}).json()
        seen += [e["seq"] for e in doc["events"]]
        assert len(r.text.split("<tr class=\"access-")) - 1 == len(doc["events"])
        m = re.search(r'id="older" href="([^"]+)"', r.text)
        url = m.group(1).replace("&amp;", "&") if m else ""
    assert seen == list(range(250, 0, -1))
    csv_text = c.get("/logs/export.csv?door=front&kind=access.denied").text
    assert len(csv_text.strip().splitlines()) == 1 + len([i for i in range(1, 251) if i % 3 == 0])
    assert "Anna Berg (12A)" in csv_text
    chart = c.get("/logs/chart?days=366&group=bldg-a")
    assert chart.status_code == 200 and "<svg" in chart.text and "front" in chart.text


def test_a_csv_import_with_a_bad_line_names_it_and_stores_nothing(office):
    c = office.client("staff")
    csrf = _session_csrf(office, c)
    bad = ("name,unit,role,kind,uid,groups\n"
           "Cai Wen,7B,resident,fob,0004511111,bldg-a\n"
           "Dee Oak,7C,resident,fob,not-a-fob,bldg-a\n")
    r = c.post("/people/import", data={"csrf": csrf},
               files={"file": ("people.csv", bad.encode(), "text/csv")})
    assert r.status_code == 400 and "line 3" in r.text and "Nothing was imported" in r.text
    assert not [p for p in office.site.people() if p.name in ("Cai Wen", "Dee Oak")]
    good = bad.replace("not-a-fob", "0004522222")
    r = c.post("/people/import", data={"csrf": csrf},
               files={"file": ("people.csv", good.encode(), "text/csv")})
    assert r.status_code == 200 and "Imported: 2 people" in r.text


def test_the_console_speaks_simplified_chinese(office):
    c = office.client("staff")
    r = c.get("/lang/zh_CN", follow_redirects=False)
    assert r.status_code == 303
    html = c.get("/").text
    assert 'lang="zh-CN"' in html and "仪表板" in html and "人员" in html
    html = c.get("/people", headers={"Accept-Language": "en"}).text
    assert "人员" in html     # the cookie wins over the browser's language


def test_bad_input_is_a_message_not_a_traceback(office):
    c = office.client("admin")
    csrf = _session_csrf(office, c)
    cases = [("get", "/logs?since=yesterday-ish", "since"),
             ("get", "/logs?door=nowhere", "no door"),
             ("get", "/people?page=0", "page"),
             ("get", "/logs?before=x|y", "before"),
             ("get", "/logs/chart?group=nowhere", "group"),
             ("post", "/passes", "until"),
             ("post", "/staff", "name"),
             ("post", "/staff/limits", "resident_pass"),
             ("post", "/doors/front/command", "cmd")]
    for method, path, word in cases:
        r = getattr(c, method)(path, **({"data": {"csrf": csrf}} if method == "post" else {}))
        assert r.status_code in (400, 404), (path, r.status_code)
        assert word in r.text and "Traceback" not in r.text, (path, r.text[:400])
    r = c.post("/people", data={"csrf": csrf, "name": "x" * 5000})
    assert r.status_code == 400
    big = c.post("/people/import", content=b"x" * (3 << 20),
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413


def test_staff_accounts_from_the_command_line(office, tmp_path):
    from click.testing import CliRunner

    from accessd.cli import accessctl
    run = CliRunner()
    site = ["--site", str(office.dir)]
    r = run.invoke(accessctl.main, site + ["staff", "add", "dana", "--role", "staff",
                                           "--password-stdin"], input="short\n")
    assert r.exit_code == 1 and "10 to 1024 characters" in r.output
    r = run.invoke(accessctl.main, site + ["staff", "add", "dana", "--role", "staff",
                                           "--password-stdin"], input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    r = run.invoke(accessctl.main, site + ["staff", "add", "dana", "--role", "staff",
                                           "--password-stdin"], input=PASSWORD + "\n")
    assert r.exit_code == 1 and "exists already" in r.output
    assert "dana  staff" in run.invoke(accessctl.main, site + ["staff", "list"]).output
    c = office.client()
    assert office.sign_in(c, "dana", PASSWORD).status_code == 303
    r = run.invoke(accessctl.main, site + ["staff", "role", "dana", "auditor"])
    assert r.exit_code == 0
    csrf = _session_csrf(office, c)
    assert c.post("/people", data={"csrf": csrf, "name": "X"}).status_code == 403
    r = run.invoke(accessctl.main, site + ["staff", "remove", "dana"])
    assert r.exit_code == 0
    assert c.get("/people", follow_redirects=False).status_code == 303   # session ended
    r = run.invoke(accessctl.main, site + ["resident-code", "Anna Berg"])
    assert r.exit_code == 0 and re.fullmatch(r"\w{4}-\w{4}-\w{4}\n", r.output)
    for bad in ("8080", "host:0", "a b:80", "127.0.0.1:99999"):
        r = run.invoke(accessctl.main, site + ["web", "--listen", bad])
        assert r.exit_code == 1 and "--listen" in r.output, (bad, r.output)


def test_a_resident_code_works_once_and_not_after_it_expires(office):
    code = staff.resident_code(office.site, office.anna, now=office.clock())
    c = office.client()
    c.get("/me/login")
    ok = c.post("/me/login", data={"code": code, "csrf": c.cookies.get("accessd_pre")},
                follow_redirects=False)
    assert ok.status_code == 303
    c2 = office.client()
    c2.get("/me/login")
    again = c2.post("/me/login", data={"code": code, "csrf": c2.cookies.get("accessd_pre")})
    assert again.status_code == 401 and "wrong, used or expired" in again.text
    late = staff.resident_code(office.site, office.anna, now=office.clock())
    office.clock.t += (staff.CODE_DAYS + 1) * 86400
    c3 = office.client()
    c3.get("/me/login")
    r = c3.post("/me/login", data={"code": late, "csrf": c3.cookies.get("accessd_pre")})
    assert r.status_code == 401


def test_a_card_read_on_the_office_reader_is_enrolled(office, tmp_path):
    """The console started with --nfc-reader: a card held on the office's reader
    (nfcpy's software link, a real card emulator on the other end) is enrolled by a
    click; its number is not on the page."""
    import threading

    from accessd.hw.nfc_emulator import CardEmulator
    from accessd.testing import free_udp_port
    path = f"udp:localhost:{free_udp_port()}"
    console = Console(office.dir, live=False, clock=office.clock, nfc_reader=path)
    c = TestClient(create_app(console))
    office.sign_in(c, "staff1", PASSWORD)
    csrf = _session_csrf(office, c)
    assert 'id="enrol-office"' in c.get(f"/people/{office.bo}").text
    uid = "04C0FFEE123480"
    card = threading.Thread(target=CardEmulator(path).present, args=(bytes.fromhex(uid),),
                            kwargs={"hold": 1.0, "timeout": 20})
    card.start()
    r = c.post(f"/people/{office.bo}/enrol", data={"kind": "nfc", "reader": "office",
                                                    "timeout": "20", "csrf": csrf})
    card.join(30)
    assert r.status_code == 200 and "Enrolled nfc" in r.text and uid not in r.text
    fp = office.site.fingerprint("nfc", uid)
    assert fp in [x["fingerprint"] for x in office.site.credentials(office.bo)]
    # a reader that is not there: a message naming it, nothing stored
    c2 = TestClient(create_app(Console(office.dir, live=False, clock=office.clock,
                                       nfc_reader="usb:999:999")))
    office.sign_in(c2, "staff1", PASSWORD)
    r = c2.post(f"/people/{office.bo}/enrol", data={"kind": "nfc", "reader": "office",
                                                     "csrf": _session_csrf(office, c2)})
    assert r.status_code == 400 and "usb:999:999" in r.text
    assert len(office.site.credentials(office.bo)) == 2


def test_an_auditor_verifies_the_audit_trail_in_the_console(office):
    c = office.client("auditor")
    page = c.get("/audit?verify=1", headers={"Accept": "application/json"}).json()
    assert page["verify"]["problems"] == [] and page["verify"]["lines"] >= 1
    assert "The chain is intact." in c.get("/audit?verify=1").text
    with office.site.db.atomic():     # someone with the database edits a line
        office.site.db.execute("UPDATE audit SET actor = 'nobody' WHERE id = 1")
    page = c.get("/audit?verify=1", headers={"Accept": "application/json"}).json()
    assert page["verify"]["problems"] == ["line 1: its content does not match its hash (edited)"]
    html = c.get("/audit?verify=1").text
    assert "The chain is broken:" in html and "line 1: its content does not match" in html


def test_the_door_list_shows_each_doors_software_and_what_failed(office):
    """What the doors reported (pulled logs) against what they were told to run."""
    import json as _json
    site = office.site
    site.meta_set("release_targets", _json.dumps({"front": {"version": "1.2", "serial": 2,
                                                            "issued": 0}}))
    rows = [("front", 1, "2026-12-05T10:00:00Z", "daemon.started", "accessd 0.2.0 started",
             {"release": "1.1"}),
            ("front", 2, "2026-12-05T10:05:00Z", "release.rolled_back",
             "no READY within 90 s", {"version": "1.2", "release": "1.1"})]
    with site.db.atomic():
        for door, seq, ts, kind, reason, detail in rows:
            site.db.execute("INSERT INTO events (door, log, seq, ts, kind, credential, reason, "
                            "detail, prev_hash, hash) VALUES (?, '', ?, ?, ?, NULL, ?, ?, "
                            "'', '')", [door, seq, ts, kind, reason, _json.dumps(detail)])
    page = office.client("staff").get("/doors").text
    row = re.search(r'<tr data-door="front">.*?</tr>', page, re.S).group(0)
    assert "1.1" in row and "told to run 1.2: rolled back: no READY within 90 s" in row, row
    back = re.search(r'<tr data-door="back">.*?</tr>', page, re.S).group(0)
    assert 'class="software">-<' in back
