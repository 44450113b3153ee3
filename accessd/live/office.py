"""The office's MQTT client: send a signed command and wait for its ack; follow the
whole site's topics for `accessctl watch`.

It logs in as office@<site> with the password derived from the site key
(live/broker.py), so only a machine holding the site's keys can watch or
command. `watch` uses a persistent session per terminal (client id from the host
and user), so what was published while the terminal was off is delivered when it
comes back, and stored once (the intake drops what it already has). It
subscribes again on every connect (a broker restarted without its saved state
has forgotten the session), retries the broker at least every RECONNECT_MAX
seconds, and says when it connects ("$connected", with whether the broker still
had the session) and disconnects ("$disconnected"): what a broker lost, the
doors send again (live/backfill.py).
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from ..errors import AccessdError
from ..site.db import os_user
from . import commands as wire
from . import topics


RECONNECT_MAX = 5   # seconds between reconnect attempts at most (doors: 30 by default)


class LiveError(AccessdError, ConnectionError):
    """The broker or a door could not be reached, or refused."""


class OfficeClient:
    def __init__(self, broker, site_id: str, *, client_id: str = "",
                 persistent: bool = False, session: str = ""):
        self.broker = broker
        self.site_id = site_id
        u = urlparse(broker.url)
        self.host, self.port = u.hostname, u.port or (8883 if u.scheme == "mqtts" else 1883)
        if persistent and not client_id:   # one session per terminal (host and user)
            client_id = (f"accessd-office-{site_id}-"
                         f"{session or f'{socket.gethostname()}-{os_user()}'}")[:64]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "",
                                  clean_session=not persistent, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(broker.username, broker.password)
        if u.scheme == "mqtts":
            self.client.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None,
                                cert_reqs=ssl.CERT_REQUIRED)
        # paho reconnects on its own; at most every RECONNECT_MAX s (its default is 120)
        self.client.reconnect_delay_set(1, RECONNECT_MAX)
        self.messages: queue.Queue = queue.Queue()
        self._topics: list[str] = []      # subscribed again on every connect
        self._connected = threading.Event()
        self._refused = ""
        self._subacks: dict[int, list] = {}
        self._sub_cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, bytes(m.payload), m.retain))
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        # a broker that restarted without its saved state has forgotten our
        # subscriptions (and what it held for us): subscribe on every connect
        for topic in self._topics:
            client.subscribe(topic, qos=1)
        self._connected.set()
        self.messages.put(("$connected", b"session" if flags.session_present else b"",
                           False))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if reason_code.is_failure and not self._refused:
            self.messages.put(("$disconnected", str(reason_code).encode(), False))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._sub_cond:
            self._subacks[mid] = reason_codes
            self._sub_cond.notify_all()

    def connect(self, timeout: float = 10.0) -> "OfficeClient":
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise LiveError(f"cannot reach the broker {self.host}:{self.port}: "
                            f"{exc.strerror or exc}") from None
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if self._refused:
                self.close()
                raise LiveError(f"the broker {self.host}:{self.port} refused the office's "
                                f"login: {self._refused} (run 'accessctl broker setup' and "
                                "install its files)")
            if time.monotonic() > deadline:
                self.close()
                raise LiveError(f"no answer from the broker {self.host}:{self.port} "
                                f"within {timeout:g} s")
        return self

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        if topic not in self._topics:
            self._topics.append(topic)
        result, mid = self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + timeout
        with self._sub_cond:
            while mid not in self._subacks:
                if time.monotonic() > deadline:
                    raise LiveError(f"the broker did not confirm the subscription to {topic}")
                self._sub_cond.wait(0.1)
            codes = self._subacks.pop(mid)
        if any(c.is_failure for c in codes):
            raise LiveError(f"the broker refused the subscription to {topic} (ACL?)")

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- commands ------------------------------------------------------------------
    def send(self, signing_key, door: str, cmd: str, args: dict | None = None, *,
             by: str = "", ttl: float = 60.0) -> str:
        """Publish a signed command without waiting for its ack (which arrives on
        .../cmd/ack to whoever follows it); returns its nonce."""
        message, nonce = wire.sign(signing_key, site=self.site_id, door=door, cmd=cmd,
                                   args=args, now=time.time(), ttl=ttl, by=by or os_user())
        self.client.publish(f"{topics.base(self.site_id, door)}/cmd", message, qos=1)
        return nonce

    def command(self, signing_key, door: str, cmd: str, args: dict | None = None, *,
                by: str = "", ttl: float = 60.0, timeout: float = 30.0) -> dict:
        """Send a signed command and return the door's ack (a dict with "ok")."""
        import json
        base = topics.base(self.site_id, door)
        self.subscribe(f"{base}/cmd/ack")
        message, nonce = wire.sign(signing_key, site=self.site_id, door=door, cmd=cmd,
                                   args=args, now=time.time(), ttl=ttl, by=by or os_user())
        info = self.client.publish(f"{base}/cmd", message, qos=1)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(f"door {door} did not answer within {timeout:g} s (offline? "
                                "'accessctl watch' shows which doors are online)")
            try:
                topic, payload, _ = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if topic == "$disconnected":
                raise LiveError(f"lost the broker while waiting for door {door}: "
                                f"{payload.decode()}")
            try:
                ack = json.loads(payload)
            except ValueError:
                continue
            if isinstance(ack, dict) and ack.get("nonce") == nonce:
                info.wait_for_publish(1.0)
                return ack


