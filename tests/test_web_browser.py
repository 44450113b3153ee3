"""The office console in a real browser: Debian's Chromium driven by Playwright
(executable_path: nothing downloads a browser), against `accessctl web` served by
uvicorn, a real Mosquitto, and a running simulated door.

The whole loop a site lives by: a staff member signs in, imports residents from a
CSV file, enrols a fob by its printed number, publishes and watches the door apply
it; the door grants the fob; a forced door appears on the open dashboard (pushed by
server-sent events, no reload) and is acknowledged; a resident signs in with a
printed code on a phone-sized screen, issues a pass for a visitor, and the pass
opens the door once. The screenshots in the README are taken here
(ACCESSD_SCREENSHOTS=docs/screenshots ./scripts/test tests/test_web_browser.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from accessd.testing import SIM_READER, free_tcp_port, terminate

from .helpers import wait_until
from .test_live_office import Estate, door_log
from .test_passes import QR_READER

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def _http_ok(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def console(tmp_path):
    pytest.importorskip("playwright")
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: scripts/test installs it"
    estate = Estate(tmp_path)
    from accessd.site import staff
    from accessd.site.db import SiteDB
    site = SiteDB.open(estate.site_dir)
    staff.add(site, "alice", "admin", PASSWORD)
    site.close()
    port = free_tcp_port()
    log = open(tmp_path / "console.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                             str(estate.site_dir), "web", "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _http_ok(base + "/login"), timeout=30,
                   what="the console to serve")
        assert proc.poll() is None, (tmp_path / "console.log").read_text()
        yield estate, base
    finally:
        terminate(proc)
        log.close()
        estate.close()


@pytest.fixture
def browser():
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def shots(tmp_path) -> Path:
    out = Path(os.environ.get("ACCESSD_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_the_whole_loop_in_chromium(console, browser, tmp_path):
    from playwright.sync_api import expect
    estate, base = console
    shot = shots(tmp_path)
    door = estate.door("door-a", readers=SIM_READER + QR_READER)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(30_000)

    # sign in
    page.goto(base + "/")
    assert "/login" in page.url
    page.screenshot(path=str(shot / "sign-in.png"))
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#alarms")

    # a forced door arrives on the open dashboard by itself, and is acknowledged
    page.wait_for_selector("#live[data-live=on][data-stream=open]", state="attached")
    assert page.locator("tr.alarm").count() == 0
    door.request({"op": "sim", "input": "door", "state": "open"})
    door.request({"op": "sim", "input": "door", "state": "closed"})
    page.wait_for_selector("tr.alarm")          # no reload: pushed by server-sent events
    assert "door forced" in page.inner_text("tr.alarm") and "door-a" in page.inner_text(
        "tr.alarm")
    page.screenshot(path=str(shot / "dashboard-alarm.png"), full_page=True)
    page.fill("tr.alarm input[name=note]", "checked: a delivery")
    page.click("tr.alarm button[type=submit]")
    page.wait_for_selector(".flash")
    assert page.locator("tr.alarm").count() == 0
    assert "acknowledged" in page.inner_text(".flash")

    # import residents from a CSV file
    csv = tmp_path / "residents.csv"
    csv.write_text("name,unit,role,groups\nCai Wen,7B,resident,bldg-a\n"
                   "Dora Holm,7C,resident,bldg-a\n")
    page.goto(base + "/people/import")
    page.set_input_files("input[type=file]", str(csv))
    page.click("form[action='/people/import'] button[type=submit]")
    assert "Imported: 2 people" in page.inner_text("#import-result")

    # find her as you type, enrol a fob by the number printed on it
    page.goto(base + "/people")
    page.fill("input[name=q]", "cai")
    rows = page.locator("#people-rows")
    expect(rows).to_contain_text("Cai Wen")
    expect(rows).not_to_contain_text("Dora Holm")
    page.click("text=Cai Wen")
    page.wait_for_selector("#enrol-number")
    page.select_option("#enrol-number select[name=kind]", "fob")
    page.fill("#enrol-value", "0004512345")
    page.click("#enrol-number button[type=submit]")
    assert "Enrolled fob" in page.inner_text(".flash")
    person_url = page.url.split("?")[0]
    page.screenshot(path=str(shot / "person.png"), full_page=True)

    # and Dora's card by presenting it at the door (the live channel; the number is
    # sealed to the console and never shown)
    page.goto(base + "/people?q=dora")
    page.click("text=Dora Holm")
    page.wait_for_selector("#enrol-capture")
    page.select_option("#enrol-capture select[name=kind]", "nfc")
    page.select_option("#enrol-capture select[name=door]", "door-a")
    before = len(door_log(door, "cmd.received"))

    def present():
        wait_until(lambda: len(door_log(door, "cmd.received")) > before, timeout=30,
                   what="the door to take the capture command")
        door.request({"op": "sim", "input": "tap", "uid": "04D0A0C0FFEE01"})
    tapper = threading.Thread(target=present)
    tapper.start()
    page.click("#enrol-capture button[type=submit]")
    page.wait_for_selector(".flash")
    tapper.join(40)
    assert "Enrolled nfc" in page.inner_text(".flash")
    assert "04D0A0C0FFEE01" not in page.content().upper()

    # publish, and follow the doors applying it
    page.goto(base + "/publish")
    page.click("#publish")
    expect(page.locator("#applied")).to_have_text(re.compile(r"^applied by 1 of 2"))
    page.screenshot(path=str(shot / "publish.png"))
    assert door.request({"op": "sim", "input": "fob", "number": "0004512345"})["decision"] \
        == "granted"

    # a sign-in code for the resident, printed at the office
    page.goto(person_url)
    page.click("text=Print a sign-in code")
    code = page.inner_text("#resident-code").strip()
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", code)

    # the resident, on a phone
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                is_mobile=True, has_touch=True)
    me = phone.new_page()
    me.set_default_timeout(30_000)
    me.goto(base + "/me")
    assert "/me/login" in me.url
    me.fill("input[name=code]", code.lower().replace("-", " "))
    me.click("button[type=submit]")
    me.wait_for_selector("#resident-pass")
    assert "Cai Wen" in me.inner_text("h1")
    me.screenshot(path=str(shot / "resident.png"), full_page=True)
    me.fill("#resident-pass input[name=label]", "Grandson Tom")
    me.fill("#resident-pass input[name=hours]", "2")
    me.fill("#resident-pass input[name=entries]", "1")
    me.click("#resident-pass button[type=submit]")
    me.wait_for_selector("#pass-qr svg")
    text = me.input_value("#pass-text")
    me.screenshot(path=str(shot / "pass.png"), full_page=True)
    phone.close()

    # the pass opens the door once
    first = door.request({"op": "sim", "input": "qr", "text": text})
    assert first.get("decision") == "granted", first
    assert door.request({"op": "sim", "input": "qr", "text": text})["decision"] == "denied"

    # a remote command to the door, confirmed first
    page.goto(base + "/doors")
    page.click("tr[data-door=door-a] form:has(input[value=sync-now]) button")
    page.click("button:has-text('Yes')")
    assert "Door door-a: done." in page.inner_text(".flash")

    # the audit trail names who did each thing
    page.goto(base + "/audit")
    audit = page.inner_text("table.audit")
    for line in ("web:alice", "import", "credential.add", "publish", "alarm.ack",
                 "resident:", "pass.issue", "remote.sync-now"):
        assert line in audit, line


def test_the_console_in_chinese(console, browser, tmp_path):
    estate, base = console
    page = browser.new_page(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"})
    page.goto(base + "/login")
    assert "员工登录" in page.inner_text("h1")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#alarms")
    assert "未处理的警报" in page.inner_text("#alarms h2")
    page.screenshot(path=str(shots(tmp_path) / "dashboard-zh.png"))
