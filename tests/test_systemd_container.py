"""accessd under real systemd: this machine's own Debian booted in a systemd-nspawn
container (an overlay of "/", so nothing here is changed), where a one-shot unit
runs scripts/install-on-pi (its self-check starts, stops and restarts
systemd/accessd.service: READY through sd_notify, relay-safe as ExecStopPost=),
taps a card through accessctl, kills the daemon (systemd restarts it) and writes
what it saw to a directory shared with the test, then powers the container off.

The door's config is config/pi-door.toml with the mock GPIO backend (no GPIO chip
here) and simulation on; everything else is the unit and the installer as shipped.
Needs root and systemd-nspawn (scripts/test installs systemd-container).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from .test_install_on_pi import REPO, seed_upper

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
                                reason="booting a systemd container needs root and "
                                       "systemd-nspawn (scripts/test installs it as root)")

CHECK = r"""#!/bin/bash
# Runs once inside the container at boot (accessd-container-check.service).
exec >/results/check.log 2>&1
ctl() { /opt/accessd/.venv/bin/accessctl --config /etc/accessd/accessd.toml "$@"; }
cd /opt/accessd && scripts/install-on-pi
echo "install rc=$?"
ctl sim tap 04A1B2C3; echo "tap rc=$?"
ctl status --json > /results/status.json
systemctl kill -s KILL accessd.service          # a crash: systemd restarts the door
for i in $(seq 100); do                          # waiting for systemd (RestartSec=1), not a timer of ours
  [ "$(systemctl show -p NRestarts --value accessd.service)" -ge 1 ] \
    && systemctl is-active -q accessd.service && break
  sleep 0.2
done
systemctl show -p ActiveState -p NRestarts -p Type accessd.service > /results/show.txt
journalctl -u accessd.service --no-pager -o cat > /results/journal.txt
echo done
systemctl poweroff --no-block
"""

UNIT = """[Unit]
Description=accessd test inside the container
After=network.target
[Service]
Type=oneshot
ExecStart=/bin/bash /usr/local/sbin/accessd-container-check
[Install]
WantedBy=multi-user.target
"""


def test_the_door_under_real_systemd(tmp_path):
    upper, work, merged, results = (tmp_path / n for n in ("upper", "work", "merged", "results"))
    for d in (upper, work, merged, results):
        d.mkdir()
    seed_upper(upper)
    (upper / "etc").mkdir(exist_ok=True)
    (upper / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")   # not the host's
    cfg = (REPO / "config/pi-door.toml").read_text()
    cfg = cfg.replace('pin_factory = "lgpio"', 'pin_factory = "mock"')
    cfg = cfg.replace("simulation = false", "simulation = true")
    # the container shares this machine's network: a port of its own for the metrics, so
    # another run of the suite (or a door) on this machine is not in its way
    from accessd.testing import free_tcp_port
    assert 'listen = "127.0.0.1:9469"' in cfg
    cfg = cfg.replace('listen = "127.0.0.1:9469"', f'listen = "127.0.0.1:{free_tcp_port()}"')
    cfg += '\n[[readers]]\nname = "sim"\nkind = "sim"\n'
    (upper / "etc/accessd").mkdir()
    (upper / "etc/accessd/accessd.toml").write_text(cfg)
    (upper / "usr/local/sbin").mkdir(parents=True)
    (upper / "usr/local/sbin/accessd-container-check").write_text(CHECK)
    units = upper / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "accessd-container-check.service").write_text(UNIT)
    os.symlink("../accessd-container-check.service",
               units / "multi-user.target.wants/accessd-container-check.service")
    name = "accessd-" + uuid.uuid4().hex[:8]
    script = (f"mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} "
              f"{merged} && exec systemd-nspawn -q -D {merged} -M {name} --keep-unit --boot "
              f"--register=no --link-journal=no --bind={results}:/results "
              # nspawn's own seccomp filter refuses the clock syscalls to a container
              # without CAP_SYS_TIME, even read-only; a Pi has no such layer. Allowed
              # here, the unit's own SystemCallFilter= is what decides.
              "--system-call-filter='adjtimex clock_adjtime'")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON",
                                                                   "NOTIFY_SOCKET"))}
    boot = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=600, env=env,
                          stdin=subprocess.DEVNULL)
    log = (results / "check.log").read_text() if (results / "check.log").exists() else ""
    assert log.rstrip().endswith("done"), f"container: {boot.stdout[-3000:]}\n{log[-3000:]}"

    # the installer's self-check, under real systemd
    for check in ("check-config", "lgpio", "READY", "stop+relay", "relay-safe", "active",
                  "status"):
        assert re.search(rf"PASS  {re.escape(check)}\b", log), (check, log[-3000:])
    assert "install rc=0" in log
    # a tap decided by the door systemd started
    assert re.search(r"DENIED.*unknown credential", log), log[-2000:]
    status = json.loads((results / "status.json").read_text())
    assert status["clock"]["source"] == "kernel" and "error" not in status["clock"], status
    # a crash: systemd made the relay safe (ExecStopPost=) and started the door again
    show = dict(line.split("=", 1) for line in (results / "show.txt").read_text().split())
    assert show["Type"] == "notify" and show["ActiveState"] == "active"
    assert int(show["NRestarts"]) >= 1
    journal = (results / "journal.txt").read_text()
    assert journal.count("relay on GPIO17 de-energised (locked)") >= 2, journal[-3000:]
    assert "clock.check_failed" not in journal and "Traceback" not in journal
