"""The reader interface every credential reader implements, and the simulated reader.

A reader runs in its own thread (or is fed from outside), and only ever posts
small immutable events to the core: `CredentialPresented`, `KeyPressed`, and
`ReaderHealth` when it fails or recovers. Real drivers (nfcpy NFC, serial
125 kHz fobs, Wiegand, matrix keypads) subclass `Reader` and are built by
`build_readers` from the `[[readers]]` tables of the config.

| kind | hardware | supports |
|------|----------|----------|
| sim  | none: fed through the control socket (`accessctl sim ...`) | NFC UIDs, fob numbers, keypad keys |
"""

from __future__ import annotations

import threading
from typing import Callable

from ..config import ReaderConfig
from ..core.events import CredentialPresented, KeyPressed


class Reader:
    """Base class: a named source of credentials with a health record."""

    kind = "base"

    def __init__(self, cfg: ReaderConfig, post: Callable[[object], None], wall: Callable[[], float]):
        self.name = cfg.name
        self.cfg = cfg
        self.post = post
        self._wall = wall
        self._lock = threading.Lock()
        self.healthy = True
        self.detail = "ok"
        self.faults = 0
        self.last_seen: float | None = None

    def start(self) -> None:
        """Start the reader's thread, if it has one."""

    def stop(self) -> None:
        """Stop and join the reader's thread; must return within a second or two."""

    def seen(self) -> None:
        with self._lock:
            self.last_seen = self._wall()

    def health(self) -> dict:
        with self._lock:
            return {"name": self.name, "kind": self.kind,
                    "state": "ok" if self.healthy else "fault", "detail": self.detail,
                    "faults": self.faults, "last_seen": self.last_seen}


class SimReader(Reader):
    """A reader with no hardware: `accessctl sim tap|fob|pin` feeds it."""

    kind = "sim"

    def present(self, kind: str, value: str, reply=None) -> None:
        self.seen()
        self.post(CredentialPresented(self.name, kind, value, reply))

    def key(self, key: str, reply=None) -> None:
        self.seen()
        self.post(KeyPressed(self.name, key, reply))


READER_CLASSES: dict[str, type[Reader]] = {"sim": SimReader}


def build_readers(cfgs, post, wall) -> list[Reader]:
    return [READER_CLASSES[c.kind](c, post, wall) for c in cfgs]
