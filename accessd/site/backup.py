"""Office backup and restore (`accessctl site backup` / `site restore`): the site
database and its keys directory in one file, encrypted to the site's recovery key.

The recovery key is an X25519 key pair. Its private half is printed once (at `site
init`, or by `site recovery-key`) for staff to keep on paper, away from the office
machine; the office keeps only the public half, so a nightly backup needs no secret
and a stolen backup file reveals nothing without the paper.

  FILE = MAGIC | header JSON line | chunks
  header = {"site", "created", "dialect", "recovery" (public key, hex),
            "ephemeral" (public key, hex)}
  chunk  = 4-byte length | AES-256-GCM(key, nonce = 11-byte counter | last flag,
                                        aad = MAGIC | header line)

key = HKDF-SHA256(X25519(ephemeral, recovery), salt = both public keys). A chunk
moved, dropped or changed, or a file cut short, fails authentication. Inside: a tar
of `site.db` (SQLite's online backup API: a consistent copy while terminals work)
or `site.sql` (pg_dump of a PostgreSQL site), and `keys/`.

Restoring picks up where the doors are: the bundle version goes on from the newest
the store holds (a door refuses an older one), and every person erased since the
backup (the store keeps a register of erasures, ids only) is erased again.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import tarfile
import tempfile
import time
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import KeyFileError, NotFoundError, RecoveryKeyError, StoreError
from .db import SiteDB
from .sql import pg_tool

MAGIC = b"ACCESSD-BACKUP/1\n"
CHUNK = 1 << 20
KEY_PREFIX = "ARK1"          # how a printed recovery key starts


# ---- the recovery key -----------------------------------------------------------------
def _raw(pub: X25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def recovery_key_new(site: SiteDB) -> str:
    """A new recovery key: its public half kept by the site, the private half returned
    as text to print once (backups made before need the key they were made with)."""
    priv = X25519PrivateKey.generate()
    site.meta_set("recovery_public", _raw(priv.public_key()).hex())
    site.audit("recovery.key", f"new recovery key {fingerprint(_raw(priv.public_key()))}")
    return format_recovery_key(priv)


def format_recovery_key(priv: X25519PrivateKey) -> str:
    """The private key as printed: ARK1- and base32 in groups of 5, with 3 check bytes."""
    raw = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    text = base64.b32encode(raw + sha256(raw).digest()[:3]).decode().rstrip("=")
    return KEY_PREFIX + "-" + "-".join(text[i:i + 5] for i in range(0, len(text), 5))


def fingerprint(public_raw: bytes) -> str:
    return "rk:" + sha256(public_raw).hexdigest()[:10]


def parse_recovery_key(text: str) -> X25519PrivateKey:
    """The printed key as staff typed it (case, spaces and dashes do not matter)."""
    t = "".join(text.split()).replace("-", "").upper()
    if not t.startswith(KEY_PREFIX):
        raise RecoveryKeyError(f"a recovery key starts with {KEY_PREFIX}-")
    body = t[len(KEY_PREFIX):]
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise RecoveryKeyError("the recovery key has a character that is not in it "
                           "(A-Z, 2-7)") from None
    if len(raw) != 35 or sha256(raw[:32]).digest()[:3] != raw[32:]:
        raise RecoveryKeyError("the recovery key is mistyped (its check digits do not match)")
    return X25519PrivateKey.from_private_bytes(raw[:32])


def _key(shared: bytes, eph: bytes, rec: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, eph + rec, b"accessd backup v1").derive(shared)


def _nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# ---- backup -----------------------------------------------------------------------------
def backup(site: SiteDB, out: Path, *, database_url: str | None = None) -> dict:
    """Write the site's backup to `out` (replaced atomically). database_url: a
    PostgreSQL site's URL with its password (pg_dump needs it)."""
    import stat
    out = Path(out)
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # (it is replaced by rename: never let that take the place of a device or a pipe)
        raise StoreError(f"{out}: not a regular file; write the backup to a new file")
    if not out.parent.is_dir():
        raise StoreError(f"{out.parent}: no such directory")
    rec_hex = site.meta("recovery_public")
    if not rec_hex:
        raise KeyFileError("this site has no recovery key yet: make one with 'accessctl site "
                           "recovery-key' (print it and keep it away from this machine)")
    rec = X25519PublicKey.from_public_bytes(bytes.fromhex(rec_hex))
    with tempfile.TemporaryDirectory(prefix="accessd-backup-") as tmp:
        tar_path = Path(tmp) / "backup.tar"
        with tarfile.open(tar_path, "w") as tar:
            if site.db.dialect == "postgresql":
                dump = pg_tool("pg_dump", database_url or "", "--no-owner", "--no-privileges")
                info = tarfile.TarInfo("site.sql")
                info.size, info.mtime = len(dump), int(time.time())
                tar.addfile(info, io.BytesIO(dump))
            else:
                import sqlite3
                copy = Path(tmp) / "site.db"
                src = sqlite3.connect(site.dir / "site.db")
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst)
                finally:
                    src.close()
                    dst.close()
                tar.add(copy, "site.db")
            for f in sorted((site.dir / "keys").iterdir()):
                if f.is_file() and not f.name.endswith(".tmp"):
                    tar.add(f, f"keys/{f.name}")
        eph = X25519PrivateKey.generate()
        header = json.dumps({"site": site.site_id, "created": time.time(),
                             "dialect": site.db.dialect, "recovery": rec_hex,
                             "ephemeral": _raw(eph.public_key()).hex()},
                            sort_keys=True).encode() + b"\n"
        aead = AESGCM(_key(eph.exchange(rec), _raw(eph.public_key()), bytes.fromhex(rec_hex)))
        aad = MAGIC + header
        size = tar_path.stat().st_size
        part = out.with_name(out.name + ".part")
        with open(tar_path, "rb") as src, open(part, "wb") as fh:
            fh.write(MAGIC + header)
            i, done = 0, 0
            while True:
                chunk = src.read(CHUNK)
                done += len(chunk)
                last = done >= size
                ct = aead.encrypt(_nonce(i, last), chunk, aad)
                fh.write(struct.pack(">I", len(ct)) + ct)
                i += 1
                if last:
                    break
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(part, 0o600)
        os.replace(part, out)
    site.audit("site.backup", f"backup to {out.name} ({size} bytes) for recovery key "
                              f"{fingerprint(bytes.fromhex(rec_hex))}")
    return {"file": str(out), "bytes": out.stat().st_size, "site": site.site_id,
            "dialect": site.db.dialect, "recovery": fingerprint(bytes.fromhex(rec_hex))}


