"""QR code scanners on a serial port, through pyserial: visitor and courier passes.

Hardware: the common UART scanner modules (GM65, GM805, MH-ET Live, Waveshare
barcode scanner) in their serial mode: TX of the module to RX of the Pi
(GPIO15, /dev/serial0; 3.3 V logic on most modules, check yours), 9600 8N1 by
default; or a USB scanner in its USB-serial (CDC) mode (/dev/ttyACM0). The
module decodes the code itself and prints its text followed by CR and/or LF.
`port = "sim"`: a pseudo-terminal that `accessctl sim qr` writes lines into.

A line that is an accessd pass (core/passes.py: `AP1:` and a well-formed body)
is presented to the door as kind "qr"; the core checks its signature, door group,
revocation, window and entries. Anything else (a product barcode, a damaged or
cut-off scan, a line too long) is a reader.bad_frame, never a presentation. A
scanner that keeps reading the same code while it is held sends the same line
again: repeats within `hold_ms` count as one.
"""

from __future__ import annotations

from ..core import passes
from .serial_reader import SerialReader


class QrSerialReader(SerialReader):
    kind = "qr-serial"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hold = self.options["hold_ms"] / 1000
        self._line = bytearray()
        self._overlong = False
        self._last: tuple[str, float] | None = None

    def received(self, data: bytes) -> None:
        for b in data:
            if b in (0x0D, 0x0A):
                if self._overlong:
                    self.bad_frame(f"scanned line longer than {passes.MAX_TEXT} characters")
                elif self._line:
                    self._scanned(bytes(self._line))
                self._line.clear()
                self._overlong = False
            elif len(self._line) >= passes.MAX_TEXT:
                self._overlong = True
            else:
                self._line.append(b)

    def _scanned(self, raw: bytes) -> None:
        try:
            text = raw.decode("ascii").strip()
            passes.parse(text)
        except UnicodeDecodeError:
            self.bad_frame(f"scanned code is not text ({len(raw)} bytes)")
            return
        except passes.PassFormatError as exc:
            reason = (f"scanned pass unreadable: {exc} ({len(raw)} characters)"
                      if passes.looks_like(text)
                      else f"scanned code is not a pass ({len(raw)} characters)")
            self.no_credential("qr", text, reason)
            return
        now = self.clock.monotonic()
        last, self._last = self._last, (text, now)
        if last is not None and last[0] == text and now - last[1] < self.hold:
            return  # still held under the scanner
        self.credential("qr", text)

    # ---- simulation: a scanned line into the pseudo-terminal ------------------------
    def sim_inputs(self) -> set[str]:
        return {"qr"} if self._sim_master is not None else set()

    def sim_present(self, kind: str, value: str, reply) -> None:
        if kind != "qr":
            raise ValueError(f"reader {self.name} scans QR codes, not {kind}")
        self._require_open()
        self._expect(value, reply, kind="qr")
        self._last = None
        self._sim_write(value.encode() + b"\r\n")
