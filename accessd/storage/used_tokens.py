"""One-time unlock tokens already used, remembered on disk until they expire.

A token's nonce is stored only as HMAC-SHA256(lookup key, "token-nonce" ‖ 0x00 ‖
nonce), with its expiry time: the file says neither which tokens nor whose. A
claim is one durable transaction (check and insert at once), so a token used
once is refused after a restart or a crash too, until it has expired anyway;
expired rows are dropped as new ones come. If the file cannot be written the
token is refused: a door that cannot remember a use does not open for it.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from pathlib import Path

from ..errors import StoreError
from .small_db import open_small


def _digest(key: bytes, nonce: str) -> bytes:
    return hmac.digest(key, b"token-nonce\x00" + nonce.encode(), "sha256")


class UsedTokens:
    def __init__(self, path: Path, key: bytes):
        self.path = Path(path)
        self._key = key
        self._lock = threading.Lock()
        self._conn = open_small(self.path, "the used-token list",
                                "CREATE TABLE IF NOT EXISTS used "
                                "(digest BLOB PRIMARY KEY, exp REAL NOT NULL) WITHOUT ROWID")

    def claim(self, nonce: str, exp: float, now: float) -> bool:
        """Record the nonce as used; False if it was already (a replay)."""
        d = _digest(self._key, nonce)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute("DELETE FROM used WHERE exp < ?", (now,))
                    self._conn.execute("INSERT INTO used VALUES (?, ?)", (d, exp))
                except sqlite3.IntegrityError:
                    self._conn.execute("ROLLBACK")
                    return False
                self._conn.execute("COMMIT")
                return True
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot record the used token ({exc}): refused") from None

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM used").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class MemoryUsedTokens:
    """The same, in memory only (tests; a door with no data directory)."""

    def __init__(self):
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, exp: float, now: float) -> bool:
        with self._lock:
            self._used = {n: e for n, e in self._used.items() if e >= now}
            if nonce in self._used:
                return False
            self._used[nonce] = exp
            return True

    def count(self) -> int:
        return len(self._used)

    def close(self) -> None:
        pass
