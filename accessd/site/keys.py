"""Site keys: the Ed25519 signing key, the lookup (HMAC) key and the data key.

All live in `<site>/keys/`, mode 0600, created once by `accessctl site init`.
The lookup key is shared with every door (a door finds a credential by the same
HMAC the office computed); the signing key never leaves the office; the data
key seals personal data and the door-group keys in the site database. The card
master key (card-master.key, made when the first secure card is enrolled) never
leaves the office: each secure card's own keys are diversified from it. The
store's password (store-credentials.json, for an http(s) store behind Basic
auth) is kept here too, never in the database or in any output.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from ..errors import KeyFileError


def _write_0600(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite site keys") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _read_key(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: site key missing (run 'accessctl site init')") from None
    if st.st_mode & 0o077:
        raise KeyFileError(f"{path}: readable by other users (mode {st.st_mode & 0o777:04o}); "
                           f"run 'chmod 600 {path}'")
    try:
        return path.read_bytes()
    except PermissionError:
        raise KeyFileError(f"{path}: cannot be read by this user") from None


@dataclass(frozen=True)
class SiteKeys:
    signing: Ed25519PrivateKey
    lookup: bytes
    data: bytes

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    def public_raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def door_log_seed(self, door: str) -> bytes:
        """The Ed25519 seed of a door's log key (in its key file; signs its uploads):
        derived from the data key, so the office keeps no list of them and a door
        provisioned again gets the same one."""
        import hmac
        return hmac.digest(self.data, b"door-log-key\x00" + door.encode(), "sha256")

    def door_log_public(self, door: str):
        """The public half, which checks what the door uploads."""
        return Ed25519PrivateKey.from_private_bytes(self.door_log_seed(door)).public_key()

    def __repr__(self) -> str:
        return "SiteKeys(<secret>)"


def create(keydir: Path) -> SiteKeys:
    signing = Ed25519PrivateKey.generate()
    keys = SiteKeys(signing, secrets.token_bytes(32), secrets.token_bytes(32))
    _write_0600(keydir / "signing.pem", signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _write_0600(keydir / "lookup.key", keys.lookup.hex().encode())
    _write_0600(keydir / "data.key", keys.data.hex().encode())
    return keys


def card_master(keydir: Path) -> bytes:
    """The AES-128 key every secure card's keys are diversified from (office only),
    created on first use."""
    path = keydir / "card-master.key"
    if not path.exists():
        try:
            _write_0600(path, secrets.token_bytes(16).hex().encode())
        except KeyFileError:
            pass  # another terminal process made it just now
    raw = _read_key(path)
    try:
        key = bytes.fromhex(raw.decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{path}: not a hex key") from None
    if len(key) != 16:
        raise KeyFileError(f"{path}: must be 16 bytes (AES-128)")
    return key


def load(keydir: Path) -> SiteKeys:
    pem = _read_key(keydir / "signing.pem")
    try:
        signing = serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        raise KeyFileError(f"{keydir / 'signing.pem'}: not a PEM private key") from None
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFileError(f"{keydir / 'signing.pem'}: not an Ed25519 key")
    out = {}
    for name in ("lookup", "data"):
        raw = _read_key(keydir / f"{name}.key")
        try:
            out[name] = bytes.fromhex(raw.decode().strip())
        except (ValueError, UnicodeDecodeError):
            raise KeyFileError(f"{keydir / (name + '.key')}: not a hex key") from None
        if len(out[name]) != 32:
            raise KeyFileError(f"{keydir / (name + '.key')}: must be 32 bytes")
    return SiteKeys(signing, out["lookup"], out["data"])



STORE_CREDENTIALS = "store-credentials.json"


def store_credentials(keydir: Path, url: str) -> tuple[str, str] | None:
    """(user, password) this terminal keeps for the store at `url` (without them)."""
    path = keydir / STORE_CREDENTIALS
    if not path.exists():
        return None
    try:
        doc = json.loads(_read_key(path))
        got = doc.get(url) if isinstance(doc, dict) else None
        return (str(got["user"]), str(got["password"])) if got else None
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{path}: not a store credentials file (remove it and set the "
                           "store again with 'accessctl site store URL')") from None


def store_credentials_set(keydir: Path, url: str, user: str, password: str) -> None:
    """Keep (user, password) for the store at `url`, in a 0600 file replaced atomically."""
    path = keydir / STORE_CREDENTIALS
    doc = {}
    if path.exists():
        try:
            doc = json.loads(_read_key(path))
        except ValueError:
            doc = {}
    doc[url] = {"user": user, "password": password}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
