"""125 kHz fob readers on a serial port, through pyserial.

Hardware: an RDM6300 (or any EM4100 reader that prints frames) on the Pi's
UART (GPIO14/15, /dev/serial0, 9600 8N1, TX of the module to RX of the Pi
through a 5 V -> 3.3 V divider), or a USB-serial reader (/dev/ttyUSB0).
`port` is any pyserial port or URL; `port = "sim"` makes a pseudo-terminal that
`accessctl sim fob` writes real frames into (simulation only).

| format        | frames                                             |
|---------------|----------------------------------------------------|
| rdm6300       | STX, 10 hex, 2 hex XOR checksum, ETX; repeated     |
| ascii-decimal | 10 decimal digits + CR/LF                          |

A fob held on the reader repeats its frame; repeats closer together than
`hold_ms` count as one presentation. Bad frames are counted and reported
(reader.bad_frame), never granted. An unplugged port is a reader.fault, retried
with back-off until it comes back.
"""

from __future__ import annotations

from ..core.credentials import parse_fob, reading_em
from ..protocols.em4100 import PARSERS, BadFrame, frame_rdm6300
from .serial_reader import SerialReader


class FobSerialReader(SerialReader):
    kind = "em4100-serial"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hold = self.options["hold_ms"] / 1000
        self._last: tuple[int, float] | None = None

    def open(self) -> None:
        self.parser = PARSERS[self.options["format"]]()
        super().open()

    def received(self, data: bytes) -> None:
        for item in self.parser.feed(data):
            if isinstance(item, BadFrame):
                self.bad_frame(item.reason)
            else:
                self._tag(reading_em(item.number, item.version))

    def _tag(self, reading: str) -> None:
        now = self.clock.monotonic()
        last = self._last
        self._last = (reading, now)
        if last is not None and last[0] == reading and now - last[1] < self.hold:
            return  # the same fob still held: its frame repeats
        self.credential("fob", reading)

    # ---- simulation: real frames into the pseudo-terminal --------------------------
    def sim_inputs(self) -> set[str]:
        return {"fob"} if self._sim_master is not None else set()

    def sim_present(self, kind: str, value: str, reply) -> None:
        if self._sim_master is None:
            raise ValueError(f"reader {self.name} is not simulated (port = \"sim\")")
        if kind != "fob":
            raise ValueError(f"reader {self.name} reads fobs, not {kind}")
        self._require_open()
        fob = parse_fob(value)
        if not fob.family.startswith("em"):
            raise ValueError(f"reader {self.name} reads 125 kHz EM fobs, not "
                             f"{fob.describe()}")
        # the fob as this reader sees it: all 40 bits (the ones not given are 0), or
        # the 32-bit id of an ascii-decimal reader
        number, version = fob.number & 0xFFFFFFFF, fob.number >> 32
        if self.options["format"] == "rdm6300":
            self._expect(reading_em(number, version), reply)
            frame = frame_rdm6300(number, version)
        else:
            self._expect(reading_em(number, None), reply)
            frame = f"{number:010d}\r\n".encode()
        self._last = None  # a new presentation, even of the same fob
        self._sim_write(frame)
