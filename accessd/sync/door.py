"""The door's side of sync: read the group's signed index (sync/index.py), and when
it names a newer version pull the bundle, check it against the index, verify it,
stage the new whitelist beside the old one, and let the core swap it in between
taps. Nothing a store or a proxy says about freshness (ETag, Last-Modified) is
used: the signed index decides, and nothing unverified is kept between syncs.

Runs in its own thread: every `sync.interval_seconds`, and at once on
`accessctl sync now`, and sooner (5 s, doubling) after a failure. A rejected
bundle logs `sync.rejected` with the reason and the old whitelist stays in use;
any other failure, an unexpected one included, logs `sync.failed` and the worker
carries on. Staleness (`sync.stale`) is the core's check, on the core's clock,
so it holds even if this thread does not.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path

from ..core.events import Notice, SwapWhitelist
from ..errors import AccessdError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..storage.keys import DoorKeys
from ..storage.whitelist import key_check
from . import bundle, index
from .store import StoreError, open_store

log = logging.getLogger(__name__)


def current_whitelist_meta(path: Path) -> dict[str, str]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return dict(conn.execute("SELECT key, value FROM meta"))
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def stage(data_dir: Path, plaintext: bytes, header: bundle.Header, keys: DoorKeys) -> Path:
    """Write the new whitelist beside the old one, fsync it, and check it opens."""
    new = Path(data_dir) / "whitelist.db.new"
    try:
        with open(new, "wb") as fh:
            fh.write(plaintext)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        try:
            new.unlink()
        except OSError:
            pass
        raise bundle.BundleError(f"cannot stage the new whitelist: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(f"file:{new}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            meta = dict(conn.execute("SELECT key, value FROM meta"))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        new.unlink()
        raise bundle.BundleError(f"new whitelist is not a valid database: {exc}") from None
    problem = (None if ok else "fails its integrity check")
    if problem is None and meta.get("key_check") != key_check(keys.lookup):
        problem = "was built with another lookup key"
    if problem is None and meta.get("version") != str(header.version):
        problem = "version inside does not match the bundle"
    if problem:
        new.unlink()
        raise bundle.BundleError(f"new whitelist {problem}")
    return new


INSTALL_WAIT = 30.0  # seconds the worker waits for the core to install a whitelist


def reply_seconds(store_timeout: float) -> float:
    """How long a 'sync now' may take before the door itself answers: a request made
    while a run is under way waits for it and then for its own run, and each run is
    one store request (at most store_timeout) and the install. The control server
    waits this long; accessctl waits a little longer, so the reply it prints is the
    store's own error, never a socket timeout."""
    return 2 * (store_timeout + INSTALL_WAIT) + 5


