"""The dashboard: every door (online or not, last seen, the whitelist it runs
against the one published), open alarms with acknowledge, today's grants and
denials per door; and the live stream that brings alarms to it as they happen."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ...core import when
from ...site import intake
from ...site.staff import session as staff_session
from ..core import Page, Redirect, Req
from ..permissions import may


def door_rows(req: Req) -> list[dict]:
    """The doors as the live channel sees them (or, without it, as the site knows them)."""
    published = req.site.bundle_version
    live = req.console.live.door_rows(published) if req.console.live_enabled else None
    known = {d["id"]: d for d in req.site.doors()}
    rows = {r["id"]: r for r in (live or [])}
    out = []
    for door_id, d in sorted(known.items()):
        r = rows.get(door_id) or {"id": door_id, "state": "unknown", "last_seen": None,
                                  "mode": None, "relay": None, "door_open": None,
                                  "version": None, "credentials": None, "behind": False}
        out.append({**r, "group": d["group"], "description": d["description"]})
    return out


def today(req: Req) -> dict[str, dict]:
    start = when.parse(when.day(req.now(), req.tz), req.tz, now=req.now())
    from ...storage.eventlog import utc_iso
    rows = intake.report(req.site, since=utc_iso(start))
    return {r["door"]: r for r in rows}


def _data(req: Req) -> dict:
    counts = today(req)
    doors = door_rows(req)
    for d in doors:
        c = counts.get(d["id"], {})
        d["granted"], d["denied"] = c.get("granted", 0), c.get("denied", 0)
    feed = req.console.live
    return {"doors": doors, "published": req.site.bundle_version,
            "alarms": req.site.alarms(open_only=True, limit=50),
            "open_alarms": req.site.open_alarm_count(),
            "live": {"enabled": req.console.live_enabled, "receiving": feed.receiving,
                     "error": feed.error}}


def dashboard(req: Req):
    return Page("dashboard.html", _data(req))


def alarms_partial(req: Req):
    return Page("_alarms.html", _data(req))


def doors_partial(req: Req):
    return Page("_doors.html", _data(req))


def ack(req: Req):
    alarm_id = int(req.params["alarm_id"])
    req.site.alarm_ack(alarm_id, req.field("note", max_len=500))
    return Redirect("/", req._("Alarm #{n} acknowledged.", n=alarm_id))


async def stream(console, request: Request):
    """Server-sent events: each line of the live channel, as JSON (alarms, doors
    coming and going, events); the page refreshes its panels from them."""
    from starlette.concurrency import run_in_threadpool

    from ..app import COOKIE, HEADERS

    def who():
        site = console.open_site()
        return staff_session(site, request.cookies.get(COOKIE), now=console.clock())
    actor = await run_in_threadpool(who)
    if not may(actor, "read"):
        from starlette.responses import Response
        return Response("sign in first", 401, headers=HEADERS)
    q = console.live.subscribe()

    async def events():
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    line = await asyncio.wait_for(q.get(), timeout=15)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    if await request.is_disconnected():
                        return
                    continue
                kind = "alarm" if line.get("alarm") else line.get("type", "line")
                yield f"event: {kind}\ndata: {json.dumps(line, default=str)}\n\n"
        finally:
            console.live.unsubscribe(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**HEADERS, "X-Accel-Buffering": "no"})
