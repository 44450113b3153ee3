"""Bundles and logs over HTTP, against a real WebDAV server (WsgiDAV), with faults."""

import json

import pytest

from accessd.config import load_config
from accessd.site import intake
from accessd.site.publish import publish
from accessd.sync.store import HttpStore, StoreError
from accessd.sync.upload import acked, upload
from accessd.testing import DaemonProcess, DavServer

from .test_sync import UID, Office, events


@pytest.fixture
def dav(tmp_path):
    s = DavServer(tmp_path / "www")
    yield s
    s.stop()


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.site.close()


def http_door(office, dav, door="door-a1", timeout=15):
    config = office.door(door)
    text = config.read_text().replace(f'url = "{office.store.url}"',
                                      f'url = "{dav.url}"\ntimeout_seconds = {timeout}')
    config.write_text(text)
    return config


def test_store_put_get_and_list(dav):
    store = HttpStore(dav.url)
    assert store.get("bundles/g.bundle") is None
    store.put("bundles/g.bundle", b"one")
    store.put("logs/door-a/000000000001-000000000005.ndjson.gz", b"x")
    assert store.get("bundles/g.bundle") == b"one"
    assert store.get("bundles/g.bundle") == b"one"     # the whole object again: no 304
    assert dav.requests[-1] == ("GET", "/bundles/g.bundle", 200)
    store.put("bundles/g.bundle", b"two!")
    assert store.get("bundles/g.bundle") == b"two!"
    assert store.list("logs") == ["logs/door-a/000000000001-000000000005.ndjson.gz"]


def test_publish_pull_upload_and_intake_over_http(office, dav):
    store = HttpStore(dav.url)
    publish(office.site, store)
    config = http_door(office, dav)
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        assert d.request({"op": "status"})["whitelist"]["version"] == 1
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["decision"] == "granted"
    finally:
        d.terminate()
    res = upload(load_config(config), HttpStore(dav.url), batch=3)
    assert res["batches"] >= 2
    got = intake.pull(office.site, HttpStore(dav.url))
    assert got["door-a1"].ok
    rows = intake.show(office.site, kinds=("access.granted",))
    assert [r["person"] for r in rows] == ["Anna Berg (12A)"]


def test_server_errors_and_timeouts_keep_the_old_whitelist(office, dav):
    store = HttpStore(dav.url)
    publish(office.site, store)
    config = http_door(office, dav, timeout=1)
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        dav.fail = 500
        r = d.request({"op": "sync"})
        assert not r["ok"] and "server answered 500" in r["result"]
        dav.fail, dav.delay = None, 2.5
        r = d.request({"op": "sync"})
        assert not r["ok"] and "no answer within 1 s" in r["result"]
        dav.delay = 0
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["decision"] == "granted"
        assert d.request({"op": "sync"})["ok"]
    finally:
        d.terminate()
    failed = [e["reason"] for e in events(config, "sync.failed")]
    assert len(failed) == 2 and "500" in failed[0]


def test_upload_interrupted_by_the_server_resumes(office, dav, tmp_path):
    config = office.door()
    d = DaemonProcess(config).wait_ready()
    for _ in range(20):
        d.request({"op": "sim", "input": "tap", "uid": UID})
    d.terminate()
    cfg = load_config(config)
    dav.fail_after = 7                     # a couple of batches go through, then 500s
    with pytest.raises(StoreError, match="server answered 500"):
        upload(cfg, HttpStore(dav.url), batch=5)
    part = acked(cfg.storage.data_dir)
    assert 0 < part < 20
    dav.fail = None
    done = upload(cfg, HttpStore(dav.url), batch=5)
    assert done["acked_seq"] > part
    got = intake.pull(office.site, HttpStore(dav.url))["door-a1"]
    assert got.ok and got.added == done["acked_seq"]


def test_password_in_the_url_is_sent_and_never_printed(tmp_path):
    from accessd.testing import write_sim_config
    store = HttpStore("https://staff:s3cret@files.example/accessd")
    assert store.url == "https://files.example/accessd/" and store._auth.startswith("Basic ")
    config = write_sim_config(tmp_path / "d")
    config.write_text(config.read_text() + '\n[sync]\nurl = "https://staff:s3cret@files.example/a/"\n')
    eff = json.dumps(load_config(config).as_dict())
    assert "s3cret" not in eff and "staff:<redacted>@files.example" in eff