# ---- restore ----------------------------------------------------------------------------
def read(path: Path, key: X25519PrivateKey) -> tuple[dict, bytes]:
    """(header, the tar's bytes) of a backup file; RecoveryKeyError for another key,
    StoreError for a file that is not a whole, unaltered backup."""
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise StoreError(f"{path}: not a regular file (a backup is one)")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
    if not data.startswith(MAGIC) or b"\n" not in data[len(MAGIC):]:
        raise StoreError(f"{path}: not an accessd backup")
    end = data.index(b"\n", len(MAGIC)) + 1
    try:
        header = json.loads(data[len(MAGIC):end])
        rec, eph = bytes.fromhex(header["recovery"]), bytes.fromhex(header["ephemeral"])
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"{path}: its header is damaged") from None
    if _raw(key.public_key()) != rec:
        raise RecoveryKeyError(f"{path} was made for recovery key {fingerprint(rec)}, not "
                               f"this one ({fingerprint(_raw(key.public_key()))})")
    aead = AESGCM(_key(key.exchange(X25519PublicKey.from_public_bytes(eph)), eph, rec))
    aad, pos, i, out, last = data[:end], end, 0, bytearray(), False
    while pos < len(data) and not last:
        if pos + 4 > len(data):
            break
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        ct = data[pos + 4:pos + 4 + n]
        pos += 4 + n
        for flag in (False, True):
            try:
                out += aead.decrypt(_nonce(i, flag), ct, aad)
                last = flag
                break
            except InvalidTag:
                continue
        else:
            raise StoreError(f"{path}: part {i + 1} is damaged or altered")
        i += 1
    if not last or pos != len(data):
        raise StoreError(f"{path}: cut short or with something added (not a whole backup)")
    return header, bytes(out)


