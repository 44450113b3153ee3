"""Door-side guards against guessing and probing. Pure: state and time in, state out.

PIN lockout (per keypad): `attempts` wrong PINs within `window` seconds lock that
keypad's PIN entry for `lockout` seconds, doubling with each lockout in a row up
to `lockout_max`; a right PIN resets it. Cards and fobs keep working.

Stranger alert (per door): `attempts` denials within `window` seconds raise one
alert with the count; the count starts again after it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LockoutSettings:
    attempts: int
    window: float
    lockout: float
    lockout_max: float


@dataclass(frozen=True)
class Lockout:
    fails: tuple[float, ...] = ()
    locked_until: float | None = None
    level: int = 0  # lockouts in a row

    def active(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until


def pin_failed(s: Lockout, now: float, cfg: LockoutSettings) -> tuple[Lockout, float | None]:
    """Count a wrong PIN. Returns the new state and, if it locks now, for how long."""
    fails = tuple(t for t in s.fails if now - t < cfg.window) + (now,)
    if len(fails) < cfg.attempts:
        return replace(s, fails=fails), None
    seconds = min(cfg.lockout * (2 ** s.level), cfg.lockout_max)
    return Lockout((), now + seconds, s.level + 1), seconds


def pin_succeeded(s: Lockout) -> Lockout:
    return Lockout()


@dataclass(frozen=True)
class StrangerSettings:
    attempts: int
    window: float


def denial(times: tuple[float, ...], now: float,
           cfg: StrangerSettings) -> tuple[tuple[float, ...], int | None]:
    """Count a denial at the door. Returns the new times and, when the alert fires,
    how many denials it covers."""
    times = tuple(t for t in times if now - t < cfg.window) + (now,)
    if len(times) >= cfg.attempts:
        return (), len(times)
    return times, None