def connect(site, url: str | None = None, *, persistent: bool = False,
            session: str = "") -> OfficeClient:
    """The office logged in to its site's broker (the one 'broker setup' recorded, or
    url), as office@<site>."""
    from .broker import office_broker
    return OfficeClient(office_broker(site, url), site.site_id, persistent=persistent,
                        session=session).connect()


def remote_capture(oc: OfficeClient, signing_key, door: str, timeout: float) -> tuple[str, str]:
    """(kind, value) of the next card or fob presented at `door`: the door seals it to a
    one-off key of ours, so the broker never sees the number."""
    priv, pub = wire.reply_keypair()
    ack = oc.command(signing_key, door, "capture", {"timeout": timeout, "reply_key": pub},
                     timeout=timeout + 15)
    if not ack.get("ok"):
        raise LiveError(f"door {door}: {ack.get('error') or 'nothing was captured'}")
    import json
    try:
        got = json.loads(wire.open_reply(priv, ack["sealed"]))
        return str(got["kind"]), str(got["value"])
    except (KeyError, TypeError, ValueError):
        raise LiveError(f"door {door}: its capture reply is not readable") from None


REMOTE_COMMANDS = ("sync-now", "mode", "unlock")


def remote(site, door: str, cmd: str, args: dict | None = None, *, url: str | None = None,
           ttl: float = 60, timeout: float = 30) -> dict:
    """A signed command to one door of the site and its answer (the ack): sync-now,
    mode {"mode": ...}, or unlock (a one-time unlock token is made for it). Recorded
    in the audit trail under whoever the site's actor is."""
    import time as _time

    from ..sync.token import issue
    site.door(door)                      # a door of this site?
    if cmd not in REMOTE_COMMANDS:
        raise LiveError(f"unknown command {cmd!r}: one of {', '.join(REMOTE_COMMANDS)}")
    args = dict(args or {})
    if cmd == "unlock":
        args["token"] = issue(site.keys.signing, door, now=_time.time(), ttl=ttl, by=site.actor)
    if cmd == "sync-now":
        timeout = max(timeout, 120)      # a door's sync may retry its store
    with connect(site, url) as oc:
        ack = oc.command(site.keys.signing, door, cmd, args, ttl=ttl, timeout=timeout,
                         by=site.actor)
    site.audit(f"remote.{cmd}", f"door {door}" + (f" {args['mode']}" if cmd == "mode" else "")
               + (": done" if ack.get("ok") else f": {ack.get('error') or 'refused'}"))
    return ack
