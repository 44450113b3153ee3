"""scripts/install-on-pi, run for real as root on this machine's own Debian, twice.

The machine is not touched: the script runs chrooted into an overlay of "/" (every
write lands in a temporary upper directory), with a fresh /run (no systemd running,
as in a chroot), a Raspberry Pi OS style /boot/firmware, and the repository's
tracked files at /opt/accessd. It must install the daemon, both units (enabled
where systemd is not running: by symlink), the upload timer, the udev rules and
the UART block, keep config and keys on a second run, and end with its self-check:
here everything passes but relay-safe, which finds no Pi (this is x86).
The same script was run in an arm64 Debian 12 root under qemu: see the README.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install-on-pi runs as root (CI does)")

CONFIG_TXT = "dtparam=audio=on\ncamera_auto_detect=1\n[all]\n"
CMDLINE_TXT = ("console=serial0,115200 console=tty1 root=PARTUUID=0a1b2c3d-02 rootfstype=ext4 "
               "fsck.repair=yes rootwait\n")


def seed_upper(upper: Path) -> None:
    """The repository's tracked files at /opt/accessd, a Raspberry Pi OS style
    /boot/firmware, in an overlay's upper directory."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).exists():
            (upper / "opt/accessd" / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, upper / "opt/accessd" / f, follow_symlinks=False)  # as a clone
    (upper / "boot/firmware").mkdir(parents=True)
    (upper / "boot/firmware/config.txt").write_text(CONFIG_TXT)
    (upper / "boot/firmware/cmdline.txt").write_text(CMDLINE_TXT)