def restore(path: Path, key_text: str, site_dir: Path, *, database: str | None = None,
            store_url: str | None = None) -> dict:
    """A site from a backup: keys into site_dir/keys, the database into site_dir/site.db
    or the empty PostgreSQL database at `database`. Then the bundle version goes on from
    the store's newest, and erasures made since the backup are made again."""
    key = parse_recovery_key(key_text)
    header, payload = read(path, key)
    site_dir = Path(site_dir)
    if (site_dir / "keys").exists() or (site_dir / "site.db").exists():
        raise StoreError(f"{site_dir}: a site is already here; restore into an empty "
                         "directory")
    if (header["dialect"] == "postgresql") != (database is not None):
        raise StoreError("this backup is of a PostgreSQL site: give the empty database to "
                         "restore into as --site postgresql://... with --site-dir DIR"
                         if header["dialect"] == "postgresql" else
                         "this backup is of a SQLite site: give --site DIR (a directory), "
                         "not a database URL")
    if database is not None:
        tables = pg_tool("psql", database, "-tA", "-c",
                         "SELECT count(*) FROM information_schema.tables WHERE "
                         "table_schema = 'public'").strip()
        if tables not in (b"0", b""):
            raise StoreError("that database is not empty: restore into a new one "
                             "(createdb), never over a site")
    site_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    keydir = site_dir / "keys"
    keydir.mkdir(mode=0o700)
    try:
        _unpack(path, payload, site_dir, database)
    except BaseException:   # nothing half-written stays to refuse the next try
        shutil.rmtree(keydir, ignore_errors=True)
        (site_dir / "site.db").unlink(missing_ok=True)
        raise
    site = SiteDB.open(site_dir, database)
    report = {"site": site.site_id, "backup_made": header["created"],
              "version_in_backup": site.bundle_version, "erased_again": []}
    store = site.store(store_url) if (store_url or site.store_url) else None
    if store is not None:
        newest = store_version(site, store)
        if newest > site.bundle_version:
            site.meta_set("bundle_version", str(newest))
        for pid in erasures(store):
            try:
                p = site.person(pid)
            except NotFoundError:
                continue
            if not p.forgotten:
                site.person_forget(pid, "erased after this backup was made; erased again "
                                        "at restore")
                report["erased_again"].append(pid)
    report["version"] = site.bundle_version
    site.audit("site.restore", f"restored from a backup of "
                               f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(header['created']))} "
                               f"UTC; bundle version {report['version']}; "
                               f"{len(report['erased_again'])} erased again")
    site.close()
    return report


def _unpack(path: Path, payload: bytes, site_dir: Path, database: str | None) -> None:
    """The backup's tar into site_dir/keys and site_dir/site.db (or psql into `database`)."""
    keydir = site_dir / "keys"
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        for m in tar.getmembers():
            name = m.name
            if not m.isfile() or name.startswith("/") or ".." in name.split("/"):
                raise StoreError(f"{path}: holds an unexpected entry {name!r}")
            body = tar.extractfile(m).read()
            if name.startswith("keys/") and "/" not in name[5:]:
                target = keydir / name[5:]
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(body)
            elif name == "site.db":
                (site_dir / "site.db").write_bytes(body)
                os.chmod(site_dir / "site.db", 0o640)
            elif name == "site.sql":
                pg_tool("psql", database, "-q", "-v", "ON_ERROR_STOP=1", data=body)
            else:
                raise StoreError(f"{path}: holds an unexpected entry {name!r}")


def store_version(site: SiteDB, store) -> int:
    """The newest bundle version the store's signed indexes name (0: none)."""
    from ..sync import index
    from ..sync.bundle import BundleError
    newest = 0
    for g in site.groups():
        blob = store.get(index.index_name(g["id"]))
        if blob is None:
            continue
        try:
            newest = max(newest, index.verify(blob, public_key=site.keys.public,
                                              site=site.site_id, group=g["id"]).version)
        except BundleError:   # not this site's (or damaged): it does not count
            continue
    return newest


# ---- the register of erasures (ids and times only, in the store) -------------------------
def record_erasure(store, person_id: str, when: float) -> None:
    store.put(f"erasures/{person_id}.json",
              json.dumps({"person": person_id, "erased": when}).encode())


def erasures(store) -> list[str]:
    out = []
    for name in sorted(store.list("erasures")):
        stem = name.rsplit("/", 1)[-1]
        if stem.endswith(".json"):
            out.append(stem[:-5])
    return out
