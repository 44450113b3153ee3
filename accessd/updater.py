"""The door's updater (`accessd update`, as root): take the release the office signed
for this door, install it beside the running one, switch, and roll back by itself.

Layout (update.root, /opt/accessd):

  releases/<version>/        one venv per release; `.complete` once fully installed
  current -> releases/<v>    what the units start (/opt/accessd/current/bin/accessd)
  previous -> releases/<v>   what a rollback returns to

State (update.state_dir, /var/lib/accessd-update/state.json) says which phase a switch
is in, so that a switch cut short by a power cut or a SIGKILL of everything is
finished safely at the next boot (`accessd update --recover`, before the door
starts): the door goes back to the release it ran before.

One run:
 1. the door's signed target from the store (releases/doors/<door>.target): for this
    site and door, a serial above the last taken, no downgrade unless signed so;
 2. the signed manifest (its SHA-256 is in the target) and every wheel, each checked
    against it before anything is installed; any mismatch: refused, nothing changed;
 3. a new venv in releases/<version> from those wheels only (pip --no-index), the
    new `accessd check-config` run as the daemon's user;
 4. stop the door (ExecStopPost= makes the relay safe, with the old code), point
    `current` at the new release (one rename), start it;
 5. READY within update.ready_seconds, `accessctl status` answering, and fewer than
    update.crash_limit restarts within update.probation_seconds: applied. Otherwise
    stop, point `current` back, make the relay safe with the old code, start the old
    release: rolled back, with the reason. A rolled-back serial is not tried again;
    the office publishes again (a new serial) when it has a fix.

Every outcome is written to the door's data directory (release-reports.jsonl);
the daemon logs each as a release.* event (so it reaches the office's log and
`accessctl fleet`) and removes the file.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import ReleaseError, StoreError
from .sync import release as rel

log = logging.getLogger("accessd.update")

UNIT = "accessd.service"
MARKER = ".complete"
INFO = "accessd-release.json"
REPORTS = "release-reports.jsonl"
REQUEST = "update-request"
IN_FLIGHT = ("switching", "starting", "probation")


def running_release(prefix: str | os.PathLike) -> str | None:
    """The release the Python environment at `prefix` is (None: installed from a
    checkout)."""
    try:
        doc = json.loads((Path(prefix) / INFO).read_text())
        return rel.check_version(doc["version"])
    except (OSError, ValueError, KeyError, TypeError, ReleaseError):
        return None


@functools.cache
def this_release() -> str | None:
    """The release this process runs: read once (a new release is a new process)."""
    import sys
    return running_release(sys.prefix)


def report(data_dir: Path, kind: str, reason: str, **detail) -> None:
    """One outcome for the daemon to log (appended; the daemon's user may read it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / REPORTS
    line = json.dumps({"kind": kind, "reason": reason, "detail": detail,
                       "ts": time.time()}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    st = data_dir.stat()
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, 0o640)


def take_reports(data_dir: Path) -> list[dict]:
    """The daemon's side: the outcomes written since it last looked, and the file
    gone. A line that is not one (cut by a power cut) is dropped."""
    path = Path(data_dir) / REPORTS
    taken = path.with_name(REPORTS + ".taking")
    try:      # renamed first: a line the updater appends meanwhile goes to a new file
        os.replace(path, taken)
    except FileNotFoundError:
        pass
    except OSError:
        return []
    try:
        raw = taken.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines()[:100]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and str(doc.get("kind", "")).startswith("release.") \
                and isinstance(doc.get("detail"), dict):
            out.append({"kind": doc["kind"][:40], "reason": str(doc.get("reason", ""))[:500],
                        "detail": {k: v for k, v in doc["detail"].items()
                                   if isinstance(v, (str, int, float)) or v is None}})
    try:
        taken.unlink()
    except OSError:
        pass
    return out


def request_update(data_dir: Path) -> None:
    """The daemon's sync-now: touch the file accessd-update.path watches."""
    try:
        (Path(data_dir) / REQUEST).write_text(f"{time.time():.0f}\n")
    except OSError as exc:
        log.debug("no update request: %s", exc)


def verify_release_dir(path: Path, keys) -> rel.Manifest:
    """A release directory (manifest + wheels/, e.g. on a door's boot partition)
    checked against the site key in the door's key file: ReleaseError says why not."""
    if keys.site is None:
        raise ReleaseError("the key file has no site: releases are signed by a site's office")
    def read(name: str, limit: int) -> bytes:
        p = Path(path) / name
        try:
            if not p.is_file():
                raise ReleaseError(f"{p}: missing, or not a regular file")
            with open(p, "rb") as f:
                return f.read(limit + 1)
        except OSError as exc:
            raise ReleaseError(f"{p}: {exc.strerror}") from None
    m = rel.open_manifest(read("manifest", rel.MAX_MANIFEST), public_key=_public(
        keys.site.public_key), site=keys.site.site)
    for name in sorted(m.files):
        m.check_file(name, read(name, m.files[name]["size"]))
    return m


@dataclass
class Outcome:
    result: str          # "none", "applied", "refused", "failed", "rolled_back", "busy"
    message: str

    @property
    def ok(self) -> bool:
        return self.result in ("none", "applied")


class Systemd:
    """The door's unit, through systemctl."""

    def __init__(self, unit: str = UNIT):
        self.unit = unit

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["systemctl", *args], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        if check and r.returncode != 0:
            raise ReleaseError(f"systemctl {' '.join(args)}: {r.stderr.strip() or r.returncode}")
        return r

    def stop(self) -> None:
        self._ctl("stop", self.unit, check=False)

    def start_no_block(self) -> None:
        self._ctl("reset-failed", self.unit, check=False)
        self._ctl("start", "--no-block", self.unit)

    def start(self) -> bool:
        self._ctl("reset-failed", self.unit, check=False)
        return self._ctl("start", self.unit, check=False).returncode == 0

    def show(self) -> dict:
        r = self._ctl("show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts",
                      "-p", "Result", self.unit, check=False)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


class Updater:
    def __init__(self, cfg, keys, store=None, systemd: Systemd | None = None,
                 clock=time.monotonic, sleep=time.sleep, say=None):
        self.cfg, self.keys = cfg, keys
        self.u = cfg.update
        self.root, self.state_dir = self.u.root, self.u.state_dir
        self.data_dir = cfg.storage.data_dir
        self.store = store
        self.systemd = systemd or Systemd()
        self.clock, self.sleep = clock, sleep
        self.say = say or (lambda msg: log.info("%s", msg))
        self.public = _public(keys.site.public_key) if keys is not None and keys.site else None

    # ---- layout and state ------------------------------------------------
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def _link(self, name: str) -> Path | None:
        p = self.root / name
        if not p.is_symlink() and not p.exists():
            return None
        return p.resolve()

    def running(self) -> str | None:
        cur = self._link("current")
        return running_release(cur) if cur is not None else None

    def state(self) -> dict:
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, **changes) -> dict:
        st = {**self.state(), **changes}
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = self.state_dir / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_dir / "state.json")
        _fsync_dir(self.state_dir)
        return st

    def _point(self, name: str, target: Path) -> None:
        """Make root/name a symlink to target, in one rename."""
        tmp = self.root / f".{name}.new"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, self.root / name)
        _fsync_dir(self.root)

    def _report(self, kind: str, reason: str, **detail) -> None:
        report(self.data_dir, kind, reason, **detail)

    def _remember(self, key: str, value) -> list:
        """The state's list `key` with `value` added (the last 20 kept)."""
        return (self.state().get(key, []) + [value])[-20:]

    # ---- one run ---------------------------------------------------------
    def run(self) -> Outcome:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(self.state_dir / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Outcome("busy", "another update is running")
            return self._run()

    def _run(self) -> Outcome:
        st = self.state()
        if st.get("phase") in IN_FLIGHT:      # a switch cut short without a reboot
            self.recover()
            st = self.state()
        self._tidy()
        site = self.keys.site
        try:
            raw = self.store.get(rel.target_name(site.door))
        except StoreError as exc:
            return Outcome("failed", f"store unavailable: {exc}")
        if raw is None:
            return Outcome("none", "no release published for this door")
        try:
            target = rel.open_target(raw, public_key=self.public, site=site.site,
                                     door=site.door)
        except ReleaseError as exc:
            return self._refuse(None, str(exc), key=_digest(raw))
        running = self.running()
        if target.version == running:
            if target.serial > int(st.get("serial", 0)):
                self._save(serial=target.serial)
            return Outcome("none", f"running release {running}, as told")
        if target.serial in st.get("failed", []):
            return Outcome("none", f"release {target.version} (serial {target.serial}) was "
                                   "rolled back here; waiting for a new publish")
        why = rel.decide(target, running=running, last_serial=int(st.get("serial", 0)))
        if why:
            return self._refuse(target, why, key=f"serial:{target.serial}")
        return self._install_and_switch(target, running)

    def _refuse(self, target, reason: str, *, key: str) -> Outcome:
        if key not in self.state().get("refused", []):      # said once, not every hour
            self._report("release.refused", reason,
                         version=target.version if target else None,
                         serial=target.serial if target else None)
            self._save(refused=self._remember("refused", key))
        return Outcome("refused", reason)

    def _tidy(self) -> None:
        """Remove half-made releases and all but current and previous."""
        if not self.releases.is_dir():
            return
        keep = {self._link("current"), self._link("previous")}
        for d in self.releases.iterdir():
            if d.resolve() not in keep:
                shutil.rmtree(d, ignore_errors=True)

    def _fetch(self, target) -> tuple[rel.Manifest, Path]:
        try:
            blob = self.store.get(rel.manifest_name(target.version))
        except StoreError as exc:
            raise ReleaseError(f"store unavailable: {exc}") from None
        if blob is None:
            raise ReleaseError(f"release {target.version} is not in the store (no manifest)")
        if _digest(blob) != target.manifest_sha256:
            raise ReleaseError(f"release {target.version}: the manifest in the store is not the "
                               "one its signed target names (altered or replaced)")
        m = rel.open_manifest(blob, public_key=self.public, site=self.keys.site.site,
                              version=target.version)
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=self.state_dir))
        try:
            (incoming / "wheels").mkdir()
            for name in sorted(m.files):
                if not for_this_machine(name):
                    continue             # another platform's wheel: not needed here
                try:
                    data = self.store.get(rel.file_name(m.version, name))
                except StoreError as exc:
                    raise ReleaseError(f"store unavailable: {exc}") from None
                if data is None:
                    raise ReleaseError(f"release {m.version}: {name} is missing from the store")
                m.check_file(name, data)
                (incoming / name).write_bytes(data)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        return m, incoming

    def _install(self, m: rel.Manifest, wheels: Path) -> Path:
        dest = self.releases / m.version
        if dest.exists():
            if (dest / MARKER).exists() and dest.resolve() == self._link("previous"):
                return dest             # the previous release again (a signed downgrade)
            shutil.rmtree(dest)
        self.releases.mkdir(parents=True, exist_ok=True)
        steps = [[str(self.u.python), "-m", "venv", "--system-site-packages", str(dest)],
                 [str(dest / "bin/python"), "-m", "pip", "install", "-q",
                  "--disable-pip-version-check", "--no-index", "--find-links", str(wheels),
                  m.package]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_NO_INDEX"] = "1"
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                               stdin=subprocess.DEVNULL, timeout=1800)
            if r.returncode != 0:
                shutil.rmtree(dest, ignore_errors=True)
                tail = " | ".join(r.stderr.strip().splitlines()[-3:])
                raise ReleaseError(f"installing release {m.version} failed: {tail}")
        (dest / INFO).write_text(json.dumps({"version": m.version, "installed": time.time(),
                                             "package": m.package}) + "\n")
        ok, out = self._as_daemon(dest / "bin/accessd", "check-config", "--config",
                                  str(self.cfg.path))
        if not ok:
            shutil.rmtree(dest, ignore_errors=True)
            raise ReleaseError(f"release {m.version}: its self-check (check-config) failed: "
                               f"{out}")
        os.sync()                  # everything pip wrote, on disk before the marker
        (dest / MARKER).write_text(f"{m.version}\n")
        _fsync_dir(dest)
        return dest

    def _as_daemon(self, *cmd) -> tuple[bool, str]:
        """Run a command as the daemon's user (the owner of the data directory)."""
        argv = [str(c) for c in cmd]
        if os.geteuid() == 0 and shutil.which("runuser"):
            owner = self.data_dir.stat().st_uid if self.data_dir.exists() else 0
            if owner:
                argv = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", "env", "-u",
                        "LG_WD", *argv]
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=120, cwd="/")
        lines = (r.stdout + r.stderr).strip().splitlines()
        return r.returncode == 0, (lines[-1] if lines else f"exit {r.returncode}")

    def _install_and_switch(self, target, running: str | None) -> Outcome:
        self.say(f"release {target.version}: fetching and checking")
        try:
            m, incoming = self._fetch(target)
        except ReleaseError as exc:
            return self._refuse(target, str(exc), key=f"serial:{target.serial}")
        try:
            self.say(f"release {m.version}: installing")
            dest = self._install(m, incoming / "wheels")
        except (ReleaseError, OSError, subprocess.SubprocessError) as exc:
            self._save(failed=self._remember("failed", target.serial), serial=target.serial)
            self._report("release.failed", str(exc), version=m.version, serial=target.serial)
            return Outcome("failed", str(exc))
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        old = self._link("current")
        return self._switch(target, dest, old, running)

    def _switch(self, target, dest: Path, old: Path | None, running: str | None) -> Outcome:
        t0 = self.clock()
        self._save(phase="switching", version=target.version, serial=target.serial,
                   old=str(old) if old else None, started=time.time())
        self.say(f"release {target.version}: switching from {running or 'the installed one'}")
        self.systemd.stop()                           # old code makes the relay safe
        if old is not None:
            self._point("previous", old)
        self._point("current", dest)
        self._save(phase="starting")
        self.systemd.start_no_block()
        why = self._wait_ready()
        if why is None:
            ok, out = self._as_daemon(dest / "bin/accessctl", "--config", str(self.cfg.path),
                                      "status")
            if not ok:
                why = f"the self-check (accessctl status) failed: {out}"
        ready = self.clock() - t0
        if why is None:
            self._save(phase="probation")
            why = self._probation()
        if why is not None:
            return self._rollback(target, dest, old, running, why)
        self._save(phase="done")
        self._report("release.applied", f"release {target.version} running (was "
                                        f"{running or 'the installed one'})",
                     version=target.version, release=target.version, previous=running,
                     serial=target.serial, switch_seconds=round(ready, 2))
        self._tidy()
        return Outcome("applied", f"release {target.version} applied (READY after "
                                  f"{ready:.1f} s)")

    def _wait_ready(self) -> str | None:
        """None once the unit is active (READY), else why not."""
        deadline = self.clock() + self.u.ready_seconds
        base = None
        while True:
            s = self.systemd.show()
            restarts = int(s.get("NRestarts", "0") or 0)
            base = restarts if base is None else base
            if s.get("ActiveState") == "active":
                return None
            if s.get("ActiveState") == "failed":
                return f"the new release failed to start ({s.get('Result', 'failed')})"
            if restarts - base >= self.u.crash_limit:
                return f"the new release crashed {restarts - base} times before READY"
            if self.clock() >= deadline:
                return f"no READY within {self.u.ready_seconds:g} s"
            self.sleep(0.5)

    def _probation(self) -> str | None:
        """None if the new release stays up (fewer than crash_limit restarts) for
        update.probation_seconds after READY."""
        end = self.clock() + self.u.probation_seconds
        base = int(self.systemd.show().get("NRestarts", "0") or 0)
        while self.clock() < end:
            s = self.systemd.show()
            crashes = int(s.get("NRestarts", "0") or 0) - base
            if crashes >= self.u.crash_limit or s.get("ActiveState") == "failed":
                return (f"the new release crashed {max(crashes, 1)} times within "
                        f"{self.u.probation_seconds:g} s of READY")
            self.sleep(1.0)
        return None

    def _rollback(self, target, dest: Path, old: Path | None, running, why: str) -> Outcome:
        self.say(f"release {target.version}: rolling back ({why})")
        t0 = self.clock()
        self.systemd.stop()
        if old is not None and old.is_dir():
            self._point("current", old)
            ok, out = self._relay_safe(old)
            started = self.systemd.start()
        else:
            ok, out, started = False, "no previous release to return to", False
        self._save(phase="rolled_back", failed=self._remember("failed", target.serial),
                   serial=target.serial)
        self._report("release.rolled_back", why, version=target.version, release=running,
                     serial=target.serial, rollback_seconds=round(self.clock() - t0, 2),
                     relay_safe=out if not ok else "ok", restarted=started)
        if old is not None and dest != old:
            shutil.rmtree(dest, ignore_errors=True)
        return Outcome("rolled_back", f"release {target.version} rolled back: {why}")

    def _relay_safe(self, release: Path) -> tuple[bool, str]:
        return self._as_daemon(release / "bin/accessd", "relay-safe", "--config",
                               str(self.cfg.path))

    # ---- at boot ---------------------------------------------------------
    def recover(self) -> Outcome:
        """Before the door starts at boot: a switch cut short goes back to the release
        run before it; a `current` that points nowhere complete is mended."""
        st = self.state()
        if st.get("phase") in IN_FLIGHT and st.get("old"):
            old = Path(st["old"])
            if old.is_dir():
                self._point("current", old)
                self._save(phase="rolled_back", failed=self._remember("failed", st.get("serial")))
                self._report("release.rolled_back", f"the switch to release {st.get('version')}"
                             f" was cut short ({st['phase']}: power cut or killed); back on "
                             "the release before it", version=st.get("version"),
                             release=running_release(old), serial=st.get("serial"))
                self._tidy()
                return Outcome("rolled_back", f"switch to {st.get('version')} cut short: "
                                              f"back on {old.name}")
        cur = self._link("current")
        if cur is None or not (cur / "bin/accessd").exists():
            done = sorted((d for d in self.releases.glob("*") if (d / MARKER).exists()),
                          key=lambda d: rel.version_key(d.name), reverse=True) \
                if self.releases.is_dir() else []
            if done:
                self._point("current", done[0])
                return Outcome("rolled_back", f"current pointed nowhere: now {done[0].name}")
            return Outcome("failed", "no complete release installed")
        if st.get("phase") in IN_FLIGHT:
            self._save(phase="done")
        return Outcome("none", f"release {running_release(cur) or __version__} in place")


def for_this_machine(name: str, machine: str | None = None) -> bool:
    """Whether a wheel (by its file name) can install on this machine: pure ones and
    those built for its architecture."""
    import platform
    machine = machine or platform.machine()
    tags = name.rsplit("-", 1)[-1]
    return "linux" not in tags or tags.endswith(f"_{machine}.whl")


def _public(raw: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    return Ed25519PublicKey.from_public_bytes(raw)


def _digest(blob: bytes) -> str:
    from hashlib import sha256
    return sha256(blob).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
