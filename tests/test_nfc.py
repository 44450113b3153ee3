"""The NFC reader through the real nfcpy stack, over nfcpy's udp RF link."""

import errno
import queue

import nfc
import pytest

from accessd.clock import SystemClock
from accessd.config import ReaderConfig
from accessd.core.events import CredentialPresented
from accessd.hw.nfc import NfcReader
from accessd.hw.nfc_emulator import CardEmulator
from accessd.testing import free_udp_port


@pytest.fixture
def nfc_rig():
    readers = []

    def make(targets=("106A",), path=None):
        path = path or f"udp:localhost:{free_udp_port()}"
        q = queue.Queue()
        r = NfcReader(ReaderConfig("front-nfc", "nfc", {"path": path, "targets": list(targets),
                                                        "retry_max_seconds": 0.2}),
                      q.put, SystemClock(), retry_initial=0.05)
        r.start()
        readers.append(r)
        return r, q, CardEmulator(path)
    yield make
    for r in readers:
        r.stop(5)


def tap(reader, card, uid, q, kind="type2", hold=1.0):
    assert reader.opened.wait(5) and reader.field_clear.wait(5)
    assert card.present(bytes.fromhex(uid), kind=kind, hold=hold)
    ev = q.get(timeout=8)
    assert isinstance(ev, CredentialPresented) and ev.kind == "nfc"
    return ev.value


@pytest.mark.parametrize("uid,kind", [
    ("01020304", "type2"),            # 4-byte UID
    ("04A1B2C3D4E5F6", "type2"),      # 7-byte NXP UID (nfcpy probes and re-selects it)
    ("08112233", "type4"),            # ISO-DEP: RATS/ATS, APDUs answered
])
def test_iso14443a_cards(nfc_rig, uid, kind):
    reader, q, card = nfc_rig()
    assert tap(reader, card, uid, q, kind) == uid
    assert reader.health()["state"] == "ok" and reader.health()["last_seen"]


def test_felica_idm(nfc_rig):
    reader, q, card = nfc_rig(targets=("212F",))
    assert tap(reader, card, "0102030405060708", q, "felica") == "0102030405060708"


def test_a_card_held_on_the_reader_counts_once(nfc_rig):
    reader, q, card = nfc_rig()
    tap(reader, card, "01020304", q, hold=2.5)       # nfcpy checks presence all along
    assert reader.field_clear.wait(5)
    assert q.empty()
    assert tap(reader, card, "01020304", q) == "01020304"   # taken away and back: again


def test_no_reader_at_the_path_is_a_fault_with_the_reason(nfc_rig):
    reader, q, _ = nfc_rig(path="tty:AMA0:pn532")
    ev = q.get(timeout=5)
    assert ev.kind == "reader.fault" and "cannot open" in ev.detail
    assert reader.health()["state"] == "fault"


def test_a_link_host_that_does_not_resolve_is_named_and_a_tap_is_refused_at_once(nfc_rig,
                                                                                mocker):
    """A root with no /etc/hosts (no 'localhost'): the fault names the host and the link,
    not a bare gaierror; a simulated tap on the faulted reader is refused at once with
    that reason (not after the 5 s a starting reader gets)."""
    from concurrent.futures import Future
    reader, q, _ = nfc_rig(path="udp:no-such-host.invalid:auto")
    ev = q.get(timeout=5)
    assert ev.kind == "reader.fault", ev
    assert "cannot resolve 'no-such-host.invalid' for the NFC link" in ev.detail
    assert "udp:no-such-host.invalid:auto" in ev.detail and "gaierror" not in ev.detail
    waited = mocker.spy(reader.opened, "wait")
    with pytest.raises(OSError) as err:
        reader.sim_present("nfc", "04A1B2C3D4E5F6", Future())
    assert waited.call_count == 0             # said at once, no waiting for it to open
    assert str(err.value).startswith("reader front-nfc is not open: cannot open: ")
    assert "cannot resolve 'no-such-host.invalid'" in str(err.value)


