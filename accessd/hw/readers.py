"""The reader interface every credential reader implements, the simulated reader,
and the registry that builds readers from the `[[readers]]` tables of the config.

A reader runs in its own thread and only ever posts small immutable events to the
core: `CredentialPresented`, `KeyPressed`, and `ReaderNotice` (reader.fault,
reader.recovered, reader.bad_frame). The base class owns the thread and the
retry loop: a reader that fails to open, is unplugged or keeps failing is
reported once, retried with exponential back-off, and reported again when it
recovers, with no daemon restart.

| kind          | module             | hardware                                      |
|---------------|--------------------|-----------------------------------------------|
| sim           | here               | none: fed through `accessctl sim ...`         |
| nfc           | hw/nfc.py          | any nfcpy reader (USB, PN532 on UART), udp    |
| em4100-serial | hw/fob_serial.py   | RDM6300-style 125 kHz reader on a serial port |
| wiegand       | hw/wiegand.py      | Wiegand reader / keypad on two GPIO inputs    |
| keypad-matrix | hw/keypad_matrix.py| row/column matrix keypad on GPIO              |
| osdp          | hw/osdp.py         | OSDP reader on RS-485, secure channel only    |
| qr-serial     | hw/qr_serial.py    | UART QR scanner module: signed visitor passes |
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Callable

from ..config import ReaderConfig
from ..core.events import CredentialPresented, KeyPressed, ReaderNotice

log = logging.getLogger(__name__)
BAD_FRAME_NOTICE_INTERVAL = 1.0  # at most one reader.bad_frame record a second per reader


class Reader:
    """Base class: a named source of credentials with a thread and a health record.

    Subclasses implement `open()` (acquire the device; raise on failure),
    `serve()` (read until `self.stopping` is set; raise when the device fails)
    and `close()`. Readers without a thread (sim) override `start`/`stop`.
    """

    kind = "base"
    healthy_when_open = True  # False: the subclass says when it is back (after a handshake)

    def __init__(self, cfg: ReaderConfig, post: Callable[[object], None], clock, *,
                 factory=None, retry_initial: float = 1.0):
        self.name = cfg.name
        self.cfg = cfg
        self.options = cfg.options
        self.post = post
        self.clock = clock
        self.factory = factory
        self.retry_initial = retry_initial
        self.retry_max = float(cfg.options.get("retry_max_seconds", 30.0))
        self.stopping = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.healthy = True
        self.detail = "starting"
        self.faults = 0
        self.bad_frames = 0
        self.last_seen: float | None = None
        self._bad_since_notice = 0
        self._last_bad_notice: float | None = None
        self._expected: dict[tuple[str, str], object] = {}  # simulated input -> its reply

    # ---- life cycle ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("reader %s did not stop within %.0f s", self.name, timeout)

    def wake(self) -> None:
        """Make a blocked serve() notice `stopping` (override if it blocks elsewhere)."""

    def _main(self) -> None:
        delay = self.retry_initial
        while not self.stopping.is_set():
            try:
                self.open()
            except Exception as exc:  # any open failure is a reader fault, never a crash
                self._fault(f"cannot open: {_describe(exc)}")
                self.stopping.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self.opened.set()
            if self.healthy_when_open:
                self._recovered()
            delay = self.retry_initial
            try:
                self.serve()
            except Exception as exc:
                if not self.stopping.is_set():
                    self._fault(f"failed: {_describe(exc)}")
            finally:
                self.opened.clear()
                try:
                    self.close()
                except Exception:
                    log.exception("reader %s: error while closing", self.name)
            if not self.stopping.is_set():
                self.stopping.wait(delay)
                delay = min(delay * 2, self.retry_max)

    def open(self) -> None:
        raise NotImplementedError

    def serve(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- reporting -------------------------------------------------------------
    def _fault(self, detail: str) -> None:
        with self._lock:
            was_healthy = self.healthy or self.detail == "starting"
            self.healthy, self.detail = False, detail
            self.faults += 1
        if was_healthy:
            log.warning("reader %s: %s", self.name, detail)
            self.post(ReaderNotice(self.name, "reader.fault", detail))

    def _recovered(self) -> None:
        with self._lock:
            was = self.healthy, self.detail
            self.healthy, self.detail = True, "ok"
        if not was[0]:
            log.info("reader %s recovered", self.name)
            self.post(ReaderNotice(self.name, "reader.recovered", f"back after: {was[1]}"))

    def bad_frame(self, reason: str) -> None:
        """Count a malformed frame; log at most one notice a second (with the count)."""
        now = self.clock.monotonic()
        with self._lock:
            self.bad_frames += 1
            self._bad_since_notice += 1
            due = (self._last_bad_notice is None
                   or now - self._last_bad_notice >= BAD_FRAME_NOTICE_INTERVAL)
            if due:
                count, self._bad_since_notice, self._last_bad_notice = self._bad_since_notice, 0, now
        if due:
            extra = f" ({count} bad frames since the last notice)" if count > 1 else ""
            self.post(ReaderNotice(self.name, "reader.bad_frame", reason + extra))

    def credential(self, kind: str, value: str, reply=None, *, assurance: str = "low",
                   refusal: str = "") -> None:
        with self._lock:
            self.last_seen = self.clock.wall()
            reply = reply or self._expected.pop((kind, value), None)
        self.post(CredentialPresented(self.name, kind, value, reply, assurance=assurance,
                                      refusal=refusal))

    def no_credential(self, kind: str, value: str, reason: str) -> None:
        """A read that ended without a credential (a card pulled away mid-check): a bad
        frame, and a simulated input waiting for it is answered with the reason."""
        with self._lock:
            reply = self._expected.pop((kind, value), None)
        self.bad_frame(reason)
        if reply is not None and not reply.done():
            reply.set_result({"ok": False, "error": reason})

    def key(self, key: str, reply=None) -> None:
        with self._lock:
            self.last_seen = self.clock.wall()
            reply = reply or self._expected.pop(("key", key), None)
        self.post(KeyPressed(self.name, key, reply))

    # ---- simulation ------------------------------------------------------------
    def sim_inputs(self) -> set[str]:
        """Which `accessctl sim` inputs (tap, fob, pin) this reader can take right now."""
        return set()

    def _require_open(self) -> None:
        """Simulated input needs the device open (bytes sent before that are lost). A
        reader still starting gets up to 5 s; one known to be down is said at once."""
        if self.opened.is_set():
            return
        with self._lock:
            starting = self.detail == "starting"
        if not (starting and self.opened.wait(5)):
            raise OSError(f"reader {self.name} is not open: {self.detail}")

    def _expect(self, value: str, reply, kind: str = "fob") -> None:
        """The reply for a simulated input goes with the credential when it is read."""
        with self._lock:
            self._expected[(kind, value)] = reply

    def health(self) -> dict:
        with self._lock:
            return {"name": self.name, "kind": self.kind,
                    "state": "ok" if self.healthy else "fault", "detail": self.detail,
                    "faults": self.faults, "bad_frames": self.bad_frames,
                    "last_seen": self.last_seen}


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if exc.__class__.__name__ not in text else text


class SimReader(Reader):
    """A reader with no hardware: `accessctl sim tap|fob|pin` feeds it."""

    kind = "sim"

    def start(self) -> None:
        self.detail = "ok"
        self.opened.set()

    def sim_inputs(self) -> set[str]:
        return {"tap", "fob", "pin"}

    def stop(self, timeout: float = 3.0) -> None:
        self.opened.clear()

    def sim_present(self, kind: str, value: str, reply) -> None:
        self.credential(kind, value, reply)

    def sim_keys(self, keys: str, reply) -> None:
        for k in keys[:-1]:
            self.key(k)
        self.key(keys[-1], reply)


# kind -> "module:Class", imported only when a door uses it (nfcpy is only loaded for NFC).
READER_CLASSES: dict[str, str] = {
    "sim": f"{__name__}:SimReader",
    "nfc": "accessd.hw.nfc:NfcReader",
    "em4100-serial": "accessd.hw.fob_serial:FobSerialReader",
    "wiegand": "accessd.hw.wiegand:WiegandReader",
    "keypad-matrix": "accessd.hw.keypad_matrix:MatrixKeypadReader",
    "osdp": "accessd.hw.osdp:OsdpReader",
    "qr-serial": "accessd.hw.qr_serial:QrSerialReader",
}


def reader_class(kind: str) -> type[Reader]:
    module, cls = READER_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def build_readers(cfgs, post, clock, *, factory=None, secure=None,
                  reader_keys=None) -> list[Reader]:
    """secure (storage.secure_cards.SecureCards) goes to the NFC readers, reader_keys
    (storage.reader_keys.ReaderKeys) to the OSDP readers."""
    extra = {"nfc": {"secure": secure}, "osdp": {"reader_keys": reader_keys}}
    return [reader_class(c.kind)(c, post, clock, factory=factory, **extra.get(c.kind, {}))
            for c in cfgs]
