"""The office console as an ASGI app (Starlette): the route table (routes.py) turned
into endpoints that all go the same way.

For each request: the site is opened (one connection per worker thread), the
session cookie names the actor, `permissions.may` decides for the route's action
(not signed in: to the sign-in page; signed in but not allowed: 403), a POST must
carry the session's CSRF token, the form is read with limits, the handler runs in
a worker thread, and its Page is rendered: HTML through Jinja2 (autoescaped), an
htmx partial, or JSON when the client asks for application/json. Library errors
become the page again with the message, never a traceback.

Every answer carries the security headers: a CSP without 'unsafe-inline' (no
inline script or style anywhere), frame-ancestors 'none', nosniff, no referrer,
and no caching of pages.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..alarms import label as alarm_label
from ..core import when
from ..errors import AccessdError
from ..site import staff as site_staff
from ..site.db import SiteDB
from . import i18n
from .core import BadInput, Download, Page, Redirect, Req
from .permissions import may, role_of

log = logging.getLogger("accessd.web")
HERE = Path(__file__).parent
COOKIE = "accessd_session"
MAX_FORM = 2 * 1024 * 1024          # a CSV of 5,000 residents fits with room to spare
MAX_FIELDS = 200
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}


class Console:
    """What the app is over: the site (directory, or a PostgreSQL URL beside a
    directory of keys), the live channel, the clock, cookie settings."""

    def __init__(self, site_dir: Path, database: str | None = None, *,
                 broker_url: str | None = None, live: bool = True, clock=time.time,
                 secure_cookies: bool = False, session: str = "console",
                 nfc_reader: str | None = None):
        self.site_dir = Path(site_dir)
        self.database = database
        self.clock = clock
        self.secure_cookies = secure_cookies
        self.nfc_reader = nfc_reader     # the office's own NFC reader (an nfcpy path)
        self._local = threading.local()
        probe = self.open_site()
        self.site_id = probe.site_id
        has_broker = bool(broker_url or probe.meta("mqtt_url"))
        from .live import LiveFeed
        self.live = LiveFeed(self._new_site, broker_url, session=session)
        self.live_enabled = live and has_broker
        # one template environment per language, its catalogue installed once: requests
        # in two languages at the same time never share one
        self.envs = {lang: _environment(lang) for lang in i18n.LANGUAGES}

    def _new_site(self) -> SiteDB:
        return SiteDB.open(self.site_dir, self.database)

    def open_site(self) -> SiteDB:
        site = getattr(self._local, "site", None)
        if site is None:
            site = self._local.site = self._new_site()
        return site

    # ---- one request ----------------------------------------------------------------
    def handle(self, route, request: Request, form: dict, files: dict) -> Response:
        site = self.open_site()
        site.actor = "web"
        site.terminal = f"web {request.client.host if request.client else '?'}"[:64]
        actor = site_staff.session(site, request.cookies.get(COOKIE), now=self.clock())
        lang = i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language"))
        tr = i18n.translations(lang)
        wants_json = "application/json" in request.headers.get("accept", "")
        if not may(actor, route.action):
            if actor is None and request.method == "GET" and not wants_json:
                target = "/me/login" if route.path.startswith("/me") else "/login"
                nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{target}?next={quote(nxt, safe='')}", 303)
            return self._error(lang, actor, 401 if actor is None else 403,
                               tr.gettext("You may not do this."), wants_json)
        if request.method == "POST":
            sent = form.get("csrf") or request.headers.get("x-csrf-token", "")
            expected = (request.cookies.get("accessd_pre", "") if route.csrf == "pre"
                        else actor.csrf if actor is not None else "")
            if not expected or not hmac.compare_digest(str(sent), expected):
                return self._error(lang, actor, 403,
                                   tr.gettext("This form has expired: reload the page and "
                                              "try again."), wants_json)
        if actor is not None:
            site.actor = actor.label
        req = Req(site=site, actor=actor, params=dict(request.path_params),
                  query={k: v for k, v in request.query_params.items()}, form=form,
                  files=files, method=request.method, lang=lang, gettext=tr.gettext,
                  console=self, client=request.client.host if request.client else "",
                  htmx=request.headers.get("hx-request") == "true")
        try:
            result = route.handler(req)
        except (AccessdError, ValueError) as exc:
            status = 404 if isinstance(exc, LookupError) else 400
            return self._error(lang, actor, status, str(exc), wants_json)
        return self.respond(request, req, result, wants_json)

    def respond(self, request: Request, req: Req, result, wants_json: bool) -> Response:
        if isinstance(result, Response):
            return result
        if isinstance(result, Redirect):
            url = result.url if result.url.startswith("/") and not result.url.startswith("//") \
                else "/"
            if result.flash:
                url += ("&" if "?" in url else "?") + "done=" + quote(result.flash, safe="")
            if req.htmx:
                return Response(status_code=204, headers={"HX-Redirect": url, **HEADERS})
            return RedirectResponse(url, 303, headers=HEADERS)
        if isinstance(result, Download):
            body = result.body.encode() if isinstance(result.body, str) else result.body
            return Response(body, media_type=result.media_type, headers={
                **HEADERS, "Content-Disposition": f'attachment; filename="{result.filename}"'})
        assert isinstance(result, Page)
        if wants_json:
            return JSONResponse(_jsonable(result.data), result.status, headers=HEADERS)
        template = result.partial if (req.htmx and result.partial) else result.template
        return HTMLResponse(self.render(template, req, result.data), result.status,
                            headers=HEADERS)

    def _page(self, template: str, lang: str, actor, data: dict) -> str:
        """A template in a language, with what every page shows (who, the site, the
        language switch, the CSRF token)."""
        return self.envs[lang].get_template(template).render(
            **data, actor=actor, role=role_of(actor), site_id=self.site_id, lang=lang,
            languages=i18n.LANGUAGES, may=lambda a: may(actor, a),
            csrf=actor.csrf if actor else "")

    def render(self, template: str, req: Req, data: dict) -> str:
        return self._page(template, req.lang, req.actor,
                          {"done": req.query.get("done", "")[:300], **data, "req": req,
                           "tz": req.site.timezone})

    def _error(self, lang, actor, status, message, wants_json) -> Response:
        if wants_json:
            return JSONResponse({"error": message}, status, headers=HEADERS)
        html = self._page("error.html", lang, actor,
                          {"message": message, "status": status, "done": ""})
        return HTMLResponse(html, status, headers=HEADERS)


def _environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html", "svg"]),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)
    env.filters["when"] = lambda t, tz: when.fmt(t, tz) if t else "-"
    env.filters["when_iso"] = lambda ts, tz: when.fmt_iso(ts, tz) if ts else "-"
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    env.filters["alarm"] = alarm_label
    env.globals["version"] = __version__
    return env


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o))))


async def _read_form(request: Request) -> tuple[dict, dict]:
    if request.method != "POST":
        return {}, {}
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_FORM):
        raise BadInput(f"the form is larger than {MAX_FORM // 1024} KiB")
    form = await request.form(max_files=2, max_fields=MAX_FIELDS, max_part_size=MAX_FORM)
    fields, files = {}, {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read(MAX_FORM + 1)
            if len(data) > MAX_FORM:
                raise BadInput(f"{key}: the file is larger than {MAX_FORM // 1024} KiB")
            files[key] = data
        else:
            fields[key] = value
    return fields, files


def _endpoint(console: Console, route):
    async def endpoint(request: Request) -> Response:
        try:
            form, files = await _read_form(request)
        except (BadInput, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 413 if "larger" in str(exc) else 400,
                                headers=HEADERS)
        if route.stream is not None:
            return await route.stream(console, request)
        return await run_in_threadpool(console.handle, route, request, form, files)
    return endpoint


class SecurityHeaders:
    """Adds HEADERS to every HTTP answer (static files and errors too)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with(message):
            if message["type"] == "http.response.start":
                hs = list(message.get("headers", []))
                have = {k.lower() for k, _ in hs}
                for k, v in HEADERS.items():
                    if k.lower().encode() not in have:
                        hs.append((k.lower().encode(), v.encode()))
                message["headers"] = hs
            await send(message)
        await self.app(scope, receive, send_with)


def create_app(console: Console) -> Starlette:
    import contextlib

    from starlette.middleware import Middleware

    from .routes import ROUTES

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if console.live_enabled:
            console.live.start()
        try:
            yield
        finally:
            console.live.stop()

    routes = [Route(r.path, _endpoint(console, r), methods=list(r.methods), name=r.name)
              for r in ROUTES]
    routes.append(Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.console = console
    return app
