"""Signing in and out: staff with name and password, residents with a printed
one-time code; and the language switch."""

from __future__ import annotations

import secrets

from starlette.responses import RedirectResponse

from ...site import staff
from ..core import Page, Req
from .. import i18n

PRE = "accessd_pre"     # the sign-in form's CSRF token (double submit, before a session)


def _safe_next(url: str, default: str) -> str:
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url \
        else default


def _with_cookie(req: Req, url: str, token: str):
    from ..app import COOKIE, HEADERS
    r = RedirectResponse(url, 303, headers=HEADERS)
    r.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                 secure=req.console.secure_cookies)
    r.delete_cookie(PRE, path="/")
    return r


def _form(req: Req, template: str, error: str = "", status: int = 200):
    from ..app import HEADERS
    from starlette.responses import HTMLResponse
    pre = secrets.token_urlsafe(24)
    html = req.console.render(template, req, {"pre": pre, "error": error,
                                              "next": _safe_next(req.query.get("next", ""), "")})
    r = HTMLResponse(html, status, headers=HEADERS)
    r.set_cookie(PRE, pre, httponly=True, samesite="strict", path="/",
                 secure=req.console.secure_cookies)
    return r


def login_form(req: Req):
    return _form(req, "login.html")


def login(req: Req):
    try:
        token = staff.login(req.site, req.field("name", max_len=64),
                            req.field("password", max_len=staff.MAX_PASSWORD),
                            now=req.now(), terminal=req.client)
    except staff.LoginRefused as exc:
        return _form(req, "login.html", req._(str(exc)), 401)
    return _with_cookie(req, _safe_next(req.form.get("next", ""), "/"), token)


def resident_login_form(req: Req):
    return _form(req, "resident_login.html")


def resident_login(req: Req):
    try:
        token = staff.resident_login(req.site, req.field("code", max_len=64),
                                     now=req.now(), terminal=req.client)
    except staff.LoginRefused as exc:
        return _form(req, "resident_login.html", req._(str(exc)), 401)
    return _with_cookie(req, "/me", token)


def logout(req: Req):
    from ..app import COOKIE, HEADERS
    home = "/me/login" if req.actor.kind == "resident" else "/login"
    staff.logout(req.site, req.actor)
    r = RedirectResponse(home, 303, headers=HEADERS)
    r.delete_cookie(COOKIE, path="/")
    return r


def language(req: Req):
    from ..app import HEADERS
    lang = req.params["lang"]
    if lang not in i18n.LANGUAGES:
        return Page("error.html", {"message": f"no language {lang!r}", "status": 404}, 404)
    back = _safe_next(req.query.get("next", ""), "/")
    r = RedirectResponse(back, 303, headers=HEADERS)
    r.set_cookie("lang", lang, samesite="lax", path="/", max_age=365 * 86400)
    return r
