"""Wiegand readers and keypads on two GPIO inputs, through gpiozero.

Hardware: the reader's DATA0 (green) and DATA1 (white) lines, idle high at 5 V,
through a level shifter (or a 5 V -> 3.3 V divider) to two GPIO inputs with
pull-ups; a pulse low on D0 is a 0 bit, on D1 a 1 bit (typically 50-100 µs
pulses every 1-2 ms). A frame ends when no bit arrives for `gap_ms` (25 ms by
default, well above the bit period and well below a human).

| frame     | meaning                                                |
|-----------|--------------------------------------------------------|
| 26 bits   | H10301 card, parity checked                            |
| 34 bits   | 34-bit card, parity checked                            |
| 37 bits   | H10304 card, parity checked                            |
| 4/8 bits  | one keypad key (8-bit: checked against its complement) |
| raw_bits  | other lengths, only if listed in the config            |

A card is a credential of kind "fob": its data bits without parity, as
em24 (26 bits), em32 (34), w37 (37) or raw<N> (see core/credentials.py). A bad
parity or length is a reader.bad_frame, never a grant. A line held low for
more than half a second (reader unpowered, wiring shorted) is a reader.fault
until it is released.
"""

from __future__ import annotations

import threading

from gpiozero import DigitalInputDevice

from ..core.credentials import parse_fob, reading_wiegand
from ..protocols import wiegand
from .readers import Reader

STUCK_SECONDS = 0.5


class WiegandReader(Reader):
    kind = "wiegand"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gap = self.options["gap_ms"] / 1000
        self.raw_lengths = tuple(self.options.get("raw_bits", ()))
        self._cond = threading.Condition()
        self._bits: list[int] = []
        self._last_bit: float | None = None
        self._low_since: dict[str, float] = {}
        self._lines: dict[str, DigitalInputDevice] = {}

    def open(self) -> None:
        try:
            for name, pin, bit in (("D0", self.options["d0_pin"], 0),
                                   ("D1", self.options["d1_pin"], 1)):
                dev = DigitalInputDevice(pin, pull_up=True, pin_factory=self.factory)
                self._lines[name] = dev
                dev.when_activated = (lambda n=name, b=bit: self._edge(n, b))
                dev.when_deactivated = (lambda n=name: self._release(n))
        except Exception:
            self.close()
            raise

    def _edge(self, line: str, bit: int) -> None:
        now = self.clock.monotonic()
        with self._cond:
            self._bits.append(bit)
            self._last_bit = now
            self._low_since[line] = now
            self._cond.notify()

    def _release(self, line: str) -> None:
        with self._cond:
            self._low_since.pop(line, None)
            self._cond.notify()

    def wake(self) -> None:
        """Re-check deadlines now (the stop path; tests with a fake clock use it too)."""
        with self._cond:
            self._cond.notify()

    def serve(self) -> None:
        while not self.stopping.is_set():
            with self._cond:
                now = self.clock.monotonic()
                frame = None
                if self._bits and (now >= self._last_bit + self.gap
                                   or len(self._bits) > wiegand.MAX_BITS):
                    frame, self._bits = self._bits, []
                stuck = [n for n, t in self._low_since.items() if now >= t + STUCK_SECONDS]
                if frame is None and not stuck:
                    waits = []
                    if self._bits:
                        waits.append(self._last_bit + self.gap - now)
                    if self._low_since:
                        waits.append(min(self._low_since.values()) + STUCK_SECONDS - now)
                    self._cond.wait(max(0.0, min(waits)) if waits else None)
                    continue
            if frame is not None:
                self._frame(frame)
            if stuck:
                self._fault(f"{' and '.join(sorted(stuck))} held low: reader unpowered or "
                            "wiring shorted")
                with self._cond:
                    while (not self.stopping.is_set()
                           and any(n in self._low_since for n in stuck)):
                        self._cond.wait()
                    self._bits = []  # whatever the stuck line produced is not a frame
                self._recovered()

    def _frame(self, bits: list[int]) -> None:
        if len(bits) > wiegand.MAX_BITS:
            self.bad_frame(f"frame longer than {wiegand.MAX_BITS} bits")
            return
        item = wiegand.decode(bits, self.raw_lengths)
        if isinstance(item, wiegand.Card):
            self.credential("fob", reading_wiegand(item.bits, item.number,
                                                   raw=item.facility is None))
        elif isinstance(item, wiegand.Key):
            self.key(item.key)
        else:
            self.bad_frame(f"{item.bits}-bit frame: {item.reason}")

    def close(self) -> None:
        for dev in self._lines.values():
            dev.close()
        self._lines.clear()

    # ---- simulation: real pulse trains on the mock pins ------------------------------
    def sim_inputs(self) -> set[str]:
        return {"fob", "pin"} if type(self.factory).__name__ == "MockFactory" else set()

    def pulse(self, bits: list[int]) -> None:
        """Drive one frame onto the mock D0/D1 pins (each bit a low pulse)."""
        pins = {0: self.factory.pin(self.options["d0_pin"]),
                1: self.factory.pin(self.options["d1_pin"])}
        for b in bits:
            pins[b].drive_low()
            pins[b].drive_high()

    def sim_present(self, kind: str, value: str, reply) -> None:
        if kind != "fob":
            raise ValueError(f"reader {self.name} reads card numbers, not {kind}")
        self._require_open()
        bits, reading = wiegand.frame_for(parse_fob(value), self.raw_lengths, self.name)
        self._expect(reading, reply)
        self.pulse(bits)

    def sim_keys(self, keys: str, reply) -> None:
        self._require_open()
        self._expect(keys[-1], reply, kind="key")
        pause = threading.Event()
        for k in keys:
            self.pulse(wiegand.encode_key(k, 8))
            pause.wait(self.gap * 2)  # the keypad's own gap between key bursts
