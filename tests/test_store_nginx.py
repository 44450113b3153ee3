"""The store on a real nginx (Debian's, with its WebDAV modules), as a site deploys it,
with a proxy in front that shortens, cuts, stalls and replaces its answers: what
the office publishes reaches every door, whatever a cache, a network or an
on-path attacker does to one response, and whatever validator the server gives."""

import json
import os
import urllib.request

import pytest

from accessd.site.publish import publish
from accessd.sync.store import HttpStore
from accessd.testing import DaemonProcess
from accessd.testing_nginx import FaultProxy, Nginx

from .helpers import setup_site
from .test_sync import UID, Office, events

BUNDLE = "bundles/bldg-a.bundle"


@pytest.fixture
def nginx(tmp_path):
    n = Nginx(tmp_path / "nginx", tmp_path / "www")
    yield n
    n.stop()


@pytest.fixture
def office(tmp_path, nginx):
    o = Office(tmp_path)
    o.store = HttpStore(nginx.url)    # the office publishes through nginx (PUT, MKCOL)
    yield o
    o.site.close()


@pytest.fixture
def proxy(nginx):
    p = FaultProxy(nginx.port)
    yield p
    p.close()


def door_at(office, url, door="door-a1", timeout=15):
    config = office.door(door)
    config.write_text(config.read_text().replace(
        f'url = "{office.store.url}"', f'url = "{url}"\ntimeout_seconds = {timeout}'))
    return DaemonProcess(config).wait_ready()


def etag(url, name):
    with urllib.request.urlopen(urllib.request.Request(url + name, method="HEAD")) as r:
        return r.headers["ETag"]


def tap(d):
    return d.request({"op": "sim", "input": "tap", "uid": UID})


def test_a_revocation_published_in_the_same_second_with_the_same_etag_is_applied(
        office, nginx):
    """nginx's ETag is the second and the size: a revocation published in the same
    second as the bundle before, of the same size, has the same ETag. The door learns
    of it from the signed index all the same (it once got 304 and kept granting)."""
    publish(office.site, office.store)
    d = door_at(office, nginx.url)
    try:
        assert d.request({"op": "sync"})["ok"]
        assert tap(d)["decision"] == "granted"
        path = nginx.root / BUNDLE
        first = path.stat()
        office.site.credential_status(office.card["id"], "lost")
        for _ in range(20):      # a bundle of the very same size (its times vary in length)
            publish(office.site, office.store)
            if path.stat().st_size == first.st_size:
                break
        os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns))   # the same second
        version = office.site.next_bundle_version() - 1
        before = etag(nginx.url, BUNDLE)
        r = d.request({"op": "sync"})
        assert r["ok"] and r["result"].startswith(f"applied version {version}"), r
        assert etag(nginx.url, BUNDLE) == before     # nginx served one validator for both
        assert tap(d)["reason"] == "denied: credential reported lost"
    finally:
        d.terminate()


def test_one_short_answer_does_not_poison_the_next_syncs(office, nginx, proxy):
    """A well-formed 200 a hundred bytes short (Content-Length matching) fails that
    sync, with the reason; the next sync fetches the whole bundle again (it once
    cached the bad body and answered 'truncated bundle' until the next publish)."""
    publish(office.site, office.store)
    d = door_at(office, proxy.url)
    try:
        d.request({"op": "sync"})            # (the start-up sync may have applied it)
        office.site.credential_status(office.card["id"], "lost")
        publish(office.site, office.store)
        proxy.shorten(BUNDLE, 100)
        r = d.request({"op": "sync"})
        assert not r["ok"] and "its signed index says" in r["result"], r
        assert proxy.pending() == 0
        assert tap(d)["decision"] == "granted"        # the old whitelist meanwhile
        r = d.request({"op": "sync"})
        assert r["ok"] and r["result"].startswith("applied version 2"), r
        assert tap(d)["reason"] == "denied: credential reported lost"
        gets = [h for m, p, h in proxy.requests if m == "GET"]
        assert all("if-none-match" not in h for h in gets)
        assert all(h.get("cache-control") == "no-cache" for h in gets)
    finally:
        d.terminate()
    failed = [e["reason"] for e in events(d.config, "sync.failed")]
    assert any("cut short, or replaced on the way" in f for f in failed)


