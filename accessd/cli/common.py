"""What every accessctl command shares: the context (door config, site directory),
time parsing and formatting, JSON-or-table output, and one-line errors.

Door commands (cli/accessctl.py) and office commands (cli/site_cmds.py) both
import from here and never from each other.
"""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.console import Console

from ..config import load_config
from ..control import Client
from ..core import when
from ..errors import AccessdError, ConfigError
from ..storage.keys import load_key_file
from ..storage.whitelist_admin import WhitelistAdmin

# Not a terminal (a pipe, a log): wide enough that ids and fingerprints are never cut.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def parse_when(text: str, *, tz: str | None = None, end: bool = False, past: bool = False,
               now: float | None = None, param: str | None = None) -> float:
    """'2026-12-31' (the day's start, or with end=True its end), '2026-12-31T18:00'
    (in tz: the site's time zone at the office, this machine's at a door, unless the
    text has an offset), or a relative '7d' / '12h' / '30m' (from now; ago with
    past=True). Returns UTC epoch; bad text is a clear error naming the option."""
    try:
        return when.parse(text, tz, end=end, past=past, now=time.time() if now is None else now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def fmt_time(epoch: float | None, tz: str | None = None, *, end: bool = False) -> str:
    return when.fmt(epoch, tz, end=end)


class Ctx:
    def __init__(self, config_path: str, site_dir: str | None = None,
                 site_home: str | None = None):
        self.config_path = config_path
        self.site_dir = site_dir
        self.site_home = site_home
        self._cfg: dict[bool, object] = {}

    def site_location(self):
        """(site directory, database URL or None) from --site and --site-dir."""
        from pathlib import Path
        from ..site.sql import is_url
        if not self.site_dir:
            raise click.UsageError("this is an office command: give --site DIR (or set "
                                   "ACCESSD_SITE)")
        if is_url(self.site_dir):
            if not self.site_home:
                raise click.UsageError("a postgresql:// --site needs --site-dir DIR (or "
                                       "ACCESSD_SITE_DIR): the directory with the site's keys")
            return Path(self.site_home), self.site_dir
        if "://" in self.site_dir:
            raise click.UsageError(f"--site {self.site_dir.split('://')[0]}://... is not a "
                                   "site: give a directory or a postgresql:// URL")
        return Path(self.site_dir), None

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


def fail(msg: str, code: int = 1, prog: str = "accessctl"):
    click.echo(f"{prog}: {msg}", err=True)
    sys.exit(code)


class Group(click.Group):
    """One error style for every command: `accessctl: what was wrong`, never a
    traceback or click's usage block. Exit 1 for bad input (a value that is wrong,
    an operation refused), 2 for usage (an unknown or missing option, options that
    do not go together, no --site) and for a broken door config."""

    prog = "accessctl"
    bad_value = 1     # the exit code for a bad value

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(f"config error: {exc}", 2, self.prog)
        except AccessdError as exc:
            fail(str(exc), 1, self.prog)
        except OSError as exc:   # a file or directory a command was given and cannot use
            where = exc.filename if exc.filename is not None else ""
            fail(f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc), 1,
                 self.prog)

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.MissingParameter as exc:
            self._usage_error(exc)
        except click.BadParameter as exc:
            if isinstance(exc.param_hint, str):
                hint = exc.param_hint
            elif isinstance(exc.param, click.Argument):
                hint = exc.param.human_readable_name
            elif exc.param is not None:      # its first name (--config, not '--config' / '-c')
                hint = (exc.param.opts or [exc.param.human_readable_name])[0]
            else:
                hint = ""
            msg = " ".join(exc.message.split())
            fail(f"{hint.strip(chr(39))}: {msg}" if hint else msg, self.bad_value, self.prog)
        except click.UsageError as exc:
            self._usage_error(exc)
        except click.ClickException as exc:  # e.g. a file that cannot be opened
            fail(exc.format_message(), 1, self.prog)
        except (click.Abort, EOFError, KeyboardInterrupt):
            fail("aborted", 1, self.prog)
        sys.exit(rv if isinstance(rv, int) else 0)

    def _usage_error(self, exc: click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else self.prog
        msg = " ".join(exc.format_message().split()).rstrip(".")
        fail(f"{msg[:1].lower() + msg[1:]} (see '{where} --help')", 2, self.prog)


class DaemonGroup(Group):
    """The same, for `accessd`: a bad value there is the door's configuration (its
    --config), exit 2, which systemd does not restart on."""
    prog = "accessd"
    bad_value = 2


def out(as_json: bool, obj, human) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=str))
    else:
        human()


