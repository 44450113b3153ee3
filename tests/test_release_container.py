"""Install a door from a card with no network, then update it with signed releases,
under real systemd: this machine's Debian booted in systemd-nspawn containers (an
overlay of "/", nothing here is changed) with --private-network (loopback only:
the door reaches its store, a directory, and nothing else).

The office (this machine, which has a package index) builds the releases with
`accessctl release build` and writes the card with `accessctl door provision
--boot`. Boot 0 is the card's first: systemd.run= (from its cmdline.txt) runs
firstrun.sh, which installs the first-boot unit and reboots. Then:

 boot 1: accessd-firstboot.service installs the door from the card (no apt, no
         index), READY; the office publishes 1.1, `accessctl sync now` makes the
         door's updater take it; 1.2 never sends READY and is rolled back by the
         updater alone; 1.3's wheel is altered in the store and refused; 1.5 says
         READY and then crashes every few seconds: rolled back too;
 boot 2: release 1.4 published, and every process in the container SIGKILLed while
         the door is switching to it;
 boot 3: the door boots, back on 1.1, READY.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .test_install_on_pi import CMDLINE_TXT, CONFIG_TXT, REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
                                 reason="booting a systemd container needs root and "
                                        "systemd-nspawn (scripts/test installs it as root)")]

ACCESSCTL = REPO / ".venv/bin/accessctl"

CHECK1 = r"""#!/bin/bash
# boot 1, after accessd-firstboot.service
exec >/results/check1.log 2>&1
ctl() { /usr/local/bin/accessctl --config /etc/accessd/accessd.toml "$@"; }
office() { @ACCESSCTL@ --site @SITE@ "$@"; }
phase() { python3 -c 'import json;d=json.load(open("/var/lib/accessd-update/state.json"));print(d.get("phase"), d.get("version"))' 2>/dev/null; }
systemctl show -p ActiveState accessd.service
systemctl show -p Result accessd-firstboot.service
ctl status --json > /results/status-installed.json
readlink /opt/accessd/current > /results/current-installed.txt
ls /boot/firmware/accessd > /results/card-after.txt

office release publish 1.1 --door door-1
ctl sync now                           # the daemon asks the updater (accessd-update.path)
for i in $(seq 600); do                # waiting for systemd and pip, not a timer of ours
  [ "$(phase)" = "done 1.1" ] && ! systemctl is-active -q accessd-update.service && break
  sleep 0.5
done
phase
ctl status --json > /results/status-1.1.json

office release publish 1.2 --door door-1
systemctl start accessd-update.service  # as the hourly timer would
phase
ctl status --json > /results/status-1.2.json

