"""The door's metrics endpoint (prometheus_client; [metrics] listen = "127.0.0.1:9469").

Served over HTTP on the address configured (localhost unless an installer opens
it up): Prometheus text, or OpenMetrics when the scraper asks for
application/openmetrics-text. What it holds:

  accessd_decisions_total{outcome}          granted / denied
  accessd_decision_latency_seconds          tap queued -> relay set (histogram)
  accessd_reader_faults_total               reader.fault records
  accessd_alarms_total{kind}                alarm records (forced, held open, duress, ...)
  accessd_log_backlog_records               records the office has not acknowledged yet
  accessd_publisher_backlog_records         records the MQTT broker has not acknowledged
  accessd_whitelist_age_seconds             since the office issued the whitelist
  accessd_whitelist_credentials             credentials in it
  accessd_clock_synced                      1 when the wall clock is synchronised
  accessd_relay_unlocked, accessd_door_open 0 / 1

Counters are counted as they happen (the core thread calls `decision()` and
`record()`, which only add to a number); gauges are read at scrape time from the
door's status (a StatusRequest through the core, as `accessctl status` does), so
a scrape never reaches into the core's state from another thread.
"""

from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .alarms import ALARM_KINDS

log = logging.getLogger("accessd.metrics")

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class _StatusCollector:
    def __init__(self, status: Callable[[], dict], backlogs: Callable[[dict], dict]):
        self._status = status
        self._backlogs = backlogs

    def collect(self):
        try:
            st = self._status()
        except Exception as exc:  # the core is busy or stopping: no gauges this time
            log.debug("metrics: no status: %s", exc)
            return
        wl = st.get("whitelist") or {}

        def gauge(name, doc, value):
            if value is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], float(value))
                yield g
        age = wl.get("age_hours")
        yield from gauge("accessd_whitelist_age_seconds",
                         "Seconds since the office issued the whitelist.",
                         None if age is None else age * 3600)
        yield from gauge("accessd_whitelist_credentials", "Credentials in the whitelist.",
                         wl.get("credentials"))
        yield from gauge("accessd_clock_synced", "1 when the wall clock is synchronised.",
                         int(bool((st.get("clock") or {}).get("synced"))))
        yield from gauge("accessd_relay_unlocked", "1 while the lock relay is unlocked.",
                         int(st.get("relay") == "unlocked"))
        yield from gauge("accessd_door_open", "1 while the door contact reads open.",
                         int(bool(st.get("door_open"))))
        for name, (doc, value) in self._backlogs(st).items():
            yield from gauge(name, doc, value)


class DoorMetrics:
    def __init__(self, status: Callable[[], dict], backlogs: Callable[[dict], dict]):
        self.registry = CollectorRegistry()
        self.decisions = Counter("accessd_decisions", "Access decisions by outcome.",
                                 ["outcome"], registry=self.registry)
        for outcome in ("granted", "denied"):
            self.decisions.labels(outcome)
        self.latency = Histogram("accessd_decision_latency_seconds",
                                 "From a credential queued to the relay set.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reader_faults = Counter("accessd_reader_faults", "Reader faults.",
                                     registry=self.registry)
        self.alarms = Counter("accessd_alarms", "Alarm records by kind.", ["kind"],
                              registry=self.registry)
        self.registry.register(_StatusCollector(status, backlogs))
        self._server = None

    # ---- called by the core thread ---------------------------------------------------
    def decision(self, outcome: str, seconds: float) -> None:
        if outcome in ("granted", "denied"):
            self.decisions.labels(outcome).inc()
            self.latency.observe(seconds)

    def record(self, kind: str) -> None:
        if kind == "reader.fault":
            self.reader_faults.inc()
        if kind in ALARM_KINDS:
            self.alarms.labels(kind).inc()

    # ---- the endpoint --------------------------------------------------------------------
    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server
        try:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            from .errors import ConfigError
            raise ConfigError(f"metrics.listen: cannot listen on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        if isinstance(self._server, tuple):   # prometheus_client >= 0.20: (server, thread)
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(2.0)
        self._server = None
