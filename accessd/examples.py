"""The example files shipped inside the package, and writing them out for an installer.

A `pip install accessd` user has no checkout: the commented door config, the
systemd units, the udev rules, the Pi's config.txt lines and the wiring docs
travel as package data (accessd/share/), and `accessd init DIR` writes them to a
directory of the installer's choosing, with the units pointing at the `accessd`
that was installed. The checkout's config/, systemd/ and hw/ are links to the
same files, so there is one copy of each.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import StoreError

# (file in accessd/share, where `accessd init` puts it, what it is)
FILES = [
    ("config/pi-door.toml", "accessd.toml", "the door's config, commented (a real Pi door)"),
    ("config/sim.toml", "sim.toml", "a door on simulated hardware, to try accessd out"),
    ("systemd/accessd.service", "systemd/accessd.service", "the door daemon's unit"),
    ("systemd/accessd-upload.service", "systemd/accessd-upload.service",
     "the nightly log upload"),
    ("systemd/accessd-upload.timer", "systemd/accessd-upload.timer", "its timer"),
    ("systemd/accessd-update.service", "systemd/accessd-update.service",
     "the software updater (signed releases, rolls back by itself)"),
    ("systemd/accessd-update.timer", "systemd/accessd-update.timer", "its hourly timer"),
    ("systemd/accessd-update.path", "systemd/accessd-update.path", "and on sync-now"),
    ("systemd/accessd-update-recover.service", "systemd/accessd-update-recover.service",
     "at boot: a release switch cut short goes back"),
    ("hw/99-accessd-nfc.rules", "udev/99-accessd-nfc.rules",
     "udev rules: NFC reader access for the accessd user"),
    ("hw/config.txt.snippet", "boot/config.txt.snippet", "the Pi's UART lines"),
    ("hw/WIRING.md", "WIRING.md", "wiring: relay, readers, inputs, pin map"),
    ("hw/CHECKLIST.md", "CHECKLIST.md", "the installer's 15-minute checklist"),
]
_SHIPPED_BIN = "/opt/accessd/current/bin/accessd"


def read(name: str) -> str:
    """One shipped file's text, e.g. read('config/pi-door.toml')."""
    return resources.files("accessd").joinpath("share", name).read_text(encoding="utf-8")


def write_examples(dest: Path, *, accessd_bin: str | None = None,
                   force: bool = False) -> list[tuple[Path, str]]:
    """Write every example into dest; the units' ExecStart= use accessd_bin (default:
    the shipped /opt/accessd path). Refuses (StoreError, nothing written) when a file
    exists, unless force. Returns (path, what it is) for each file written."""
    dest = Path(dest)
    targets = [(dest / out, src, what) for src, out, what in FILES]
    existing = [str(p) for p, _, _ in targets if p.exists()]
    if existing and not force:
        raise StoreError(f"{', '.join(existing)} already exist(s); nothing written "
                         "(use --force to overwrite)")
    written = []
    for path, src, what in targets:
        text = read(src)
        if accessd_bin and src.startswith("systemd/"):
            text = text.replace(_SHIPPED_BIN, accessd_bin)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append((path, what))
    return written
