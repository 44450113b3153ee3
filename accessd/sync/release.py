"""Software releases in the store: the signed manifest of a wheelhouse, and the
signed target that tells one door which release to run.

  releases/<version>/manifest      = MAGIC | manifest JSON | Ed25519 signature
  releases/<version>/wheels/<file>  the wheel files the manifest names
  releases/doors/<door>.target      = TARGET_MAGIC | target JSON | Ed25519 signature

  manifest = {"site", "version", "built", "package": "accessd[pi]==0.2.0",
              "python": "3.11", "platforms": [...], "files": {"wheels/x.whl":
              {"size", "sha256"}}}
  target   = {"site", "door", "version", "manifest_sha256", "serial", "issued",
              "downgrade": bool}

Both are signed with the site's key (the one that signs bundles); each signature's
input starts with its own magic, which nothing else the site signs starts with. A
door takes a target only for itself and its site, with a serial above the last it
saw (an old target replayed is refused), and a version above the one it runs
unless the office signed "downgrade": true. It checks every file against the
manifest's size and SHA-256 before it installs anything. Pure: no I/O here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature

from ..errors import ReleaseError
from .bundle import SIG_BYTES, _int_field, _number_field, _reject_constant

MAGIC = b"ACCESSD-RELEASE/1\n"
TARGET_MAGIC = b"ACCESSD-RELEASE-TARGET/1\n"
MAX_MANIFEST = 1 << 20
MAX_TARGET = 4096
MAX_FILE = 1 << 30
_VERSION = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$")
_WHEEL = re.compile(r"^wheels/[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\.whl$")


def check_version(version: str) -> str:
    """The version, or ReleaseError: 1 to 4 dot-separated numbers (2026.12.1, 0.3)."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ReleaseError(f"release version {version!r}: use 1 to 4 numbers joined by dots, "
                           "e.g. 0.3.0 or 2026.12.1")
    return version


