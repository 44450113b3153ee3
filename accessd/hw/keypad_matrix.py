"""Matrix keypads on GPIO, through gpiozero, without polling.

Hardware: a row/column keypad (typically 4x3 or 4x4). Rows are outputs, driven
low; columns are inputs with pull-ups. While idle every row is low, so any key
pulls its column low and the column's edge wakes the reader thread: no CPU is
used while nobody types. The thread then debounces, scans the rows one at a
time to find the key, posts it to the core's PIN entry, waits for the release
(and debounces that too), and re-arms.

| option      | meaning                                              |
|-------------|------------------------------------------------------|
| row_pins    | BCM pins of the rows, top to bottom                  |
| col_pins    | BCM pins of the columns, left to right               |
| keys        | one string per row, e.g. ["123", "456", "789", "*0#"] |
| debounce_ms | settle time after a press and after a release        |

Put a 1 kΩ resistor in series with each row if two keys may be pressed at once
(it stops two rows shorting each other).
"""

from __future__ import annotations

import threading

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockPin

from .readers import Reader


class MatrixKeypadReader(Reader):
    kind = "keypad-matrix"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.keys = list(self.options["keys"])
        self.debounce = self.options["debounce_ms"] / 1000
        self._pressed = threading.Event()
        self._released = threading.Event()
        self._key_posted = threading.Event()
        self.idle = threading.Event()  # armed, waiting for a press
        self.rows: list[DigitalOutputDevice] = []
        self.cols: list[DigitalInputDevice] = []
        self.peer = None
        if type(self.factory).__name__ == "MockFactory":
            self.peer = KeypadPeer(self.factory, self.options["row_pins"],
                                   self.options["col_pins"], self.keys)

    def open(self) -> None:
        try:
            for pin in self.options["row_pins"]:
                # active = driven low: idle, every row low, so any key pulls its column low
                self.rows.append(DigitalOutputDevice(pin, active_high=False, initial_value=True,
                                                     pin_factory=self.factory))
            for pin in self.options["col_pins"]:
                col = DigitalInputDevice(pin, pull_up=True, pin_factory=self.factory)
                col.when_activated = self._pressed.set
                col.when_deactivated = self._released.set
                self.cols.append(col)
        except Exception:
            self.close()
            raise

    def wake(self) -> None:
        self._pressed.set()
        self._released.set()

    def serve(self) -> None:
        while not self.stopping.is_set():
            if not any(c.is_active for c in self.cols):
                self.idle.set()
                self._pressed.wait()
            self.idle.clear()
            self._pressed.clear()
            if self.stopping.is_set():
                return
            self.stopping.wait(self.debounce)
            hit = self._scan()
            if hit is None:
                continue  # a bounce or a glitch: nothing held after the settle time
            if isinstance(hit, str):
                self.bad_frame(hit)
                col = next(c for c in self.cols if c.is_active)
                self._wait_release(col)
                continue
            key, col = hit
            self.key(key)
            self._key_posted.set()
            self._wait_release(col)

    def _wait_release(self, col) -> None:
        while not self.stopping.is_set():  # until this column is released
            self._released.clear()
            if not col.is_active:
                break
            self._released.wait()
        self.stopping.wait(self.debounce)

    def _scan(self) -> tuple[str, DigitalInputDevice] | str | None:
        """The key held, None if nothing is, or a message if a column reads low with
        no row driven (noise, or a column shorted to ground): never a phantom key."""
        for r in self.rows:
            r.off()
        found = None
        try:
            stuck = [j for j, c in enumerate(self.cols) if c.is_active]
            if stuck:
                return (f"column {stuck[0] + 1} (GPIO{self.options['col_pins'][stuck[0]]}) "
                        "is low with no row driven: noise or a short")
            for i, row in enumerate(self.rows):
                row.on()
                hits = [j for j, c in enumerate(self.cols) if c.is_active]
                row.off()
                if hits:
                    found = self.keys[i][hits[0]], self.cols[hits[0]]
                    break
        finally:
            for r in self.rows:
                r.on()
        return found

    def close(self) -> None:
        for dev in self.rows + self.cols:
            dev.close()
        self.rows, self.cols = [], []

    # ---- simulation ------------------------------------------------------------------
    def sim_inputs(self) -> set[str]:
        return {"pin"} if self.peer is not None else set()

    def sim_keys(self, keys: str, reply) -> None:
        self._require_open()
        self._expect(keys[-1], reply, kind="key")
        for k in keys:
            self.idle.wait(2)
            self._key_posted.clear()
            self.peer.press(k)
            self._key_posted.wait(2)
            self.peer.release(k)


class _RowPin(MockPin):
    """A mock row pin that tells the keypad peer when it is driven."""

    def __init__(self, factory, info, peer=None):
        self.peer = peer
        super().__init__(factory, info)

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed and self.peer is not None:
            self.peer.update()
        return changed


class KeypadPeer:
    """The keypad itself, on gpiozero's MockFactory: a pressed key connects its row
    to its column, so the column reads low while that row is driven low."""

    def __init__(self, factory, row_pins, col_pins, keys):
        self.factory = factory
        self.where = {k: (r, c) for r, line in enumerate(keys) for c, k in enumerate(line)}
        self.rows = [factory.pin(p, pin_class=_RowPin, peer=self) for p in row_pins]
        self.cols = [factory.pin(p) for p in col_pins]
        self.held: set[str] = set()
        self.shorted: set[int] = set()  # columns shorted to ground (a wiring fault)
        self._lock = threading.RLock()

    def update(self) -> None:
        with self._lock:
            for c, col in enumerate(self.cols):
                low = c in self.shorted or any(
                    self.where[k][1] == c and self.rows[self.where[k][0]].state == 0
                    for k in self.held)
                if col.function == "input":
                    col.drive_low() if low else col.drive_high()

    def press(self, key: str) -> None:
        if key not in self.where:
            raise ValueError(f"key {key!r} is not on this keypad")
        with self._lock:
            self.held.add(key)
            self.update()

    def release(self, key: str) -> None:
        with self._lock:
            self.held.discard(key)
            self.update()

    def short(self, col: int, shorted: bool = True) -> None:
        """Short column `col` (0-based) to ground, or remove the short."""
        with self._lock:
            (self.shorted.add if shorted else self.shorted.discard)(col)
            self.update()
