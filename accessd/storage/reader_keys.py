"""The secure-channel keys of a door's OSDP readers, sealed in the data directory.

Each OSDP reader gets its own Secure Channel Base Key (SCBK, 16 random bytes),
made by the door the first time the reader is set up in install mode and handed
to the reader by libosdp's KEYSET under the install-mode default key. The door
keeps it in `reader-keys.db`: one row per reader, keyed by HMAC(lookup key,
"osdp-scbk" ‖ 0x00 ‖ reader name) and sealed with AES-GCM under the whitelist's
seal key (the digest as associated data), so a copy of the data directory gives
no reader key. A row also says whether the reader has accepted the key
(`installed`): from then on the door speaks to it in the secure channel only.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .crypto import Sealer, lookup_digest
from .keys import DoorKeys
from .small_db import open_small

SCBK_BYTES = 16


@dataclass(frozen=True)
class ReaderKey:
    scbk: bytes
    installed: bool

    def __repr__(self) -> str:  # never show key bytes
        return f"ReaderKey(installed={self.installed})"


class ReaderKeys:
    def __init__(self, path: Path, keys: DoorKeys):
        self.path = Path(path)
        self._lookup = keys.lookup
        self._sealer = Sealer(keys.seal)
        self._lock = threading.Lock()
        self._conn = open_small(self.path, "the reader keys",
                                "CREATE TABLE IF NOT EXISTS reader_keys "
                                "(lookup BLOB PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID")

    def _digest(self, reader: str) -> bytes:
        return lookup_digest(self._lookup, "osdp-scbk", reader)

    def get(self, reader: str) -> ReaderKey | None:
        digest = self._digest(reader)
        try:
            with self._lock:
                row = self._conn.execute("SELECT sealed FROM reader_keys WHERE lookup = ?",
                                         (digest,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the reader keys: {exc}") from None
        if row is None:
            return None
        try:
            data = self._sealer.open(digest, row[0])
            return ReaderKey(bytes.fromhex(data["scbk"]), bool(data["installed"]))
        except (StoreError, KeyError, ValueError, TypeError):
            raise StoreError(f"{self.path}: the key of reader {reader!r} failed "
                             "authentication (tampered, or sealed under another key)") from None

    def put(self, reader: str, key: ReaderKey) -> None:
        digest = self._digest(reader)
        blob = self._sealer.seal(digest, {"scbk": key.scbk.hex(), "installed": key.installed})
        try:
            with self._lock:
                self._conn.execute("INSERT OR REPLACE INTO reader_keys VALUES (?, ?)",
                                   (digest, blob))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot store the key of reader {reader!r}: "
                             f"{exc}") from None

    def new(self, reader: str) -> ReaderKey:
        """A fresh key for a reader about to be set up (not yet installed)."""
        key = ReaderKey(secrets.token_bytes(SCBK_BYTES), False)
        self.put(reader, key)
        return key

    def close(self) -> None:
        with self._lock:
            self._conn.close()
