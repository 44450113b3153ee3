"""The door's whitelist, read side: the core looks credentials up here, never writes.

One SQLite file (WAL) of (HMAC digest -> AES-GCM sealed row). A lookup is one
primary-key read, so memory does not grow with the number of credentials.
The write side is `whitelist_admin` (and later, signed bundles).
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
from hashlib import sha256
from pathlib import Path

from ..core.credentials import CredentialRecord
from ..core.schedule import policy_from_json
from ..errors import AccessdError, StoreError
from .crypto import Sealer, lookup_digest
from .keys import DoorKeys


def key_check(lookup_key: bytes) -> str:
    """Stored in the whitelist so a door with the wrong key file refuses to start."""
    return hmac.new(lookup_key, b"accessd-key-check", sha256).hexdigest()[:16]


class Whitelist:
    def __init__(self, path: Path, keys: DoorKeys):
        self.path = Path(path)
        self._keys = keys
        self._sealer = Sealer(keys.seal)
        self.generation = 0  # one up each time a file is opened (a new whitelist swapped in)
        self._open()

    def _open(self) -> None:
        keys = self._keys
        if not self.path.exists():
            raise StoreError(f"{self.path}: whitelist does not exist")
        try:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                         check_same_thread=False, timeout=0.05)
            self._conn.execute("PRAGMA cache_size = -2000")
            meta = self.meta()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read whitelist: {exc}") from None
        if meta.get("key_check") != key_check(keys.lookup):
            raise StoreError(f"{self.path}: whitelist was sealed under another key file "
                             f"(this key file: {keys.fingerprint})")
        self._issued = float(meta["issued"]) if meta.get("issued") else None
        try:  # schedules and holidays from the office, checked there and signed
            self.policy = policy_from_json(json.loads(meta["policy"])) if meta.get("policy") else None
        except (ValueError, AccessdError) as exc:
            raise StoreError(f"{self.path}: the access policy in the whitelist is unreadable: "
                             f"{exc}") from None
        try:  # QR passes revoked before they ran out (ids only: core/passes.py)
            revoked = json.loads(meta.get("revoked_passes") or "[]")
            self.revoked_passes = frozenset(str(r) for r in revoked)
        except (ValueError, TypeError):
            raise StoreError(f"{self.path}: the revoked pass list in the whitelist is "
                             "unreadable") from None
        self.generation += 1

    def secure_card_digests(self) -> frozenset[bytes]:
        """The digests of the secure cards in this whitelist (none in one made before
        secure cards, or enrolled at the door)."""
        try:
            return frozenset(r[0] for r in self._conn.execute("SELECT lookup FROM secure_cards"))
        except sqlite3.OperationalError:
            return frozenset()

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta"))

    def digest(self, kind: str, value: str) -> bytes:
        return lookup_digest(self._keys.lookup, kind, value)

    def lookup(self, digest: bytes, *, alias_ok: bool = True) -> CredentialRecord | None:
        """The record for a digest, None if unknown (or, with alias_ok=False, if the row
        is a richer enrolment's narrower form). Raises StoreError if unreadable."""
        try:
            row = self._conn.execute(
                "SELECT sealed FROM credentials WHERE lookup = ?", (digest,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"whitelist lookup failed: {exc}") from None
        if row is None:
            return None
        opened = self._sealer.open(digest, row[0])
        if opened.get("alias") and not alias_ok:
            return None
        return CredentialRecord.from_row(opened)

    def count(self) -> int:
        return int(self.meta().get("count", 0))

    def age_hours(self, now: float) -> float | None:
        """Hours since the office issued this whitelist (None for a locally enrolled one)."""
        issued = self._issued
        return None if issued is None else (now - issued) / 3600

    def replace_with(self, new_path: Path) -> None:
        """Swap in a verified whitelist file atomically (called by the core, between taps).

        The new file is renamed over the old one; the old file's WAL and shared-memory
        files (a door that was enrolled locally) are removed first, so they cannot be
        mistaken for the new file's.
        """
        self._conn.close()
        for suffix in ("-wal", "-shm"):
            try:
                Path(str(self.path) + suffix).unlink()
            except FileNotFoundError:
                pass
        os.replace(new_path, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._open()

    def close(self) -> None:
        self._conn.close()
