"""The small SQLite files a door keeps beside its log (used tokens, card counters,
reader keys): one table, WAL, every commit durable (synchronous FULL), shared by
threads under the caller's lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError


def open_small(path: Path, what: str, create_table: str) -> sqlite3.Connection:
    """Open (creating) the file with its table; StoreError naming `what` if it cannot."""
    try:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=5, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(create_table)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open {what}: {exc}") from None
    return conn
