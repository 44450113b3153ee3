"""OSDP readers on RS-485, through the libosdp Python package (as control panel).

Hardware: an OSDP reader (HID Signo, Idesco, STid, Wiegand-to-OSDP converters...)
on a two-wire RS-485 bus: a USB RS-485 adapter (`port = "/dev/ttyUSB0"`), or an
RS-485 HAT on the Pi's UART (`/dev/serial0`; set `rs485_rts = true` if the HAT
switches its driver with RTS). 115200 8N1 by default; one reader per port, at
its OSDP address (0-126). `port = "sim"`: a simulated reader (hw/osdp_peer.py,
libosdp's own peripheral device) on a pseudo-terminal, for simulated doors.

What the door gets: card reports and keypad keys become the same events as the
other readers give (protocols/osdp.py says how each report reads); grant and
deny drive the reader's LED and beeper (`indicate`); a reader that stops
answering, loses its secure channel or reports its case open is a reader.fault
until it is back; a frame with a bad CRC is a reader.bad_frame.

Secure channel only. Each reader has its own key (SCBK), made by the door and
kept sealed in `reader-keys.db` (storage/reader_keys.py). A reader fresh from the
factory is in install mode: set `install_mode = true` for its first start and
the door hands it its key under the install-mode default key (libosdp's KEYSET),
then talks to it in the secure channel only. Without install_mode the control
panel runs with libosdp's ENFORCE_SECURE: no default key, no plain-text session;
a reader that cannot prove the key is never read.
"""

from __future__ import annotations

import logging
import queue
import threading

import osdp
import serial
import serial.rs485

from ..core.credentials import parse_fob
from ..protocols import osdp as proto
from ..protocols.wiegand import frame_for
from .readers import Reader

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.005     # how often libosdp's state machine runs (it polls at 50 ms)
ONLINE_TIMEOUT = 10.0       # a reader that is not in the secure channel by then is a fault
SILENT_SECONDS = 2.0        # no reply to 40 polls: the reader is gone (libosdp waits 8 s)
GRANT_TENTHS = 20           # LED on for 2 s on a grant, 100 ms units
DENY_TENTHS = 10


class SerialChannel(osdp.Channel):
    """libosdp's channel over a pyserial port; inbound bytes also go through the
    frame checker (bad CRCs become bad-frame records)."""

    def __init__(self, ser: serial.Serial, on_bad, clock):
        super().__init__()
        self.ser = ser
        self.checker = proto.FrameChecker()
        self.on_bad = on_bad
        self.clock = clock
        self.last_rx = clock.monotonic()

    def read(self, max_bytes: int) -> bytes:
        waiting = self.ser.in_waiting
        if not waiting:
            return b""
        data = self.ser.read(min(max_bytes, waiting))
        self.last_rx = self.clock.monotonic()
        for reason in self.checker.feed(data):
            self.on_bad(reason)
        return data

    def write(self, buf: bytes) -> int:
        return self.ser.write(buf) or 0

    def flush(self) -> None:
        """libosdp drops stale input before it sends; it is checked on its way out."""
        waiting = self.ser.in_waiting
        if waiting:
            for reason in self.checker.feed(self.ser.read(waiting)):
                self.on_bad(reason)
        self.checker = proto.FrameChecker()


