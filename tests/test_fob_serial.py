"""The 125 kHz serial fob reader through pyserial on a real pseudo-terminal."""

import os
import queue
import tty

import pytest

from .helpers import wait_until

from accessd.clock import FakeClock
from accessd.config import ReaderConfig
from accessd.core.events import CredentialPresented, ReaderNotice
from accessd.hw.fob_serial import FobSerialReader
from accessd.protocols.em4100 import frame_rdm6300


class Pty:
    """A serial 'device' at a fixed path that can be unplugged and plugged back."""

    def __init__(self, link):
        self.link = link
        self.plug()

    def plug(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if os.path.lexists(self.link):
            os.unlink(self.link)
        os.symlink(os.ttyname(self.slave), self.link)

    def write(self, data: bytes):
        os.write(self.master, data)

    def unplug(self):
        os.unlink(self.link)
        os.close(self.master)
        os.close(self.slave)
        self.master = None

    def close(self):
        if self.master is not None:
            self.unplug()


def events(q, n=1, timeout=5):
    return [q.get(timeout=timeout) for _ in range(n)]


@pytest.fixture
def rig(tmp_path):
    dev = Pty(str(tmp_path / "ttyFOB"))
    q, clock = queue.Queue(), FakeClock()

    def make(fmt="rdm6300"):
        cfg = ReaderConfig("door-fob", "em4100-serial",
                           {"port": dev.link, "baudrate": 9600, "format": fmt, "hold_ms": 600,
                            "retry_max_seconds": 0.05})
        r = FobSerialReader(cfg, q.put, clock, retry_initial=0.01)
        r.start()
        assert r.opened.wait(5)
        readers.append(r)
        return r
    readers = []
    yield make, dev, q, clock
    for r in readers:
        r.stop()
    dev.close()


def test_frame_becomes_one_credential_while_the_fob_is_held(rig):
    make, dev, q, clock = rig
    reader = make()
    for _ in range(5):                       # the reader repeats the frame while held
        dev.write(frame_rdm6300(0x00C0FFEE, 0x0A))
    ev = q.get(timeout=5)
    assert ev == CredentialPresented("door-fob", "fob", "em40:0A00C0FFEE", None, ev.t_queued)
    clock.advance(1.0)                       # taken away and presented again
    dev.write(frame_rdm6300(0x00C0FFEE, 0x0A))
    assert q.get(timeout=5).value == "em40:0A00C0FFEE"
    assert q.empty()
    assert reader.health()["last_seen"] == clock.wall()


def test_bad_frames_are_reported_not_granted_and_reading_goes_on(rig):
    make, dev, q, clock = rig
    reader = make()
    dev.write(b"\x02" + b"0A00C0FFEE" + b"DC" + b"\x03")       # wrong checksum
    ev = q.get(timeout=5)
    assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame"
    assert "checksum mismatch" in ev.detail
    dev.write(b"\x02" + b"zz" * 6 + b"\x03")                  # counted, notice rate-limited
    wait_until(lambda: reader.health()["bad_frames"] == 2, what="the second bad frame")
    assert q.empty()
    clock.advance(2)
    dev.write(b"\x02" + b"0A00" + frame_rdm6300(5))           # cut short, then a good one
    notice, cred = events(q, 2)
    assert notice.kind == "reader.bad_frame" and "2 bad frames since the last notice" in notice.detail
    assert cred.value == "em40:0000000005"
    assert reader.health()["bad_frames"] == 3


def test_ascii_decimal_format(rig):
    make, dev, q, clock = rig
    make("ascii-decimal")
    dev.write(b"0012648430\r\n")
    assert q.get(timeout=5).value == "em32:00C0FFEE"


def test_unplug_is_a_fault_and_replug_recovers_without_restart(rig):
    make, dev, q, clock = rig
    reader = make()
    dev.unplug()
    fault = q.get(timeout=5)
    assert fault.kind == "reader.fault" and reader.health()["state"] == "fault"
    dev.plug()
    recovered = q.get(timeout=5)
    assert recovered.kind == "reader.recovered" and "back after" in recovered.detail
    assert reader.opened.wait(5)
    dev.write(frame_rdm6300(77))
    assert q.get(timeout=5).value == "em40:000000004D"
    assert reader.health()["state"] == "ok" and reader.health()["faults"] >= 1


def test_missing_port_at_start_is_a_fault_with_the_reason(tmp_path):
    q = queue.Queue()
    cfg = ReaderConfig("door-fob", "em4100-serial",
                       {"port": str(tmp_path / "nope"), "baudrate": 9600, "format": "rdm6300",
                        "hold_ms": 600, "retry_max_seconds": 0.05})
    r = FobSerialReader(cfg, q.put, FakeClock(), retry_initial=0.01)
    r.start()
    try:
        ev = q.get(timeout=5)
        assert ev.kind == "reader.fault" and "cannot open" in ev.detail and "nope" in ev.detail
    finally:
        r.stop()
