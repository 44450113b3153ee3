"""accessctl and accessd through click's runner: help texts, bad input, the daemon link."""

import json
import os

import click
import pytest
from click.testing import CliRunner

from accessd.cli import accessctl, daemon as daemon_cli
from accessd.config import load_config


def all_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, prefix + (name,))


@pytest.mark.parametrize("cli", [accessctl.main, daemon_cli.main])
def test_every_command_has_help_with_an_example(cli):
    runner = CliRunner()
    cmds = list(all_commands(cli))
    assert len(cmds) >= 3
    for path, cmd in [((), cli)] + cmds:
        r = runner.invoke(cli, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert cmd.help and "Example" in r.output, f"{' '.join(path)} has no example"


@pytest.fixture
def ctl(sim_config):
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(accessctl.main, ["--config", str(sim_config), *args], input=input)
    return run


def test_enrol_list_revoke(ctl):
    r = ctl("enroll", "--kind", "nfc", "--holder", "12A-1", "--uid", "04:a1:b2:c3",
            "--valid-until", "2030-01-01", "--json")
    assert r.exit_code == 0, r.output
    cid = json.loads(r.output)["credential"]
    r = ctl("enroll", "--kind", "pin", "--holder", "12A-1", "--pin-stdin", input="739146\n")
    assert r.exit_code == 0, r.output
    assert "enrolled pin" in r.output
    r = ctl("list", "--json")
    rows = json.loads(r.output)
    assert {x["kind"] for x in rows} == {"nfc", "pin"}
    assert "04A1B2C3" not in r.output and "739146" not in r.output
    r = ctl("list")
    assert cid in r.output and "2 credentials" in r.output
    r = ctl("revoke", cid, "--mark", "lost")
    assert r.exit_code == 0 and "marked lost" in r.output
    assert [x["status"] for x in json.loads(ctl("list", "--json").output) if x["credential"] == cid] == ["lost"]


@pytest.mark.parametrize("args,code,message", [
    # bad input: exit 1, naming the option
    (["enroll", "--kind", "nfc", "--holder", "x", "--uid", "04ZZ"], 1,
     "--uid: nfc UID must be hexadecimal"),
    (["enroll", "--kind", "fob", "--holder", "x", "--uid", "12", "--valid-until", "soon"], 1,
     "--valid-until: 'soon' is not a time"),
    (["enroll", "--kind", "iris", "--holder", "x"], 1, "--kind: 'iris' is not one of"),
    (["events", "--since", "yesterday-ish"], 1, "is not a time"),
    # usage: exit 2, pointing at the command's help
    (["enroll", "--kind", "nfc", "--holder", "x"], 2, "give --uid VALUE or --capture"),
    (["enroll", "--kind", "pin", "--holder", "x", "--uid", "1234"], 2, "a PIN is typed"),
    (["enroll", "--holder", "x"], 2, "missing option '--kind'"),
    (["enroll", "--kind", "nfc", "--bogus"], 2, "no such option '--bogus'"),
    (["frobnicate"], 2, "no such command 'frobnicate'"),
])
def test_bad_input_is_rejected_with_a_clear_message(ctl, args, code, message):
    r = ctl(*args)
    assert r.exit_code == code, r.output
    assert r.output.startswith("accessctl: ") and message in r.output
    assert "Usage:" not in r.output and "Traceback" not in r.output
    if code == 2:
        assert "--help')" in r.output


def _pty_run(argv, answers, timeout=30.0):
    """Run argv on a pseudo-terminal; write each answer once its prompt appears."""
    import select
    import subprocess
    import sys
    import time
    master, slave = os.openpty()
    p = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", *argv],
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    answers = list(answers)
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:      # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if answers and out.rstrip().endswith(answers[0][0].encode()):
            os.write(master, answers.pop(0)[1].encode())
        if p.poll() is not None and not r:
            break
    os.close(master)
    return p.wait(10), out.decode(errors="replace")


def test_a_pin_typed_at_a_terminal_is_hidden_and_asked_twice(sim_config, ctl):
    rc, out = _pty_run(["--config", str(sim_config), "enroll", "--kind", "pin", "--holder",
                        "12A-1"], [("PIN:", "739146\n"),
                                   ("Repeat for confirmation:", "739146\n")])
    assert rc == 0, out
    assert "enrolled pin" in out and "739146" not in out    # never echoed
    assert [x["kind"] for x in json.loads(ctl("list", "--json").output)] == ["pin"]


def test_a_pin_without_a_terminal_says_to_use_pin_stdin(sim_config):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--config",
                        str(sim_config), "enroll", "--kind", "pin", "--holder", "12A-1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("accessctl: no terminal to type the PIN at: pipe it in with "
                               "--pin-stdin")
    assert "GetPassWarning" not in r.stderr and "Aborted" not in r.stderr


