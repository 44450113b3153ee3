"""The site database's connection: one interface over SQLite (a file, the default)
and PostgreSQL (psycopg 3, for several staff terminals sharing one office database).

The site code writes its SQL once, in the dialect both understand (`?` parameters,
`INSERT ... ON CONFLICT DO NOTHING`, `count(*) FILTER (WHERE ...)`); this module
adapts the rest: parameter style, column types in the migrations (BLOB, REAL, an
INTEGER PRIMARY KEY that numbers itself), and the schema version.

Writers take the database's write lock when their transaction starts (`atomic()`):
SQLite's BEGIN IMMEDIATE, a PostgreSQL transaction-scoped advisory lock. So a check
and the insert it allows (a credential no one holds yet, the next bundle version)
cannot interleave with another terminal's; readers never wait.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError


class Conflict(StoreError):
    """A row broke a unique or foreign-key constraint (either database)."""


def is_url(location: str) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """A database URL fit for a message: its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class Database:
    """What the site code uses of a database connection."""

    dialect = ""

    def execute(self, sql: str, params=()):
        raise NotImplementedError

    def executemany(self, sql: str, rows) -> None:
        raise NotImplementedError

    _depth = 0
    _failed = False
    serial = 0   # counts transactions: what a cache valid for one transaction keys on

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def atomic(self):
        """One transaction under the site's write lock. A block inside another joins
        it (no savepoint: a PostgreSQL round trip less each); if such a block fails,
        the whole transaction is rolled back even if its caller went on."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._failed = True
                raise
            finally:
                self._depth -= 1
            return
        self._depth, self._failed = 1, False
        self.serial += 1
        try:
            with self._transaction():
                yield self
                if self._failed:   # raising here rolls it back
                    raise StoreError("a step inside the transaction failed: nothing saved")
        finally:
            self._depth = 0

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN with the write lock; COMMIT, or ROLLBACK on an exception."""
        raise NotImplementedError
        yield

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def snapshot(self):
        """Read-only: every query inside sees the database as it was at the start."""
        raise NotImplementedError
        yield

    @contextlib.contextmanager
    def publish_lock(self):
        """One publish at a time across terminals (held while the bundles are built
        and stored, so a lower version is never written after a higher one)."""
        raise NotImplementedError
        yield

    @staticmethod
    def _insert_sql(table: str, cols: list[str]) -> str:
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def insert(self, table: str, row: dict) -> None:
        self.execute(self._insert_sql(table, list(row)), list(row.values()))

    def insert_all(self, table: str, rows) -> None:
        rows = list(rows)
        if not rows:
            return
        cols = list(rows[0])
        self.executemany(self._insert_sql(table, cols), [[r[c] for c in cols] for r in rows])

    def upsert(self, table: str, row: dict, pk: str) -> None:
        sets = ", ".join(f"{c} = excluded.{c}" for c in row if c != pk)
        self.execute(f"{self._insert_sql(table, list(row))} ON CONFLICT ({pk}) DO UPDATE "
                     f"SET {sets}", list(row.values()))

    def count(self, table: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def group_concat(self, expr: str) -> str:
        """SQL joining `expr` over a group with commas."""
        raise NotImplementedError


# ---- SQLite ---------------------------------------------------------------------------
class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, migrations: list[str]):
        from ..storage.migrations import migrate
        self.where = str(path)
        try:
            self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            migrate(self.conn, migrations)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the site database: {exc}") from None

    def execute(self, sql: str, params=()):
        try:
            return self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None

    def executemany(self, sql: str, rows) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None

    @contextlib.contextmanager
    def _transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def snapshot(self):
        self.conn.execute("BEGIN")     # WAL: a read transaction sees one snapshot
        try:
            yield self
        finally:
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def publish_lock(self):
        import fcntl
        with open(self.where + ".publish-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def group_concat(self, expr: str) -> str:
        return f"group_concat({expr})"


# ---- PostgreSQL -----------------------------------------------------------------------
_LOCK = 0x61636365      # 'acce': the site's advisory write lock
_PUBLISH = 0x61637075   # 'acpu': one publish at a time

_PG_TYPES = [(re.compile(r"\bINTEGER PRIMARY KEY\b"),
              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
             (re.compile(r"\bBLOB\b"), "BYTEA"),
             (re.compile(r"\bREAL\b"), "DOUBLE PRECISION")]


def pg_schema(script: str) -> list[str]:
    """A migration written for SQLite, as PostgreSQL statements."""
    for pattern, repl in _PG_TYPES:
        script = pattern.sub(repl, script)
    return [s.strip() for s in script.split(";") if s.strip()]


def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, migrations: list[str]):
        try:
            import psycopg
        except ImportError:
            raise StoreError("a PostgreSQL site needs psycopg: pip install "
                             "'accessd[postgres]'") from None
        self._pg = psycopg
        self.where = redact(url)
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10,
                                        application_name="accessctl")
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot connect: {_first_line(exc)}") from None
        except Exception as exc:   # a malformed URL, for one
            raise StoreError(f"{self.where}: not a usable database URL: "
                             f"{_first_line(exc)}") from None
        self._migrate(migrations)

    def _migrate(self, steps: list[str]) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
                self.conn.execute("CREATE TABLE IF NOT EXISTS accessd_schema "
                                  "(version INTEGER NOT NULL)")
                row = self.conn.execute("SELECT version FROM accessd_schema").fetchone()
                version = row[0] if row else 0
                if version > len(steps):
                    raise StoreError(f"{self.where}: database schema version {version} is "
                                     f"newer than this accessd knows ({len(steps)})")
                for script in steps[version:]:
                    for statement in pg_schema(script):
                        self.conn.execute(statement)
                self.conn.execute("DELETE FROM accessd_schema")
                self.conn.execute("INSERT INTO accessd_schema VALUES (%s)", [len(steps)])
        except self._pg.Error as exc:
            raise StoreError(f"{self.where}: cannot set up the site database: "
                             f"{_first_line(exc)}") from None

    def execute(self, sql: str, params=()):
        try:
            return self.conn.execute(_pg_sql(sql), list(params))
        except self._pg.errors.IntegrityError as exc:
            raise Conflict(_first_line(exc)) from None
        except self._pg.OperationalError as exc:
            raise StoreError(f"{self.where}: {_first_line(exc)}") from None

    def executemany(self, sql: str, rows) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)
        except self._pg.errors.IntegrityError as exc:
            raise Conflict(_first_line(exc)) from None
        except self._pg.OperationalError as exc:
            raise StoreError(f"{self.where}: {_first_line(exc)}") from None

    @contextlib.contextmanager
    def _transaction(self):
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
                yield
        except self._pg.OperationalError as exc:   # the server went away, say
            raise StoreError(f"{self.where}: {_first_line(exc)}") from None

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def snapshot(self):
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield self

    @contextlib.contextmanager
    def publish_lock(self):
        self.execute("SELECT pg_advisory_lock(?)", [_PUBLISH])
        try:
            yield
        finally:
            self.execute("SELECT pg_advisory_unlock(?)", [_PUBLISH])

    def group_concat(self, expr: str) -> str:
        return f"string_agg({expr}, ',')"


