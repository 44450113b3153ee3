"""What every accessctl command shares: the context (door config, site directory),
time parsing and formatting, JSON-or-table output, and one-line errors.

Door commands (cli/accessctl.py) and office commands (cli/site_cmds.py) both
import from here and never from each other.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime

import click
from rich.console import Console

from ..config import load_config
from ..control import Client
from ..errors import AccessdError, ConfigError
from ..storage.keys import load_key_file
from ..storage.whitelist_admin import WhitelistAdmin

# Not a terminal (a pipe, a log): wide enough that ids and fingerprints are never cut.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_REL = re.compile(r"^\+?(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, past: bool = False, now: float | None = None) -> float:
    """'2026-12-31', '2026-12-31T18:00' (local time unless it has an offset), or a
    relative '7d' / '12h' / '30m' (from now; ago with past=True). Returns UTC epoch."""
    now = time.time() if now is None else now
    m = _REL.match(text.strip())
    if m:
        delta = int(m.group(1)) * _UNITS[m.group(2)]
        return now - delta if past else now + delta
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: use 2026-12-31, 2026-12-31T18:00 or 7d / 12h / 30m") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return dt.timestamp()


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M")


class Ctx:
    def __init__(self, config_path: str, site_dir: str | None = None):
        self.config_path = config_path
        self.site_dir = site_dir
        self._cfg: dict[bool, object] = {}

    def site_path(self):
        from pathlib import Path
        if not self.site_dir:
            raise click.UsageError("this is an office command: give --site DIR (or set "
                                   "ACCESSD_SITE)")
        return Path(self.site_dir)

    def cfg(self, require_keys: bool = True):
        """The door config, loaded once (with or without the key-file checks)."""
        if require_keys not in self._cfg:
            self._cfg[require_keys] = load_config(self.config_path, require_keys=require_keys)
        return self._cfg[require_keys]

    def admin(self) -> WhitelistAdmin:
        cfg = self.cfg()
        return WhitelistAdmin(cfg.storage.whitelist_path, load_key_file(cfg.storage.key_file))

    def client(self) -> Client:
        return Client(self.cfg(require_keys=False).api.socket)


def fail(msg: str, code: int = 1):
    click.echo(f"accessctl: {msg}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns our own errors into one clear line and an exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"config error: {exc}", 2)
        except AccessdError as exc:
            fail(str(exc))


def out(as_json: bool, obj, human) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        human()


def reply(resp: dict) -> dict:
    if not resp.get("ok"):
        fail(resp.get("error", "the daemon refused the request"))
    return resp


json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")




def site_of(obj):
    """The office's site database, from --site."""
    from ..site.db import SiteDB
    return SiteDB.open(obj.site_path())
