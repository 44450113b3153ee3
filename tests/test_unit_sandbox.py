"""The daemon run the way systemd/accessd.service runs it on a Pi.

tests/unit_sandbox.py reads the unit file itself (not a copy) and applies its
sandbox: syscall filter (libseccomp, from the unit's SystemCallFilter= sets as
systemd-analyze expands them), read-only root with the unit's writable paths,
PrivateTmp, ProtectHome, working directory, environment, an unprivileged user,
no capabilities. The config is config/pi-door.toml with the GPIO backend set to
mock (no GPIO chip here) and simulation on, so a tap can be sent.
Needs root (mount namespaces, setuid), Debian's python3-seccomp and
systemd-analyze: scripts/test installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accessd.clock import read_sync_state
from accessd.control import Client
from accessd.storage.keys import generate, write_key_file
from accessd.storage.whitelist_admin import WhitelistAdmin

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "accessd.service"
LAUNCHER = Path(__file__).resolve().parent / "unit_sandbox.py"
SYSTEM_PYTHON = "/usr/bin/python3"
UID = 64123  # the unit's User=accessd, where no such user exists here ...
GID = 65534  # ... and Group=accessd: Debian's nogroup (api.group must name a real group)
MOUNT_POINTS = ("/etc/accessd", "/var/lib/accessd", "/run/accessd", "/opt/accessd")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the unit sandbox needs root (mount namespaces, setuid); "
                              "CI runs as root")


def _check_tools() -> None:
    missing = [t for t in ("unshare", "mount", "systemd-analyze") if not shutil.which(t)]
    probe = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        missing.append("python3-seccomp for /usr/bin/python3")
    assert not missing, f"scripts/test should have installed: {', '.join(missing)}"


class UnitDoor:
    """One door's /etc/accessd, /var/lib/accessd and /run/accessd, and the unit run on them."""

    def __init__(self, root: Path, *, pin_factory: str = "mock", unsynced_clock: str = "deny"):
        _check_tools()
        self.root = root
        self.etc, self.lib, self.run = root / "etc", root / "lib", root / "run"
        # /opt/accessd as install-on-pi leaves a checkout: current -> the venv
        self.opt = root / "opt"
        self.opt.mkdir(parents=True)
        os.symlink(REPO / ".venv", self.opt / "current")
        for d in (self.etc, self.lib, self.run):
            d.mkdir(parents=True)
        text = (REPO / "config" / "pi-door.toml").read_text()
        text = text.replace('pin_factory = "lgpio"', f'pin_factory = "{pin_factory}"')
        text = text.replace("simulation = false", "simulation = true")
        text = re.sub(r'^unsynced_clock = "\w+"', f'unsynced_clock = "{unsynced_clock}"', text,
                      flags=re.M)
        text = text.replace('group = "accessd"', 'group = "nogroup"')
        text += '\n[[readers]]\nname = "sim"\nkind = "sim"\n'
        (self.etc / "accessd.toml").write_text(text)
        self.keys = generate()
        write_key_file(self.etc / "keys.json", self.keys)
        os.chown(self.etc / "keys.json", UID, GID)
        # what systemd does for StateDirectory= / RuntimeDirectory= (owner, 0750)
        for d in (self.lib, self.run):
            os.chown(d, UID, GID)
            d.chmod(0o750)
        self.made: list[str] = [m for m in MOUNT_POINTS if not os.path.exists(m)]
        self.notify_path = self.run / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify_path.chmod(0o666)
        self.proc: subprocess.Popen | None = None

    def enroll(self, uid: str, **kw) -> None:
        wl = WhitelistAdmin(self.lib / "whitelist.db", self.keys)
        wl.enroll("nfc", uid, "sandbox", **kw)
        wl.close()
        for p in self.lib.iterdir():  # as if the daemon (UMask=0027) had written it
            os.chown(p, UID, GID)
            p.chmod(0o640)

    def command(self, which: str) -> list[str]:
        base = Path(sys.base_prefix).resolve()
        return ["unshare", "--mount", "--propagation", "private", SYSTEM_PYTHON, "-I",
                str(LAUNCHER), "--unit", str(UNIT), "--which", which,
                "--bind", f"/etc/accessd={self.etc}", "--bind", f"/var/lib/accessd={self.lib}",
                "--bind", f"/run/accessd={self.run}", "--bind", f"/opt/accessd={self.opt}",
                "--keep", str(REPO), "--keep", str(base), "--user-id", str(UID), "--group-id", str(GID),
                "--env", "NOTIFY_SOCKET=/run/accessd/notify.sock"]

    def start(self) -> "UnitDoor":
        self.stderr = open(self.root / "daemon.stderr", "wb")
        self.proc = subprocess.Popen(self.command("ExecStart"), stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        return self

    def wait_notify(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: "
                                     f"{self.stderr_text()}")
            self.notify.settimeout(0.5)
            try:
                msg = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            if needle in msg:
                return msg
        raise AssertionError(f"no {needle} from the daemon: {self.stderr_text()}")

    def stderr_text(self) -> str:
        return (self.root / "daemon.stderr").read_text(errors="replace")

    def request(self, req: dict) -> dict:
        with Client(self.run / "control.sock") as c:
            return c.request(req)

    def stop_post(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.command("ExecStopPost"), capture_output=True, text=True,
                              timeout=60)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()
        for m in self.made:  # mount points the launcher made on this machine
            try:
                os.rmdir(m)
            except OSError:
                pass


@pytest.fixture
def unit_door(tmp_path):
    doors = []

    def make(**kw) -> UnitDoor:
        d = UnitDoor(tmp_path / f"door{len(doors)}", **kw)
        doors.append(d)
        return d
    yield make
    for d in doors:
        d.close()


def test_the_daemon_runs_under_its_own_unit_sandbox(unit_door):
    door = unit_door(unsynced_clock="deny")
    door.enroll("04A1B2C3")                                          # a resident
    door.enroll("04C0C0C0", valid_until=time.time() + 86400)         # a pass for a day
    door.start()
    door.wait_notify("READY=1")
    host = read_sync_state()           # what the kernel says, asked from outside the sandbox
    st = door.request({"op": "status"})
    assert st["clock"] == {"synced": host.synced, "source": "kernel", "policy": "deny"}, \
        "the daemon under the unit must read the kernel's clock state, not be refused it"
    assert door.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})["decision"] == "granted"
    r = door.request({"op": "sim", "input": "tap", "uid": "04C0C0C0"})
    assert r["decision"] == ("granted" if host.synced else "denied"), r
    # the files it wrote belong to the unit's user, none readable by others
    for p in door.lib.iterdir():
        assert p.stat().st_uid == UID and not p.stat().st_mode & 0o007, p
    door.proc.send_signal(signal.SIGTERM)
    assert door.proc.wait(20) == 0, door.stderr_text()
    assert not list(door.run.glob(".lgd-nfy*"))
    post = door.stop_post()
    assert post.returncode == 0, post.stderr
    assert "relay on GPIO17 de-energised (locked)" in post.stdout
    assert "check_failed" not in door.stderr_text()


