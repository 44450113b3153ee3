"""What every console handler takes and gives: the request as the handler needs it
(`Req`: the site, who is asking, the form, their language and time zone) and what
it answers (`Page`: a template over a dict, also served as JSON; `Redirect`;
`Download`). A handler parses, calls the library, returns one of these; it never
checks a role itself (routes.py names the action, permissions.may decides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import AccessdError
from ..site.db import SiteDB
from ..site.staff import Actor


class BadInput(AccessdError, ValueError):
    """A form or query value the console cannot take; the message names the field."""


@dataclass
class Req:
    site: SiteDB
    actor: Actor | None
    params: dict[str, str]
    query: dict[str, str]
    form: dict[str, str]
    files: dict[str, bytes]
    method: str
    lang: str
    gettext: Callable[[str], str]
    console: Any          # the Console (app.py): live feed, clock, settings
    client: str = ""      # the client's address (throttling, the audit trail)
    htmx: bool = False    # a partial was asked for (htmx)

    def _(self, text: str, **kw) -> str:
        out = self.gettext(text)
        return out.format(**kw) if kw else out

    @property
    def tz(self) -> str:
        return self.site.timezone

    def now(self) -> float:
        return self.console.clock()

    def field(self, name: str, *, required: bool = False, max_len: int = 500,
              default: str = "") -> str:
        """A form field (or, for GET, a query value) as text, bounded; BadInput
        naming it when it is missing or too long."""
        src = self.form if self.method == "POST" else self.query
        value = src.get(name, default)
        if not isinstance(value, str):
            raise BadInput(f"{name}: expected text")
        value = value.strip()
        if len(value) > max_len:
            raise BadInput(f"{name}: at most {max_len} characters")
        if required and not value:
            raise BadInput(f"{name}: required")
        return value

    def number(self, name: str, lo: int, hi: int, default: int | None = None) -> int:
        text = self.field(name, max_len=12)
        if not text:
            if default is None:
                raise BadInput(f"{name}: required")
            return default
        try:
            n = int(text)
        except ValueError:
            raise BadInput(f"{name}: {text!r} is not a whole number") from None
        if not lo <= n <= hi:
            raise BadInput(f"{name}: must be {lo} to {hi}")
        return n


@dataclass
class Page:
    template: str
    data: dict = field(default_factory=dict)
    status: int = 200
    partial: str | None = None    # the template an htmx request gets instead


@dataclass
class Redirect:
    url: str
    flash: str = ""


@dataclass
class Download:
    body: bytes | str
    media_type: str
    filename: str
