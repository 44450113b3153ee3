"""The door's publisher: the durable event log is the outbox (paho-mqtt, MQTT 3.1.1).

A thread of its own tails the event log (a read-only SQLite connection, woken by
each commit) from the last sequence number the broker acknowledged, and
publishes every record with QoS 1 to accessd/<site>/<door>/events (alarms to
.../alarms too). The acknowledged position is kept in the data directory
(mqtt-state.json), so after a crash or a SIGKILL publishing resumes where the
broker stopped confirming: nothing is lost, and what may be sent twice carries
its seq and hash, so the office drops the copy.

The decision path never waits for any of this: the core hands records to the
log writer as before, and the publisher reads what was committed. With the
broker down, slow or refusing, records simply wait in the log (the backlog is
the log itself) and are caught up in order on reconnect; paho reconnects with
back-off (1 s doubling to mqtt.reconnect_max_seconds) and re-sends what was in
flight. A retained .../status is published on change and every
status_interval_seconds; .../availability is "online", with a retained Last
Will of "offline".
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from .. import __version__
from ..alarms import ALARM_KINDS
from ..storage.cursor import read_cursor, write_cursor
from ..storage.eventlog import iter_events, open_reader, read_log_id
from . import homeassistant, topics

log = logging.getLogger("accessd.live")

BATCH = 500          # records read from the log at a time
INFLIGHT = 100       # QoS 1 messages on the wire before paho queues the rest
STATE_FILE = "mqtt-state.json"
STATUS_MIN_GAP = 1.0  # seconds between two status messages at the least
CMD_QUEUE = 32       # commands waiting to be carried out; more are dropped (a flood)


def read_state(data_dir: Path) -> tuple[str | None, int]:
    """(log id, last seq the broker acknowledged); (None, 0) when absent or unreadable
    (then the log is published again from its start: duplicates, never a gap)."""
    try:
        return read_cursor(data_dir / STATE_FILE)
    except (OSError, ValueError):
        return None, 0


class Publisher:
    """Publishes a door's log, status and availability to the broker."""

    def __init__(self, cfg, *, site: str, status: Callable[[], dict],
                 wall: Callable[[], float] = time.time, commands=None):
        self.cfg = cfg
        self.mq = cfg.mqtt
        self.site = site
        self.base = topics.base(site, cfg.door.id)
        self._status = status
        self.commands = commands        # a live.runner.CommandRunner, or None (no site key)
        self._cmd_q: queue.Queue = queue.Queue(maxsize=CMD_QUEUE)
        self._wall = wall
        self.data_dir = cfg.storage.data_dir
        self._nudge = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._wake_mid = -1     # the message whose acknowledgement ends the current batch
        self._acked: set[int] = set()   # message ids acknowledged since the batch began
        self._connected = False
        self.link = "connecting"
        self.log_id, self.acked_seq = read_state(self.data_dir)
        self.last_seq = 0            # the newest record committed, as far as we know
        self.published = 0
        self._rewind: int | None = None   # the office asked for records from here again
        self._status_now = threading.Event()   # a status at once (after each connect)
        u = urlparse(self.mq.url)
        self.host, self.port = u.hostname, u.port or (8883 if u.scheme == "mqtts" else 1883)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"accessd-{site}-{cfg.door.id}"[:64],
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        if self.mq.username:
            c.username_pw_set(self.mq.username, self.mq.password() or None)
        if u.scheme == "mqtts":
            c.tls_set(ca_certs=str(self.mq.ca_file) if self.mq.ca_file else None,
                      cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(1, max(1, int(self.mq.reconnect_max_seconds)))
        c.max_inflight_messages_set(INFLIGHT)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._cmd_thread = threading.Thread(target=self._run_commands, name="mqtt-commands",
                                            daemon=True)

    # ---- paho's callbacks (its network thread) -------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.link = f"refused by the broker: {reason_code}"
            log.warning("mqtt: %s", self.link)
            return
        client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
        if self.commands is not None:
            client.subscribe(f"{self.base}/cmd", qos=1)
        if self.mq.home_assistant:
            client.subscribe(homeassistant.BIRTH_TOPIC, qos=1)
            self._announce(client)
        with self._cond:
            self._connected = True
            self.link = "connected"
            self._cond.notify_all()
        self._status_now.set()    # the office learns the log's head (a broker that lost
        self._nudge.set()         # what it held: it asks for the rest again)
        log.info("mqtt: connected to %s:%s", self.host, self.port)

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError`: the exception says why
        exc = sys.exc_info()[1]
        cert = getattr(exc, "verify_message", None)   # ssl.SSLCertVerificationError
        why = f"certificate verify failed: {cert}" if cert else str(exc or "failed")
        if self.link != f"cannot connect: {why}":
            log.warning("mqtt: cannot connect to %s:%s: %s; retrying", self.host, self.port, why)
        self.link = f"cannot connect: {why}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            if was and not self._stop.is_set():   # (a refusal keeps saying why)
                self.link = f"disconnected: {reason_code}"
            self._cond.notify_all()
        if was:
            log.warning("mqtt: disconnected from %s:%s (%s); records wait in the log",
                        self.host, self.port, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # wake the publishing thread when its batch's last message is acknowledged (the
        # broker acknowledges in order; the thread also looks twice a second anyway)
        with self._cond:
            self._acked.add(mid)   # (paho marks the message published only after this call)
            if mid == self._wake_mid:
                self._cond.notify_all()

    def _announce(self, client) -> None:
        for topic, payload in homeassistant.discovery(self.site, self.cfg.door.id, self.base):
            client.publish(topic, payload, qos=1, retain=True)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == homeassistant.BIRTH_TOPIC:
            if self.mq.home_assistant and bytes(msg.payload) == b"online" and not msg.retain:
                self._announce(client)        # Home Assistant (re)started
            return
        if msg.topic != f"{self.base}/cmd" or self.commands is None:
            return
        if msg.retain:   # a command left on the broker is not a command sent now
            log.warning("mqtt: ignored a retained message on %s (clear it with an empty "
                        "retained message)", msg.topic)
            return
        if not msg.payload:   # how a retained message is cleared: never a command
            return
        try:
            self._cmd_q.put_nowait(bytes(msg.payload))
        except queue.Full:
            log.warning("mqtt: %d commands already waiting; one dropped", CMD_QUEUE)

    def _run_commands(self) -> None:
        while True:
            message = self._cmd_q.get()
            if message is None:
                return
            try:
                ack = self.commands.handle(message)
            except Exception:  # never let one command end the thread
                log.exception("mqtt: command failed")
                continue
            self.client.publish(f"{self.base}/cmd/ack", json.dumps(ack, default=str), qos=1)

    # ---- life ------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self.mq.keepalive_seconds)
        self.client.loop_start()
        self._thread.start()
        if self.commands is not None:
            self._cmd_thread.start()

    def rewind(self, log_id: str, first: int) -> dict:
        """The office missed records of this log from `first` on (a broker that lost
        them): publish them again (the office keeps each record once)."""
        if log_id != (self.log_id or ""):
            return {"ok": False, "error": f"log {log_id} is not this door's current log "
                                          f"({self.log_id}); the nightly upload has it"}
        with self._cond:
            self._rewind = first - 1 if self._rewind is None else min(self._rewind, first - 1)
        self._nudge.set()
        return {"ok": True, "from": first, "to": self.last_seq}

    def nudge(self, seq: int | None = None) -> None:
        """Called by the log writer after each commit."""
        if seq is not None:
            self.last_seq = max(self.last_seq, seq)
        self._nudge.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish what the log still holds (for up to `timeout` while connected), say
        "offline", disconnect. The log writer has told us of its last commit (nudge):
        the service stops us after the log is flushed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._connected and self.acked_seq < self.last_seq
                   and time.monotonic() < deadline):
                self._cond.wait(0.05)
        self._stop.set()
        self._nudge.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._cmd_thread.is_alive():
            try:
                self._cmd_q.put_nowait(None)
            except queue.Full:
                pass
            self._cmd_thread.join(1.0)
        if self._connected:
            info = self.client.publish(f"{self.base}/availability", "offline", qos=1,
                                       retain=True)
            deadline = time.monotonic() + 1.0
            while not info.is_published() and time.monotonic() < deadline:
                with self._cond:
                    self._cond.wait(0.05)
        self.link = "stopped"
        self.client.disconnect()
        self.client.loop_stop()

    def info(self) -> dict:
        """For `accessctl status`: the link and how far behind the broker is."""
        return {"broker": f"{self.host}:{self.port}", "link": self.link,
                "acked_seq": self.acked_seq,
                "backlog": max(0, self.last_seq - self.acked_seq), "published": self.published}

    # ---- the publishing thread ---------------------------------------------------------
    def _run(self) -> None:
        conn = None
        last_status = 0.0
        status_due = True
        while not self._stop.is_set():
            with self._cond:
                if not self._connected:
                    self._cond.wait(1.0)
                    continue
            self._nudge.clear()
            try:
                if conn is None:
                    conn = open_reader(self.cfg.storage.eventlog_path)
                log_id = read_log_id(conn) or ""
                if log_id != (self.log_id or ""):   # a new log: publish it from its start
                    self.log_id, self.acked_seq = log_id, 0
                with self._cond:
                    if self._rewind is not None:
                        self.acked_seq = min(self.acked_seq, self._rewind)
                        self._rewind = None
                rows = list(iter_events(conn, after_seq=self.acked_seq, limit=BATCH))
            except Exception as exc:  # the log is the daemon's; never die over reading it
                log.warning("mqtt: cannot read the event log: %s", exc)
                conn = None
                self._stop.wait(1.0)
                continue
            if rows:
                self.last_seq = max(self.last_seq, rows[-1]["seq"])
                if self._publish(rows):
                    self.acked_seq = rows[-1]["seq"]
                    write_cursor(self.data_dir / STATE_FILE, self.log_id, self.acked_seq)
                    with self._cond:
                        self._cond.notify_all()
                    status_due = True
                continue
            now = self._wall()
            # on change at most once a second (a busy door is not a status flood), and
            # every status_interval_seconds anyway
            if (status_due and now - last_status >= STATUS_MIN_GAP) or \
                    now - last_status >= self.mq.status_interval_seconds or \
                    self._status_now.is_set():
                self._status_now.clear()
                self._publish_status()
                last_status, status_due = now, False
            self._nudge.wait(min(1.0, self.mq.status_interval_seconds))
        if conn is not None:
            conn.close()

    def _publish(self, rows: list[dict]) -> bool:
        """Publish records; True once the broker acknowledged all of them. Across a
        reconnect paho sends the unacknowledged ones again, in order."""
        infos = []
        with self._cond:
            self._acked.clear()
        for r in rows:
            payload = topics.event_payload(self.log_id or "", r)
            infos.append(self.client.publish(f"{self.base}/events", payload, qos=1))
            if r["kind"] in ALARM_KINDS:
                infos.append(self.client.publish(f"{self.base}/alarms", payload, qos=1))
        self._wake_mid = infos[-1].mid if infos else -1
        first = 0    # acknowledgements come (nearly) in order: one pass over the batch
        with self._cond:
            while True:
                while first < len(infos) and (infos[first].mid in self._acked
                                              or infos[first].is_published()):
                    first += 1
                if first == len(infos):
                    break
                if self._stop.is_set():
                    return False
                self._cond.wait(0.5)
        self.published += len(rows)
        return True

    def _publish_status(self) -> None:
        try:
            st = self._status()
        except Exception as exc:  # the core is busy or stopping: next time
            log.debug("mqtt: no status: %s", exc)
            return
        doc = {"ts": self._wall(), "version": __version__, "door": self.cfg.door.id,
               **{k: st.get(k) for k in ("mode", "release", "relay", "door_open", "alarms", "whitelist",
                                         "readers", "clock", "sync", "log")},
               "live": self.info()}
        self.client.publish(f"{self.base}/status", json.dumps(doc, default=str), qos=1,
                            retain=True)
