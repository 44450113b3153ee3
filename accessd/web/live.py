"""The console's ear on the live channel: one thread that watches the estate (the
same Watcher and Estate as `accessctl watch`: events stored, alarms opened, doors'
states kept) and hands each line to every open dashboard (server-sent events).

Dashboards subscribe with an asyncio queue; a line reaches them through their
event loop (call_soon_threadsafe), so a slow browser never holds up the watcher.
Without a broker set up for the site, the feed does not start and the dashboard
says so.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger("accessd.web")

RETRY_SECONDS = 2.0


class LiveFeed:
    def __init__(self, open_site, broker_url: str | None = None, session: str = ""):
        self._open_site = open_site
        self.broker_url = broker_url
        self.session = session
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.estate = None
        self.receiving = False
        self.error = ""

    # ---- subscribers ------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subs.add((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._subs = {s for s in self._subs if s[1] is not q}

    def _publish(self, line: dict) -> None:
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(_offer, q, line)
            except RuntimeError:       # that loop has closed
                self.unsubscribe(q)

    # ---- the watcher thread -----------------------------------------------------------
    def start(self) -> "LiveFeed":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console-live", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def door_rows(self, published: int) -> list[dict] | None:
        estate = self.estate
        if estate is None:
            return None
        with self._lock:
            return estate.door_rows(published)

    def _run(self) -> None:
        from ..live import office
        from ..live.estate import Estate
        from ..live.watch import Watcher
        while not self._stop.is_set():
            site = oc = None
            try:
                site = self._open_site()
                site.actor = "web:live"
                estate = Estate(site)
                oc = office.connect(site, self.broker_url, persistent=True,
                                    session=self.session)
                watcher = Watcher(estate, oc, site.keys.signing)
                self.estate, self.receiving, self.error = estate, True, ""
                self._publish({"type": "link", "receiving": True, "session_kept": True})
                while not self._stop.is_set():
                    message = watcher.next_message(0.2)   # (waiting: dashboards read on)
                    with self._lock:
                        lines = watcher.take(message)
                    self.receiving = estate.receiving
                    for line in lines:
                        self._publish(line)
            except Exception as exc:      # noqa: BLE001 - the feed must outlive any fault
                self.receiving, self.error = False, str(exc)
                log.warning("live channel: %s; retrying", exc)
                self._publish({"type": "link", "receiving": False, "error": str(exc)})
                self._stop.wait(RETRY_SECONDS)
            finally:
                if oc is not None:
                    oc.close()
                if site is not None:
                    site.close()


def _offer(q: asyncio.Queue, line: dict) -> None:
    try:
        q.put_nowait(line)
    except asyncio.QueueFull:      # a browser that stopped reading: drop, it reloads
        pass