def version_key(version: str) -> tuple[int, ...]:
    """Orders versions: 0.10 after 0.9, 1.0 equal to 1.0.0."""
    parts = [int(p) for p in check_version(version).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def manifest_name(version: str) -> str:
    return f"releases/{check_version(version)}/manifest"


def file_name(version: str, rel: str) -> str:
    return f"releases/{check_version(version)}/{rel}"


def target_name(door: str) -> str:
    return f"releases/doors/{door}.target"


@dataclass(frozen=True)
class Manifest:
    site: str
    version: str
    built: float
    package: str
    python: str
    platforms: tuple[str, ...]
    files: dict          # "wheels/x.whl" -> {"size": int, "sha256": str}

    def check_file(self, rel: str, data: bytes) -> None:
        """ReleaseError unless `data` is the file the manifest names `rel`."""
        want = self.files.get(rel)
        if want is None:
            raise ReleaseError(f"release {self.version}: {rel} is not in its manifest")
        if len(data) != want["size"]:
            raise ReleaseError(f"release {self.version}: {rel} is {len(data)} bytes, the "
                               f"signed manifest says {want['size']} (cut short or replaced)")
        if sha256(data).hexdigest() != want["sha256"]:
            raise ReleaseError(f"release {self.version}: {rel} does not match its signed "
                               "manifest (altered or replaced)")


@dataclass(frozen=True)
class Target:
    site: str
    door: str
    version: str
    manifest_sha256: str
    serial: int
    issued: float
    downgrade: bool


def _sign(signing_key, magic: bytes, doc: dict) -> bytes:
    body = magic + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return body + signing_key.sign(body)


def _open(blob, magic: bytes, limit: int, public_key, what: str) -> dict:
    if not isinstance(blob, (bytes, bytearray)) or not bytes(blob).startswith(magic):
        raise ReleaseError(f"{what} is not an accessd {what.split()[-1]} (bad magic)")
    if len(blob) > limit or len(blob) < len(magic) + 2 + SIG_BYTES:
        raise ReleaseError(f"{what} is {len(blob)} bytes: cut short or not one")
    body, sig = bytes(blob[:-SIG_BYTES]), bytes(blob[-SIG_BYTES:])
    try:
        public_key.verify(sig, body)
    except InvalidSignature:
        raise ReleaseError(f"{what} has a bad signature: not signed by this site's key, cut "
                           "short or altered") from None
    try:
        doc = json.loads(body[len(magic):], parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ReleaseError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ReleaseError(f"{what} is not a JSON object")
    return doc


def _str(doc: dict, name: str, what: str) -> str:
    v = doc.get(name)
    if not isinstance(v, str) or not v or len(v) > 200:
        raise ReleaseError(f"{what}: field {name!r} is missing or not a short string")
    return v


def make_manifest(signing_key, *, site: str, version: str, built: float, package: str,
                  python: str, platforms, files: dict) -> bytes:
    check_version(version)
    for rel in files:
        if not _WHEEL.match(rel):
            raise ReleaseError(f"release file name {rel!r}: only wheels/<name>.whl")
    return _sign(signing_key, MAGIC, {
        "site": site, "version": version, "built": built, "package": package,
        "python": python, "platforms": list(platforms),
        "files": {k: {"size": v["size"], "sha256": v["sha256"]} for k, v in files.items()}})


def open_manifest(blob, *, public_key, site: str, version: str | None = None) -> Manifest:
    """The manifest, checked: signature, site, version, every file entry."""
    what = "the release manifest"
    doc = _open(blob, MAGIC, MAX_MANIFEST, public_key, what)
    m_site, m_version = _str(doc, "site", what), _str(doc, "version", what)
    try:
        check_version(m_version)
    except ReleaseError as exc:
        raise ReleaseError(f"{what}: {exc}") from None
    files = doc.get("files")
    if not isinstance(files, dict) or not files:
        raise ReleaseError(f"{what} names no files")
    out = {}
    for rel, f in files.items():
        if not isinstance(rel, str) or not _WHEEL.match(rel) or not isinstance(f, dict):
            raise ReleaseError(f"{what}: file entry {str(rel)[:80]!r} is not wheels/<name>.whl")
        size = _int_field(f, "size", 1, MAX_FILE, f"{what}: {rel}")
        digest = f.get("sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ReleaseError(f"{what}: {rel} has no SHA-256")
        out[rel] = {"size": size, "sha256": digest}
    platforms = doc.get("platforms")
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise ReleaseError(f"{what}: field 'platforms' must be a list of names")
    m = Manifest(m_site, m_version, _number_field(doc, "built", what),
                 _str(doc, "package", what), _str(doc, "python", what), tuple(platforms), out)
    if m.site != site:
        raise ReleaseError(f"{what} is for site {m.site!r}, this is {site!r}")
    if version is not None and m.version != version:
        raise ReleaseError(f"{what} is for release {m.version}, expected {version}")
    return m


def make_target(signing_key, *, site: str, door: str, version: str, manifest: bytes,
                serial: int, issued: float, downgrade: bool = False) -> bytes:
    return _sign(signing_key, TARGET_MAGIC, {
        "site": site, "door": door, "version": check_version(version),
        "manifest_sha256": sha256(manifest).hexdigest(), "serial": serial,
        "issued": issued, "downgrade": bool(downgrade)})


def open_target(blob, *, public_key, site: str, door: str) -> Target:
    """The door's release target, checked: signature, site, door, fields."""
    what = "the release target"
    doc = _open(blob, TARGET_MAGIC, MAX_TARGET, public_key, what)
    digest = doc.get("manifest_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ReleaseError(f"{what} has no manifest SHA-256")
    if not isinstance(doc.get("downgrade"), bool):
        raise ReleaseError(f"{what}: field 'downgrade' must be true or false")
    t = Target(_str(doc, "site", what), _str(doc, "door", what),
               check_version(_str(doc, "version", what)), digest,
               _int_field(doc, "serial", 1, 2**63 - 1, what), _number_field(doc, "issued", what),
               doc["downgrade"])
    if t.site != site:
        raise ReleaseError(f"{what} is for site {t.site!r}, this door belongs to {site!r}")
    if t.door != door:
        raise ReleaseError(f"{what} is for door {t.door!r}, this is {door!r}")
    return t


def decide(target: Target, *, running: str | None, last_serial: int) -> str | None:
    """Why this door must not take `target` (None: take it). Pure."""
    if target.serial <= last_serial:
        return (f"the release target's serial {target.serial} is not above the last one taken "
                f"({last_serial}): an old target replayed")
    if running is not None and version_key(target.version) < version_key(running) \
            and not target.downgrade:
        return (f"release {target.version} is older than the running {running}; a downgrade "
                "needs the office's signed --downgrade")
    return None
