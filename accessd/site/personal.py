"""Personal data keys at the office: one data key per person, so that forgetting a
person (`accessctl person forget`) makes everything sealed for them unreadable for
good (crypto-shredding), in the live database and in any copy of it made before.

Three levels:

- each person has a random AES-256 key (`person_keys`, owner = the person's id);
  their name and phone, the labels of passes they issued and the free text of audit
  lines about them are sealed with it (AES-GCM, bound to what each one is);
  free text that names no one person (alarm notes, staff's reasons) is sealed with
  the key of the owner "site";
- those keys are stored wrapped under the **ring key** of a generation, which is
  never in the database: it is `keys/people.key` in each terminal's keys directory;
- forgetting a person deletes their key and moves every other key to a new ring
  generation; the new ring key goes in the database wrapped under the old one (so
  other terminals of a PostgreSQL site follow on their next read), and each
  terminal then keeps only the newest. A database copy (a backup, a `pg_dump`)
  taken before the erasure holds the forgotten key only wrapped under a ring key
  that no terminal keeps any longer.

A keys directory copied before an erasure (with an old database) still reads it:
keep keys backups as short as database ones (README "Personal data").
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import KeyFileError, StoreError
from ..storage.crypto import NONCE_BYTES, Sealer

RING_FILE = "people.key"
SITE = "site"     # the owner of free text that is no one person's


def _wrap(key: bytes, what: bytes, secret: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret, what)


def _unwrap(key: bytes, what: bytes, blob: bytes) -> bytes | None:
    try:
        return AESGCM(key).decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), what)
    except (InvalidTag, ValueError):
        return None


class Keyring:
    """The person keys of one site, for one terminal (its keys directory)."""

    def __init__(self, db, keydir: Path):
        self.db = db
        self.path = Path(keydir) / RING_FILE
        self._ring: tuple[int, bytes] | None = None
        self._pending: tuple[int, bytes] | None = None
        self._keys: dict[str, bytes] = {}
        self._seen_gen: int | None = -1

    # ---- the ring key -----------------------------------------------------------------
    def _read_file(self) -> tuple[int, bytes] | None:
        from .keys import _read_key
        if not self.path.exists():
            return None
        try:
            doc = json.loads(_read_key(self.path))
            key = bytes.fromhex(doc["key"])
            if len(key) != 32:
                raise ValueError
            return int(doc["gen"]), key
        except (ValueError, KeyError, TypeError):
            raise KeyFileError(f"{self.path}: not a people key file") from None

    def _write_file(self, gen: int, key: bytes) -> None:
        import threading        # (a console's worker threads each have a Keyring)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump({"gen": gen, "key": key.hex()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def ring(self) -> tuple[int, bytes]:
        """(generation, ring key): this terminal's, moved on to the database's newest."""
        if self._ring is None:
            self._ring = self._read_file()
        newest = self.db.execute("SELECT max(gen) FROM key_ring").fetchone()[0]
        if self._ring is None:
            if newest is not None or self.db.execute(
                    "SELECT 1 FROM person_keys LIMIT 1").fetchone():
                raise KeyFileError(
                    f"{self.path}: missing: copy keys/{RING_FILE} from a terminal of this "
                    "site (mode 0600); without it no person's name can be read here")
            self._ring = (0, secrets.token_bytes(32))   # a new site (or first use)
            self._write_file(*self._ring)
        gen, key = self._ring
        if newest is not None and newest > gen:
            for g, sealed in self.db.execute(
                    "SELECT gen, sealed FROM key_ring WHERE gen > ? ORDER BY gen", [gen]):
                nxt = _unwrap(key, f"ring:{g}".encode(), sealed)
                if nxt is None:
                    raise KeyFileError(f"{self.path}: generation {gen} does not open ring "
                                       f"generation {g}: this is not this site's people key")
                gen, key = g, nxt
            self._write_file(gen, key)      # the older generation is gone from here
            self._ring = (gen, key)
        return self._ring

    # ---- person keys ------------------------------------------------------------------
    def key(self, owner: str, *, create: bool = False) -> bytes | None:
        """The owner's data key; None if it was destroyed (or never made, unless
        create). Call with create=True inside the site's write transaction."""
        if owner in self._keys:
            return self._keys[owner]
        row = self.db.execute("SELECT gen, sealed FROM person_keys WHERE owner = ?",
                              [owner]).fetchone()
        if row is None:
            if not create:
                return None
            gen, ring = self.ring()
            key = secrets.token_bytes(32)
            self.db.execute("INSERT INTO person_keys (owner, gen, sealed) VALUES (?, ?, ?)",
                            [owner, gen, _wrap(ring, f"person-key:{owner}".encode(), key)])
            return key      # (not cached: the transaction may still roll back)

        return self._open_row(owner, *row)

    def _open_row(self, owner: str, gen: int, sealed: bytes) -> bytes:
        rgen, ring = self._ring or self.ring()
        if gen != rgen:                      # another terminal moved on just now?
            rgen, ring = self.ring()
        key = _unwrap(ring, f"person-key:{owner}".encode(), sealed) if gen == rgen else None
        if key is None:
            raise KeyFileError(f"the data key of {owner} (ring generation {gen}) does not "
                               f"open with {self.path} (generation {rgen}): a database "
                               "restored from before an erasure, or another site's keys?")
        self._keys[owner] = key
        return key

    def seal(self, owner: str, what: str, obj) -> bytes:
        """obj sealed for its owner (the key is made on first use)."""
        return Sealer(self.key(owner, create=True)).seal(what.encode(), {"v": obj})

    def fresh(self) -> None:
        """Drop cached keys if any terminal destroyed one since they were read (a new
        ring generation): a long-running console never reads an erased person again."""
        newest = self.db.execute("SELECT max(gen) FROM key_ring").fetchone()[0]
        if newest != self._seen_gen:
            self._keys.clear()
            self._seen_gen = newest

    def open(self, owner: str, what: str, blob, *, fresh: bool = True) -> object | None:
        """What seal() sealed; None when the owner's key is destroyed (forgotten).
        fresh=False: the caller called fresh() (or open_many) just before."""
        if blob is None or not len(blob):
            return None
        if fresh:
            self.fresh()
        key = self.key(owner)
        if key is None:
            return None
        return Sealer(key).open(what.encode(), bytes(blob))["v"]

    def open_many(self, owners) -> None:
        """Unwrap many owners' keys at once (one query), ahead of opening their data."""
        self.fresh()
        want = [o for o in set(owners) if o not in self._keys]
        for i in range(0, len(want), 500):
            part = want[i:i + 500]
            for owner, gen, sealed in self.db.execute(
                    f"SELECT owner, gen, sealed FROM person_keys WHERE owner IN "
                    f"({', '.join('?' * len(part))})", part):
                self._open_row(owner, gen, sealed)

    def destroy(self, owner: str) -> int:
        """Delete the owner's key and re-wrap every other key under a new ring
        generation (inside the site's write transaction); returns the generation.
        The caller writes the new ring key to this terminal with commit_ring()."""
        if owner == SITE:
            raise StoreError("the site's own key is never destroyed")
        gen, ring = self.ring()
        self.db.execute("DELETE FROM person_keys WHERE owner = ?", [owner])
        self._keys.pop(owner, None)
        new_gen, new_ring = gen + 1, secrets.token_bytes(32)
        rows = []
        for o, g, sealed in self.db.execute("SELECT owner, gen, sealed FROM person_keys"):
            key = self._open_row(o, g, sealed)
            rows.append([new_gen, _wrap(new_ring, f"person-key:{o}".encode(), key), o])
        self.db.executemany("UPDATE person_keys SET gen = ?, sealed = ? WHERE owner = ?", rows)
        self.db.execute("INSERT INTO key_ring (gen, sealed) VALUES (?, ?)",
                        [new_gen, _wrap(ring, f"ring:{new_gen}".encode(), new_ring)])
        self._pending = (new_gen, new_ring)
        return new_gen

    def commit_ring(self) -> None:
        """After the erasure's transaction committed: keep only the new ring key here."""
        pending = self._pending
        if pending:
            self._write_file(*pending)
            self._ring, self._pending = pending, None

