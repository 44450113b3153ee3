"""Revocation propagation at estate scale (scripts/bench.py's `revocation`).

225 doors in 15 groups, in this process: each a real door sync worker
(accessd.sync.door.SyncWorker: the signed index, the bundle, its checks, the
staging with fsync) with its own data directory, key file and whitelist, and the
core's part played by installing the staged whitelist (Whitelist.replace_with)
and deciding the revoked card on it with the real decide(). Staff revoke a card
held in every group and publish; each door's figure is the time from the start
of the revocation to the moment that door first denies the card.

  file    a file:// store, each door syncing every `interval` seconds, their phases
          spread evenly over it (as 225 doors started at different times are)
  s3      the same against an S3-protocol server (moto, as the tests use)
  push    a file:// store with a long interval (no timer helps): the office sends
          every door the signed sync-now command over the live channel (a local
          Mosquitto; each door its own MQTT connection, checking the command with
          the real CommandVerifier), as `accessctl publish --push` does
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

GROUPS, PER_GROUP, RESIDENTS = 15, 15, 600
UID = "04C0FFEE"


def _pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


class _Door:
    """One door's sync, in process: the real worker, and the core's install + decide."""

    def __init__(self, directory: Path, site, door_id: str, store_url: str,
                 interval: float):
        from accessd.clock import SystemClock
        from accessd.config import load_config
        from accessd.site.publish import door_keys
        from accessd.storage.keys import write_key_file
        from accessd.storage.whitelist import Whitelist
        from accessd.storage.whitelist_admin import WhitelistAdmin
        from accessd.sync.door import SyncWorker
        from accessd.testing import write_sim_config
        config = write_sim_config(directory, keys=False, door_id=door_id)
        config.write_text(config.read_text() + f'\n[sync]\nurl = "{store_url}"\n'
                                               f"interval_seconds = {interval}\n")
        keys = door_keys(site, door_id)
        write_key_file(directory / "keys/door-keys.json", keys)
        self.id = door_id
        self.cfg = load_config(config)
        self.cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
        WhitelistAdmin(self.cfg.storage.whitelist_path, keys).close()
        self.whitelist = Whitelist(self.cfg.storage.whitelist_path, keys)
        self.digest = self.whitelist.digest("nfc", UID)
        self.target = None          # the version that revokes the card
        self.denied_at: float | None = None
        self.applied = threading.Event()
        self.worker = SyncWorker(self.cfg, keys, self.post, SystemClock())

    def post(self, event) -> None:
        from accessd.core.decide import decide
        from accessd.core.events import SwapWhitelist
        if not isinstance(event, SwapWhitelist):
            return
        self.whitelist.replace_with(event.path)
        event.reply.set_result({"ok": True, "credentials": self.whitelist.count()})
        if self.target is not None and event.version >= self.target and self.denied_at is None:
            if not decide(self.whitelist.lookup(self.digest), "normal", time.time()).granted:
                self.denied_at = time.perf_counter()
        self.applied.set()

    def close(self) -> None:
        self.worker.stop()
        self.whitelist.close()


def _site(directory: Path):
    from accessd.site.db import SiteDB
    site = SiteDB.init(directory / "site", "bench")
    with site.db.atomic():
        for g in range(GROUPS):
            site.group_add(f"block-{g:02d}")
            for d in range(PER_GROUP):
                site.door_add(f"door-{g:02d}-{d:02d}", f"block-{g:02d}")
        for i in range(RESIDENTS):
            p = site.person_add(f"Resident {i}", f"{i // 4}{'ABCD'[i % 4]}", "resident")
            site.credential_add(p, "nfc", f"{0x05000000 + i:08X}")
            site.grant(p, f"block-{i % GROUPS:02d}")
        warden = site.person_add("Estate Warden", "office", "staff")
        card = site.credential_add(warden, "nfc", UID)
        for g in range(GROUPS):
            site.grant(warden, f"block-{g:02d}")
    return site, card["id"]


def _run(directory: Path, store_url: str, *, interval: float, push_broker=None) -> dict:
    from accessd.site.publish import publish
    directory.mkdir(parents=True, exist_ok=True)
    site, card = _site(directory)
    store = site.store(store_url)
    site.store_url_set(store_url)
    publish(site, store)
    doors = [_Door(directory / d["id"], site, d["id"], store_url, interval)
             for d in site.doors()]
    listeners = []
    try:
        # start the workers with their phases spread over one interval (each syncs at
        # start, then every interval); wait for version 1 everywhere
        gap = interval / len(doors) if push_broker is None else 0
        for door in doors:
            door.worker.start()
            if gap:
                time.sleep(gap)
        for door in doors:
            if not door.applied.wait(120):
                raise RuntimeError(f"{door.id} never applied the first bundle")
        if push_broker is not None:
            listeners = [_Listener(push_broker, site, door) for door in doors]
            for lst in listeners:
                lst.ready.wait(30)
        version = site.next_bundle_version()   # the revoking publish takes this number
        for door in doors:
            door.target = version
        t0 = time.perf_counter()
        site.credential_status(card, "lost")
        publish(site, store)
        published = time.perf_counter()
        if push_broker is not None:
            from accessd.live.office import OfficeClient
            from accessd.live.broker import OfficeBroker
            oc = OfficeClient(OfficeBroker(push_broker.url, None, None, None),
                              site.site_id).connect()
            for door in doors:
                oc.send(site.keys.signing, door.id, "sync-now")
            pushed = time.perf_counter()
        deadline = time.monotonic() + 3 * interval + 120
        while any(d.denied_at is None for d in doors) and time.monotonic() < deadline:
            time.sleep(0.05)
        if push_broker is not None:
            oc.close()
        lat = [d.denied_at - t0 for d in doors if d.denied_at is not None]
        res = {"doors": len(doors), "denied": len(lat),
               "revoke_to_deny_s": {"p50": round(statistics.median(lat), 2),
                                    "p99": round(_pct(lat, 99), 2), "max": round(max(lat), 2)},
               "publish_s": round(published - t0, 2), "interval_s": interval}
        if push_broker is not None:
            res["push_sent_s"] = round(pushed - published, 2)
        return res
    finally:
        for lst in listeners:
            lst.close()
        for door in doors:
            door.close()
        site.close()


class _Listener:
    """A door's live channel for the push: its MQTT connection, the signed command
    checked, sync-now handed to its worker."""

    def __init__(self, broker, site, door: _Door):
        import paho.mqtt.client as mqtt
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        from accessd.live import topics
        from accessd.live.commands import CommandVerifier
        from accessd.storage.used_tokens import MemoryUsedTokens
        self.door = door
        self.verifier = CommandVerifier(Ed25519PublicKey.from_public_bytes(
            site.keys.public_raw()), site.site_id, door.id, MemoryUsedTokens())
        self.topic = f"{topics.base(site.site_id, door.id)}/cmd"
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{door.id}",
                        protocol=mqtt.MQTTv311)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(self.topic, qos=1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._message
        c.connect("127.0.0.1", broker.port, keepalive=30)
        c.loop_start()
        self.client = c

    def _message(self, client, userdata, msg) -> None:
        cmd = self.verifier.verify(bytes(msg.payload), time.time())
        if cmd.cmd == "sync-now":
            self.door.worker.request()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def bench_revocation(directory: Path, *, interval: float = 10.0) -> dict:
    """interval: the doors' sync interval on the file and S3 stores."""
    import os

    from accessd.testing import Mosquitto, S3Server, mosquitto_path
    out = {"file": _run(directory / "file", (directory / "file-store").as_uri(),
                        interval=interval)}
    s3 = S3Server()
    saved = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    try:
        out["s3"] = _run(directory / "s3", s3.url, interval=interval)
    finally:
        s3.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if mosquitto_path() is None:
        out["push"] = {"skipped": "mosquitto is not installed"}
    else:
        broker = Mosquitto(directory / "broker", durable=False)
        try:
            out["push"] = _run(directory / "push", (directory / "push-store").as_uri(),
                               interval=3600.0, push_broker=broker)
        finally:
            broker.stop()
    out["note"] = (f"{GROUPS * PER_GROUP} doors in {GROUPS} groups, {RESIDENTS + 1} "
                   "credentials, in one process; from the revoke to the moment each door "
                   "denies the card")
    return out
