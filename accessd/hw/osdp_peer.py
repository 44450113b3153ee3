"""A simulated OSDP reader: libosdp's own peripheral device (PD) on one end of a
pseudo-terminal pair, the door's control panel on the other.

Used by the tests, `scripts/bench` and simulated doors (`port = "sim"`). It is a
real OSDP peer: framing, CRC, polling, the secure channel, install mode and KEYSET
are all libosdp's. Like a real reader it keeps the key the door sets (here in
memory: `scbk`), reports cards, keys and tamper when told to, records the LED and
buzzer commands it receives, and can be silenced (a cut cable) or made to put a
corrupt frame on the line.
"""

from __future__ import annotations

import errno
import os
import threading
import tty

import osdp

from ..protocols.osdp import CARD_FMT_RAW, CARD_FMT_WIEGAND, SOM, crc16, key_code, pack_bits


class _FdChannel(osdp.Channel):
    def __init__(self, fd: int, peer):
        super().__init__()
        self.fd = fd
        self.peer = peer
        os.set_blocking(fd, False)

    def read(self, max_bytes: int) -> bytes:
        if self.peer.silent.is_set():
            return b""
        try:
            return os.read(self.fd, max_bytes)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise

    def write(self, buf: bytes) -> int:
        if self.peer.silent.is_set():
            return len(buf)  # the cable is cut: the bytes go nowhere
        if self.peer.mangle_mac.is_set():
            buf = self.peer.mangled(buf)
        try:
            return os.write(self.fd, buf)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return 0
            raise

    def flush(self) -> None:
        pass


class OsdpPeer:
    """One simulated reader at `address`. `scbk=None`: factory-fresh, in install mode
    (accepts one session under the default key, in which the door sets its key)."""

    def __init__(self, address: int = 0, scbk: bytes | None = None):
        self.address = address
        self.scbk = scbk
        self.silent = threading.Event()
        self.mangle_mac = threading.Event()   # corrupt the next reply's MAC
        self._cond = threading.Condition()
        self.commands: list[dict] = []
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)  # the door's end (a pyserial port name)
        self._pd: osdp.PeripheralDevice | None = None

    def start(self) -> "OsdpPeer":
        flags = [] if self.scbk is not None else [osdp.LibFlag.InstallMode]
        info = osdp.PDInfo(self.address, _FdChannel(self._master, self), scbk=self.scbk,
                           flags=flags, name=f"sim-{self.address}")
        caps = osdp.PDCapabilities([
            (osdp.Capability.CommunicationSecurity, 1, 1),
            (osdp.Capability.CardDataFormat, 1, 1),
            (osdp.Capability.LEDControl, 1, 1),
            (osdp.Capability.AudibleControl, 1, 1),
            (osdp.Capability.Readers, 1, 1),
        ])
        self._pd = osdp.PeripheralDevice(info, caps, log_level=osdp.LogLevel.Error,
                                         command_handler=self._command)
        # refreshed here every 2 ms, as a reader's firmware answers a poll within a few
        # ms (the wrapper's own thread sleeps 20 ms between refreshes)
        self._pd.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"osdp-peer-{self.address}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        pd = self._pd
        while not self._stop.is_set():
            with pd.lock:
                pd.ctx.refresh()
            self._stop.wait(0.002)

    def _command(self, cmd: dict):
        with self._cond:
            if cmd.get("command") == osdp.Command.Keyset:
                self.scbk = bytes(cmd["data"])  # a real reader stores it in flash
            self.commands.append(dict(cmd))
            self._cond.notify_all()
        return 0, None

    # ---- what the reader reports ----------------------------------------------
    def card_uid(self, uid: bytes) -> None:
        self._event({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                     "format": CARD_FMT_RAW, "length": len(uid) * 8, "data": uid})

    def card_bits(self, bits: list[int], wiegand_format: bool = True) -> None:
        self._event({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                     "format": CARD_FMT_WIEGAND if wiegand_format else CARD_FMT_RAW,
                     "length": len(bits), "data": pack_bits(bits)})

    def keys(self, keys: str) -> None:
        self._event({"event": osdp.Event.KeyPress, "reader_no": 0,
                     "data": bytes(key_code(k) for k in keys)})

    def keypad_bytes(self, data: bytes) -> None:
        self._event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": data})

    def tamper(self, on: bool) -> None:
        """The reader's case switch (local status: tamper, power)."""
        self._event({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                     "report": bytes([1 if on else 0, 0])})

    def _event(self, event: dict) -> None:
        if self._pd is None or self._pd.submit_event(event) is False:
            raise OSError("the simulated OSDP reader did not take the event")

    # ---- faults -----------------------------------------------------------------
    def corrupt_frame(self) -> None:
        """Put a reply frame with a wrong CRC on the line (a burst of noise)."""
        os.write(self._master, bytes([SOM, 0x80 | self.address, 8, 0, 0x04, 0x40, 0xDE, 0xAD]))

    def corrupt_mac(self) -> None:
        """The next secure-channel reply goes out with one MAC byte wrong (and a CRC
        that fits it): as if altered on the bus. The door must drop the session."""
        self.mangle_mac.set()

    def mangled(self, buf: bytes) -> bytes:
        at = buf.find(bytes([SOM]))
        if at < 0 or len(buf) - at < 12 or not buf[at + 4] & 0x08 or not buf[at + 4] & 0x04:
            return buf               # not a secure-channel frame with a CRC: as it is
        frame = bytearray(buf[at:])
        frame[-3] ^= 0x01            # the last MAC byte (the 4 MAC bytes precede the CRC)
        crc = crc16(bytes(frame[:-2]))
        frame[-2:] = bytes([crc & 0xFF, crc >> 8])
        self.mangle_mac.clear()
        return buf[:at] + bytes(frame)

    # ---- for tests and the sim --------------------------------------------------
    def wait_command(self, pred, timeout: float = 5.0) -> dict | None:
        """The first command received so far (or within `timeout`) that `pred` likes."""
        def first():
            return next((c for c in self.commands if pred(c)), None)
        with self._cond:
            self._cond.wait_for(lambda: first() is not None, timeout)
            return first()

    def is_sc_active(self) -> bool:
        return bool(self._pd and self._pd.is_sc_active())

    def stop(self) -> None:
        if self._pd is not None:
            self._stop.set()
            self._thread.join(2)
            self._pd = None
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
