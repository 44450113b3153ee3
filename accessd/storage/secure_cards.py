"""What a door's NFC readers need to check secure cards (NTAG 424 DNA) in a tap.

- Which UIDs are secure cards: the whitelist lists their digests (a small table),
  held here as a set, so a plain card's tap costs one HMAC and no row is opened.
- A card's door keys: they come from the office inside the card's whitelist row
  (sealed under the door-group key; the door never holds the site's card master
  key). The reader threads read them through their own read-only connection to
  the whitelist file, reopened when the core swaps a new file in (its
  `generation` goes up).
- The last read counter seen from each card, in `card-counters.db` in the data
  directory: a counter not above the last one is a replayed or cloned SUN message
  and is refused. Rows are keyed by the card's lookup digest (HMAC, never the UID)
  and the counter is sealed (AES-GCM, the whitelist's seal key), so the file says
  neither which cards nor how often they were used. An update is one durable
  transaction: a counter used once is refused after a restart too.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..core.credentials import CredentialRecord
from ..errors import StoreError
from .crypto import Sealer, lookup_digest
from .keys import DoorKeys
from .small_db import open_small
from .whitelist import Whitelist


class SecureCards:
    def __init__(self, whitelist: Whitelist, counters_path: Path, keys: DoorKeys):
        """whitelist: the core's (its file and generation are followed, never read)."""
        self._core_wl = whitelist
        self.counters_path = Path(counters_path)
        self._keys = keys
        self._sealer = Sealer(keys.seal)
        self._lock = threading.Lock()
        self._wl: Whitelist | None = None
        self._generation = -1
        self._secure: frozenset[bytes] = frozenset()
        self._conn = open_small(self.counters_path, "the card counters",
                                "CREATE TABLE IF NOT EXISTS counters "
                                "(lookup BLOB PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID")

    def _digest(self, uid_hex: str) -> bytes:
        return lookup_digest(self._keys.lookup, "nfc", uid_hex)

    def lookup(self, uid_hex: str) -> CredentialRecord | None:
        """The whitelist record of a secure card with this UID; None for anything else
        (an unknown UID, a bare UID enrolment). Raises StoreError if unreadable."""
        with self._lock:
            generation = self._core_wl.generation
            if generation != self._generation:
                if self._wl is not None:
                    self._wl.close()
                    self._wl = None
                self._wl = Whitelist(self._core_wl.path, self._keys)
                self._secure = self._wl.secure_card_digests()
                self._generation = generation
            if not self._secure:
                return None
            digest = self._digest(uid_hex)
            if digest not in self._secure:
                return None
            rec = self._wl.lookup(digest)
        return rec if rec is not None and rec.card else None

    def advance(self, uid_hex: str, counter: int) -> int | None:
        """Record `counter` as this card's newest; None if it was above the last one
        seen, else the last one (a replay: nothing is changed)."""
        d = self._digest(uid_hex)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute("SELECT sealed FROM counters WHERE lookup = ?",
                                             (d,)).fetchone()
                    last = self._sealer.open(d, row[0])["counter"] if row else -1
                    if counter <= last:
                        self._conn.execute("ROLLBACK")
                        return last
                    self._conn.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)",
                                       (d, self._sealer.seal(d, {"counter": counter})))
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return None
            except sqlite3.Error as exc:
                raise StoreError(f"cannot record the card's counter ({exc})") from None

    def close(self) -> None:
        with self._lock:
            if self._wl is not None:
                self._wl.close()
            self._conn.close()