def test_lgpio_loads_under_the_unit_and_says_what_is_wrong(unit_door):
    """lgpio makes a pipe in its working directory at import: under the unit's
    read-only root it must use the runtime directory. On this x86 machine it then
    finds no Pi, and says so (not 'cannot be used', not a pipe error)."""
    pytest.importorskip("lgpio", reason="lgpio has x86_64 wheels: the test extra installs it")
    door = unit_door(pin_factory="lgpio")
    post = door.stop_post()
    assert post.returncode == 1
    assert "'lgpio' loaded, but this machine is not a Raspberry Pi" in post.stderr, post.stderr
    door.start()
    assert door.proc.wait(60) == 2, door.stderr_text()   # a config problem: no restart loop
    assert "'lgpio' loaded, but this machine is not a Raspberry Pi" in door.stderr_text()


def test_lgpio_that_cannot_make_its_pipe_is_a_hardware_fault_not_a_config_error(tmp_path):
    """LG_WD pointing at a read-only directory: the message names the pipe and the
    directory, and the exit code is 1, so systemd's RestartPreventExitStatus=2 does
    not stop it retrying."""
    pytest.importorskip("lgpio", reason="lgpio has x86_64 wheels: the test extra installs it")
    from accessd.testing import write_sim_config
    cfg = write_sim_config(tmp_path / "door")
    cfg.write_text(cfg.read_text().replace('pin_factory = "mock"', 'pin_factory = "lgpio"'))
    ro = tmp_path / "ro"
    ro.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY")}
    env["LG_WD"] = str(ro)
    script = (f'mount --bind -o ro "{ro}" "{ro}" && cd "{ro}" && '
              f'exec "{sys.executable}" -m accessd relay-safe --config "{cfg}"')
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "gpio backend lgpio failed to start" in r.stderr
    assert f"lgpio's notification pipe goes in {ro}: it must be writable" in r.stderr


def test_lgpio_run_by_hand_leaves_no_pipe_behind(tmp_path):
    """relay-safe run by hand (no unit: no LG_WD, no RUNTIME_DIRECTORY) from a writable
    directory: lgpio's notification pipe goes in a directory of the process's own and
    goes with it. (A root-owned /tmp/.lgd-nfy0 left by root's run made the next
    user's lgpio fail: "Can't set permissions (436) for /tmp/.lgd-nfy0".)"""
    pytest.importorskip("lgpio", reason="lgpio has x86_64 wheels: the test extra installs it")
    from accessd.testing import write_sim_config
    cfg = write_sim_config(tmp_path / "door")
    cfg.write_text(cfg.read_text().replace('pin_factory = "mock"', 'pin_factory = "lgpio"'))
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LG_WD", "RUNTIME_DIRECTORY", "STATE_DIRECTORY")}
    env["TMPDIR"] = str(tmp)
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "accessd", "relay-safe", "--config", str(cfg)],
                           capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
        assert r.returncode == 1 and "not a Raspberry Pi" in r.stderr, r.stderr
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