def test_an_on_path_attacker_cannot_pin_an_older_bundle(office, nginx, proxy):
    """Serving the older (validly signed) bundle under the newer one's name and ETag:
    refused against the signed index, and the next honest answer is applied (it once
    was cached under the new ETag, and the door said 'up to date')."""
    publish(office.site, office.store)
    v1 = (nginx.root / BUNDLE).read_bytes()
    d = door_at(office, proxy.url)
    try:
        d.request({"op": "sync"})
        office.site.credential_status(office.card["id"], "lost")
        publish(office.site, office.store)
        proxy.serve(BUNDLE, v1)
        r = d.request({"op": "sync"})
        assert not r["ok"] and ("does not match its signed index" in r["result"]
                                or "its signed index says" in r["result"]), r
        assert d.request({"op": "status"})["whitelist"]["version"] == 1
        r = d.request({"op": "sync"})
        assert r["ok"] and r["result"].startswith("applied version 2"), r
        st = d.request({"op": "status"})
        assert st["sync"]["store_version"] == 2 and st["whitelist"]["version"] == 2
    finally:
        d.terminate()


def test_a_cut_or_stalled_store_fails_that_sync_only(office, nginx, proxy):
    publish(office.site, office.store)
    d = door_at(office, proxy.url, timeout=1)
    try:
        d.request({"op": "sync"})
        office.site.credential_status(office.card["id"], "lost")
        publish(office.site, office.store)
        proxy.cut(BUNDLE, 3000)                       # the connection drops mid-body
        r = d.request({"op": "sync"})
        assert not r["ok"] and "store unavailable" in r["result"], r
        proxy.stall("bundles/bldg-a.index")           # the store hangs on the index
        r = d.request({"op": "sync"})
        assert not r["ok"] and "no answer within 1 s" in r["result"], r
        proxy.release()
        r = d.request({"op": "sync"})
        assert r["ok"] and r["result"].startswith("applied version 2"), r
    finally:
        d.terminate()


def test_the_office_keeps_the_stores_password_out_of_the_database(tmp_path):
    """nginx with Basic auth: 'site store' with user:password@ keeps them in the keys
    directory (0600), so a plain publish and logs pull still log in (the password was
    once dropped: every later publish got 401); nothing prints or stores them."""
    web = Nginx(tmp_path / "nginx", tmp_path / "www", users={"office": "s3cret-pw"})
    site = tmp_path / "site"
    try:
        setup_site(site, "site", "init", "riverside")
        setup_site(site, "group", "add", "bldg-a")
        setup_site(site, "door", "add", "door-a1", "--group", "bldg-a")
        url = f"http://office:s3cret-pw@127.0.0.1:{web.port}/"
        said = setup_site(site, "site", "store", url)
        said += setup_site(site, "publish")
        said += setup_site(site, "logs", "pull")
        said += setup_site(site, "site", "show", "--json")
        assert json.loads(setup_site(site, "site", "show", "--json"))["store"] == web.url
        assert (tmp_path / "www" / BUNDLE).exists()
        assert "s3cret-pw" not in said
        assert b"s3cret-pw" not in (site / "site.db").read_bytes()
        creds = site / "keys" / "store-credentials.json"
        assert b"s3cret-pw" in creds.read_bytes() and creds.stat().st_mode & 0o777 == 0o600
        # without the password, the server's refusal says what to do
        creds.unlink()
        from click.testing import CliRunner

        from accessd.cli import accessctl
        r = CliRunner().invoke(accessctl.main, ["--site", str(site), "publish"])
        assert r.exit_code == 1 and "server answered 401: it wants a user and password" in \
            r.output
    finally:
        web.stop()


def test_a_postgresql_site_publishes_only_to_the_store_every_terminal_shares(
        tmp_path, postgres, nginx):
    """Two terminals of one PostgreSQL site: with no store set, publish is refused
    (each once published to its own file://SITE/store, which no door reads); once a
    terminal sets it, the other publishes there too."""
    import shutil

    from click.testing import CliRunner

    from accessd.cli import accessctl
    db = postgres.database()
    one, two = tmp_path / "one", tmp_path / "two"

    def ctl(where, *args):
        return CliRunner().invoke(accessctl.main, ["--site", db, "--site-dir", str(where),
                                                   *args])
    assert ctl(one, "site", "init", "riverside").exit_code == 0
    shutil.copytree(one / "keys", two / "keys")
    assert ctl(one, "group", "add", "bldg-a").exit_code == 0
    assert ctl(one, "door", "add", "door-a1", "--group", "bldg-a").exit_code == 0
    r = ctl(two, "publish")
    assert r.exit_code == 1 and "this site has no store yet" in r.output
    assert not (two / "store").exists() and not (one / "store").exists()
    assert "none yet" in ctl(two, "site", "show").output
    assert ctl(one, "site", "store", nginx.url).exit_code == 0
    r = ctl(two, "publish")
    assert r.exit_code == 0, r.output
    assert f"published to {nginx.url}" in r.output
    assert (nginx.root / BUNDLE).exists() and (nginx.root / "bundles/bldg-a.index").exists()