class SyncWorker:
    RETRY_FIRST = 5.0  # seconds before the first retry after a failure; doubles

    def __init__(self, cfg, keys: DoorKeys, post, clock):
        if keys.site is None:
            raise AccessdError("sync.url is set but the key file has no site link: install the "
                               "door key file made by 'accessctl door keys'")
        self.cfg = cfg
        self.keys = keys
        self.post = post
        self.clock = clock
        self.store = open_store(cfg.sync.url, cfg.sync.timeout_seconds)
        self.public = Ed25519PublicKey.from_public_bytes(keys.site.public_key)
        self._trigger = threading.Event()
        self._stop = threading.Event()
        self._waiters: list[Future] = []
        self._lock = threading.Lock()
        self.last_result: str = "not run yet"
        self.store_version: tuple[int, float] | None = None  # (version, issued) last seen
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)

    def info(self) -> dict:
        """For status (the socket's and the live channel's): the store and the last run."""
        return {"store": self.store.url, "last": self.last_result,
                "interval_s": self.cfg.sync.interval_seconds,
                "store_version": self.store_version[0] if self.store_version else None,
                "store_issued": self.store_version[1] if self.store_version else None}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()
        self._thread.join(5)

    def request(self) -> Future:
        """Sync now; the future resolves with the result."""
        fut: Future = Future()
        if not self._thread.is_alive():
            fut.set_result({"ok": False, "result": "the sync worker is not running "
                                                   "(see the journal); restart accessd"})
            return fut
        with self._lock:
            self._waiters.append(fut)
        self._trigger.set()
        return fut

    def _run(self) -> None:
        failures, worked = 0, False
        while not self._stop.is_set():
            self._trigger.clear()
            with self._lock:  # a request made during this run is served by the next one
                waiters, self._waiters = self._waiters, []
            try:
                result = self.sync_once()
            except Exception as exc:  # last resort: a bug must not stop revocations for good
                log.exception("sync: unexpected error")
                result = self._result(False, f"internal error: {type(exc).__name__}: "
                                             f"{str(exc)[:200]}", notice="sync.failed")
            for w in waiters:
                if not w.done():
                    w.set_result(result)
            # the office's doctor learns the sync works: once after each start, and
            # when it works again after failures
            if result["ok"] and failures:
                self.post(Notice("sync.recovered", f"sync works again after "
                                                   f"{failures} failed attempt"
                                                   f"{'s' if failures > 1 else ''}: "
                                                   f"{result['result']}"))
            elif result["ok"] and not worked and not result["result"].startswith("applied"):
                self.post(Notice("sync.ok", f"sync works: {result['result']}"))
            worked = worked or result["ok"]
            # back off after failures (5 s, 10 s, ... up to the interval), else the interval
            failures = 0 if result["ok"] else failures + 1
            wait = self.cfg.sync.interval_seconds
            if failures:
                wait = min(wait, self.RETRY_FIRST * 2 ** min(failures - 1, 16))
            self._trigger.wait(wait)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def sync_once(self) -> dict:
        """One sync: read the group's signed index in full; fetch, check against the
        index and apply the bundle only when the index names a newer version. What the
        updater reported meanwhile is logged first."""
        from ..updater import take_reports
        for r in take_reports(self.cfg.storage.data_dir):
            self.post(Notice(r["kind"], r["reason"], r["detail"]))
        path = self.cfg.storage.whitelist_path
        meta = current_whitelist_meta(path)
        current = int(meta.get("version", 0) or 0) if meta.get("site") else 0
        group = self.keys.site.group
        try:
            raw = self.store.get(index.index_name(group))
        except StoreError as exc:
            return self._result(False, f"store unavailable: {exc}", notice="sync.failed")
        expect = None
        if raw is not None:
            try:
                expect = index.verify(raw, public_key=self.public, site=self.keys.site.site,
                                      group=group)
            except bundle.BundleError as exc:
                return self._result(False, str(exc), notice="sync.rejected")
            self.store_version = (expect.version, expect.issued)
            if expect.version == current:
                return self._result(True, f"up to date (version {current})")
            if expect.version < current:
                return self._result(False, f"the store's signed index names version "
                                           f"{expect.version}, older than the applied "
                                           f"{current} (an old copy: rollback or replay)",
                                    notice="sync.rejected")
        try:   # no index (an office from before indexes): the whole signed bundle decides
            blob = self.store.get(index.bundle_name(group))
        except StoreError as exc:
            return self._result(False, f"store unavailable: {exc}", notice="sync.failed")
        if blob is None:
            return self._result(False, f"no bundle published yet for group {group!r}")
        try:
            header, plain = bundle.open_(blob, public_key=self.public, group_key=self.keys.seal,
                                         site=self.keys.site.site, door=self.keys.site.door,
                                         current_version=current, now=self.clock.wall())
        except bundle.BundleError as exc:
            mismatch = expect.matches(blob) if expect is not None else None
            if mismatch:   # a cut or stale body: the store's error, tried again soon
                return self._result(False, mismatch, notice="sync.failed")
            if getattr(exc, "same", False):
                return self._result(True, f"up to date (version {current})")
            return self._result(False, str(exc), notice="sync.rejected")
        if expect is not None and header.version < expect.version:
            # (a newer bundle than its index is fine: a publish between the two reads)
            return self._result(False, expect.matches(blob) or
                                f"the bundle is version {header.version}, its signed index "
                                f"names {expect.version}", notice="sync.failed")
        try:
            new = stage(self.cfg.storage.data_dir, plain, header, self.keys)
        except bundle.BundleError as exc:
            return self._result(False, str(exc), notice="sync.rejected")
        fut: Future = Future()
        self.post(SwapWhitelist(str(new), header.version, fut))
        try:
            res = fut.result(INSTALL_WAIT)
        except FutureTimeout:
            return self._result(False, "the core did not install the whitelist in time")
        if res.get("ok"):
            if expect is None or header.version > expect.version:
                self.store_version = (header.version, header.issued)
            return self._result(True, f"applied version {header.version} "
                                      f"({res['credentials']} credentials)")
        return self._result(False, res.get("error", "install failed"))

    def _result(self, ok: bool, message: str, notice: str | None = None) -> dict:
        self.last_result = message
        if notice:
            log.warning("sync: %s", message)
            self.post(Notice(notice, message))
        return {"ok": ok, "result": message}
