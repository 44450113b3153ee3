"""Schema of both door databases, in one place, applied in order by version."""

from __future__ import annotations

import sqlite3

WHITELIST_MIGRATIONS = [
    # 1: credentials found by HMAC digest; everything else sealed.
    """
    CREATE TABLE credentials (lookup BLOB PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: which digests are secure cards, so a reader knows which UIDs to check in the
    #    tap without opening any row
    """
    CREATE TABLE secure_cards (lookup BLOB PRIMARY KEY) WITHOUT ROWID;
    """,
]

EVENTLOG_MIGRATIONS = [
    # 1: the hash-chained event log.
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        door TEXT NOT NULL,
        kind TEXT NOT NULL,
        credential TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events(ts);
    """,
    # 2: use-counted passes count their grants at this door
    """
    CREATE INDEX events_credential ON events(credential, kind);
    """,
    # 3: the log's identity (log_id: created-at + random), so a reset log is told apart
    """
    CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]


def migrate(conn: sqlite3.Connection, steps: list[str]) -> int:
    """Bring a database up to the newest schema; return the version it is at."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(steps):
        raise sqlite3.DatabaseError(
            f"database schema version {version} is newer than this accessd knows ({len(steps)})")
    for number, script in enumerate(steps[version:], start=version + 1):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
    return len(steps)
