"""Following the estate on the live channel: one loop for every watcher.

`Watcher.step()` takes the next message from an office client (live/office.py),
feeds it to the Estate (which stores events and opens alarms), notes the broker
lost and found again, and asks doors to send again what a broker lost. It returns
the lines that happened; `accessctl watch` prints them, the office console pushes
them to open dashboards.
"""

from __future__ import annotations

import queue

from . import topics


class Watcher:
    def __init__(self, estate, oc, signing_key):
        self.estate = estate
        self.oc = oc
        self.signing_key = signing_key
        self._first = True
        oc.subscribe(f"{topics.ROOT}/{estate.site_id}/#")

    def step(self, timeout: float = 0.5) -> list[dict]:
        return self.take(self.next_message(timeout))

    def next_message(self, timeout: float):
        """The next message from the broker (or None after `timeout` s): the waiting
        half of step(), which touches no state."""
        try:
            return self.oc.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def take(self, message) -> list[dict]:
        """The other half: feed one message (or None) to the estate, ask for what was
        missed; the lines that happened."""
        lines: list[dict] = []
        topic, payload, retained = message if message is not None else (None, b"", False)
        if topic == "$disconnected":
            lines.append(self.estate.link(False, payload.decode()))
        elif topic == "$connected":
            if not self._first:
                lines.append(self.estate.link(True, payload.decode()))
            self._first = False
        elif topic is not None:
            lines.extend(self.estate.feed(topic, payload, retained))
        # what a broker lost, the doors send again
        asks = self.estate.fill() if self.estate.receiving else []
        for a in asks:
            self.oc.send(self.signing_key, a["door"], "resend",
                         {"log": a["log"], "from": a["from"]})
        return lines + asks