def reply(resp: dict) -> dict:
    """A daemon's answer; its refusal printed without the socket's 'line N:' (that
    is about the request line accessctl wrote, not what the user typed)."""
    if not resp.get("ok"):
        import re
        fail(re.sub(r"^line \d+: ", "", str(resp.get("error")
                                            or "the daemon refused the request")))
    return resp


json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def site_of(obj):
    """The office's site database, from --site."""
    from ..site.db import SiteDB
    return SiteDB.open(*obj.site_location())


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 door', '2 doors', '1 batch', '3 batches'."""
    return f"{n} {word if n == 1 else many or word + 's'}"


iso_local = when.fmt_iso   # an event's UTC timestamp text in tz, to the second


class SafePath(click.Path):
    """click.Path that refuses what the OS cannot take as a file name (a NUL byte)
    with a usage error naming the option, instead of a ValueError traceback."""

    def convert(self, value, param, ctx):
        if isinstance(value, (str, bytes)) and "\0" in os.fsdecode(value):
            self.fail(f"{os.fsdecode(value)!r}: a file name cannot contain a NUL byte",
                      param, ctx)
        try:
            return super().convert(value, param, ctx)
        except (ValueError, OSError) as exc:   # (click's own BadParameter passes through)
            if isinstance(exc, click.BadParameter):
                raise
            self.fail(f"{os.fsdecode(value)!r}: {getattr(exc, 'strerror', None) or exc}",
                      param, ctx)


MAX_INPUT_FILE = 64 << 20   # a CSV of 5,000 residents is under 1 MB


def read_input(fh, param: str, limit: int = MAX_INPUT_FILE) -> bytes:
    """The whole of an input file click opened (a file, standard input, a pipe), with a
    cap: a device such as /dev/zero, or anything beyond `limit`, is refused naming
    the option."""
    import stat
    try:
        mode = os.fstat(fh.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        mode = 0
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise click.BadParameter(f"{getattr(fh, 'name', '?')} is a device, not a file",
                                 param_hint=param)
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise click.BadParameter(f"{getattr(fh, 'name', '?')} is larger than "
                                 f"{limit >> 20} MB", param_hint=param)
    return data


def read_path(path, param: str, limit: int = 1 << 20) -> bytes:
    """A small input named by path (a card image, a pass's text): a regular file of at
    most `limit` bytes (a FIFO would block, /dev/zero never end)."""
    import stat
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise click.BadParameter(f"{path} is not a regular file", param_hint=param)
        if st.st_size > limit:
            raise click.BadParameter(f"{path} is larger than {limit >> 10} kB",
                                     param_hint=param)
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                                 param_hint=param) from None


class InputFile(click.File):
    """click.File for reading that refuses what would block or never end: a named pipe
    nobody writes to, a device such as /dev/zero ('-' and a shell's <(...) work)."""

    def convert(self, value, param, ctx):
        import stat
        if isinstance(value, (str, bytes, os.PathLike)) and os.fsdecode(value) != "-":
            name = os.fsdecode(value)
            if "\0" in name:
                self.fail(f"{name!r}: a file name cannot contain a NUL byte", param, ctx)
            try:
                mode = os.stat(name).st_mode
            except OSError:
                mode = 0      # click says what is wrong with it
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                self.fail(f"{name} is a device, not a file", param, ctx)
            if stat.S_ISFIFO(mode) and not name.startswith(("/dev/fd/", "/proc/self/fd/")):
                self.fail(f"{name} is a named pipe: give a file, or - for standard input",
                          param, ctx)
        return super().convert(value, param, ctx)


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and infinity (which pass its min/max
    comparisons) naming the option."""

    def convert(self, value, param, ctx):
        import math
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