class OsdpReader(Reader):
    kind = "osdp"
    healthy_when_open = False  # healthy once in the secure channel

    def __init__(self, *args, reader_keys=None, **kw):
        super().__init__(*args, **kw)
        self.keys = reader_keys  # storage.reader_keys.ReaderKeys
        self.address = self.options["address"]
        self.raw_lengths = tuple(self.options["raw_bits"])
        self._ser: serial.Serial | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.peer = None
        self.port = self.options["port"]
        self._secured = threading.Event()  # in the secure channel now
        self._tamper = False
        if self.port == "sim":
            from .osdp_peer import OsdpPeer
            self.peer = OsdpPeer(self.address).start()
            self.port = self.peer.port

    # ---- life cycle --------------------------------------------------------------
    def open(self) -> None:
        if self.keys is None:
            raise OSError("no reader key store (the door's data directory is not set up)")
        self._ser = serial.serial_for_url(self.port, baudrate=self.options["baudrate"],
                                          timeout=0)
        if self.options["rs485_rts"]:
            self._ser.rs485_mode = serial.rs485.RS485Settings()

    def _key(self):
        key = self.keys.get(self.name)
        if key is None:
            if not self.options["install_mode"]:
                raise OSError("no secure channel key for this reader yet: set install_mode = "
                              "true in its [[readers]] table for its first start")
            key = self.keys.new(self.name)
            log.info("reader %s: made a new secure channel key; waiting for the reader in "
                     "install mode", self.name)
        return key

    def serve(self) -> None:
        key = self._key()
        # install mode: libosdp may fall back to the default key once, to set ours
        keying = self.options["install_mode"]
        flags = [osdp.LibFlag.EnableNotification]
        if not keying:
            flags.append(osdp.LibFlag.EnforceSecure)
        chan = SerialChannel(self._ser, self.bad_frame, self.clock)
        cp = osdp.ControlPanel([osdp.PDInfo(self.address, chan, scbk=key.scbk, flags=flags,
                                            name=self.name[:15])],
                               # install mode: libosdp tries our key first and says
                               # "Failed to verify PD cryptogram" before the default one,
                               # as expected; the door reports the keying itself
                               log_level=osdp.LogLevel.Critical if keying
                               else osdp.LogLevel.Error)
        cp.lock = threading.Lock()  # refreshed here, in this thread, not by its own
        ctx = cp.ctx
        deadline = self.clock.monotonic() + ONLINE_TIMEOUT
        secure = False
        while not self.stopping.is_set():
            ctx.refresh()
            now_secure = bool(ctx.status() & 1) and bool(ctx.sc_status() & 1)
            while (event := cp.get_event(self.address, timeout=-1)) is not None:
                self._event(event, now_secure)
            if now_secure and not secure:
                secure = True
                while not self._outbox.empty():   # what the door showed while it was away
                    self._outbox.get_nowait()
                if not key.installed:
                    key = type(key)(key.scbk, True)
                    self.keys.put(self.name, key)
                    log.warning("reader %s now holds its secure channel key; set "
                                "install_mode = false", self.name)
                self._secured.set()
                if not self._tamper:
                    self._recovered()
            elif secure and not now_secure:
                raise OSError("the reader left the secure channel (a message failed its MAC, "
                              "or it stopped answering)")
            elif secure and self.clock.monotonic() - chan.last_rx > SILENT_SECONDS:
                raise OSError(f"the reader stopped answering (no reply for {SILENT_SECONDS:.0f} "
                              "s): cable, power or the reader itself")
            elif not secure and self.clock.monotonic() > deadline:
                raise OSError("no secure channel with the reader at address "
                              f"{self.address}: it does not answer, or it does not hold this "
                              "door's key (a new reader needs install_mode = true)")
            if secure:
                self._send_indications(cp)
            self.stopping.wait(REFRESH_SECONDS)

    @property
    def sc_active(self) -> bool:
        return self._secured.is_set()

    def close(self) -> None:
        self._secured.clear()
        if self._ser is not None:
            self._ser.close()
            self._ser = None

    def stop(self, timeout: float = 3.0) -> None:
        super().stop(timeout)
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

    # ---- reports from the reader -------------------------------------------------
    def _event(self, event: dict, secure: bool) -> None:
        kind = event.get("event")
        if kind == osdp.Event.Notification:
            return  # secure channel and online changes are read from the status masks
        if not secure:
            self.bad_frame("report outside the secure channel ignored")
            return
        if kind == osdp.Event.CardRead:
            got = proto.card_reading(event["format"], event.get("length", 0),
                                     bytes(event["data"]), self.raw_lengths)
            if isinstance(got, str):
                self.bad_frame(got)
            elif got[0] == "key":
                self.key(got[1])
            else:
                self.credential(*got)
        elif kind == osdp.Event.KeyPress:
            keys, bad = proto.keys_of(bytes(event["data"]))
            if bad:
                self.bad_frame("keypad report with codes that are not keys: "
                               + ", ".join(f"0x{b:02x}" for b in bad))
            for k in keys:
                self.key(k)
        elif kind == osdp.Event.Status and event.get("type") == osdp.StatusReportType.Local:
            report = bytes(event.get("report", b""))
            tamper = bool(report[:1] and report[0])
            if tamper and not self._tamper:
                self._tamper = True
                self._fault("tamper: the reader reports its case open or torn off the wall")
            elif not tamper and self._tamper:
                self._tamper = False
                self._recovered()

    # ---- grant/deny on the reader's LED and beeper ---------------------------------
    def indicate(self, out) -> None:
        """The door's outputs changed (core thread): show them on the reader. Only
        queued here; the reader thread sends them."""
        self._outbox.put((out.green, out.red, out.buzzer))

    def _send_indications(self, cp) -> None:
        latest = None
        while not self._outbox.empty():     # only the newest state matters
            latest = self._outbox.get_nowait()
        if latest is None:
            return
        green, red, buzzer = latest
        colours = osdp.CommandLEDColor
        # green or red for a while (temporary state, control code 2), or back to the
        # reader's own idle state (control code 1 cancels the temporary one)
        tenths = GRANT_TENTHS if green else DENY_TENTHS if red else 0
        led = {"command": osdp.Command.LED, "reader": 0, "led_number": 0, "temporary": True,
               "control_code": 2 if tenths else 1,
               "on_color": colours.Green if green else colours.Red if red else colours.Black,
               "off_color": colours.Black, "on_count": tenths, "off_count": 0,
               "timer_count": tenths}
        buz = {"command": osdp.Command.Buzzer, "reader": 0,
               "control_code": 2 if buzzer else 1, "on_count": 1 if buzzer else 0,
               "off_count": 1 if buzzer else 0, "rep_count": (1 if green else 3) if buzzer else 0}
        for cmd in (led, buz):
            if not cp.submit_command(self.address, cmd):
                log.warning("reader %s: the control panel did not take a %s command",
                            self.name, "LED" if cmd is led else "buzzer")

    def health(self) -> dict:
        h = super().health()
        h["secure_channel"] = self.sc_active
        return h

    # ---- simulation: reports from the simulated reader -----------------------------
    def sim_inputs(self) -> set[str]:
        return {"tap", "fob", "pin"} if self.peer is not None else set()

    def _sim_peer(self):
        if self.peer is None:
            raise ValueError(f"reader {self.name} is not simulated (port = \"sim\")")
        self._require_open()
        if not self._secured.wait(10):
            raise OSError(f"reader {self.name} is not in the secure channel: {self.detail}")
        return self.peer

    def sim_present(self, kind: str, value: str, reply) -> None:
        peer = self._sim_peer()
        if kind == "nfc":
            uid = bytes.fromhex(value)
            if len(uid) * 8 not in proto.UID_BITS:
                raise ValueError("a card's serial number has 4, 7 or 10 bytes")
            self._expect(value, reply, kind="nfc")
            peer.card_uid(uid)
        elif kind == "fob":
            bits, reading = frame_for(parse_fob(value), self.raw_lengths, self.name)
            self._expect(reading, reply)
            peer.card_bits(bits)
        else:
            raise ValueError(f"reader {self.name} reads cards and fobs, not {kind}")

    def sim_keys(self, keys: str, reply) -> None:
        peer = self._sim_peer()
        self._expect(keys[-1], reply, kind="key")
        peer.keys(keys)