office release publish 1.3 --door door-1
python3 - <<'PY'                         # someone alters a wheel in the store
import glob
w = glob.glob("/srv/store/releases/1.3/wheels/accessd-*.whl")[0]
b = bytearray(open(w, "rb").read()); b[len(b) // 2] ^= 1
open(w, "wb").write(b)
PY
systemctl start accessd-update.service
readlink /opt/accessd/current > /results/current-after-tamper.txt

office release publish 1.5 --door door-1  # READY, then a crash every few seconds
systemctl start accessd-update.service
phase
ctl status --json > /results/status-1.5.json
ctl sync now                           # the daemon logs what the updater reported
for i in $(seq 40); do                 # (its log writer commits a moment later)
  ctl events --json > /results/events.json
  grep -q release.refused /results/events.json && break
  sleep 0.25
done
journalctl -u accessd-update.service --no-pager -o cat > /results/update-journal.txt
journalctl -u accessd-firstboot.service --no-pager -o cat > /results/firstboot-journal.txt
echo done
systemctl poweroff --no-block
"""

CHECK2 = r"""#!/bin/bash
# boot 2: 1.4 published; the test SIGKILLs everything while the door switches to it
exec >/results/check2.log 2>&1
@ACCESSCTL@ --site @SITE@ release publish 1.4 --door door-1
systemctl start --no-block accessd-update.service
echo started
"""

CHECK3 = r"""#!/bin/bash
# boot 3: after the kill
exec >/results/check3.log 2>&1
ctl() { /usr/local/bin/accessctl --config /etc/accessd/accessd.toml "$@"; }
for i in $(seq 200); do systemctl is-active -q accessd.service && break; sleep 0.5; done
systemctl show -p ActiveState accessd.service
ctl status --json > /results/status-after-kill.json
cat /var/lib/accessd-update/state.json > /results/state-after-kill.json
journalctl -u accessd-update-recover.service --no-pager -o cat > /results/recover-journal.txt
echo done
systemctl poweroff --no-block
"""

UNIT = """[Unit]
Description=accessd test inside the container
After=accessd-firstboot.service accessd.service
[Service]
Type=oneshot
ExecStart=/bin/bash /usr/local/sbin/accessd-container-check
TimeoutStartSec=20min
[Install]
WantedBy=multi-user.target
"""


def office(site: Path, *args, env=None) -> str:
    r = subprocess.run([str(ACCESSCTL), "--site", str(site), *args], capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def _boot(upper: Path, work: Path, merged: Path, binds: list[str], *, wait=True,
          kill_when=None):
    name = "accessd-" + uuid.uuid4().hex[:8]
    script = (f"mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} "
              f"{merged} && exec systemd-nspawn -q -D {merged} -M {name} --keep-unit --boot "
              "--register=no --link-journal=no --private-network "
              + " ".join(f"--bind={b}" for b in binds)
              + " --system-call-filter='adjtimex clock_adjtime'")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON",
                                                                   "NOTIFY_SOCKET"))}
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    if kill_when is not None:
        deadline = time.monotonic() + 600
        while not kill_when() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)      # polling the container's state file, not a timer
        killed = kill_when()
        os.killpg(p.pid, signal.SIGKILL)          # every process of the container at once
        p.wait(60)
        return killed
    out, _ = p.communicate(timeout=1500)
    return out


def _check(upper: Path, text: str, site: Path) -> None:
    sbin = upper / "usr/local/sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    (sbin / "accessd-container-check").write_text(
        text.replace("@ACCESSCTL@", str(ACCESSCTL)).replace("@SITE@", str(site)))
    units = upper / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
    (units / "accessd-container-check.service").write_text(UNIT)
    link = units / "multi-user.target.wants/accessd-container-check.service"
    if not link.is_symlink():
        os.symlink("../accessd-container-check.service", link)


def test_offline_install_signed_updates_rollback_and_a_kill_mid_switch(tmp_path):
    if not ACCESSCTL.exists():
        pytest.skip("the office's accessctl is in .venv (scripts/test makes it)")
    site, store = tmp_path / "site", tmp_path / "store"
    upper, work, merged, results = (tmp_path / n for n in ("upper", "work", "merged",
                                                           "results"))
    for d in (upper, work, merged, results, store):
        d.mkdir()
    # ---- the office: a site, a door, four releases, a card -------------------------
    office(site, "site", "init", "riverside")
    office(site, "site", "store", "file:///srv/store")
    office(site, "group", "add", "bldg-a")
    office(site, "door", "add", "door-1", "--group", "bldg-a")
    out = office(site, "release", "build", "--platform", "x86_64", "--version", "1.0")
    assert "built release 1.0" in out
    first = site / "releases/1.0/wheels"
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(first)}
    for v in ("1.1", "1.3", "1.4"):
        office(site, "release", "build", "--platform", "x86_64", "--version", v, env=offline)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for version, patch in (
            ("1.2", "pass  # broken: never READY"),
            ("1.5", "self.notifier.ready(status); "     # READY, then dies 3 s later
                    "__import__('threading').Timer(3, __import__('os')._exit, [1]).start()")):
        broken = tmp_path / f"src-{version}"
        for f in filter(None, files):
            if (REPO / f).is_file():
                (broken / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, broken / f)
        svc = broken / "accessd/service.py"
        text = svc.read_text()
        assert "self.notifier.ready(status)" in text
        svc.write_text(text.replace("self.notifier.ready(status)", patch))
        office(site, "release", "build", "--platform", "x86_64", "--version", version,
               "--source", str(broken), env=offline)

    boot = upper / "boot/firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text(CONFIG_TXT)
    (boot / "cmdline.txt").write_text(CMDLINE_TXT)
    out = office(site, "door", "provision", str(boot), "--door", "door-1", "--release", "1.0")
    assert "systemd.run=/boot/firmware/firstrun.sh" in (boot / "cmdline.txt").read_text()
    # the installer sets the door's wiring on the card (here: no GPIO chip, a sim reader)
    cfg_path = boot / "accessd/accessd.toml"
    cfg = cfg_path.read_text()
    cfg = cfg.replace('pin_factory = "lgpio"', 'pin_factory = "mock"')
    cfg = cfg.replace("simulation = false", "simulation = true")
    cfg += ('\n[[readers]]\nname = "sim"\nkind = "sim"\n'
            '\n[update]\nready_seconds = 20\nprobation_seconds = 30\ncrash_limit = 3\n')
    cfg_path.write_text(cfg)
    (upper / "etc").mkdir()
    (upper / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")

    # boot 0, as a Pi's first boot from the card: systemd reads the kernel command line
    # (in a container, its own: the card's systemd.* arguments are given to it), runs
    # firstrun.sh in kernel-command-line.target, and reboots (nspawn exits 133)
    args = [a for a in (boot / "cmdline.txt").read_text().split() if a.startswith("systemd.")]
    assert "systemd.run=/boot/firmware/firstrun.sh" in args
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work}"
                        f" {merged} && exec systemd-nspawn -q -D {merged} -M accessd-"
                        f"{uuid.uuid4().hex[:8]} --keep-unit --boot --register=no "
                        f"--link-journal=no --private-network -- {' '.join(args)}"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 133, r.stdout[-3000:] + r.stderr[-3000:]     # rebooted
    assert "systemd.run" not in (boot / "cmdline.txt").read_text()
    assert not (boot / "firstrun.sh").exists()
    assert (upper / "etc/systemd/system/multi-user.target.wants/accessd-firstboot.service"
            ).is_symlink()

    binds = [f"{results}:/results", f"{store}:/srv/store", f"{site}:{site}",
             f"{REPO}:{REPO}"]
    _check(upper, CHECK1, site)
    out = _boot(upper, work, merged, binds)
    log = (results / "check1.log").read_text() if (results / "check1.log").exists() else ""
    assert log.rstrip().endswith("done"), f"{out[-3000:]}\n{log[-3000:]}"

    # an offline first boot to READY: release 1.0 from the card, its key off the card
    assert "ActiveState=active" in log and "Result=success" in log, log[-3000:]
    st = json.loads((results / "status-installed.json").read_text())
    assert st["release"] == "1.0" and st["door"] == "door-1"
    assert (results / "current-installed.txt").read_text().strip() == "releases/1.0"
    assert "keys.json" not in (results / "card-after.txt").read_text()
    fb = (results / "firstboot-journal.txt").read_text()
    assert "offline install from /boot/firmware/accessd" in fb and "PASS  READY" in fb, fb[-3000:]
    assert "release 1.0: signature and" in fb
    # an update that applies (through sync-now)
    assert json.loads((results / "status-1.1.json").read_text())["release"] == "1.1", log
    # a release that never says READY: rolled back by the door itself
    assert "rolled_back 1.2" in log, log[-3000:]
    assert json.loads((results / "status-1.2.json").read_text())["release"] == "1.1"
    # a tampered release: refused, nothing switched
    assert (results / "current-after-tamper.txt").read_text().strip() == "releases/1.1"
    journal = (results / "update-journal.txt").read_text()
    assert "does not match its signed manifest" in journal, journal[-3000:]
    events = [json.loads(line) for line in (results / "events.json").read_text().splitlines()
              if line.startswith("{")]
    for e in events:
        e["detail"] = json.loads(e["detail"]) if isinstance(e["detail"], str) else e["detail"]
    kinds = {(e["kind"], (e["detail"] or {}).get("version")) for e in events}
    assert ("release.applied", "1.1") in kinds, kinds
    assert ("release.rolled_back", "1.2") in kinds, kinds
    assert ("release.refused", "1.3") in kinds, kinds
    # a release that crashes again and again after READY: rolled back too
    assert "rolled_back 1.5" in log, log[-3000:]
    assert json.loads((results / "status-1.5.json").read_text())["release"] == "1.1"
    rolled = {e["detail"]["version"]: e for e in events if e["kind"] == "release.rolled_back"}
    assert "no READY within 20 s" in rolled["1.2"]["reason"]
    assert "crashed 3 times within 30 s of READY" in rolled["1.5"]["reason"], rolled["1.5"]

    # ---- boot 2: SIGKILL of everything in the middle of the switch to 1.4 -----------
    state = upper / "var/lib/accessd-update/state.json"

    def switching() -> bool:
        try:
            d = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        return d.get("version") == "1.4" and d.get("phase") == "starting"
    _check(upper, CHECK2, site)
    assert _boot(upper, work, merged, binds, kill_when=switching), \
        (results / "check2.log").read_text() if (results / "check2.log").exists() else ""
    assert os.readlink(upper / "opt/accessd/current") == "releases/1.4"   # mid-switch

    # ---- boot 3: the door comes up, on the release before the switch ---------------
    _check(upper, CHECK3, site)
    out = _boot(upper, work, merged, binds)
    log = (results / "check3.log").read_text() if (results / "check3.log").exists() else ""
    assert log.rstrip().endswith("done"), f"{out[-3000:]}\n{log[-3000:]}"
    assert "ActiveState=active" in log
    assert json.loads((results / "status-after-kill.json").read_text())["release"] == "1.1"
    assert json.loads((results / "state-after-kill.json").read_text())["phase"] == "rolled_back"
    assert "cut short" in (results / "recover-journal.txt").read_text()
