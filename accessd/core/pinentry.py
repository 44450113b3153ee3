"""PIN entry on a keypad. Pure: (state, key, now) -> (state, outcome).

Digits accumulate, '#' submits, '*' clears, and an inter-key timeout clears a
half-typed PIN. Card+PIN lives in the engine (a card waiting for its PIN).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

KEYS = frozenset("0123456789*#")


@dataclass(frozen=True)
class PinSettings:
    min_length: int
    max_length: int
    timeout_seconds: float


@dataclass(frozen=True)
class PinEntry:
    digits: str = ""
    last_key_at: float | None = None

    def deadline(self, cfg: PinSettings) -> float | None:
        return None if not self.digits else self.last_key_at + cfg.timeout_seconds


@dataclass(frozen=True)
class Outcome:
    kind: str  # "submit" | "cleared" | "timeout" | "invalid" | "typing"
    pin: str | None = None
    reason: str = ""


def press(s: PinEntry, key: str, now: float, cfg: PinSettings) -> tuple[PinEntry, Outcome]:
    s, timed_out = expire(s, now, cfg)
    if key not in KEYS or len(key) != 1:
        return s, Outcome("invalid", reason=f"key {key!r} is not on a keypad (0-9, *, #)")
    if key == "*":
        return PinEntry(), Outcome("cleared", reason="cleared with *")
    if key == "#":
        digits = s.digits
        if not digits:
            return PinEntry(), Outcome("invalid", reason="# pressed with no PIN typed")
        if len(digits) < cfg.min_length:
            return PinEntry(), Outcome("invalid", reason=f"PIN too short ({len(digits)} digits)")
        return PinEntry(), Outcome("submit", pin=digits)
    if len(s.digits) >= cfg.max_length:
        return PinEntry(), Outcome("invalid", reason=f"PIN longer than {cfg.max_length} digits")
    return replace(s, digits=s.digits + key, last_key_at=now), Outcome("typing")


def expire(s: PinEntry, now: float, cfg: PinSettings) -> tuple[PinEntry, bool]:
    d = s.deadline(cfg)
    if d is not None and now >= d:
        return PinEntry(), True
    return s, False
