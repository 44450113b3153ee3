"""Every `accessctl` and `accessd` command, driven in process (click's runner) with
generated hostile values for each of its options and arguments, by type: dates,
numbers (NaN, infinity, huge), names with control characters and huge lengths,
paths (a FIFO, /dev/zero, a directory, a NUL, a 300-character name), URLs.

Whatever comes in: exit 0, 1 or 2; no traceback; a refusal ends on one line
'accessctl: …' (or 'accessd: …'); and a refusal leaves the site database and the
door's files as they were."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from accessd.cli import accessctl, daemon

from .helpers import setup_site

# waiting on a device or a clock, by design; or running for ever
SKIP = {("accessd", "run"), ("accessctl", "sim card present"), ("accessctl", "card check"),
        ("accessctl", "web")}   # web serves until stopped: tests/test_web_browser.py runs it
NOT_FUZZED = {"nfc_reader", "nfc_link", "follow"}   # a real device; --follow waits for ever


def _walk(cmd, prefix=()):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, prefix + (name,))
    else:
        yield prefix, cmd


COMMANDS = [(prog, " ".join(path), cmd)
            for prog, main in (("accessctl", accessctl.main), ("accessd", daemon.main))
            for path, cmd in _walk(main) if (prog, " ".join(path)) not in SKIP]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A site (a group, a door, a person with a card, a schedule), a local door's
    config with its keys, and the hostile files."""
    from accessd.testing import write_sim_config
    root = tmp_path_factory.mktemp("fuzz-template")
    site = root / "site"
    setup_site(site, "site", "init", "riverside")
    setup_site(site, "group", "add", "bldg-a")
    setup_site(site, "door", "add", "door-a", "--group", "bldg-a")
    setup_site(site, "person", "add", "--id", "p1", "--name", "Anna Berg", "--unit", "12A",
               "--group", "bldg-a")
    setup_site(site, "enroll", "--person", "p1", "--kind", "nfc", "--uid", "04A1B2C3")
    setup_site(site, "schedule", "add", "delivery", "--window", "mon-fri 08:00-16:00")
    config = write_sim_config(root / "door")
    setup_door = CliRunner().invoke(accessctl.main, ["--config", str(config), "enroll",
                                                     "--kind", "nfc", "--holder", "12A-1",
                                                     "--uid", "04A1B2C3"])
    assert setup_door.exit_code == 0, setup_door.output       # the door's own whitelist
    (root / "good.csv").write_text("name,unit,role,phone,kind,uid,groups,valid_from,"
                                   "valid_until\nBo Lind,14C,resident,,nfc,04C0FFEE,bldg-a,,\n")
    return root


@pytest.fixture
def place(template, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(template, root)
    hostile = root / "hostile"
    hostile.mkdir()
    os.mkfifo(hostile / "fifo")
    (hostile / "dir").mkdir()
    return root


def _dump(root: Path) -> list[str]:
    """What a refusal must leave as it was: the site's rows, the door's files."""
    out = []
    for db in (root / "site/site.db", root / "door/data/whitelist.db"):
        if db.exists():
            conn = sqlite3.connect(db)
            # (a publish that fails half-way keeps its version number taken: a number
            # that may have reached the store is never given to other content)
            out += [ln for ln in conn.iterdump() if "'bundle_version'" not in ln]
            conn.close()
    for f in (root / "door/keys").glob("*"):
        out.append(f"{f.name}:{f.read_bytes().hex()}")
    return out


TEXT = st.one_of(
    st.sampled_from(["", " ", "door-a", "bldg-a", "p1", "Anna Berg", "delivery", "04A1B2C3",
                     "0x12345", "176:42493", "00688,42493", "0001-01-01", "9999-12-31",
                     "2026-02-30", "2026-12-24T18:30", "7d", "12h", "-1", "0", "nan", "inf",
                     "1e309", "9" * 5000, "x" * 100_000, "Mallory\nALARM #1 door forced",
                     "tab\there", "nul\x00byte", "line\u2028sep", "http://[::1/x/",
                     "http://host:99999/", "https://u:p@127.0.0.1:1/", "s3://", "s3://b/p?x=1",
                     "file:///dev/zero", "mqtt://[x", "mqtt://127.0.0.1:1", "../../etc/passwd",
                     "%s%n{}", "Europe/Oslo", "Mars/Olympus", "usb"]),
    st.text(max_size=30))
NUMBER = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "2", "3.5", "1e308", "1e309",
                          "99999999999999999999", "9" * 5000, "abc", ""])