def postgres_bindir(*programs: str) -> Path | None:
    """Where PostgreSQL's programs are (Debian keeps them out of PATH): the newest
    /usr/lib/postgresql/N/bin holding all of `programs` (default: the server's)."""
    import glob
    import shutil
    programs = programs or ("initdb", "postgres")

    def major(d: str) -> int:
        try:
            return int(Path(d).parent.name)
        except ValueError:
            return 0
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        if all((Path(d) / p).exists() for p in programs):
            return Path(d)
    found = shutil.which(programs[0])
    return Path(found).resolve().parent if found else None


def pg_tool(tool: str, url: str, *args, data: bytes | None = None) -> bytes:
    """Run pg_dump or psql on the database at `url` (its password goes in the
    environment, never on a command line others can see); StoreError if it fails."""
    import os
    import subprocess
    from urllib.parse import unquote, urlparse, urlunparse
    bindir = postgres_bindir(tool)
    if bindir is None:
        raise StoreError(f"{tool} is not installed (Debian: apt-get install postgresql-client)")
    u = urlparse(url)
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = unquote(u.password)
        host = u.hostname + (f":{u.port}" if u.port else "")
        url = urlunparse(u._replace(netloc=f"{u.username}@{host}" if u.username else host))
    r = subprocess.run([str(bindir / tool), *args, "--dbname", url], input=data, env=env,
                       capture_output=True, timeout=3600)
    if r.returncode:
        raise StoreError(f"{tool} {redact(url)} failed: "
                         f"{r.stderr.decode(errors='replace').strip()[-300:]}")
    return r.stdout


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
