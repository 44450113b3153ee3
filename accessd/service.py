"""The daemon's life: startup -> run -> shutdown.

Startup validates everything before the first thread starts; the main thread
then only waits for signals (blocked in every thread, taken with sigwait, so no
handler runs in the middle of anything). On SIGTERM/SIGINT the relay goes to
its safe state first, then readers, the control socket, the core and the log
writer stop within bounded times. A second SIGINT exits at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading

from . import __version__
from .clock import SystemClock
from .config import Config
from .control import ControlServer, Controller
from .core.events import Stop
from .engine import Engine
from .errors import AccessdError
from .hw.gpio import DoorInputs, DoorOutputs, make_pin_factory
from .hw.readers import build_readers
from .sdnotify import Notifier
from .storage.eventlog import EventLog, LogWriter
from .storage.keys import load_key_file
from .storage.whitelist import Whitelist
from .storage.whitelist_admin import WhitelistAdmin

log = logging.getLogger("accessd")


class _SafeOutputs:
    """Wraps DoorOutputs so that once safe() ran, nothing re-energises the relay.
    Readers with their own LED and beeper (OSDP) are shown the outputs after the
    relay is set (`indicators`: each only queues them for its reader thread)."""

    def __init__(self, outputs: DoorOutputs):
        self.inner = outputs
        self.indicators: list = []
        self._lock = threading.Lock()
        self._frozen = False

    def apply(self, out) -> None:
        with self._lock:
            if not self._frozen:
                self.inner.apply(out)
                for indicate in self.indicators:
                    indicate(out)

    def safe(self) -> None:
        with self._lock:
            self._frozen = True
            self.inner.safe()


class DoorService:
    def __init__(self, cfg: Config, *, clock=None, notifier: Notifier | None = None,
                 pin_factory=None):
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self._factory = pin_factory
        self._closers: list = []
        self.core_thread: threading.Thread | None = None

    # ---- startup --------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        try:
            self._start(cfg)
        except BaseException:
            self._close_all()
            raise

    def _start(self, cfg: Config) -> None:
        keys = load_key_file(cfg.storage.key_file)
        keys.check_door(cfg.door.id, cfg.storage.key_file)
        cfg.storage.data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if not cfg.storage.whitelist_path.exists():
            WhitelistAdmin(cfg.storage.whitelist_path, keys).close()  # an empty whitelist
        self.whitelist = Whitelist(cfg.storage.whitelist_path, keys)
        self._closers.append(self.whitelist.close)
        self.eventlog = EventLog(cfg.storage.eventlog_path, cfg.door.id)
        from .sync.upload import acked, adopt_legacy_state, conflict, lost_tail
        try:
            adopt_legacy_state(cfg.storage.data_dir, self.eventlog.log_id,
                               bind=self.eventlog.identity_new and self.eventlog.last_seq > 0)
            lost_to = lost_tail(cfg.storage.data_dir, self.eventlog.log_id,
                                self.eventlog.last_seq)
            forked = conflict(cfg.storage.data_dir, self.eventlog.log_id)
        except (ValueError, OSError):
            lost_to = forked = None
        if lost_to is not None or forked:  # a new log from here: never two histories
            old_id = self.eventlog.log_id
            self.eventlog.new_identity()

        def acked_seq() -> int:
            try:
                return acked(cfg.storage.data_dir, self.eventlog.log_id)
            except ValueError:
                return 0
        self.logw = LogWriter(self.eventlog, wall=self.clock.wall,
                              max_events=cfg.storage.max_events, acked=acked_seq)
        self.logw.start()
        self._closers.append(self._stop_log)
        if lost_to is not None:
            self.logw.submit("log.reset", f"the event log ends at #{self.eventlog.last_seq} but "
                             f"the office acknowledged #{lost_to}: records were lost; it is "
                             "uploaded again from the start under a new identity",
                             detail={"old_log": old_id, "log": self.eventlog.log_id})
        elif forked:
            self.logw.submit("log.reset", f"{forked}; it is uploaded again from the start "
                             "under a new identity",
                             detail={"old_log": old_id, "log": self.eventlog.log_id})

        factory = self._factory or make_pin_factory(cfg.gpio.pin_factory)
        self.factory = factory
        self.outputs = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
        self._closers.append(self.outputs.close)
        self.safe_outputs = _SafeOutputs(self.outputs)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.inputs = DoorInputs(cfg.gpio, factory, self.q.put)
        self._closers.append(self.inputs.close)
        if cfg.api.simulation and cfg.gpio.pin_factory == "mock":
            self.inputs.sim_set_idle()
            while not self.q.empty():  # idle levels are the starting state, not events
                self.q.get_nowait()

        secure = None
        if any(r.kind == "nfc" for r in cfg.readers):  # secure cards are checked at the reader
            from .storage.secure_cards import SecureCards
            secure = SecureCards(self.whitelist, cfg.storage.data_dir / "card-counters.db", keys)
            self._closers.append(secure.close)
        reader_keys = None
        if any(r.kind == "osdp" for r in cfg.readers):  # their secure channel keys
            from .storage.reader_keys import ReaderKeys
            reader_keys = ReaderKeys(cfg.storage.data_dir / "reader-keys.db", keys)
            self._closers.append(reader_keys.close)
        self.readers = build_readers(cfg.readers, self.q.put, self.clock, factory=factory,
                                     secure=secure, reader_keys=reader_keys)
        self.safe_outputs.indicators = [r.indicate for r in self.readers
                                        if hasattr(r, "indicate")]
        pass_check = None
        if keys.site is not None:   # QR passes are signed by the site's key
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
            pass_check = (Ed25519PublicKey.from_public_bytes(keys.site.public_key),
                          keys.site.site, keys.site.group)
        self.engine = Engine(cfg, self.whitelist, self.safe_outputs, self.logw, self.clock,
                             pass_check=pass_check,
                             door_open=self.inputs.door_open(), tamper=self.inputs.tampered(),
                             fire=self.inputs.fire(),
                             readers_health=lambda: [r.health() for r in self.readers],
                             notifier=self.notifier, q=self.q)
        for r in self.readers:
            r.start()
            self._closers.append(r.stop)

        self.sync = None
        if cfg.sync.url:
            from .sync.door import SyncWorker
            self.sync = SyncWorker(cfg, keys, self.q.put, self.clock)
        tokens = None
        if keys.site is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            from .storage.used_tokens import UsedTokens
            from .sync.token import TokenVerifier
            used = UsedTokens(cfg.storage.data_dir / "tokens-used.db", keys.lookup)
            self.used_nonces = used   # unlock tokens' and live commands' nonces
            self._closers.append(used.close)
            tokens = TokenVerifier(Ed25519PublicKey.from_public_bytes(keys.site.public_key),
                                   cfg.door.id, used)
        self.server = ControlServer(cfg.api.socket,
                                    Controller(self.engine, self.readers, self.inputs,
                                               simulation=cfg.api.simulation, sync=self.sync,
                                               tokens=tokens),
                                    cfg.api.group, max_connections=cfg.api.max_connections,
                                    idle_timeout=cfg.api.idle_timeout_seconds)
        self.server.controller.log_check = self._log_check
        if keys.site is None:        # a door enrolled here: a capture may enrol into it
            self.server.controller.enroll_local = self._enroll_local
        else:                        # a site's door: the office's signed commands
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            from .live.commands import CommandVerifier
            from .live.runner import CommandRunner
            self.server.controller.commands = CommandRunner(
                CommandVerifier(Ed25519PublicKey.from_public_bytes(keys.site.public_key),
                                keys.site.site, cfg.door.id, self.used_nonces),
                self.server.controller, wall=self.clock.wall)
        self._closers.append(self.server.stop)
        self.server.start()

        count = self.whitelist.count()
        from .updater import take_reports, this_release
        release = this_release()
        self.logw.submit("daemon.started", f"accessd {__version__} started"
                         + (f" (release {release})" if release else ""),
                         detail={"credentials": count, "keys": keys.fingerprint,
                                 "simulation": cfg.api.simulation, "release": release})
        for r in take_reports(cfg.storage.data_dir):   # what the updater did meanwhile
            self.logw.submit(r["kind"], r["reason"], detail=r["detail"])
        self.core_thread = threading.Thread(target=self.engine.run, name="core", daemon=True)
        self.core_thread.start()
        if self.sync is not None:
            self.sync.start()
            self._closers.append(self.sync.stop)
        self.publisher = None
        if cfg.mqtt.enabled:
            self._start_publisher(cfg, keys)
        if cfg.metrics.enabled:
            self._start_metrics(cfg, acked_seq)
        status = f"door {cfg.door.id} ready, {count} credentials"
        log.info("%s; control socket %s", status, cfg.api.socket)
        self.notifier.ready(status)

    def _status(self, timeout: float = 2.0) -> dict:
        """The door's status from the core thread (for the publisher and the metrics)."""
        from concurrent.futures import Future

        from .core.events import StatusRequest
        fut: Future = Future()
        self.engine.post(StatusRequest(fut))
        st = fut.result(timeout)
        if self.sync is not None:
            st["sync"] = self.sync.info()
        return st

    def _start_metrics(self, cfg: Config, acked_seq) -> None:
        from .metrics import DoorMetrics

        def backlogs(st: dict) -> dict:
            pub = self.publisher.info()["backlog"] if self.publisher is not None else None
            return {"accessd_log_backlog_records": (
                        "Records the office has not acknowledged (nightly upload).",
                        max(0, st["log"]["last_seq"] - acked_seq()) if cfg.sync.url else None),
                    "accessd_publisher_backlog_records": (
                        "Records the MQTT broker has not acknowledged.", pub)}
        self.metrics = DoorMetrics(self._status, backlogs)
        self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        self._closers.append(self.metrics.stop)
        self.engine.observer = self.metrics

    def _start_publisher(self, cfg: Config, keys) -> None:
        from .errors import ConfigError
        from .live.publisher import Publisher
        site = cfg.mqtt.site or (keys.site.site if keys.site is not None else "")
        if not site:
            raise ConfigError(f"{cfg.path}: mqtt.site: set it (the door's key file names "
                              "no site)")
        runner = None
        if keys.site is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            from .live.commands import CommandVerifier
            from .live.runner import CommandRunner
            verifier = CommandVerifier(Ed25519PublicKey.from_public_bytes(keys.site.public_key),
                                       site, cfg.door.id, self.used_nonces)
            runner = CommandRunner(verifier, self.server.controller, wall=self.clock.wall)
        else:
            log.info("mqtt: the key file has no site key: office commands are off")
        self.publisher = Publisher(cfg, site=site, status=self._status, wall=self.clock.wall,
                                   commands=runner)
        self.logw.on_commit = self.publisher.nudge
        self.publisher.nudge(self.eventlog.last_seq)
        self.publisher.start()
        # stopped after the log is flushed (closers run last-in first-out), so the
        # final records, daemon.stopped among them, still reach the broker
        self._closers.insert(self._closers.index(self._stop_log), self.publisher.stop)
        self.server.controller.publisher = self.publisher

    def _enroll_local(self, kind: str, value: str, *, holder: str, valid_from=None,
                      valid_until=None) -> dict:
        """A captured card or fob, enrolled into this door's own whitelist (a door
        with no office); the number is never handed out."""
        from .storage.keys import load_key_file
        from .storage.whitelist_admin import WhitelistAdmin
        admin = WhitelistAdmin(self.cfg.storage.whitelist_path,
                               load_key_file(self.cfg.storage.key_file))
        try:
            rec = admin.enroll(kind, value, holder, valid_from=valid_from,
                               valid_until=valid_until)
        finally:
            admin.close()
        return {"credential": rec.credential_id, **rec.to_row()}

    def _log_check(self) -> dict:
        """The control socket's 'log-check' (asked by 'accessd upload'): when the upload
        found this log's identity used for another history, give the log a new one."""
        from .sync.upload import conflict
        try:
            why = conflict(self.cfg.storage.data_dir, self.eventlog.log_id)
        except (ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        if not why:
            return {"ok": True, "reset": False, "log": self.eventlog.log_id}
        fut = self.logw.reidentify(f"{why}; it is uploaded again from the start under a "
                                   "new identity")
        try:
            fut.result(10)
        except Exception as exc:  # (a Future's own errors, or the log's)
            return {"ok": False, "error": f"the log could not take a new identity: {exc}"}
        return {"ok": True, "reset": True, "log": self.eventlog.log_id}

    # ---- shutdown -------------------------------------------------------
    def stop(self, reason: str = "stop requested") -> None:
        """Relay safe first, then everything else, each step bounded."""
        if hasattr(self, "safe_outputs"):
            self.safe_outputs.safe()
        self.notifier.stopping()
        log.info("stopping: %s", reason)
        if self.core_thread is not None:
            self.q.put(Stop())
            self.core_thread.join(2.0)
            if self.core_thread.is_alive():
                log.error("core thread did not stop within 2 s")
        if hasattr(self, "logw"):
            self.logw.submit("daemon.stopped", reason)
        self._close_all()

    def _stop_log(self) -> None:
        if not self.logw.stop(5.0):
            log.error("event log could not be flushed within 5 s; %d records lost",
                      self.logw.pending)
        self.eventlog.close()

    def _close_all(self) -> None:
        while self._closers:
            fn = self._closers.pop()
            try:
                fn()
            except Exception:
                log.exception("error during shutdown")


def setup_logging(level: str = "INFO") -> None:
    """stderr without timestamps (journald adds them); syslog priority prefixes under systemd."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        prio = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

        class _Prio(logging.Formatter):
            def format(self, record):
                return f"<{prio.get(record.levelname, 6)}>{super().format(record)}"
        handler.setFormatter(_Prio("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(cfg: Config) -> int:
    """Run the door until SIGTERM/SIGINT. Returns the process exit code."""
    sigs = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)  # every thread started after inherits it
    service = DoorService(cfg)
    try:
        service.start()
    except AccessdError as exc:
        log.error("cannot start: %s", exc)
        return 2 if isinstance(exc, ValueError) else 1
    sig = signal.sigwait(sigs)
    stopper = threading.Thread(target=service.stop, args=(f"signal {signal.Signals(sig).name}",),
                               name="shutdown")
    stopper.start()
    while stopper.is_alive():
        info = signal.sigtimedwait(sigs, 0.2)
        if info is not None and info.si_signo == signal.SIGINT:
            service.safe_outputs.safe()
            log.error("second SIGINT: exiting now, relay made safe")
            os._exit(130)
    return 0