@pytest.fixture
def overlay(tmp_path):
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    seed_upper(upper)

    def run(*args, **extra_env) -> subprocess.CompletedProcess:
        script = f"""set -e
mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} {merged}
mount --bind /proc {merged}/proc
mount --rbind /dev {merged}/dev
mount --bind /sys {merged}/sys
mount -t tmpfs tmpfs {merged}/run
mount -t tmpfs tmpfs {merged}/tmp
exec chroot {merged} /bin/bash -c 'cd /opt/accessd && exec scripts/install-on-pi {" ".join(args)}'
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env.update(extra_env)
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, env=env, timeout=900)
    return upper, run


def test_install_on_pi_installs_everything_and_checks_itself(overlay):
    upper, run = overlay
    r = run()
    out = r.stdout + r.stderr
    # the self-check: all but relay-safe, which needs a Pi
    assert "PASS  check-config" in out and "PASS  lgpio" in out, out
    assert "FAIL  relay-safe" in out and "this machine is not a Raspberry Pi" in out, out
    assert "install-on-pi: 1 self-check(s) failed" in out and r.returncode == 1, out
    # systemd is not running in a chroot: the last words do not send anyone to journalctl
    assert r.stderr.splitlines()[-1] == "install-on-pi: 1 self-check(s) failed (see above)"
    assert "first command: sudo accessd check-config" in out
    for cmd in ("accessd", "accessctl"):   # on the PATH
        assert os.readlink(upper / "usr/local/bin" / cmd) == f"/opt/accessd/current/bin/{cmd}"
    # the units start what `current` points at: the checkout's venv, until a release
    assert os.readlink(upper / "opt/accessd/current") == ".venv"
    # lgpio was imported as root and as accessd: no notification pipe left anywhere
    assert not [p for p in upper.rglob(".lgd-nfy*")], list(upper.rglob(".lgd-nfy*"))
    assert "https://pypi.org/simple reachable" in out

    etc = upper / "etc"
    for unit in ("accessd.service", "accessd-upload.service", "accessd-upload.timer",
                 "accessd-update.service", "accessd-update.timer", "accessd-update.path",
                 "accessd-update-recover.service"):
        assert (etc / "systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    assert os.readlink(etc / "systemd/system/multi-user.target.wants/accessd.service") \
        == "/etc/systemd/system/accessd.service"
    assert "accessd-upload.timer installed, not enabled: set sync.url" in out
    assert (etc / "udev/rules.d/99-accessd-nfc.rules").read_text() == \
        (REPO / "hw/99-accessd-nfc.rules").read_text()
    assert (etc / "modprobe.d/accessd-nfc.conf").read_text() == "blacklist pn533_usb\n"
    boot = upper / "boot/firmware"
    assert (boot / "config.txt").read_text() == CONFIG_TXT + (
        "# >>> accessd (scripts/install-on-pi; hw/config.txt.snippet)\nenable_uart=1\n"
        "dtoverlay=disable-bt\n# <<< accessd\n")
    assert "console=serial0" not in (boot / "cmdline.txt").read_text()
    assert "reboot to enable the UART" in out
    keys = etc / "accessd/keys.json"
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert "accessd:x:" in (etc / "passwd").read_text()
    venv_cfg = (upper / "opt/accessd/.venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in venv_cfg   # sees the OS's python3-lgpio
    assert (upper / "opt/accessd/.venv/bin/accessd").exists()

    venv_lib = upper / "opt/accessd/.venv/lib"
    assert not list(venv_lib.glob("python3*/site-packages/boto3"))   # no s3:// store yet

    # again, as an upgrade: nothing kept is overwritten, nothing doubled; the door
    # now keeps its logs in S3, so the script adds boto3 and turns the upload on
    key_text = keys.read_text()
    (etc / "accessd/accessd.toml").write_text(
        (etc / "accessd/accessd.toml").read_text().replace('id = "bldg-a-unit-12a"',
                                                          'id = "unit-7"')
        + '\n[sync]\nurl = "s3://door-logs/riverside?endpoint=http://127.0.0.1:9"\n')
    r2 = run()
    out2 = r2.stdout + r2.stderr
    assert "accessd.toml kept" in out2 and "keys.json kept" in out2, out2
    assert "sync.url is an s3:// store: installing boto3" in out2, out2
    assert list(venv_lib.glob("python3*/site-packages/boto3/__init__.py")), out2
    assert "accessd-upload.timer enabled" in out2, out2
    assert os.readlink(etc / "systemd/system/timers.target.wants/accessd-upload.timer") \
        == "/etc/systemd/system/accessd-upload.timer"
    assert keys.read_text() == key_text
    assert 'id = "unit-7"' in (etc / "accessd/accessd.toml").read_text()
    assert "UART block already there" in out2
    assert (boot / "config.txt").read_text().count("enable_uart=1") == 1
    assert "PASS  check-config" in out2 and r2.returncode == 1


def test_without_systemctl_it_stops_before_changing_anything(overlay):
    """A root with no systemd (a container, a minimal debootstrap): said at once, and
    no config, key, user or venv is made (it used to die half-way, rc 127)."""
    upper, run = overlay
    (upper / "usr/bin").mkdir(parents=True, exist_ok=True)
    os.mknod(upper / "usr/bin/systemctl", 0o600 | stat.S_IFCHR, 0)   # an overlay whiteout
    r = run()
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() == ("install-on-pi: this system lacks: systemctl. accessd needs "
                                "systemd and Debian's tools (Raspberry Pi OS Lite has them "
                                "all); nothing was changed.")
    assert not (upper / "etc").exists() and not (upper / "opt/accessd/.venv").exists()
    assert r.stdout == ""


def test_an_unreachable_package_index_is_said_as_such_not_as_a_missing_wheel(overlay):
    """The index cannot be reached (here: nothing listens at its address): the installer
    says so in its own words as its last line, names the index, and neither builds
    lgpio nor installs a compiler."""
    from accessd.testing import free_tcp_port
    upper, run = overlay
    index = f"http://127.0.0.1:{free_tcp_port()}/simple"
    r = run(PIP_INDEX_URL=index)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"install-on-pi: cannot reach the Python package index {index} ("), out
    assert "Connection refused" in last and "Nothing was installed from the index." in last
    assert "building it" not in out and "swig" not in out.replace(last, "")
    assert not (upper / "opt/accessd/.venv").exists()
    assert not (upper / "usr/bin/gcc").exists()


def test_an_offline_install_from_an_incomplete_card_changes_nothing(overlay):
    """--from a card without its key file (or no such directory): said, nothing written."""
    upper, run = overlay
    card = upper / "boot/firmware/accessd"
    (card / "release").mkdir(parents=True)
    (card / "release/manifest").write_bytes(b"ACCESSD-RELEASE/1\n{}")
    (card / "accessd.toml").write_text("[door]\nid = \"d\"\n")
    r = run("--from", "/boot/firmware/accessd")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() == (
        "install-on-pi: /boot/firmware/accessd lacks: keys.json. Write the card again at the "
        "office ('accessctl door provision BOOT --door ID --release VERSION'); nothing was "
        "changed.")
    r = run("--from", "/boot/firmware/nothing")
    assert r.returncode == 2 and "--from /boot/firmware/nothing: no such directory" in r.stderr
    assert not (upper / "etc/accessd").exists() and not (upper / "opt/accessd/current").exists()
    assert not (upper / "opt/accessd/releases").exists()