def test_bad_pin_is_rejected_and_nothing_is_stored(ctl):
    r = ctl("enroll", "--kind", "pin", "--holder", "x", "--pin-stdin", input="12\n")
    assert r.exit_code == 1 and "PIN must be 4-8 digits" in r.output
    assert json.loads(ctl("list", "--json").output) == []


def test_duplicate_enrolment_and_unknown_revoke(ctl):
    assert ctl("enroll", "--kind", "fob", "--holder", "a", "--uid", "12648430").exit_code == 0
    r = ctl("enroll", "--kind", "fob", "--holder", "b", "--uid", "0x00C0FFEE")
    assert r.exit_code == 1 and "already enrolled" in r.output
    r = ctl("revoke", "c0000000000")
    assert r.exit_code == 1 and "no credential with id 'c0000000000'" in r.output
    assert len(json.loads(ctl("list", "--json").output)) == 1


def test_keys_init_refuses_to_overwrite(ctl, sim_config):
    before = (sim_config.parent / "keys/door-keys.json").read_bytes()
    r = ctl("keys", "init")
    assert r.exit_code == 2 and "refusing to overwrite" in r.output
    assert (sim_config.parent / "keys/door-keys.json").read_bytes() == before


def test_keys_init_creates_a_0600_file(tmp_path):
    from accessd.testing import write_sim_config
    cfg_path = write_sim_config(tmp_path / "new", keys=False)
    r = CliRunner().invoke(accessctl.main, ["--config", str(cfg_path), "keys", "init"])
    assert r.exit_code == 0, r.output
    key = tmp_path / "new/keys/door-keys.json"
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert load_config(cfg_path).door.id


def test_daemon_commands_say_when_no_daemon_runs(ctl):
    r = ctl("status")
    assert r.exit_code == 1 and "no control socket (is accessd running?)" in r.output


def test_commands_against_the_running_daemon(daemon):
    runner = CliRunner()

    def ctl(*args):
        return runner.invoke(accessctl.main, ["--config", str(daemon.config), *args])
    assert ctl("enroll", "--kind", "nfc", "--holder", "h", "--uid", "04A1B2C3").exit_code == 0
    r = ctl("sim", "tap", "04A1B2C3")
    assert r.exit_code == 0 and r.output.startswith("GRANTED") and "relay: unlocked" in r.output
    r = ctl("sim", "tap", "04000000")
    assert r.output.startswith("DENIED") and "unknown credential" in r.output
    r = ctl("sim", "pin", "12#")
    assert r.output.startswith("INVALID") and "too short" in r.output
    r = ctl("sim", "tap", "nothex")
    assert r.exit_code == 1 and "nfc UID must be hexadecimal" in r.output
    r = ctl("status", "--json")
    st = json.loads(r.output)
    assert st["counters"]["granted"] == 1 and st["whitelist"]["credentials"] == 1
    assert st["readers"][0]["name"] == "front" and st["readers"][0]["last_seen"]
    human = ctl("status").output
    assert "sim-door" not in r.output and "test-door" in human
    synced = "synchronised" if st["clock"]["synced"] else "NOT synchronised"
    assert f"{synced} (from kernel; policy trust)" in " ".join(human.split())
    assert "1 of 64 connections" in human        # this status request's own connection
    r = ctl("unlock")
    assert r.exit_code == 0 and "door unlocked" in r.output
    r = ctl("events")
    assert "access.granted" in r.output and "unlock.remote" in r.output
    assert "04A1B2C3" not in r.output
    r = ctl("events", "--verify")
    assert r.exit_code == 0 and "chain intact" in r.output
    r = ctl("events", "--since", "1h", "--json", "--limit", "2")
    assert [json.loads(x)["kind"] for x in r.output.splitlines()] == ["daemon.started", "access.granted"]