def test_unplug_mid_operation_then_back(nfc_rig, mocker):
    """USB gone: the driver's sense raises ENODEV (nfcpy's connect() turns that into
    False), and the device cannot be opened again until it is plugged back: faults
    the udp peer cannot produce, so they are injected."""
    reader, q, card = nfc_rig()
    assert reader.opened.wait(5)
    real_open = nfc.ContactlessFrontend.open
    gone = {"on": True}
    mocker.patch.object(nfc.ContactlessFrontend, "open",
                        lambda self, path: False if gone["on"] else real_open(self, path))
    mocker.patch.object(reader.clf.device, "sense_tta",
                        side_effect=OSError(errno.ENODEV, "No such device"))
    ev = q.get(timeout=5)
    assert ev.kind == "reader.fault" and "no NFC reader found" in ev.detail
    gone["on"] = False                               # plugged back in
    assert q.get(timeout=5).kind == "reader.recovered"
    assert tap(reader, card, "01020304", q) == "01020304"


def test_garbage_on_the_rf_link_is_survived(nfc_rig):
    """A peer answering the reader's polls with malformed datagrams: no credential,
    no crash, and the next real card is read."""
    import socket
    import threading
    import time as _time
    reader, q, card = nfc_rig()
    assert reader.opened.wait(5)
    port = int(card.path.rsplit(":", 1)[1])
    rogue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rogue.bind(("0.0.0.0", port))
    rogue.settimeout(0.2)
    answered = []

    def babble():
        end = _time.monotonic() + 2.5
        while _time.monotonic() < end:
            try:
                data, addr = rogue.recvfrom(1024)
            except socket.timeout:
                continue
            for junk in (b"106A zz", b"106A 4400", b"\xff\xfe", b"106A 88aabbcc00"):
                rogue.sendto(junk, addr)
            answered.append(data)
    t = threading.Thread(target=babble)
    t.start()
    t.join()
    rogue.close()
    assert answered, "the reader never polled"
    notices = []
    while not q.empty():
        notices.append(q.get())
    assert notices and all(n.kind == "reader.bad_frame" for n in notices), notices
    assert reader.health()["state"] == "ok" and reader.health()["bad_frames"] >= 1
    assert tap(reader, card, "01020304", q) == "01020304"


def test_two_simulated_doors_on_one_machine_each_have_their_own_rf_link(tmp_path):
    """config/sim.toml's reader is udp:localhost:auto: each door takes a free port at
    start (status shows it), so a card held at one door is never read by the other
    (with one fixed port, a tap aimed at one was granted at the other)."""
    import shutil
    from importlib.resources import files

    from accessd.config import load_config
    from accessd.storage.keys import generate, load_key_file, write_key_file
    from accessd.storage.whitelist_admin import WhitelistAdmin
    from accessd.testing import DaemonProcess
    doors = {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(str(files("accessd") / "share/config/sim.toml"), d / "accessd.toml")
        cfg = load_config(d / "accessd.toml", require_keys=False)
        write_key_file(cfg.storage.key_file, generate())
        cfg.storage.data_dir.mkdir(parents=True)
        admin = WhitelistAdmin(cfg.storage.whitelist_path, load_key_file(cfg.storage.key_file))
        if name == "a":
            admin.enroll("nfc", "04A1B2C3", "anna")
        admin.close()
        doors[name] = DaemonProcess(d / "accessd.toml").wait_ready(30)
    try:
        links = {n: next(r["path"] for r in p.request({"op": "status"})["readers"]
                         if r["name"] == "front-nfc") for n, p in doors.items()}
        assert links["a"] != links["b"] and all(v.startswith("udp:localhost:")
                                                for v in links.values())
        from .helpers import wait_until
        for p in doors.values():     # READY comes before an NFC reader has opened its link
            wait_until(lambda p=p: all(r["state"] == "ok" for r in p.request(
                {"op": "status"})["readers"] if r["name"] == "front-nfc"), timeout=60,
                what="the NFC reader to open")
        for _ in range(3):
            got = doors["b"].request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})
            assert got.get("decision") == "denied", got   # b does not hold the card
        assert doors["a"].request({"op": "sim", "input": "tap",
                                   "uid": "04A1B2C3"})["decision"] == "granted"
        granted = [e for e in doors["a"].events() if e["kind"] == "access.granted"]
        assert len(granted) == 1                         # none of b's taps reached a
    finally:
        for p in doors.values():
            p.terminate()
