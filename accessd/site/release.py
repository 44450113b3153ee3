"""The office's side of software releases: build a wheelhouse with its signed
manifest, publish it to the store for chosen doors, and show the fleet.

`build` runs pip (the one this Python has) on the office machine, which has the
internet or a package mirror: `pip wheel` of accessd and every dependency, then,
for each wheel that is not pure Python, `pip download` of the same version for each
door platform (aarch64: Raspberry Pi OS Bookworm, CPython 3.11, glibc 2.36; x86_64
for tests and PC doors). A door installs from these files alone, with no index.

`publish` copies a release to the store (wheels first, manifest last, nothing
copied again that the store already has) and writes one signed target per chosen
door (sync/release.py). Doors pick it up with their updater (`accessd update`,
hourly and on sync-now). `fleet` reads what the doors reported (release.* events
and the release in daemon.started) against what they were told to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from hashlib import sha256
from pathlib import Path

from ..errors import ReleaseError
from ..sync import release as rel
from .db import SiteDB

PLATFORMS = {
    # glibc 2.36 (Bookworm): every manylinux tag up to it
    "aarch64": ["manylinux2014_aarch64"] + [f"manylinux_2_{n}_aarch64" for n in range(17, 37)],
    "x86_64": ["manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in range(17, 37)],
}
PACKAGE_EXTRAS = "pi"


def source_tree() -> Path | None:
    """The accessd checkout this code runs from, if it is one."""
    here = Path(__file__).resolve().parent.parent.parent
    return here if (here / "pyproject.toml").is_file() else None


def _pip(args: list[str], what: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines()
                 if ln.strip() and "is ignored" not in ln]
        raise ReleaseError(f"{what} failed: " + " | ".join(lines[-4:]))


def _wheel_parts(name: str) -> tuple[str, str, str]:
    """(distribution, version, tags) of a wheel file name."""
    parts = name[:-4].split("-")
    if len(parts) < 5:
        raise ReleaseError(f"{name}: not a wheel file name")
    return parts[0], parts[1], "-".join(parts[-3:])


def build(site: SiteDB, out: Path, *, version: str | None = None, source: Path | None = None,
          platforms=("aarch64",), python: str = "3.11", progress=None) -> Path:
    """A release directory OUT/<version>: wheels/ and the signed manifest. Returns it."""
    source = Path(source) if source else source_tree()
    if source is None or not (source / "pyproject.toml").is_file():
        raise ReleaseError("no accessd source tree to build from: give --source DIR (a "
                           "checkout, with pyproject.toml)")
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
        pkg_version = project["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ReleaseError(f"{source}/pyproject.toml: cannot read the version ({exc})") from None
    if project.get("name") != "accessd":
        raise ReleaseError(f"{source} is not accessd's source (its project is "
                           f"{project.get('name')!r})")
    version = rel.check_version(version or pkg_version)
    if not re.fullmatch(r"3\.1[1-9]", python):
        raise ReleaseError(f"--python {python!r}: a CPython version 3.11 or later, e.g. 3.11")
    for p in platforms:
        if p not in PLATFORMS:
            raise ReleaseError(f"platform {p!r}: one of {', '.join(PLATFORMS)}")
    target = Path(out) / version
    if target.exists():
        raise ReleaseError(f"{target} exists: release {version} is built already (remove it "
                           "to build it again, or give another --version)")
    Path(out).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out))
    try:
        host, wheels = work / "host", work / "wheels"
        wheels.mkdir()
        step = progress or (lambda s: None)
        # built from a clean copy: a checkout's build/ (left by an earlier build) could
        # carry files the source no longer has into the wheel
        tree = work / "source"
        skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                      "__pycache__", ".pytest_cache", ".demo", "releases")

        def ignore(d, names):       # and anything not a file, a directory or a link
            return set(skip(d, names)) | {
                n for n in names if not (os.path.isfile(os.path.join(d, n))
                                         or os.path.isdir(os.path.join(d, n))
                                         or os.path.islink(os.path.join(d, n)))}
        shutil.copytree(source, tree, symlinks=True, ignore=ignore)
        step(f"pip wheel {source.name}[{PACKAGE_EXTRAS}]")
        _pip(["wheel", "-q", "-w", str(host), f"{tree}[{PACKAGE_EXTRAS}]"],
             "building the wheels (pip wheel)")
        for w in sorted(host.glob("*.whl")):
            dist, ver, tags = _wheel_parts(w.name)
            if tags.endswith("-none-any"):
                shutil.copy2(w, wheels / w.name)
                continue
            for p in platforms:
                step(f"{dist} {ver} for {p}")
                args = ["download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
                        "--python-version", python, "--implementation", "cp"]
                for tag in PLATFORMS[p]:
                    args += ["--platform", tag]
                _pip(args + [f"{dist}=={ver}"], f"fetching {dist} {ver} for {p}")
        files = {}
        for w in sorted(wheels.glob("*.whl")):
            data = w.read_bytes()
            files[f"wheels/{w.name}"] = {"size": len(data), "sha256": sha256(data).hexdigest()}
        (work / "manifest").write_bytes(rel.make_manifest(
            site.keys.signing, site=site.site_id, version=version, built=time.time(),
            package=f"accessd[{PACKAGE_EXTRAS}]=={pkg_version}", python=python,
            platforms=platforms, files=files))
        shutil.rmtree(host)
        shutil.rmtree(tree)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def load(site: SiteDB, release_dir: Path) -> tuple[bytes, rel.Manifest]:
    """A built release's manifest, checked against this site's key."""
    path = Path(release_dir) / "manifest"
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{release_dir}: no release here (no manifest; 'accessctl release "
                           "build' makes one)") from None
    m = rel.open_manifest(blob, public_key=site.keys.signing.public_key(), site=site.site_id)
    return blob, m


def choose_doors(site: SiteDB, *, doors=(), group: str | None = None, canary: int | None = None,
                 every: bool = False, version: str | None = None) -> list[str]:
    """The doors a publish is for: named ones, a group's, every door; --canary N takes
    the first N (by id) of those not yet told to run `version`."""
    if sum(bool(x) for x in (doors, group, every)) > 1:
        raise ReleaseError("give one of --door, --group or --all (and --canary N to take a "
                           "few of them)")
    if doors:
        for d in doors:
            site.door(d)
        chosen = sorted(set(doors))
    elif group:
        if group not in {g["id"] for g in site.groups()}:
            raise ReleaseError(f"no door group {group!r}")
        chosen = sorted(d["id"] for d in site.doors(group))
    elif every or canary:
        chosen = sorted(d["id"] for d in site.doors())
    else:
        raise ReleaseError("say which doors: --door ID, --group ID, --all, or --canary N")
    if canary is not None:
        if canary < 1:
            raise ReleaseError(f"--canary {canary}: at least 1 door")
        told = targets(site)
        chosen = [d for d in chosen if (told.get(d) or {}).get("version") != version][:canary]
    if not chosen:
        raise ReleaseError("no door to publish to (every chosen door is told to run it already)")
    return chosen


def targets(site: SiteDB) -> dict:
    raw = site.meta("release_targets")
    return json.loads(raw) if raw else {}


def publish(site: SiteDB, store, release_dir: Path, doors: list[str], *,
            downgrade: bool = False) -> dict:
    """Put the release in the store (once) and a signed target for each door."""
    blob, m = load(site, release_dir)
    have = store.get(rel.manifest_name(m.version))
    sent = 0
    if have != blob:
        for name in sorted(m.files):
            data = (Path(release_dir) / name).read_bytes()
            m.check_file(name, data)        # the built copy is what was signed
            store.put(rel.file_name(m.version, name), data)
            sent += len(data)
        store.put(rel.manifest_name(m.version), blob)
    now = time.time()
    # each door took the serial of the target it has: a new one goes above it, even for
    # an office restored from a backup older than its last publish
    seen = 0
    for d in doors:
        raw = store.get(rel.target_name(d))
        if raw is None:
            continue
        try:
            seen = max(seen, rel.open_target(raw, public_key=site.keys.signing.public_key(),
                                             site=site.site_id, door=d).serial)
        except ReleaseError:
            continue                 # not ours (or altered): the door refuses it anyway
    with site.db.atomic():
        serial = max(int(site.meta("release_serial") or 0), seen) + 1
        site.db.upsert("meta", {"key": "release_serial", "value": str(serial)}, pk="key")
    told = targets(site)
    for d in doors:
        store.put(rel.target_name(d), rel.make_target(
            site.keys.signing, site=site.site_id, door=d, version=m.version, manifest=blob,
            serial=serial, issued=now, downgrade=downgrade))
        told[d] = {"version": m.version, "serial": serial, "issued": now}
    site.meta_set("release_targets", json.dumps(told, sort_keys=True))
    site.audit("release.publish", f"release {m.version} to {len(doors)} door(s), serial "
                                  f"{serial}" + (", downgrade allowed" if downgrade else ""))
    return {"version": m.version, "serial": serial, "doors": doors, "bytes": sent,
            "files": len(m.files)}


RELEASE_KINDS = ("release.applied", "release.rolled_back", "release.refused", "release.failed")


def fleet(site: SiteDB) -> list[dict]:
    """Each door: the release it runs (as it last said), the one it was told to run,
    and its last release event (what failed, and why)."""
    told = targets(site)
    out = []
    kinds = ("daemon.started", *RELEASE_KINDS)
    # the newest event of each kind, one index probe each (events(door, kind, ts)): a
    # door's whole log is never read
    latest = " UNION ALL ".join(
        f"SELECT * FROM (SELECT ts, seq, kind, reason, detail FROM events WHERE door = ? "
        f"AND kind = ? ORDER BY ts DESC, seq DESC LIMIT 1) AS k{i}" for i in range(len(kinds)))
    for door in site.doors():
        d = door["id"]
        rows = [(ts, kind, reason, _detail(detail)) for ts, _seq, kind, reason, detail in sorted(
            site.db.execute(latest, [x for k in kinds for x in (d, k)]),
            key=lambda r: (r[0], r[1]), reverse=True)]
        running = next((info.get("release") for _, kind, _, info in rows
                        if kind in ("daemon.started", "release.applied")), None)
        last = next(({"ts": ts, "kind": kind, "reason": reason, "version": info.get("version")}
                     for ts, kind, reason, info in rows if kind in RELEASE_KINDS), None)
        want = (told.get(d) or {}).get("version")
        if want is None:
            state = "no release published"
        elif running == want:
            state = "up to date"
        elif last and last["version"] == want and last["kind"] != "release.applied":
            state = f"{last['kind'].split('.', 1)[1].replace('_', ' ')}: {last['reason']}"
        else:
            state = "pending"
        out.append({"door": d, "group": door["group"],
                    "running": running, "target": want, "state": state, "last": last})
    return out


def _detail(text: str) -> dict:
    try:
        info = json.loads(text) if text else {}
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}