def test_enrol_by_capture(daemon):
    import threading
    runner = CliRunner()
    result = {}

    def enrol():
        result["r"] = runner.invoke(accessctl.main, [
            "--config", str(daemon.config), "enroll", "--kind", "nfc", "--holder", "new",
            "--capture", "--capture-timeout", "20"])
    t = threading.Thread(target=enrol)
    t.start()
    for _ in range(200):  # until the capture is waiting when the card arrives
        if daemon.request({"op": "sim", "input": "tap", "uid": "04CAFE01"}).get("captured"):
            break
    t.join(30)
    assert result["r"].exit_code == 0, result["r"].output
    assert daemon.request({"op": "sim", "input": "tap", "uid": "04CAFE01"})["decision"] == "granted"


def test_events_verify_fails_on_a_tampered_log(daemon):
    import sqlite3
    daemon.request({"op": "unlock"})
    path = load_config(daemon.config).storage.eventlog_path
    with sqlite3.connect(path) as c:
        c.execute("UPDATE events SET reason = 'nothing happened' WHERE kind = 'unlock.remote'")
    r = CliRunner().invoke(accessctl.main, ["--config", str(daemon.config), "events", "--verify"])
    assert r.exit_code == 1 and "record hash does not match" in r.output


def test_command_modules_do_not_import_the_accessctl_group():
    """Each noun's commands are module-level commands over the library: none of them
    reaches back into accessctl (which only assembles them)."""
    import subprocess
    import sys
    from pathlib import Path
    cli = Path(accessctl.__file__).parent
    modules = sorted(p.stem for p in cli.glob("*_cmds.py"))
    assert {"people_cmds", "door_cmds", "log_cmds", "publish_cmds", "pass_cmds",
            "live_cmds"} <= set(modules)
    code = ("import sys; " + "; ".join(f"import accessd.cli.{m}" for m in modules)
            + "; assert 'accessd.cli.accessctl' not in sys.modules, 'a command module "
              "imports accessctl'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_capture_on_the_socket_never_hands_out_the_number(tmp_path):
    """An office terminal beside a site's door enrols with --capture: the door gets a
    capture command signed by the site over its socket and seals the number to the
    terminal's one-off key. Any other member of the socket's group asking for a
    capture gets the kind and fingerprint only, and cannot enrol into a site door."""
    import threading

    from accessd.testing import DaemonProcess

    from .test_sync import Office
    office = Office(tmp_path)
    office.publish()
    config = office.door()
    person = office.site.person_add("Bo Lind", "14C", "resident")
    d = DaemonProcess(config).wait_ready()
    try:
        result = {}

        def enrol():
            result["r"] = CliRunner().invoke(accessctl.main, [
                "--site", str(tmp_path / "site"), "--config", str(config), "enroll",
                "--person", person, "--kind", "nfc", "--capture", "--capture-timeout", "20"])
        t = threading.Thread(target=enrol)
        t.start()
        for _ in range(200):
            if d.request({"op": "sim", "input": "tap", "uid": "04CAFE02"}).get("captured"):
                break
        t.join(30)
        assert result["r"].exit_code == 0, result["r"].output
        assert "enrolled nfc" in result["r"].output and "Bo Lind (14C)" in result["r"].output
        # someone else in the socket's group
        got = {}
        t = threading.Thread(target=lambda: got.update(d.request({"op": "capture",
                                                                    "timeout": 20})))
        t.start()
        for _ in range(200):
            if d.request({"op": "sim", "input": "tap", "uid": "04CAFE03"}).get("captured"):
                break
        t.join(30)
        assert got["ok"] and got["kind"] == "nfc" and "value" not in got
        assert "04CAFE03" not in json.dumps(got).upper()
        refused = d.request({"op": "capture", "timeout": 1, "enroll": {"holder": "x"}})
        assert not refused["ok"] and "comes from its office" in refused["error"]
        forged = d.request({"op": "command", "message": "eyJ2IjoxfQ.AAAA"})
        assert not forged["ok"] and "bad signature" in forged["error"]
    finally:
        d.terminate()
    assert office.site.credential_holder("nfc", "04CAFE02") == person
    office.site.close()
