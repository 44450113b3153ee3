"""Bundles and logs in an S3 bucket, against a real S3-protocol server (moto's
standalone server, its own process) on localhost, with uploads cut mid-body by a
TCP proxy, and every bad URL and server fault a clear message."""

import json
import os
import subprocess
import sys

import pytest

from accessd.config import load_config
from accessd.errors import ConfigError
from accessd.site import intake
from accessd.site.publish import publish
from accessd.sync.store import StoreError, open_store
from accessd.sync.upload import acked, upload
from accessd.testing import CuttingProxy, DaemonProcess, S3Server

from .test_sync import UID, Office


@pytest.fixture
def s3(monkeypatch):
    server = S3Server()
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield server
    server.stop()


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.site.close()


def s3_door(office, url, door="door-a1", timeout=15):
    config = office.door(door)
    config.write_text(config.read_text().replace(
        f'url = "{office.store.url}"', f'url = "{url}"\ntimeout_seconds = {timeout}'))
    return config


def test_put_get_list_under_the_prefix_with_etags(s3):
    store = open_store(s3.url)
    assert store.url == f"s3://accessd/site/?endpoint={s3.endpoint}"
    assert store.get("bundles/g.bundle") is None
    store.put("bundles/g.bundle", b"one")
    store.put("logs/door-a/000000000001-000000000005.ndjson.gz", b"x")
    assert s3.keys() == ["site/bundles/g.bundle",
                         "site/logs/door-a/000000000001-000000000005.ndjson.gz"]
    assert store.get("bundles/g.bundle") == b"one"
    assert store.get("bundles/g.bundle") == b"one"  # 304 Not Modified: from the cache
    before = store.versions("bundles")
    store.put("bundles/g.bundle", b"two!")
    assert store.get("bundles/g.bundle") == b"two!"
    assert store.versions("bundles") != before      # a replaced object has a new tag
    assert store.list("logs") == ["logs/door-a/000000000001-000000000005.ndjson.gz"]
    assert open_store(s3.url.replace("/site?", "/other?")).list("logs") == []


def test_publish_sync_upload_and_pull_through_the_bucket(office, s3, tmp_path):
    publish(office.site, open_store(s3.url))
    config = s3_door(office, s3.url)
    d = DaemonProcess(config, env=s3.env).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        assert d.request({"op": "status"})["whitelist"]["version"] == 1
        for _ in range(4):
            assert d.request({"op": "sim", "input": "tap", "uid": UID})["decision"] == "granted"
        again = d.request({"op": "sync"})
        assert again == {"ok": True, "result": "up to date (version 1)"}
    finally:
        d.terminate()
    res = upload(load_config(config), open_store(s3.url), batch=3)
    assert res["batches"] >= 2
    got = intake.pull(office.site, open_store(s3.url))
    assert got["door-a1"].ok
    rows = intake.show(office.site, kinds=("access.granted",))
    assert [r["person"] for r in rows] == ["Anna Berg (12A)"] * 4


def test_an_upload_cut_mid_body_is_not_acknowledged_and_resumes(office, s3):
    publish(office.site, open_store(s3.url))
    config = s3_door(office, s3.url)
    d = DaemonProcess(config, env=s3.env).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        for _ in range(40):
            d.request({"op": "sim", "input": "tap", "uid": UID})
    finally:
        d.terminate()
    proxy = CuttingProxy(s3.port)
    cut_url = s3.url.replace(str(s3.port), str(proxy.port))
    cfg = load_config(config)
    upload(cfg, open_store(cut_url), batch=20)           # everything so far is in
    first = acked(cfg.storage.data_dir)
    d = DaemonProcess(config, env=s3.env).wait_ready()
    try:
        for _ in range(300):
            d.request({"op": "sim", "input": "tap", "uid": UID})
    finally:
        d.terminate()
    proxy.cut_after = 2000                                # headers pass, the body is cut
    r = subprocess.run([sys.executable, "-m", "accessd", "upload", "--config", str(config),
                        "--store", cut_url], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **s3.env})
    assert r.returncode == 1
    assert "accessd: upload stopped: PUT s3://accessd/site/logs/door-a1/" in r.stderr
    assert "run again to resume" in r.stderr
    assert proxy.cuts >= 1
    assert acked(cfg.storage.data_dir) == first           # nothing more acknowledged
    proxy.cut_after = None
    res = upload(cfg, open_store(cut_url), batch=100)
    assert res["from_seq"] == first and res["events"] > 300
    got = intake.pull(office.site, open_store(s3.url))
    assert got["door-a1"].ok
    n = len(intake.show(office.site, kinds=("access.granted",)))
    assert n == 340
    # a second pull loads nothing twice
    again = intake.pull(office.site, open_store(s3.url))
    assert again == {} or all(v.ok for v in again.values())
    assert len(intake.show(office.site, kinds=("access.granted",))) == 340
    proxy.close()


@pytest.mark.parametrize("url,msg", [
    ("s3://", "an S3 store is s3://bucket/prefix"),
    ("s3://KEY:SECRET@bucket/p", "S3 keys do not go in the URL"),
    ("s3://bucket/p?endpont=http://x", "unknown option 'endpont'"),
    ("s3://bucket/p?endpoint=ftp://x", "endpoint must be http(s)://host[:port]"),
    ("s3://bucket/p?addressing=sideways", "addressing must be path or virtual"),
    ("s3://bucket/p?endpoint", "not name=value"),
    ("ftp://host/x", "use file:///path, https://host/path/ or s3://bucket/prefix")])
def test_bad_store_urls_say_what_is_wrong(url, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")
                       .replace("?", r"\?").replace("[", r"\[").replace("]", r"\]")):
        open_store(url)


def test_server_faults_are_clear_store_errors(s3, monkeypatch):
    with pytest.raises(StoreError, match="bucket 'nope' does not exist"):
        open_store(s3.url.replace("s3://accessd/", "s3://nope/")).put("a", b"x")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(StoreError, match="no S3 credentials"):
        open_store(s3.url).get("bundles/x")
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    s3.stop()
    with pytest.raises(StoreError, match=r"GET s3://accessd/site/bundles/x: cannot connect to"):
        open_store(s3.url, timeout=2).get("bundles/x")


def test_door_config_and_office_take_s3_urls_and_refuse_bad_ones(office, s3, tmp_path):
    config = s3_door(office, "s3://accessd/site?endpoint=ftp://x")
    r = subprocess.run([sys.executable, "-m", "accessd", "check-config", "--config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "sync.url: 's3://accessd/site?endpoint=ftp://x': endpoint must be" in r.stderr
    site = str(office.tmp / "site")
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site", site,
                        "publish", "--store", s3.url, "--json"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **s3.env})
    assert r.returncode == 0, r.stderr
    assert {g["group"] for g in json.loads(r.stdout)} == {"bldg-a", "bldg-b"}
    assert "site/bundles/bldg-a.bundle" in s3.keys()
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site", site,
                        "site", "store", "s3://k:s@accessd/site"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "S3 keys do not go in the URL" in r.stderr
