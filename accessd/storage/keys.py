"""Door key file: the lookup (HMAC) key and the whitelist sealing (AES-GCM) key; for a
door of a site, the site's public key and the door's own log key (Ed25519, signs
what it uploads).

The file is JSON with hex keys, mode 0600, owned by the daemon's user and kept
outside the data directory. A stolen SD card that holds this file is a full
compromise of the whitelist's secrecy; the file exists so that a copy of the
data directory alone reveals nothing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import KeyFileError

KEY_BYTES = 32
MAX_KEY_FILE = 64 * 1024       # a key file is under 1 KB
FORMAT = "accessd-door-keys/1"


@dataclass(frozen=True)
class SiteLink:
    """Where a door's bundles come from: written by the office with the door's keys."""
    site: str
    group: str
    door: str
    public_key: bytes  # the site's Ed25519 verify key, raw 32 bytes


@dataclass(frozen=True)
class DoorKeys:
    lookup: bytes
    seal: bytes
    site: SiteLink | None = None
    log_key: bytes | None = None   # Ed25519 seed: signs the log batches this door uploads

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible name for this key set, safe to print."""
        return hashlib.sha256(b"fp" + self.lookup + self.seal).hexdigest()[:12]

    def __repr__(self) -> str:  # never show key bytes
        return f"DoorKeys(fingerprint={self.fingerprint})"

    def check_door(self, door_id: str, key_file: Path) -> None:
        """KeyFileError unless these keys were made for `door_id` (door.id of the
        config): a door running on another door's key file would apply that door's
        bundles and upload its log under a name the office does not expect."""
        if self.site is not None and self.site.door != door_id:
            raise KeyFileError(f"{key_file}: this key file was made for door "
                               f"{self.site.door!r} of site {self.site.site!r}, but door.id "
                               f"is {door_id!r}: install door {door_id!r}'s own key file "
                               "('accessctl door keys'), or correct door.id")


def generate() -> DoorKeys:
    return DoorKeys(lookup=secrets.token_bytes(KEY_BYTES), seal=secrets.token_bytes(KEY_BYTES))


def write_key_file(path: Path, keys: DoorKeys, *, overwrite: bool = False) -> None:
    """Create the key file with mode 0600 from the start (never briefly readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite keys "
                           "(every enrolled credential depends on them)") from None
    doc = {"format": FORMAT, "lookup": keys.lookup.hex(), "seal": keys.seal.hex()}
    if keys.site is not None:
        doc["site"] = {"id": keys.site.site, "group": keys.site.group, "door": keys.site.door,
                       "public_key": keys.site.public_key.hex()}
    if keys.log_key is not None:
        doc["log_key"] = keys.log_key.hex()
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(doc, fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_key_file(path: Path) -> DoorKeys:
    path = Path(path)
    try:
        # (O_NONBLOCK: a FIFO given as the key file is refused, not waited on)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            raise KeyFileError(f"{path}: key file is not a regular file")
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
        if len(data) > MAX_KEY_FILE:
            raise KeyFileError(f"{path}: key file is over {MAX_KEY_FILE} bytes: not one")
        raw = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file does not exist") from None
    except PermissionError:
        raise KeyFileError(f"{path}: key file cannot be read by this user") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: key file is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise KeyFileError(f"{path}: not an accessd door key file (format must be {FORMAT!r})")
    out = {}
    for name in ("lookup", "seal"):
        try:
            value = bytes.fromhex(raw[name])
        except KeyError:
            raise KeyFileError(f"{path}: key {name!r} is missing") from None
        except (TypeError, ValueError):
            raise KeyFileError(f"{path}: key {name!r} is not hex") from None
        if len(value) != KEY_BYTES:
            raise KeyFileError(f"{path}: key {name!r} must be {KEY_BYTES} bytes, got {len(value)}")
        out[name] = value
    if raw.get("log_key") is not None:
        try:
            out["log_key"] = bytes.fromhex(raw["log_key"])
            assert len(out["log_key"]) == KEY_BYTES
        except (TypeError, ValueError, AssertionError):
            raise KeyFileError(f"{path}: 'log_key' must be {KEY_BYTES} bytes in hex") from None
    site = raw.get("site")
    if site is not None:
        try:
            pub = bytes.fromhex(site["public_key"])
            assert len(pub) == 32
            out["site"] = SiteLink(str(site["id"]), str(site["group"]), str(site["door"]), pub)
        except (KeyError, TypeError, ValueError, AssertionError):
            raise KeyFileError(f"{path}: 'site' must have id, group, door and a 32-byte "
                               "hex public_key") from None
    return DoorKeys(**out)
