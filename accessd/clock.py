"""Clocks: the system clock for the daemon, a hand-driven one for tests.

`monotonic()` drives timers (relock, held-open, keypad timeout); `wall()` is UTC
epoch seconds for validity windows and log timestamps.
"""

from __future__ import annotations

import time


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock:
    """Time moves only when a test calls advance()."""

    def __init__(self, wall: float = 1_790_000_000.0, mono: float = 1000.0):
        self._wall, self._mono = wall, mono

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds
