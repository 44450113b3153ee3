"""The door's sync path against hostile bundles and broken servers.

Whatever the bytes or the server do, the door gets a BundleError or a StoreError
with a reason, logs sync.rejected or sync.failed, and its sync worker carries on.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as st

from accessd.clock import FakeClock
from accessd.config import load_config
from accessd.core.events import Notice, SwapWhitelist
from accessd.storage.keys import load_key_file
from accessd.sync import bundle
from accessd.sync.door import SyncWorker
from accessd.sync.store import HttpStore, StoreError

from .test_sync import Office

SIGNER = Ed25519PrivateKey.generate()
GROUP_KEY = bytes(32)


def signed_blob(header_bytes: bytes, payload: bytes, key=SIGNER) -> bytes:
    body = bundle.MAGIC + len(header_bytes).to_bytes(4, "big") + header_bytes + payload
    return body + key.sign(body)


def good_header(**over) -> dict:
    h = {"site": "s", "group": "g", "doors": ["d1"], "version": 5, "issued": 1.79e9,
         "expires": 1.8e9, "count": 0, "nonce": "00" * 12, "sha256": "00" * 32, "length": 32}
    h.update(over)
    return h


def open_it(blob: bytes):
    return bundle.open_(blob, public_key=SIGNER.public_key(), group_key=GROUP_KEY, site="s",
                        door="d1", current_version=1, now=1.79e9)


@pytest.mark.parametrize("raw, message", [
    (b'"x"', "field 'length' must be an integer, not str"),
    (b"[1]", "field 'length' must be an integer, not list"),
    (b"1e400", "field 'length' must be an integer, not float"),
    (b"true", "field 'length' must be an integer, not bool"),
    (b"-20", "field 'length' is out of range (-20)"),
    (b"NaN", "bundle header is not valid JSON"),
])
def test_a_bundle_length_that_is_not_a_byte_count_is_named(raw, message):
    hb = json.dumps(good_header(length=0)).encode().replace(b'"length": 0', b'"length": ' + raw)
    with pytest.raises(bundle.BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bundle.peek(signed_blob(hb, bytes(32)))


@pytest.mark.parametrize("field, value, message", [
    ("doors", "d1", "'doors' must be a list of door ids"),
    ("version", "7", "'version' must be an integer"),
    ("version", 2 ** 70, "'version' is out of range"),
    ("expires", None, "'expires' must be a finite number"),
    ("nonce", "zz", "'nonce' must be 12 bytes in hex"),
    ("site", 3, "'site' must be a string"),
])
def test_signed_header_fields_are_checked_one_by_one(field, value, message):
    hb = json.dumps(good_header(**{field: value})).encode()
    with pytest.raises(bundle.BundleError, match=message):
        open_it(signed_blob(hb, bytes(32)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(good_header())), value=json_values,
       payload=st.binary(max_size=64))
def test_fuzz_signed_headers_only_ever_give_a_bundle_error(field, value, payload):
    """Signed by the site key, so every field check after the signature is reached."""
    hb = json.dumps(good_header(**{field: value, "length": len(payload)})
                    if field != "length" else good_header(length=value)).encode()
    try:
        open_it(signed_blob(hb, payload))
    except bundle.BundleError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=400))
def test_fuzz_raw_bytes_only_ever_give_a_bundle_error(data, cut):
    good = signed_blob(json.dumps(good_header()).encode(), bytes(32))
    for blob in (data, bundle.MAGIC + data, good[:cut] + data, good[:cut]):
        try:
            open_it(blob)
        except bundle.BundleError:
            pass


class BrokenHttpServer:
    """A TCP server on 127.0.0.1 that answers every request with the bytes it is
    given, then (stall=True) holds the connection open without sending more."""

    def __init__(self, answer: bytes, stall: bool = False):
        self.answer, self.stall = answer, stall
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.answer)
                if self.stall:
                    self.release.wait(10)

    def close(self):
        self.release.set()
        self.sock.close()


CASES = {
    "cut body": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"A" * 10,
                 "the body was cut short (10 bytes, 990 more expected)"),
    "garbage status": (b"HELLO THERE\r\n\r\n", "not a valid HTTP answer"),
    "header line too long": (b"HTTP/1.1 200 OK\r\nX-Junk: " + b"j" * 70000 + b"\r\n\r\n",
                             "not a valid HTTP answer"),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 150 + b"\r\n",
                         "not a valid HTTP answer"),
    "closed at once": (b"", "not a valid HTTP answer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_server_is_a_store_error(case):
    answer, message = CASES[case]
    srv = BrokenHttpServer(answer)
    try:
        with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
            HttpStore(srv.url, timeout=5).get("bundles/g.bundle")
    finally:
        srv.close()


def test_a_body_that_stops_coming_is_a_store_error():
    srv = BrokenHttpServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"A" * 10,
                           stall=True)
    try:
        with pytest.raises(StoreError, match=r"no answer within 0.3 s"):
            HttpStore(srv.url, timeout=0.3).get("bundles/g.bundle")
    finally:
        srv.close()


@pytest.fixture
def office_door(tmp_path):
    o = Office(tmp_path)
    o.publish()
    config = o.door()
    cfg = load_config(config)
    cfg.storage.data_dir.mkdir(parents=True)
    yield o, cfg
    o.site.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_sync_worker_logs_a_broken_server_and_keeps_going(office_door, case):
    office, cfg = office_door
    srv = BrokenHttpServer(CASES[case][0])
    cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, url=srv.url))
    posted = []
    worker = SyncWorker(cfg, load_key_file(cfg.storage.key_file), posted.append,
                        FakeClock(wall=time.time()))
    worker.start()
    try:
        for _ in range(2):                              # and again: the worker is still there
            res = worker.request().result(20)
            assert not res["ok"] and res["result"].startswith("store unavailable: GET ")
        assert worker.alive()
        kinds = [p.kind for p in posted if isinstance(p, Notice)]   # the start-up run too
        assert len(kinds) >= 2 and set(kinds) == {"sync.failed"}
    finally:
        worker.stop()
        srv.close()


def test_an_unexpected_error_in_the_sync_worker_is_logged_and_survived(office_door, mocker):
    office, cfg = office_door
    posted = []

    def post(item):  # stands in for the core: installs whatever it is handed
        posted.append(item)
        if isinstance(item, SwapWhitelist):
            item.reply.set_result({"ok": True, "version": item.version, "credentials": 1})
    worker = SyncWorker(cfg, load_key_file(cfg.storage.key_file), post,
                        FakeClock(wall=time.time()))
    mocker.patch.object(bundle, "open_", side_effect=RuntimeError("a bug"))  # a fault no peer makes
    worker.start()
    try:
        res = worker.request().result(20)
        assert res == {"ok": False, "result": "internal error: RuntimeError: a bug"}
        assert posted[-1].kind == "sync.failed" and "RuntimeError: a bug" in posted[-1].reason
        assert worker.alive()
        mocker.stopall()
        assert worker.request().result(20) == {"ok": True,
                                               "result": "applied version 1 (1 credentials)"}
    finally:
        worker.stop()
