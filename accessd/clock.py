"""Clocks: the system clock for the daemon, a hand-driven one for tests.

`monotonic()` drives timers (relock, held-open, keypad timeout); `wall()` is UTC
epoch seconds for validity windows and log timestamps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

STA_UNSYNC = 0x0040
TIME_ERROR = 5


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (Linux), for adjtimex(2)."""
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long),
                ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
                ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("pad", ctypes.c_int * 11)]


def kernel_clock_synced() -> bool:
    """What the kernel says of NTP sync (adjtimex: TIME_ERROR / STA_UNSYNC). A Pi has
    no real-time clock: until NTP has set the time, it may be days off. Unknown
    (not Linux, no libc) counts as not synchronised."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        t = _Timex()
        rc = libc.adjtimex(ctypes.byref(t))
    except (OSError, AttributeError):
        return False
    return rc not in (-1, TIME_ERROR) and not t.status & STA_UNSYNC


class SystemClock:
    SYNC_CHECK_EVERY = 60.0

    def __init__(self):
        self._synced: tuple[float, bool] | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def synced(self) -> bool:
        now = time.monotonic()
        if self._synced is None or now - self._synced[0] >= self.SYNC_CHECK_EVERY:
            self._synced = (now, kernel_clock_synced())
        return self._synced[1]


class FakeClock:
    """Time moves only when a test calls advance()."""

    def __init__(self, wall: float = 1_790_000_000.0, mono: float = 1000.0):
        self._wall, self._mono = wall, mono
        self.is_synced = True

    def synced(self) -> bool:
        return self.is_synced

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds
