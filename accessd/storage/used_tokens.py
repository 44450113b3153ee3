"""One-time unlock tokens already used, remembered on disk until they expire.

A token's nonce is stored only as HMAC-SHA256(lookup key, "token-nonce" ‖ 0x00 ‖
nonce), with its expiry time: the file says neither which tokens nor whose. A
claim is one durable transaction (check and insert at once), so a token used
once is refused after a restart or a crash too. If the file cannot be written
the token is refused: a door that cannot remember a use does not open for it.

Rows are never dropped by the door's own clock, which may step forward and back
(a wrong NTP server, an RTC reset): a row dropped after a step forward would let
its token in again after the step back. Instead the file keeps a floor from
signed times: the newest issue time of any token or command claimed, less the
clock skew the office may have (sync.token.SKEW). Whatever expires before the
floor is refused outright, as older than one already used, so its row can go.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from pathlib import Path

from ..errors import StoreError
from .small_db import open_small

SUPERSEDED = "older than one the door has already used (replay?)"


def _digest(key: bytes, nonce: str) -> bytes:
    return hmac.digest(key, b"token-nonce\x00" + nonce.encode(), "sha256")


SKEW = 30.0  # clock difference tolerated between office and door (tokens use it too)


def _floor(iat: float) -> float:
    return iat - SKEW


class UsedTokens:
    def __init__(self, path: Path, key: bytes):
        self.path = Path(path)
        self._key = key
        self._lock = threading.Lock()
        self._conn = open_small(self.path, "the used-token list",
                                "CREATE TABLE IF NOT EXISTS used "
                                "(digest BLOB PRIMARY KEY, exp REAL NOT NULL) WITHOUT ROWID")
        try:
            self._conn.execute("CREATE TABLE IF NOT EXISTS floor (one INTEGER PRIMARY KEY "
                               "CHECK (one = 1), value REAL NOT NULL)")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the used-token list: {exc}") from None

    def claim(self, nonce: str, exp: float, iat: float) -> str | None:
        """Record the nonce of a verified token or command (its signed expiry and issue
        times) as used: None, or why it is refused (already used; older than the floor)."""
        d = _digest(self._key, nonce)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                row = self._conn.execute("SELECT value FROM floor").fetchone()
                floor = row[0] if row else float("-inf")
                if exp < floor:
                    self._conn.execute("ROLLBACK")
                    return SUPERSEDED
                try:
                    self._conn.execute("INSERT INTO used VALUES (?, ?)", (d, exp))
                except sqlite3.IntegrityError:
                    self._conn.execute("ROLLBACK")
                    return "already used (replay)"
                if _floor(iat) > floor:
                    self._conn.execute("INSERT OR REPLACE INTO floor VALUES (1, ?)",
                                       (_floor(iat),))
                    self._conn.execute("DELETE FROM used WHERE exp < ?", (_floor(iat),))
                self._conn.execute("COMMIT")
                return None
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
        self._floor = float("-inf")
        self._lock = threading.Lock()

    def claim(self, nonce: str, exp: float, iat: float) -> str | None:
        with self._lock:
            if exp < self._floor:
                return SUPERSEDED
            if nonce in self._used:
                return "already used (replay)"
            self._used[nonce] = exp
            if _floor(iat) > self._floor:
                self._floor = _floor(iat)
                self._used = {n: e for n, e in self._used.items() if e >= self._floor}
            return None

    def count(self) -> int:
        return len(self._used)

    def close(self) -> None:
        pass
