"""Clocks: the system clock for the daemon, a hand-driven one for tests.

`monotonic()` drives timers (relock, held-open, keypad timeout); `wall()` is UTC
epoch seconds for validity windows and log timestamps; `sync_state()` says
whether the wall clock can be believed (NTP-synchronised) and how that is known.

A Pi has no real-time clock: until NTP has set the time it may be days off. The
kernel's own NTP state (adjtimex with no mode bits: a read that needs no
privilege) is the authority; every NTP client that disciplines the clock
(systemd-timesyncd, chrony, ntpd) clears STA_UNSYNC in it. Where adjtimex is
refused (a seccomp filter such as systemd's ProtectClock=), the flag file
systemd-timesyncd touches on each synchronisation is the fallback, and the
refusal itself is reported, never read silently as "not synchronised".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

STA_UNSYNC = 0x0040
TIME_ERROR = 5
# systemd-timesyncd(8): "touched on each successful synchronization"; /run is
# emptied at boot, so it exists only once the clock was set since boot.
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


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


@dataclass(frozen=True)
class SyncState:
    """What is known of the wall clock: `synced`, from which `source` ("kernel",
    "timesyncd", "none", "fake"), and `error` when the kernel could not be asked."""
    synced: bool
    source: str
    error: str | None = None

    def as_dict(self) -> dict:
        return {"synced": self.synced, "source": self.source,
                **({"error": self.error} if self.error else {})}


def adjtimex_read() -> tuple[int, int]:
    """adjtimex(2) with modes = 0 (read only): (return value, status bits).
    Raises OSError with the errno when the call is refused or unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError) as exc:
        raise OSError(errno.ENOSYS, f"no adjtimex in the C library ({exc})") from None
    t = _Timex()
    rc = fn(ctypes.byref(t))
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc, t.status


def read_sync_state(adjtimex=adjtimex_read, timesyncd_flag: Path = TIMESYNCD_FLAG) -> SyncState:
    """The kernel's NTP state; if the kernel cannot be asked, timesyncd's flag file."""
    try:
        rc, status = adjtimex()
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        why = f"adjtimex refused ({name}: {exc.strerror})"
        try:
            if timesyncd_flag.exists():
                return SyncState(True, "timesyncd", why)
        except OSError:
            pass
        return SyncState(False, "none", why)
    return SyncState(rc != TIME_ERROR and not status & STA_UNSYNC, "kernel")


class SystemClock:
    SYNC_CHECK_EVERY = 60.0

    def __init__(self):
        self._state: tuple[float, SyncState] | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sync_state(self) -> SyncState:
        """Read at most once a minute: a tap never waits for a syscall more."""
        now = time.monotonic()
        if self._state is None or now - self._state[0] >= self.SYNC_CHECK_EVERY:
            self._state = (now, read_sync_state())
        return self._state[1]

    def synced(self) -> bool:
        return self.sync_state().synced


class FakeClock:
    """Time moves only when a test calls advance()."""

    def __init__(self, wall: float = 1_790_000_000.0, mono: float = 1000.0):
        self._wall, self._mono = wall, mono
        self.is_synced = True

    def sync_state(self) -> SyncState:
        return SyncState(self.is_synced, "fake")

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds
