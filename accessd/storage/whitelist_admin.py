"""The whitelist's write path, kept in this one module.

For now `accessctl` enrols and revokes here directly; signed bundles from the
office (the sync issue) will replace it. Writes are atomic (sqlite-utils
`db.atomic()`-style transactions) and keep the meta count and version current.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator

import sqlite_utils

from ..core.credentials import ASSURANCE, STATUSES, CredentialRecord, whitelist_values
from ..core.text import check_text
from ..errors import NotFoundError, StoreError
from .crypto import Sealer, fingerprint, lookup_digest
from .keys import DoorKeys
from .migrations import WHITELIST_MIGRATIONS, migrate
from .whitelist import key_check


class WhitelistAdmin:
    def __init__(self, path: Path, keys: DoorKeys):
        self.path = Path(path)
        self._keys = keys
        self._sealer = Sealer(keys.seal)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite_utils.Database(sqlite3.connect(self.path, timeout=5))
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = FULL")
            migrate(self.db.conn, WHITELIST_MIGRATIONS)
            meta = self._meta()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open whitelist: {exc}") from None
        if "key_check" not in meta:
            with self.db.conn:
                self.db["meta"].insert_all(
                    [{"key": "key_check", "value": key_check(keys.lookup)},
                     {"key": "count", "value": "0"}, {"key": "version", "value": "0"}],
                    replace=True)
        elif meta["key_check"] != key_check(keys.lookup):
            raise StoreError(f"{self.path}: whitelist was sealed under another key file "
                             f"(this key file: {keys.fingerprint})")
        if meta.get("site"):
            raise StoreError(f"{self.path}: this door's whitelist comes from site "
                             f"{meta['site']!r}; enrol at the office and publish")

    def fingerprint(self, kind: str, value: str) -> str:
        """The printable fingerprint of a credential value (never the value)."""
        return fingerprint(lookup_digest(self._keys.lookup, kind, value))

    def _meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.db["meta"].rows}

    def _bump(self, delta: int) -> None:
        meta = self._meta()
        self.db["meta"].insert_all(
            [{"key": "count", "value": str(int(meta.get("count", 0)) + delta)},
             {"key": "version", "value": str(int(meta.get("version", 0)) + 1)},
             {"key": "updated_at", "value": str(int(time.time()))}], replace=True)

    def enroll(self, kind: str, value: str, holder: str, *, valid_from: float | None = None,
               valid_until: float | None = None, status: str = "active") -> CredentialRecord:
        """Add one credential (value already normalised). Refuses duplicates."""
        return self.enroll_many([(kind, value, holder, valid_from, valid_until, status)])[0]

    def enroll_many(self, items: Iterable[tuple]) -> list[CredentialRecord]:
        records, rows = [], []
        for kind, value, holder, valid_from, valid_until, status in items:
            if status not in STATUSES:
                raise StoreError(f"unknown status {status!r} (known: {', '.join(STATUSES)})")
            try:
                holder = check_text("the holder", holder, 64, required=True)
            except ValueError as exc:
                raise StoreError(str(exc)) from None
            if valid_from is not None and valid_until is not None and valid_until <= valid_from:
                raise StoreError("valid-until must be later than valid-from")
            rec = CredentialRecord(credential_id="c" + secrets.token_hex(5), kind=kind,
                                   holder=holder, assurance=ASSURANCE[kind], status=status,
                                   valid_from=valid_from, valid_until=valid_until)
            for i, each in enumerate(whitelist_values(kind, value)):
                digest = lookup_digest(self._keys.lookup, kind, each)
                rows.append((digest, self._sealer.seal(digest, {**rec.to_row(),
                                                                **({"alias": 1} if i else {})})))
            records.append(rec)
        try:
            with self.db.conn:
                self.db.conn.executemany(
                    "INSERT INTO credentials (lookup, sealed) VALUES (?, ?)", rows)
                self._bump(len(records))
        except sqlite3.IntegrityError:
            raise StoreError("that credential (or a fob a reader could not tell from it) is "
                             "already enrolled (revoke it first, or use another value)") from None
        return records

    def _rows(self) -> Iterator[tuple[bytes, dict]]:
        for digest, sealed in self.db.execute("SELECT lookup, sealed FROM credentials"):
            yield digest, self._sealer.open(digest, sealed)

    def iter_records(self) -> Iterator[tuple[bytes, CredentialRecord]]:
        """Each credential once, under its own value (not a fob's narrower forms)."""
        for digest, row in self._rows():
            if not row.get("alias"):
                yield digest, CredentialRecord.from_row(row)

    def revoke(self, credential_id: str, *, mark: str | None = None) -> CredentialRecord:
        """Remove a credential, or keep it marked 'lost'/'suspended' so a try is flagged."""
        rows = [(d, row) for d, row in self._rows() if row["id"] == credential_id]
        own = [row for _, row in rows if not row.get("alias")]
        if not own:
            raise NotFoundError(f"no credential with id {credential_id!r}")
        rec = CredentialRecord.from_row(own[0])
        with self.db.conn:
            if mark is None:
                self.db.conn.executemany("DELETE FROM credentials WHERE lookup = ?",
                                         [(d,) for d, _ in rows])
                self._bump(-1)
            else:
                if mark not in STATUSES:
                    raise StoreError(f"unknown status {mark!r} (known: {', '.join(STATUSES)})")
                rec = CredentialRecord(**{**rec.__dict__, "status": mark})
                self.db.conn.executemany(
                    "UPDATE credentials SET sealed = ? WHERE lookup = ?",
                    [(self._sealer.seal(d, {**row, "status": mark}), d) for d, row in rows])
                self._bump(0)
        return rec

    def close(self) -> None:
        self.db.conn.close()


def build_whitelist_file(path: Path, rows, *, lookup_key: bytes, seal_key: bytes,
                         meta: dict[str, str]) -> int:
    """Write a complete whitelist database (for a bundle): rows are (lookup digest,
    row dict), sealed here under `seal_key`; a row marked "alias" is a credential
    again under a narrower form (a fob as a Wiegand-26 reader gives it). Rollback-
    journal mode, so the file is self-contained. Returns the number of credentials."""
    path = Path(path)
    if path.exists():
        path.unlink()
    sealer = Sealer(seal_key)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        migrate(conn, WHITELIST_MIGRATIONS)
        count = 0
        with conn:
            batch, secure = [], []
            for digest, row in rows:
                batch.append((digest, sealer.seal(digest, row)))
                count += not row.get("alias")
                if row.get("card"):
                    secure.append((digest,))
                if len(batch) >= 10_000:
                    conn.executemany("INSERT INTO credentials VALUES (?, ?)", batch)
                    batch = []
            conn.executemany("INSERT INTO credentials VALUES (?, ?)", batch)
            conn.executemany("INSERT INTO secure_cards VALUES (?)", secure)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("key_check", key_check(lookup_key)), ("count", str(count)),
                              *meta.items()])
    except sqlite3.IntegrityError:
        raise StoreError("two credentials in the bundle have the same lookup key") from None
    finally:
        conn.close()
    return count
