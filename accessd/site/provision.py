"""Doors at estate scale: doors and their groups from a CSV file, one directory per
door with what its installer copies to the Pi, and a doctor that lists doors
whose upload, sync or whitelist is old.

doors.csv, one door per line (a header line names the columns, any order):

    door,group,description,readers
    bldg-a-main,bldg-a,Main entrance,nfc;rdm6300;keypad
    bldg-a-12a,bldg-a-units,Unit 12A,rdm6300;keypad

door and group are ids (letters, digits, '-', '_', '.'); groups that do not exist
are created; readers (optional, ';' between names) are what the door's readers
give (core.credentials.READER_GIVES; empty: any). Re-running a file changes
nothing; with any bad line nothing is imported, and every bad line is named.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import AccessdError, StoreError
from ..storage.keys import write_key_file
from .db import SiteDB, check_id, check_readers
from .publish import door_keys

COLUMNS = ("door", "group", "description", "readers")


@dataclass
class DoorImport:
    rows: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    groups_added: int = 0
    doors_added: int = 0
    doors_changed: int = 0
    unchanged: int = 0
    imported: bool = False


def import_doors(site: SiteDB, text: str) -> DoorImport:
    """Create the groups and doors a CSV file lists (see the module docstring)."""
    rep = DoorImport()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("door", "group") if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        rep.errors.append((1, "header: " + "; ".join(
            [f"missing column {c!r}" for c in missing]
            + [f"unknown column {c!r} (columns: {', '.join(COLUMNS)})" for c in unknown])))
        return rep
    reader.fieldnames = header
    known = {d["id"]: d for d in site.doors()}
    seen: dict[str, int] = {}
    rows = []
    for i, raw in enumerate(reader, start=2):
        rep.rows += 1
        if None in raw:
            rep.errors.append((i, f"more fields than the header has ({len(header)})"))
            continue
        get = lambda k: (raw.get(k) or "").strip()  # noqa: E731
        problems = []
        door, group = get("door"), get("group")
        for what, value in (("door", door), ("group", group)):
            try:
                check_id(what, value)
            except StoreError as exc:
                problems.append(str(exc))
        try:
            readers = check_readers(get("readers").split(";"))
        except StoreError as exc:
            problems.append(f"readers: {exc}")
            readers = []
        if door in seen:
            problems.append(f"door {door!r} is on line {seen[door]} too")
        elif door in known and known[door]["group"] != group:
            problems.append(f"door {door!r} is already in group {known[door]['group']!r} "
                            "(a door changes group with 'door remove' and add)")
        if problems:
            rep.errors.append((i, "; ".join(problems)))
            continue
        seen[door] = i
        rows.append((door, group, get("description"), readers))
    if rep.errors:
        return rep
    groups = {g["id"] for g in site.groups()}
    try:
        with site.db.atomic():
            for door, group, description, readers in rows:
                if group not in groups:
                    site.group_add(group)
                    groups.add(group)
                    rep.groups_added += 1
                old = known.get(door)
                if old is None:
                    site.door_add(door, group, description, readers)
                    rep.doors_added += 1
                elif (old["readers"], old["description"]) != (readers, description):
                    site.door_update(door, description=description, readers=readers)
                    rep.doors_changed += 1
                else:
                    rep.unchanged += 1
    except AccessdError as exc:  # nothing is kept: the transaction rolls back
        rep.errors.append((0, f"import stopped, nothing imported: {exc}"))
        rep.groups_added = rep.doors_added = rep.doors_changed = rep.unchanged = 0
        return rep
    rep.imported = True
    return rep


def door_config(site: SiteDB, door_id: str, store_url: str) -> str:
    """The Pi example config for this door: its id, its key file and its store set."""
    door = site.door(door_id)
    text = (files("accessd") / "share/config/pi-door.toml").read_text()
    text = text.replace('id = "bldg-a-unit-12a"', f'id = "{door_id}"', 1)
    readers = ", ".join(door["readers"]) or "any (not declared at the office)"
    return (f"# accessd config for door {door_id} (group {door['group']}), written by\n"
            f"# 'accessctl door provision'. The office lists its readers as: {readers}.\n"
            "# Set the pins and [[readers]] to the door's wiring (see hw/WIRING.md).\n\n"
            + text + f'\n[sync]\nurl = "{store_url}"\n')


def provision(site: SiteDB, out: Path, door_ids=None, *, store_url: str | None = None,
              progress=None) -> list[Path]:
    """One directory per door under `out`: keys.json (0600: the door's key file) and
    accessd.toml. Returns the directories written."""
    out = Path(out)
    doors = [d["id"] for d in site.doors()] if not door_ids else list(door_ids)
    for d in doors:
        site.door(d)  # every one exists, before anything is written
    url = store_url or site.store_url
    if not url:
        raise StoreError("this site has no store yet: set it first ('accessctl site store "
                         "URL'), the doors' sync.url is that store")
    written = []
    for d in doors:
        target = out / d
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_key_file(target / "keys.json", door_keys(site, d), overwrite=True)
        (target / "accessd.toml").write_text(door_config(site, d, url))
        written.append(target)
        if progress:
            progress(d)
    return written


def doctor(site: SiteDB, *, now: float | None = None, upload_hours: float = 36,
           whitelist_hours: float = 36) -> list[dict]:
    """For every door: when its log last reached the office, the whitelist version it
    last applied against the one published, its last sync failure, and what is wrong."""
    from ..core import when
    now = time.time() if now is None else now
    current = site.bundle_version
    published = float(site.meta("published_at") or 0) or None
    out = []
    refused: dict[str, list[str]] = {}
    for name, door, reason in site.db.execute(
            "SELECT name, door, reason FROM refused_batches ORDER BY name"):
        refused.setdefault(door, []).append(reason)
    for door in site.doors():
        d = door["id"]
        last_pull = site.db.execute("SELECT max(pulled) FROM batches WHERE door = ?",
                                    [d]).fetchone()[0]
        last_event = site.db.execute("SELECT max(ts) FROM events WHERE door = ?",
                                     [d]).fetchone()[0]
        applied = site.db.execute(
            "SELECT ts, detail FROM events WHERE door = ? AND kind = 'sync.applied' "
            "ORDER BY ts DESC LIMIT 1", [d]).fetchone()
        failed = site.db.execute(
            "SELECT ts, reason FROM events WHERE door = ? AND kind IN ('sync.failed', "
            "'sync.rejected') ORDER BY ts DESC LIMIT 1", [d]).fetchone()
        mended = site.db.execute(
            "SELECT max(ts) FROM events WHERE door = ? AND kind IN ('sync.applied', "
            "'sync.recovered', 'sync.ok')", [d]).fetchone()[0]
        version = json.loads(applied[1]).get("version") if applied else None
        problems = []
        seen = when.from_iso(last_event) if last_event else None
        if seen is None:
            problems.append("no log from this door yet")
        elif now - seen > upload_hours * 3600:
            problems.append(f"log last heard {(now - seen) / 3600:.0f} h ago")
        if current and published and now - published > whitelist_hours * 3600 and \
                (version or 0) < current and seen is not None:
            problems.append(f"whitelist version {version or 'none'}, {current} published "
                            f"{(now - published) / 3600:.0f} h ago")
        if failed and (mended is None or failed[0] > mended):
            problems.append(f"sync failing: {failed[1]}")
        for why, n in _counted(refused.pop(d, [])):
            problems.append(f"{n} uploaded batch{'es' if n > 1 else ''} refused: {why}")
        out.append({"door": d, "group": door["group"], "last_event": last_event,
                    "last_pulled": last_pull, "whitelist_version": version,
                    "published_version": current, "last_sync_failure": failed[1] if failed
                    else None, "problems": problems})
    for d, reasons in sorted(refused.items()):   # logs under the name of no door of ours
        out.append({"door": d, "group": None, "last_event": None, "last_pulled": None,
                    "whitelist_version": None, "published_version": current,
                    "last_sync_failure": None,
                    "problems": [f"not a door of this site: {len(reasons)} uploaded "
                                 f"batch{'es' if len(reasons) > 1 else ''} under its name "
                                 "refused"]})
    return out


def _counted(reasons: list[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return list(counts.items())


FIRSTRUN_ARGS = ("systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
                 "systemd.unit=kernel-command-line.target")
FIRSTRUN = """#!/bin/bash
# Written by 'accessctl door provision --release': runs once at the first boot (systemd.run=
# on cmdline.txt), then takes itself off the card and the command line, and reboots.
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/accessd/firstrun.sh" || echo "accessd: firstrun failed" >> "$here/accessd/install.log"
rm -f "$here/firstrun.sh"
sed -i 's| systemd.run.*||g' "$here/cmdline.txt"
exit 0
"""
HOOK = 'bash "$(dirname "$0")/accessd/firstrun.sh"   # accessd (door provision --release)\n'


def write_boot(site: SiteDB, door_id: str, boot: Path, release_dir: Path, *,
               store_url: str | None = None) -> dict:
    """Write what a stock Raspberry Pi OS Lite card needs to install `door_id` at its
    first boot with no network: BOOT/accessd/ (the door's config and key file, the
    signed release, the installer) and a firstrun.sh that cmdline.txt runs once.
    A firstrun.sh already there (Raspberry Pi Imager's settings) is kept and runs ours."""
    from .. import examples
    from . import release as releases
    import shutil
    boot = Path(boot)
    cmdline = boot / "cmdline.txt"
    if not cmdline.is_file():
        raise StoreError(f"{boot}: no cmdline.txt here: give the card's boot partition "
                         "(bootfs), mounted, e.g. /media/$USER/bootfs")
    site.door(door_id)
    _, m = releases.load(site, release_dir)
    url = store_url or site.store_url
    if not url:
        raise StoreError("this site has no store yet: set it first ('accessctl site store "
                         "URL'), the doors' sync.url is that store")
    dest = boot / "accessd"
    if (dest / "release").exists():
        shutil.rmtree(dest / "release")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "accessd.toml").write_text(door_config(site, door_id, url))
    write_key_file(dest / "keys.json", door_keys(site, door_id), overwrite=True)
    (dest / "release" / "wheels").mkdir(parents=True)
    for name in sorted(m.files):
        shutil.copyfile(Path(release_dir) / name, dest / "release" / name)
    shutil.copyfile(Path(release_dir) / "manifest", dest / "release" / "manifest")
    for name in ("install-on-pi", "firstrun.sh", "firstboot", "accessd-firstboot.service"):
        (dest / name).write_text(examples.read(f"install/{name}"))
        if not name.endswith(".service"):
            (dest / name).chmod(0o755)      # (a FAT card makes every file executable)
    first = boot / "firstrun.sh"
    if first.exists() and "accessd/firstrun.sh" not in first.read_text(errors="replace"):
        lines = first.read_text().splitlines(keepends=True)   # Imager's: ours runs first
        first.write_text("".join(lines[:1] + [HOOK] + lines[1:]))
    elif not first.exists():
        first.write_text(FIRSTRUN)
    first.chmod(0o755)          # systemd.run= executes it
    line = cmdline.read_text().strip()
    if "systemd.run=" not in line:
        cmdline.write_text(f"{line} {FIRSTRUN_ARGS}\n")
    return {"door": door_id, "boot": str(boot), "release": m.version,
            "bytes": sum(f["size"] for f in m.files.values())}
