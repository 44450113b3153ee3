"""Which doors have applied a published version, as the live channel tells it
(`accessctl publish --wait` and `--push`).

A door says which whitelist it runs in its retained .../status (`whitelist`:
version) and logs `sync.applied` (detail: version) when it installs one; both
come through the broker. With `push`, each door is sent the signed sync-now
command first, so it fetches the signed index at once instead of at its next
sync. Returns, for every door, when it was seen on the version (or a newer one),
or None if it was not within the time given.
"""

from __future__ import annotations

import json
import queue
import time
from typing import Callable

from . import topics


def applied_version(what: str, payload: bytes) -> int | None:
    """The whitelist version a status or a sync.applied record names."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if what == "status":
        wl = doc.get("whitelist")
        v = wl.get("version") if isinstance(wl, dict) else None
    elif doc.get("kind") == "sync.applied":
        try:
            v = json.loads(doc.get("detail") or "{}").get("version")
        except (ValueError, AttributeError):
            v = None
    else:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def wait_applied(oc, site_id: str, version: int, doors: list[str], *, signing_key=None,
                 push: bool = False, timeout: float = 600.0,
                 progress: Callable[[int, int], None] | None = None,
                 clock=time.monotonic) -> dict[str, float | None]:
    """Seconds after the start at which each door was seen on `version` or newer."""
    start = clock()
    seen: dict[str, float | None] = {d: None for d in doors}
    for what in ("status", "events"):
        oc.subscribe(f"{topics.ROOT}/{site_id}/+/{what}")
    if push:
        for d in doors:
            oc.send(signing_key, d, "sync-now")
    done = 0
    if progress:
        progress(done, len(doors))
    while done < len(doors):
        left = start + timeout - clock()
        if left <= 0:
            break
        try:
            topic, payload, _ = oc.messages.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] not in seen or seen[parts[2]] is not None:
            continue
        v = applied_version(parts[3] if parts[3] == "status" else "event", payload)
        if v is not None and v >= version:
            seen[parts[2]] = round(clock() - start, 3)
            done += 1
            if progress:
                progress(done, len(doors))
    return seen
