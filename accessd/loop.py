"""The core thread's machinery, apart from what the door does: one queue, deadlines
on an injected clock, the systemd watchdog, log records (with the relay-to-commit
latency the benchmark reads), and replies sent once their records are committed.

`Engine` (engine.py) is the door on top of it: its `handle()` takes each queue
item, its `tick()` the deadlines it names in `deadlines()`.
"""

from __future__ import annotations

import gc
import logging
import queue
import time
from collections import deque
from concurrent.futures import Future

from .core.events import Stop
from .storage.eventlog import reply_when_committed

log = logging.getLogger("accessd.engine")


class CoreLoop:
    def __init__(self, logw, clock, *, notifier=None, q: queue.SimpleQueue | None = None):
        self.logw = logw
        self.clock = clock
        self.notifier = notifier
        self.q: queue.SimpleQueue = q if q is not None else queue.SimpleQueue()
        self.started_mono = clock.monotonic()
        self.counters = {"granted": 0, "denied": 0, "errors": 0}
        # queued -> outputs in their decided state (µs), and relay set -> log committed (µs),
        # for the benchmark.
        self.decision_latency_us: deque[float] = deque(maxlen=200_000)
        self.log_lag_us: deque[float] = deque(maxlen=200_000)
        self.observer = None   # metrics.DoorMetrics when the metrics endpoint is on
        self._next_watchdog = None
        if notifier is not None and notifier.watchdog_interval:
            self._next_watchdog = clock.monotonic()

    def post(self, item) -> None:
        self.q.put(item)

    # ---- what the door supplies ------------------------------------------
    def handle(self, item, now: float) -> None:
        raise NotImplementedError

    def deadlines(self) -> list[float | None]:
        return []

    def on_stop(self) -> None:
        """Called in the core thread when Stop arrives (the door makes its relay safe)."""

    # ---- records and replies ----------------------------------------------
    def _record(self, kind: str, reason: str, *, credential: str | None = None,
                detail: dict | None = None, t_relay: int | None = None) -> Future:
        fut = self.logw.submit(kind, reason, credential=credential, detail=detail)
        if self.observer is not None:
            self.observer.record(kind)
        if t_relay is not None:
            fut.add_done_callback(
                lambda f, t=t_relay: self.log_lag_us.append((time.perf_counter_ns() - t) / 1e3))
        return fut

    def _log(self, records) -> list[Future]:
        """Log core.access.LogRecord values (from the pure pipeline and watches)."""
        return [self._record(r.kind, r.reason, credential=r.credential, detail=r.detail or None)
                for r in records]

    _reply_when_logged = staticmethod(reply_when_committed)

    # ---- the loop -----------------------------------------------------------
    def deadline(self) -> float | None:
        live = [d for d in (*self.deadlines(), self._next_watchdog) if d is not None]
        return min(live) if live else None

    def tick(self, now: float) -> None:
        if self._next_watchdog is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_interval

    def run(self) -> None:
        """Run until a Stop item arrives (on_stop() first, then return)."""
        # Everything built at startup lives as long as the daemon: keep it out of
        # every garbage collection, so collections on the tap path stay short.
        gc.collect()
        gc.freeze()
        while True:
            d = self.deadline()
            timeout = None if d is None else max(0.0, d - self.clock.monotonic())
            try:
                item = self.q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, Stop):
                self.on_stop()
                return
            try:
                if item is None:
                    self.tick(self.clock.monotonic())
                else:
                    self.handle(item, self.clock.monotonic())
            except Exception as exc:  # the door must keep deciding
                self.counters["errors"] += 1
                log.exception("core error while handling %s", type(item).__name__)
                self._record("core.error", f"{type(exc).__name__}: {exc}")
                reply = getattr(item, "reply", None)
                if reply is not None and not reply.done():
                    reply.set_result({"ok": False, "error": f"internal error: {exc}"})
