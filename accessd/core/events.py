"""The small immutable items that readers, inputs and the control socket put on the core's queue."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field


def _now_ns() -> int:
    return time.perf_counter_ns()


@dataclass(frozen=True)
class CredentialPresented:
    reader: str
    kind: str        # nfc | fob | pin
    value: str       # normalised value; never logged
    reply: Future | None = None
    t_queued: int = field(default_factory=_now_ns)
    assurance: str = "low"   # "high": a secure card proved its keys at the reader
    refusal: str = ""        # why a secure card's check failed


@dataclass(frozen=True)
class KeyPressed:
    reader: str
    key: str
    reply: Future | None = None
    t_queued: int = field(default_factory=_now_ns)


@dataclass(frozen=True)
class InputChanged:
    """name: door (active = open), rex (active = pressed), tamper (active = tampered),
    fire (active = the fire panel calls for release)."""
    name: str
    active: bool
    t_queued: int = field(default_factory=_now_ns)


@dataclass(frozen=True)
class RemoteUnlock:
    who: str
    reply: Future | None = None
    t_queued: int = field(default_factory=_now_ns)


@dataclass(frozen=True)
class CaptureRequest:
    timeout: float
    reply: Future


@dataclass(frozen=True)
class Barrier:
    """Answered once everything queued before it is handled and logged."""
    reply: Future


@dataclass(frozen=True)
class StatusRequest:
    reply: Future


@dataclass(frozen=True)
class ReaderNotice:
    """A reader's own news, logged as is: reader.fault, reader.recovered, reader.bad_frame."""
    reader: str
    kind: str
    detail: str


@dataclass(frozen=True)
class SetMode:
    """Staff change the door mode: normal, lockdown, held-open."""
    mode: str
    who: str
    reply: Future | None = None


@dataclass(frozen=True)
class Notice:
    """Something to log as is (sync.rejected, sync.stale, ...)."""
    kind: str
    reason: str
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SwapWhitelist:
    """A verified whitelist file to install, between two taps."""
    path: str
    version: int
    reply: Future | None = None


@dataclass(frozen=True)
class Stop:
    pass