def _paths(root: Path, name: str) -> list[str]:
    h = root / "hostile"
    paths = [str(h / "dir"), str(h / "missing" / "x"), "/dev/zero", str(h / ("y" * 300)),
             str(h / "a") + "\0b", str(root / "door" / "accessd.toml"),
             str(root / "good.csv"), str(h / "new-file")]
    if name in ("config_path", "card_file", "csv_file"):
        paths.append(str(h / "fifo"))      # read: refused, never waited on
    return paths


def _value(data, root: Path, param: click.Parameter):
    t = param.type
    if isinstance(t, click.Choice):
        return data.draw(st.one_of(st.sampled_from(list(t.choices)), TEXT))
    if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
        return data.draw(NUMBER)
    if isinstance(t, (click.Path, click.File)):
        if isinstance(t, click.File) and "w" in t.mode:
            return data.draw(st.sampled_from([str(root / "hostile" / "dir"), "/dev/zero",
                                              str(root / "hostile" / "out.csv"), "-"]))
        return data.draw(st.sampled_from(_paths(root, param.name)))
    return data.draw(TEXT)


def _argv(data, root: Path, prog: str, path: str, cmd: click.Command) -> list[str]:
    argv = []
    if prog == "accessctl":
        if data.draw(st.booleans()):
            argv += ["--site", str(root / "site")]
        argv += ["--config", str(root / "door" / "accessd.toml")]
    argv += path.split()
    for p in cmd.params:
        if p.name in NOT_FUZZED or p.name == "help":
            continue
        if isinstance(p, click.Argument):
            n = 1 if p.nargs == 1 else data.draw(st.integers(1, 2))
            argv += [_value(data, root, p) for _ in range(n)]
        elif p.is_flag and not p.is_bool_flag and p.flag_value is not None and \
                not isinstance(p.type, click.types.BoolParamType):
            # an option whose value may be left out (--wait [SECONDS])
            if data.draw(st.booleans()):
                argv += [p.opts[0], _value(data, root, p)]
        elif p.is_flag:
            if data.draw(st.booleans()):
                argv.append(p.opts[0])
        elif p.required or data.draw(st.booleans()):
            for _ in range(data.draw(st.integers(1, 2)) if p.multiple else 1):
                argv += [p.opts[0], _value(data, root, p)]
    return argv


@pytest.mark.parametrize("prog,path,cmd", COMMANDS, ids=[f"{p} {c}" for p, c, _ in COMMANDS])
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_every_command_takes_hostile_values_without_a_traceback(place, prog, path, cmd, data):
    main = accessctl.main if prog == "accessctl" else daemon.main
    argv = _argv(data, place, prog, path, cmd)
    before = _dump(place)
    env = {"ACCESSD_SITE": "", "ACCESSD_CONFIG": "", "ACCESSD_SITE_DIR": ""}
    r = CliRunner().invoke(main, argv, input="739102\n739102\n", env=env,
                           catch_exceptions=True)
    shown = f"{prog} {argv!r}:\n{r.output[-2000:]}"
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        f"{shown}\n{type(r.exception).__name__}: {r.exception}"
    assert r.exit_code in (0, 1, 2), shown
    assert "Traceback" not in r.output, shown
    if r.exit_code != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if not lines:    # a finding, not a refusal (site doctor, events --verify): the
            assert r.stdout.strip(), shown     # report is on standard output
            if "--json" in argv:
                json.loads(r.stdout)
        else:
            assert lines and lines[-1].startswith(f"{prog}: "), shown
        assert not any(ln.startswith(("Usage:", "Error:")) for ln in lines), shown
        assert _dump(place) == before, f"{shown}\nthe refusal changed stored data"
