"""The site (office) database: people, doors and door groups, credentials, grants,
and the events collected from the doors.

Personal data lives only here. A person's name and phone are sealed with
AES-GCM under the site data key (bound to the person's id); a keyed HMAC of
unit and name lets a re-run import find the same person without storing the
name in clear. Credentials are kept as their lookup HMAC, never their value,
exactly as the doors see them. Door-group keys (which encrypt bundles and seal
the doors' whitelist rows) are sealed under the data key too.

The database is a SQLite file in the site directory (the default) or a PostgreSQL
database shared by several staff terminals (site.sql has the difference); the
keys always stay in the site directory, never in the database.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import time
from hashlib import sha256
from dataclasses import dataclass
from pathlib import Path

from ..core import schedule as sched
from ..core.when import check_epoch
from ..core.credentials import (ASSURANCE, KINDS, SECURE_CARDS, STATUSES, check_reader_name,
                                gives_any, parse_fob, reader_gives, unreadable_reason)
from ..errors import AccessdError, KeyFileError, NotFoundError, StoreError
from ..core.text import check_text
from ..storage.crypto import Sealer, fingerprint, lookup_digest
from ..storage.eventlog import GENESIS
from . import keys as site_keys
from .personal import SITE, Keyring
from .sql import Conflict, PostgresDatabase, SQLiteDatabase, is_url

ROLES = ("resident", "courier", "visitor", "staff", "contractor")
_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

SITE_MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE groups (id TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',
                         key_sealed BLOB NOT NULL);
    CREATE TABLE doors (id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES groups(id),
                        description TEXT NOT NULL DEFAULT '');
    CREATE TABLE people (id TEXT PRIMARY KEY, ident BLOB NOT NULL UNIQUE, unit TEXT NOT NULL,
                         role TEXT NOT NULL, sealed BLOB NOT NULL, created REAL NOT NULL);
    CREATE TABLE credentials (id TEXT PRIMARY KEY,
                              person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                              kind TEXT NOT NULL, lookup BLOB NOT NULL UNIQUE,
                              fingerprint TEXT NOT NULL, assurance TEXT NOT NULL,
                              valid_from REAL, valid_until REAL, status TEXT NOT NULL,
                              created REAL NOT NULL);
    CREATE TABLE grants (person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                         group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
                         PRIMARY KEY (person_id, group_id));
    CREATE TABLE events (door TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL,
                         kind TEXT NOT NULL, credential TEXT, reason TEXT NOT NULL,
                         detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
                         PRIMARY KEY (door, seq));
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX credentials_person ON credentials(person_id);
    """,
    # 2: which uploaded log batches have been loaded
    """
    CREATE TABLE batches (name TEXT PRIMARY KEY, door TEXT NOT NULL, first INTEGER NOT NULL,
                          last INTEGER NOT NULL, pulled REAL NOT NULL);
    CREATE INDEX credentials_fingerprint ON credentials(fingerprint);
    CREATE INDEX events_credential ON events(credential);
    """,
    # 3: grants of one credential (not all of its holder's) to a door group
    """
    CREATE TABLE credential_grants (
        credential_id TEXT NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
        group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        PRIMARY KEY (credential_id, group_id));
    """,
    # 4: access policy: schedules, holidays, role defaults, a person's own schedule
    """
    CREATE TABLE schedules (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
    CREATE TABLE holidays (day TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE role_schedules (role TEXT PRIMARY KEY, schedule TEXT NOT NULL
                                 REFERENCES schedules(name));
    ALTER TABLE people ADD COLUMN schedule TEXT REFERENCES schedules(name);
    """,
    # 5: duress PINs
    """
    ALTER TABLE credentials ADD COLUMN duress INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: passes good for a number of entries (per door)
    """
    ALTER TABLE credentials ADD COLUMN max_uses INTEGER;
    """,
    # 7: a door's log has an identity (a reset log is a new one); each loaded batch
    #    keeps its digest and the store's version tag, to notice one replaced later
    """
    CREATE TABLE events_v7 (door TEXT NOT NULL, log TEXT NOT NULL DEFAULT '',
                            seq INTEGER NOT NULL, ts TEXT NOT NULL,
                            kind TEXT NOT NULL, credential TEXT, reason TEXT NOT NULL,
                            detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
                            PRIMARY KEY (door, log, seq));
    INSERT INTO events_v7 (door, log, seq, ts, kind, credential, reason, detail, prev_hash, hash)
        SELECT door, '', seq, ts, kind, credential, reason, detail, prev_hash, hash FROM events;
    DROP TABLE events;
    ALTER TABLE events_v7 RENAME TO events;
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_credential ON events(credential);
    ALTER TABLE batches ADD COLUMN log TEXT NOT NULL DEFAULT '';
    ALTER TABLE batches ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
    ALTER TABLE batches ADD COLUMN tag TEXT NOT NULL DEFAULT '';
    """,
    # 8: a revoked credential keeps its link to its holder (for the log's names, not
    #    for the doors: its lookup digest goes, so the card can be enrolled again);
    #    an audit trail for administrators (e.g. a PIN that clashed with another's)
    """
    CREATE TABLE retired_credentials (
        id TEXT PRIMARY KEY,
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        kind TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
        retired REAL NOT NULL);
    CREATE INDEX retired_fingerprint ON retired_credentials(fingerprint);
    CREATE TABLE audit (id INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL,
                        event TEXT NOT NULL, detail TEXT NOT NULL);
    ALTER TABLE credentials ADD COLUMN status_since REAL;
    """,
    # 9: alarms (forced, held open, duress, ...) stay open until staff acknowledge them;
    #    one row per alarm record, from the live channel or the nightly upload
    """
    CREATE TABLE alarms (id INTEGER PRIMARY KEY, door TEXT NOT NULL, log TEXT NOT NULL,
                         seq INTEGER NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL,
                         reason TEXT NOT NULL, received REAL NOT NULL,
                         acked REAL, acked_by TEXT, note TEXT,
                         UNIQUE (door, log, seq));
    CREATE INDEX alarms_open ON alarms(acked, ts);
    """,
    # 10: one fob, many readers: a fob's narrower forms (em40 -> em32 -> em24) as its
    #     readers may give them; which readers each door has ('' = not declared: any)
    """
    CREATE TABLE credential_aliases (
        credential_id TEXT NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
        family TEXT NOT NULL, lookup BLOB NOT NULL,
        PRIMARY KEY (credential_id, family));
    CREATE INDEX credential_aliases_lookup ON credential_aliases(lookup);
    ALTER TABLE doors ADD COLUMN readers TEXT NOT NULL DEFAULT '';
    """,
    # 11: a door's newest record, and its newest of a kind (site doctor), without
    #     reading all of the door's log
    """
    CREATE INDEX events_door_ts ON events(door, ts);
    CREATE INDEX events_door_kind_ts ON events(door, kind, ts);
    """,
    # 12: secure cards (NTAG 424 DNA, DESFire): the card's type, and its door keys sealed under
    #     the data key (doors get them inside their group's sealed bundle)
    """
    ALTER TABLE credentials ADD COLUMN card TEXT NOT NULL DEFAULT '';
    ALTER TABLE credentials ADD COLUMN card_sealed BLOB;
    """,
    # 13: signed QR passes for visitors and couriers (site/passes.py): what was issued,
    #     never the pass text itself (a bearer credential); revoked ones go in bundles
    """
    CREATE TABLE passes (id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES groups(id),
                         role TEXT NOT NULL, label TEXT NOT NULL, valid_from REAL NOT NULL,
                         valid_until REAL NOT NULL, uses INTEGER NOT NULL,
                         issued REAL NOT NULL, issued_by TEXT NOT NULL,
                         revoked REAL, revoked_by TEXT);
    CREATE INDEX passes_group ON passes(group_id, valid_until);
    """,
    # 14: uploaded batches the office refused (unsigned, forged, from a door the site does
    #     not have): named by 'logs pull' each time and by 'site doctor', never loaded
    """
    CREATE TABLE refused_batches (name TEXT PRIMARY KEY, door TEXT NOT NULL,
                                  reason TEXT NOT NULL, first_seen REAL NOT NULL,
                                  last_seen REAL NOT NULL);
    """,
    # 15: the office console (accessd/web): staff accounts (argon2id hashes), signed-in
    #     sessions (only a hash of the cookie is kept), residents' one-time sign-in
    #     codes (hashes), failed sign-ins (throttling and lockout)
    """
    CREATE TABLE staff (name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL,
                        created REAL NOT NULL, disabled REAL);
    CREATE TABLE web_sessions (token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL,
                               subject TEXT NOT NULL, csrf TEXT NOT NULL,
                               created REAL NOT NULL, last_seen REAL NOT NULL,
                               terminal TEXT NOT NULL DEFAULT '');
    CREATE TABLE resident_codes (code_hash TEXT PRIMARY KEY, person_id TEXT NOT NULL
                                 REFERENCES people(id) ON DELETE CASCADE,
                                 issued REAL NOT NULL, expires REAL NOT NULL, used REAL,
                                 issued_by TEXT NOT NULL);
    CREATE TABLE login_failures (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
                                 first REAL NOT NULL, locked_until REAL);
    """,
    # 16: personal data (site/personal.py): a data key per person, wrapped under the
    #     ring key (never in the database; key_ring carries each new generation wrapped
    #     under the one before); people erased ('forgotten'); pass labels, alarm notes
    #     and the audit's free text sealed; the audit trail hash-chained, with the
    #     terminal and the person each line is about; signed checkpoints where the
    #     office purged a door's log (retention)
    """
    CREATE TABLE key_ring (gen INTEGER PRIMARY KEY, sealed BLOB NOT NULL);
    CREATE TABLE person_keys (owner TEXT PRIMARY KEY, gen INTEGER NOT NULL,
                              sealed BLOB NOT NULL);
    ALTER TABLE people ADD COLUMN forgotten REAL;
    ALTER TABLE audit ADD COLUMN terminal TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN person TEXT;
    ALTER TABLE audit ADD COLUMN note BLOB;
    ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
    CREATE INDEX audit_person ON audit(person);
    CREATE INDEX audit_ts ON audit(ts);
    ALTER TABLE passes ADD COLUMN label_sealed BLOB;
    ALTER TABLE alarms ADD COLUMN note_sealed BLOB;
    CREATE TABLE log_checkpoints (door TEXT NOT NULL, log TEXT NOT NULL,
                                  seq INTEGER NOT NULL, hash TEXT NOT NULL,
                                  cut REAL NOT NULL, signature BLOB NOT NULL,
                                  PRIMARY KEY (door, log));
    """,
]


def check_readers(readers) -> list[str]:
    """Reader names for a door, checked (unknown ones raise StoreError)."""
    out = []
    for name in readers:
        name = name.strip()
        if not name:
            continue
        try:
            out.append(check_reader_name(name))
        except AccessdError as exc:
            raise StoreError(str(exc)) from None
    return sorted(set(out))


def os_terminal() -> str:
    """This machine and terminal, as the audit trail names them ('office-pc pts/3')."""
    import socket
    try:
        tty = os.ttyname(0).removeprefix("/dev/")
    except OSError:
        tty = ""
    return f"{socket.gethostname()} {tty}".strip()[:64]


def os_user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


NAME_MAX, UNIT_MAX, PHONE_MAX, DESCRIPTION_MAX, NOTE_MAX = 100, 32, 32, 200, 500
OFFICE_PIN = (4, 8)   # PIN lengths the office enrols (a door may allow fewer; see pin.*)


def text(what: str, value, max_len: int, *, required: bool = False) -> str:
    """A name, unit, phone, description or note as it enters the site: StoreError for
    a control character or an oversized value (core.text.check_text)."""
    try:
        return check_text(what, value, max_len, required=required)
    except ValueError as exc:
        raise StoreError(str(exc)) from None


def check_id(what: str, value: str) -> str:
    if not value or len(value) > 64 or not set(value) <= _ID_OK:
        raise StoreError(f"{what} id {value!r} must be 1-64 letters, digits, '-', '_' or '.'")
    return value


PERSONAL_FORMAT = "2"     # names sealed under per-person keys (site/personal.py)
FORMER = "former resident"   # how a forgotten person is named from then on


def _anchor_text(site_id: str, aid: int, h: str) -> bytes:
    return f"accessd audit anchor\0{site_id}\0{aid}\0{h}".encode()


def _pass_owner(issued_by: str) -> str:
    """Whose key seals a pass's label: the resident who issued it, or the site."""
    return issued_by[9:] if issued_by.startswith("resident:") else SITE


def audit_hash(aid: int, ts: float, actor: str, terminal: str, event: str,
               person: str | None, detail: str, note, prev: str) -> str:
    """The hash of one audit line, chained to the one before it."""
    body = json.dumps([aid, ts, actor, terminal, event, person, detail,
                       bytes(note).hex() if note is not None else None, prev],
                      separators=(",", ":"))
    return sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Person:
    id: str
    unit: str
    role: str
    name: str
    phone: str | None
    forgotten: float | None = None    # when the person was erased (name is then FORMER)


class SiteDB:
    """An opened site: its keys and its database."""

    def __init__(self, site_dir: Path, keys: site_keys.SiteKeys, database: str | None = None):
        """database: a postgresql:// URL, or None for the SQLite file site_dir/site.db."""
        self.dir = Path(site_dir)
        self.keys = keys
        self._data = Sealer(keys.data)
        self.db = (PostgresDatabase(database, SITE_MIGRATIONS) if database
                   else SQLiteDatabase(self.dir / "site.db", SITE_MIGRATIONS))
        self._readers: tuple[int, list[str] | None] | None = None   # (transaction, readers)
        self.actor = os_user()   # who the audit trail names: the OS user, or a console account
        self.terminal = os_terminal()    # and where from: this host and tty, or an address
        self.personal = Keyring(self.db, self.dir / "keys")

    @property
    def where(self) -> str:
        """Where the database is: the file, or the URL without its password."""
        return self.db.where

    def _key_check(self) -> str:
        return hmac.digest(self.keys.data, b"accessd site key check", "sha256").hex()[:16]

    # ---- life cycle -----------------------------------------------------------------
    @classmethod
    def init(cls, site_dir: Path, site_id: str, database: str | None = None) -> "SiteDB":
        """A new site: keys in site_dir/keys, the database in site_dir/site.db or at
        the PostgreSQL URL `database` (which must not hold a site yet)."""
        site_dir = Path(site_dir)
        check_id("site", site_id)
        if database is not None and not is_url(database):
            raise StoreError(f"{database!r} is not a postgresql:// URL")
        if database is None and (site_dir / "site.db").exists():
            raise StoreError(f"{site_dir}: a site already exists here")
        if (site_dir / "keys").exists():
            raise StoreError(f"{site_dir / 'keys'}: site keys already exist here")
        site_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if database is not None:  # connect (and refuse a taken database) before keys
            probe = PostgresDatabase(database, SITE_MIGRATIONS)
            row = probe.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
            probe.close()
            if row:
                raise StoreError(f"{probe.where} already holds site {row[0]!r}; another "
                                 "terminal joins it with a copy of that site's keys")
        keys = site_keys.create(site_dir / "keys")
        site = cls(site_dir, keys, database)
        with site.db.atomic():
            site.db.insert_all("meta", [{"key": "site_id", "value": site_id},
                                        {"key": "bundle_version", "value": "0"},
                                        {"key": "key_check", "value": site._key_check()},
                                        {"key": "personal", "value": PERSONAL_FORMAT}])
            site.personal.key(SITE, create=True)
        return site

    @classmethod
    def open(cls, site_dir: Path, database: str | None = None) -> "SiteDB":
        site_dir = Path(site_dir)
        if database is None and not (site_dir / "site.db").exists():
            raise StoreError(f"{site_dir}: no site here (run 'accessctl --site {site_dir} "
                             "site init SITE_ID')")
        if database is not None and not (site_dir / "keys").is_dir():
            raise KeyFileError(f"{site_dir / 'keys'}: no site keys here (copy the site's "
                               "keys/ directory from the terminal that created it, mode 0600)")
        site = cls(site_dir, site_keys.load(site_dir / "keys"), database)
        check, site_id = site.meta("key_check"), site.site_id
        if database is not None and not site_id:
            site.close()
            raise StoreError(f"{site.where}: no site in this database (run 'accessctl "
                             "--site URL --site-dir DIR site init SITE_ID')")
        if check and check != site._key_check():
            site.close()
            raise KeyFileError(f"{site_dir / 'keys'}: these are not the keys of site "
                               f"{site_id!r} in {site.where}")
        if site.meta("personal") != PERSONAL_FORMAT:
            site._upgrade_personal()
        return site

    def _upgrade_personal(self) -> None:
        """A site made before per-person keys: its names and phones, pass labels, alarm
        notes and audit details sealed the new way, and the audit trail chained."""
        with self.db.atomic():
            if self.meta("personal") == PERSONAL_FORMAT:
                return                                   # another terminal did it
            ids = set()
            for pid, sealed in self.db.execute(
                    "SELECT id, sealed FROM people").fetchall():
                data = self._data.open(f"person:{pid}".encode(), bytes(sealed))
                self.db.execute("UPDATE people SET sealed = ? WHERE id = ?",
                                [self.personal.seal(pid, "person", data), pid])
                ids.add(pid)
            for pid, label, by in self.db.execute(
                    "SELECT id, label, issued_by FROM passes").fetchall():
                self.db.execute("UPDATE passes SET label = '', label_sealed = ? WHERE id = ?",
                                [self.personal.seal(_pass_owner(by), f"pass:{pid}", label),
                                 pid])
            for aid, note in self.db.execute(
                    "SELECT id, note FROM alarms WHERE note <> ''").fetchall():
                self.db.execute("UPDATE alarms SET note = NULL, note_sealed = ? WHERE id = ?",
                                [self.personal.seal(SITE, f"alarm:{aid}", note), aid])
            prev = GENESIS
            for aid, ts, actor, event, detail in self.db.execute(
                    "SELECT id, ts, actor, event, detail FROM audit ORDER BY id").fetchall():
                person = next((w for w in re.findall(r"[\w.-]+", detail) if w in ids), None)
                note = (self.personal.seal(person or SITE, f"audit:{aid}", detail)
                        if detail else None)
                h = audit_hash(aid, ts, actor, "", event, person, "", note, prev)
                self.db.execute("UPDATE audit SET detail = '', note = ?, person = ?, "
                                "prev_hash = ?, hash = ? WHERE id = ?",
                                [note, person, prev, h, aid])
                prev = h
            self.db.upsert("meta", {"key": "personal", "value": PERSONAL_FORMAT}, pk="key")

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else ""

    @property
    def site_id(self) -> str:
        return self.meta("site_id")

    @property
    def timezone(self) -> str:
        """The site's time zone: dates staff type and read are in it."""
        return self.meta("timezone") or "UTC"

    @property
    def store_url(self) -> str:
        """The store bundles are published to and logs pulled from, a setting of the
        site that every terminal shares ('site store', or 'publish --store'), never
        with a password in it. A SQLite site (one terminal) uses file://SITE/store
        until one is set; a PostgreSQL site has none ("") until one is set."""
        url = self.meta("store_url")
        if url or self.db.dialect == "postgresql":
            return url
        return (self.dir / "store").resolve().as_uri()

    def store_url_set(self, url: str) -> str:
        """Make `url` the site's store: a user and password in it (HTTP Basic auth) are
        kept in this terminal's keys directory (0600), the rest in the database.
        Returns the URL as kept (without them). ConfigError for a URL no store takes."""
        from urllib.parse import unquote, urlparse

        from ..sync.store import check_url, open_store
        check_url(url)                      # (ConfigError, before anything else)
        u = urlparse(url)
        if u.scheme in ("http", "https") and (u.username or u.password):
            clean = open_store(url).url            # (checks it too)
            site_keys.store_credentials_set(self.dir / "keys", clean, unquote(u.username or ""),
                                            unquote(u.password or ""))
        else:
            clean = open_store(url).url
        self.meta_set("store_url", clean)
        return clean

    def store(self, url: str | None = None, *, timeout: float = 15.0):
        """The site's store opened (or the one at `url`), with this terminal's
        credentials for it. StoreError when a PostgreSQL site has none set."""
        from urllib.parse import quote, urlparse, urlunparse

        from ..sync.store import check_url, open_store
        url = url or self.store_url
        if url:
            check_url(url)                  # (ConfigError naming what is wrong)
        if not url:
            raise StoreError("this site has no store yet: set the one every terminal and "
                             "door uses with 'accessctl site store URL' (e.g. "
                             "https://dav.example.org/accessd/ or s3://bucket/site)")
        u = urlparse(url)
        creds = (site_keys.store_credentials(self.dir / "keys", open_store(url).url)
                 if u.scheme in ("http", "https") and not u.username else None)
        if creds:
            netloc = f"{quote(creds[0], safe='')}:{quote(creds[1], safe='')}@{u.netloc}"
            url = urlunparse(u._replace(netloc=netloc))
        return open_store(url, timeout)

    def card_master(self) -> bytes:
        """The site's card master key (keys/card-master.key, made on first use). The
        database keeps its check value: a terminal whose copy differs is refused
        before it can personalise a card the doors would not know."""
        key = site_keys.card_master(self.dir / "keys")
        check = hmac.digest(key, b"accessd card master check", "sha256").hex()[:16]
        with self.db.atomic():
            have = self.meta("card_master_check")
            if not have:
                self.meta_set("card_master_check", check)
        if have and have != check:
            raise KeyFileError(f"{self.dir / 'keys' / 'card-master.key'} is not the card "
                               "master key this site's secure cards were made with: copy "
                               "it from the terminal that made the first one")
        return key

    def meta_set(self, key: str, value: str) -> None:
        with self.db.atomic():
            self.db.upsert("meta", {"key": key, "value": value}, pk="key")

    def audit(self, event: str, detail: str, *, person: str | None = None,
              note: str | None = None) -> None:
        """One line of the audit trail: who (the OS user, or a console account), from
        which terminal, when, what (`event`, and `detail`: ids, never free text), about
        which person, and free text (`note`: a pass's label, a reason) sealed under that
        person's key (or the site's). Each line is chained to the one before it."""
        with self.db.atomic():
            last = self.db.execute("SELECT id, hash FROM audit ORDER BY id DESC "
                                   "LIMIT 1").fetchone()
            aid, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            owner = person or SITE
            if note and person and self.db.execute(
                    "SELECT forgotten FROM people WHERE id = ?", [person]).fetchone() != (None,):
                owner = SITE          # an erased (or unknown) person's key is not made again
            sealed = self.personal.seal(owner, f"audit:{aid}", note) if note else None
            ts = time.time()
            self.db.insert("audit", {
                "id": aid, "ts": ts, "actor": self.actor, "terminal": self.terminal,
                "event": event, "person": person, "detail": detail, "note": sealed,
                "prev_hash": prev, "hash": audit_hash(aid, ts, self.actor, self.terminal,
                                                      event, person, detail, sealed, prev)})

    _AUDIT_COLS = ("id", "ts", "actor", "terminal", "event", "person", "detail", "note")

    def audit_log(self, limit: int | None = None, *, staff: str | None = None,
                  person: str | None = None, action: str | None = None,
                  since: float | None = None, until: float | None = None) -> list[dict]:
        """Audit lines, oldest first (the newest `limit` of them): by a staff member
        (or OS user), about a person (the line's person, or one naming them), of an
        action ('pin.collision', or a prefix: 'credential'), from/until a time. The
        note is opened (None: there is none; '(erased)': its person was forgotten)."""
        sql = f"SELECT {', '.join(self._AUDIT_COLS)} FROM audit WHERE 1=1"
        args: list = []
        if staff:
            sql += " AND (actor = ? OR actor = ?)"
            args += [staff, f"web:{staff}"]
        if person:
            sql += " AND (person = ? OR detail LIKE ?)"
            args += [person, f"%{person}%"]
        if action:
            sql += " AND (event = ? OR event LIKE ?)"
            args += [action, f"{action}.%"]
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts < ?"
            args.append(until)
        sql += " ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = self.db.execute(sql, args + ([limit] if limit else [])).fetchall()
        self.personal.open_many({r[5] or SITE for r in rows if r[7] is not None})
        out = []
        for r in reversed(rows):
            row = dict(zip(self._AUDIT_COLS, r))
            if row["note"] is not None:
                opened = self._open_note(row["person"], f"audit:{row['id']}", row["note"])
                row["note"] = "(erased)" if opened is None else opened
            out.append(row)
        return out

    def audit_names(self, rows: list[dict]) -> dict[str, str]:
        """Person id -> how staff see them, for the people audit lines name (the
        administrator's view: 'accessctl audit', the console's audit page)."""
        words = {w for r in rows for w in re.findall(r"[\w.-]+", r["detail"])}
        words |= {r["person"] for r in rows if r["person"]}
        words = sorted(words)
        out: dict[str, str] = {}
        for i in range(0, len(words), 500):
            part = words[i:i + 500]
            for row in self.db.execute(f"SELECT {self._PERSON_COLS} FROM people WHERE id IN "
                                       f"({', '.join('?' * len(part))})", part).fetchall():
                out[row[0]] = self.label(self._person(row))
        return out

    @staticmethod
    def audit_text(row: dict, names: dict[str, str]) -> str:
        """An audit line's detail with people named, and its note."""
        detail = re.sub(r"\bperson ([\w.-]+)",
                        lambda m: f"person {m[1]} ({names[m[1]]})" if m[1] in names else m[0],
                        row["detail"])
        return detail + (f" — {row['note']}" if row.get("note") else "")

    def _open_note(self, person: str | None, what: str, blob):
        """A note sealed under the person's key, or the site's (a line written after
        the person was erased); None when neither opens it (the person's key is gone)."""
        for owner in dict.fromkeys([person or SITE, SITE]):
            try:
                opened = self.personal.open(owner, what, blob, fresh=False)
            except StoreError:
                continue
            if opened is not None:
                return opened
        return None

    def audit_verify(self) -> dict:
        """Recompute the audit trail's chain: {lines, head, problems, anchors}. A line
        edited, removed or put in out of order breaks it; the signed anchors (kept by
        each nightly purge) say the trail up to there is the one the office signed."""
        from cryptography.exceptions import InvalidSignature
        problems, prev, n, ids = [], GENESIS, 0, {}
        expect = None
        for aid, ts, actor, terminal, event, person, detail, note, ph, h in self.db.execute(
                "SELECT id, ts, actor, terminal, event, person, detail, note, prev_hash, hash "
                "FROM audit ORDER BY id"):
            n += 1
            if expect is not None and aid != expect:
                problems.append(f"line {aid}: lines {expect}-{aid - 1} are missing")
            if ph != prev:
                problems.append(f"line {aid}: its link to the line before is broken")
            if audit_hash(aid, ts, actor, terminal, event, person, detail, note, ph) != h:
                problems.append(f"line {aid}: its content does not match its hash (edited)")
            ids[aid], prev, expect = h, h, aid + 1
        anchors = 0
        for raw in json.loads(self.meta("audit_anchors") or "[]"):
            try:
                self.keys.public.verify(bytes.fromhex(raw["sig"]),
                                        _anchor_text(self.site_id, raw["id"], raw["hash"]))
            except (InvalidSignature, KeyError, ValueError):
                problems.append(f"anchor at line {raw.get('id')}: bad signature")
                continue
            if ids.get(raw["id"]) != raw["hash"]:
                problems.append(f"line {raw['id']}: not the line the office signed on "
                                f"{time.strftime('%Y-%m-%d', time.gmtime(raw.get('t', 0)))} "
                                "(the trail was rewritten)")
            anchors += 1
        return {"lines": n, "head": prev, "problems": problems, "anchors": anchors}

    def audit_anchor(self) -> dict | None:
        """Sign the audit trail's newest line (kept in meta; `audit --verify` checks
        them): rewriting the trail before it then needs the site's signing key."""
        with self.db.atomic():
            last = self.db.execute("SELECT id, hash FROM audit ORDER BY id DESC "
                                   "LIMIT 1").fetchone()
            if last is None:
                return None
            anchors = json.loads(self.meta("audit_anchors") or "[]")
            if anchors and anchors[-1]["id"] == last[0]:
                return anchors[-1]
            sig = self.keys.signing.sign(_anchor_text(self.site_id, last[0], last[1]))
            anchors = (anchors + [{"id": last[0], "hash": last[1], "t": time.time(),
                                   "sig": sig.hex()}])[-400:]
            self.db.upsert("meta", {"key": "audit_anchors", "value": json.dumps(anchors)},
                           pk="key")
            return anchors[-1]

    # ---- alarms ----------------------------------------------------------------------
    def alarms(self, *, open_only: bool = True, door: str | None = None,
               limit: int | None = None) -> list[dict]:
        """Alarms, newest first: those no one acknowledged yet, or all of them."""
        sql = ("SELECT id, door, log, seq, ts, kind, reason, received, acked, acked_by, "
               "note_sealed FROM alarms WHERE 1=1")
        args: list = []
        if open_only:
            sql += " AND acked IS NULL"
        if door:
            sql += " AND door = ?"
            args.append(door)
        sql += " ORDER BY ts DESC, id DESC" + (" LIMIT ?" if limit else "")
        args += [limit] if limit else []
        cols = ("id", "door", "log", "seq", "ts", "kind", "reason", "received", "acked",
                "acked_by", "note")
        out = [dict(zip(cols, r)) for r in self.db.execute(sql, args)]
        if any(a["note"] is not None for a in out):
            self.personal.open_many([SITE])
        for a in out:
            a["note"] = self.personal.open(SITE, f"alarm:{a['id']}", a["note"], fresh=False) or ""
        return out

    def open_alarm_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM alarms WHERE acked IS NULL").fetchone()[0]

    def alarm_ack(self, alarm_id: int, note: str = "") -> dict:
        """Staff acknowledge an alarm: who (the OS user) and when are kept."""
        note = text("the note", note, NOTE_MAX)
        actor = self.actor
        with self.db.atomic():   # one statement: two terminals cannot both acknowledge it
            done = self.db.execute(
                "UPDATE alarms SET acked = ?, acked_by = ?, note_sealed = ? "
                "WHERE id = ? AND acked IS NULL",
                [time.time(), actor, self.personal.seal(SITE, f"alarm:{alarm_id}", note)
                 if note else None, alarm_id]).rowcount
        if not done:
            row = self.db.execute("SELECT acked_by FROM alarms WHERE id = ?",
                                  [alarm_id]).fetchone()
            if row is None:
                raise NotFoundError(f"no alarm #{alarm_id} (see 'accessctl alarms --all')")
            raise StoreError(f"alarm #{alarm_id} was already acknowledged by {row[0]}")
        self.audit("alarm.ack", f"alarm #{alarm_id}", note=note or None)
        return {"id": alarm_id, "acked_by": actor, "note": note}

    @property
    def bundle_version(self) -> int:
        """The newest bundle version given out (0: nothing published yet)."""
        return int(self.meta("bundle_version") or 0)

    def next_bundle_version(self) -> int:
        with self.db.atomic():
            v = self.bundle_version + 1
            self.db.upsert("meta", {"key": "bundle_version", "value": str(v)}, pk="key")
        return v

    # ---- groups and doors -----------------------------------------------------------
    def group_add(self, group_id: str, description: str = "") -> None:
        check_id("group", group_id)
        description = text("the description", description, DESCRIPTION_MAX)
        key = secrets.token_bytes(32)
        try:
            with self.db.atomic():
                self.db.insert("groups", {"id": group_id, "description": description,
                                          "key_sealed": self._seal_group_key(group_id, key)})
        except Conflict:
            raise StoreError(f"door group {group_id!r} already exists") from None

    def _seal_group_key(self, group_id: str, key: bytes) -> bytes:
        return self._data.seal(f"group:{group_id}".encode(), {"key": key.hex()})

    def group_key(self, group_id: str) -> bytes:
        row = self.db.execute("SELECT key_sealed FROM groups WHERE id = ?", [group_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no door group {group_id!r}")
        return bytes.fromhex(self._data.open(f"group:{group_id}".encode(), row[0])["key"])

    def groups(self) -> list[dict]:
        return [dict(id=r[0], description=r[1], doors=r[2]) for r in self.db.execute(
            "SELECT g.id, g.description, count(d.id) FROM groups g "
            "LEFT JOIN doors d ON d.group_id = g.id GROUP BY g.id ORDER BY g.id")]

    def door_add(self, door_id: str, group_id: str, description: str = "",
                 readers=()) -> None:
        """readers: what the door's readers are (core.credentials.READER_GIVES names);
        none declared means any, and then no enrolment is refused for its sake."""
        check_id("door", door_id)
        description = text("the description", description, DESCRIPTION_MAX)
        readers = check_readers(readers)
        self._readers = None
        self.group_key(group_id)  # exists?
        from ..core.doorids import clash_key
        twin = next((d["id"] for d in self.doors() if d["id"] != door_id
                     and clash_key(d["id"]) == clash_key(door_id)), None)
        if twin is not None:
            raise StoreError(f"door id {door_id!r} is too like door {twin!r}: Home Assistant "
                             "and the broker's ACL would take them for one door ('.' and '_' "
                             "are the same there, and so are upper and lower case); choose "
                             "another id")
        try:
            with self.db.atomic():
                self.db.insert("doors", {"id": door_id, "group_id": group_id,
                                         "description": description,
                                         "readers": ",".join(readers)})
        except Conflict:
            raise StoreError(f"door {door_id!r} already exists") from None

    def door_readers_set(self, door_id: str, readers) -> None:
        self.door_update(door_id, readers=readers)

    def door_update(self, door_id: str, *, description: str | None = None,
                    readers=None) -> None:
        door = self.door(door_id)
        if description is not None:
            description = text("the description", description, DESCRIPTION_MAX)
        readers = door["readers"] if readers is None else check_readers(readers)
        self._readers = None
        with self.db.atomic():
            self.db.execute("UPDATE doors SET readers = ?, description = ? WHERE id = ?",
                            [",".join(readers), door["description"] if description is None
                             else description, door_id])

    _DOOR_COLS = "id, group_id, description, readers"

    @staticmethod
    def _door_dict(r) -> dict:
        return {"id": r[0], "group": r[1], "description": r[2],
                "readers": r[3].split(",") if r[3] else []}

    def door(self, door_id: str) -> dict:
        row = self.db.execute(f"SELECT {self._DOOR_COLS} FROM doors WHERE id = ?",
                              [door_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no door {door_id!r}")
        return self._door_dict(row)

    def doors(self, group_id: str | None = None) -> list[dict]:
        sql = f"SELECT {self._DOOR_COLS} FROM doors"
        args: list = []
        if group_id:
            sql += " WHERE group_id = ?"
            args.append(group_id)
        return [self._door_dict(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def site_readers(self) -> list[str] | None:
        """Every reader the site's doors declare; None when a door declares none (it
        may have any reader) or there are no doors yet. Read once per transaction (its
        write lock keeps other terminals' door changes out until it ends)."""
        if self.db.in_transaction and self._readers and self._readers[0] == self.db.serial:
            return self._readers[1]
        rows = [r[0] for r in self.db.execute("SELECT DISTINCT readers FROM doors")]
        readers = (None if not rows or "" in rows
                   else sorted({name for r in rows for name in r.split(",")}))
        if self.db.in_transaction:
            self._readers = (self.db.serial, readers)
        return readers

    # ---- people ------------------------------------------------------------------------
    def person_ident(self, unit: str, name: str) -> bytes:
        norm = " ".join(name.split()).casefold()
        return hmac.digest(self.keys.data, f"person\0{unit.strip()}\0{norm}".encode(), "sha256")

    def person_add(self, name: str, unit: str, role: str, phone: str | None = None,
                   person_id: str | None = None) -> str:
        name = text("a person's name", name, NAME_MAX, required=True)
        unit = text("the unit", unit, UNIT_MAX)
        phone = text("the phone number", phone, PHONE_MAX) or None
        if role not in ROLES:
            raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}")
        person_id = check_id("person", person_id) if person_id else "p" + secrets.token_hex(4)
        try:
            with self.db.atomic():
                sealed = self.personal.seal(person_id, "person", {"name": name, "phone": phone})
                self.db.insert("people", {"id": person_id, "ident": self.person_ident(unit, name),
                                          "unit": unit, "role": role, "sealed": sealed,
                                          "created": time.time()})
        except Conflict:
            raise StoreError(f"{name} in unit {unit!r} is already registered "
                             f"(or the id {person_id!r} is taken)") from None
        self.audit("person.add", f"person {person_id} ({role}, unit {unit or '-'})",
                   person=person_id)
        return person_id

    @staticmethod
    def label(p: Person) -> str:
        """How staff see a person: 'Anna Berg (12A)', or the name alone."""
        return f"{p.name} ({p.unit})" if p.unit else p.name

    def person_named(self, text: str) -> str:
        """A person's id from their id, their name or 'Name (unit)' as lists show it
        (case does not matter); refused when no one or several have it."""
        text = text.strip()
        if self.db.execute("SELECT 1 FROM people WHERE id = ?", [text]).fetchone():
            return text
        want = text.casefold()
        hits = [p for p in self.people() if not p.forgotten
                and want in (p.name.casefold(), self.label(p).casefold())]
        if not hits:
            raise NotFoundError(f"no person with the id or name {text!r}")
        if len(hits) > 1:
            raise StoreError(f"{len(hits)} people are named {text!r}: "
                             + ", ".join(f"{self.label(p)} = {p.id}" for p in hits)
                             + "; give the id")
        return hits[0].id

    def find_person(self, unit: str, name: str) -> str | None:
        row = self.db.execute("SELECT id FROM people WHERE ident = ?",
                              [self.person_ident(unit, name)]).fetchone()
        return row[0] if row else None

    def _person(self, row, fresh: bool = True) -> Person:
        pid, unit, role, sealed, forgotten = row
        data = None if forgotten else self.personal.open(pid, "person", sealed, fresh=fresh)
        if data is None:
            return Person(pid, unit, role, FORMER, None, forgotten or 0.0)
        return Person(pid, unit, role, data["name"], data.get("phone"))

    _PERSON_COLS = "id, unit, role, sealed, forgotten"

    def person(self, person_id: str) -> Person:
        row = self.db.execute(f"SELECT {self._PERSON_COLS} FROM people WHERE id = ?",
                              [person_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no person {person_id!r}")
        return self._person(row)

    def people(self, *, forgotten: bool = False) -> list[Person]:
        """Everyone on the site (and with forgotten=True the people erased too)."""
        rows = self.db.execute(f"SELECT {self._PERSON_COLS} FROM people"
                               + ("" if forgotten else " WHERE forgotten IS NULL")
                               + " ORDER BY unit, id").fetchall()
        self.personal.open_many(r[0] for r in rows if r[4] is None)
        return [self._person(r, fresh=False) for r in rows]

    def person_edit(self, person_id: str, *, name=None, unit=None, role=None, phone=None) -> Person:
        p = self.person(person_id)
        if p.forgotten:
            raise StoreError(f"person {person_id} was erased ('person forget'): there is "
                             "nothing left to edit; add them again as a new person")
        new = Person(p.id, text("the unit", unit, UNIT_MAX) if unit is not None else p.unit,
                     role or p.role,
                     text("a person's name", name, NAME_MAX, required=True)
                     if name is not None else p.name,
                     (text("the phone number", phone, PHONE_MAX) or None)
                     if phone is not None else p.phone)
        if new.role not in ROLES:
            raise StoreError(f"role {new.role!r} is not one of {', '.join(ROLES)}")
        with self.db.atomic():
            self.db.execute("UPDATE people SET unit = ?, role = ?, ident = ?, sealed = ? WHERE id = ?",
                            [new.unit, new.role, self.person_ident(new.unit, new.name),
                             self.personal.seal(p.id, "person",
                                                {"name": new.name, "phone": new.phone}), p.id])
        self.audit("person.edit", f"person {p.id}", person=p.id)
        return new

    def person_remove(self, person_id: str) -> None:
        """Take a person off the site entirely (one added by mistake): their key goes
        too. For a resident who leaves, 'forget' keeps the log's "former resident"."""
        self.person(person_id)
        if self.db.in_transaction:   # the new ring key is written only after the commit
            raise StoreError("a removal cannot run inside another transaction")
        with self.db.atomic():
            self.db.execute("DELETE FROM people WHERE id = ?", [person_id])
            self.personal.destroy(person_id)
        self.personal.commit_ring()
        self.audit("person.remove", f"person {person_id}", person=person_id)

    def person_forget(self, person_id: str, reason: str) -> dict:
        """Erase a person (GDPR art. 17, PIPL art. 47): their credentials revoked (kept
        as fingerprints, so the log reads "former resident (12A)"), their grants, sign-in
        codes and sessions gone, passes they issued revoked, and their data key destroyed
        with a new ring generation (site/personal.py): their name, phone, pass labels and
        audit notes are unreadable from then on, in this database and in copies of it.
        The caller publishes (the doors drop the credentials). Returns what was done."""
        reason = text("the reason", reason, NOTE_MAX, required=True)
        if self.db.in_transaction:   # the new ring key is written only after the commit
            raise StoreError("an erasure cannot run inside another transaction")
        p = self.person(person_id)
        if p.forgotten:
            raise StoreError(f"person {person_id} was already erased")
        now = time.time()
        with self.db.atomic():
            creds = [r[0] for r in self.db.execute(
                "SELECT id FROM credentials WHERE person_id = ?", [person_id])]
            self._retire("person_id", person_id, now)
            self.db.execute("DELETE FROM grants WHERE person_id = ?", [person_id])
            self.db.execute("DELETE FROM resident_codes WHERE person_id = ?", [person_id])
            self.db.execute("DELETE FROM web_sessions WHERE kind = 'resident' AND subject = ?",
                            [person_id])
            passes = self.db.execute(
                "UPDATE passes SET revoked = ?, revoked_by = ? WHERE issued_by = ? "
                "AND revoked IS NULL AND valid_until > ?",
                [now, self.actor, f"resident:{person_id}", now]).rowcount
            self.db.execute("UPDATE people SET sealed = ?, ident = ?, schedule = NULL, "
                            "forgotten = ? WHERE id = ?",
                            [b"", secrets.token_bytes(32), now, person_id])
            gen = self.personal.destroy(person_id)
        self.personal.commit_ring()
        self.audit("person.forget", f"person {person_id} ({p.role}, unit {p.unit or '-'}): "
                   f"{len(creds)} credentials revoked, {passes} passes revoked, data key "
                   f"destroyed (ring generation {gen})", person=person_id, note=reason)
        return {"person": person_id, "unit": p.unit, "credentials": creds,
                "passes_revoked": passes, "generation": gen, "at": now}

    # ---- credentials and grants ---------------------------------------------------------
    def fingerprint(self, kind: str, value: str) -> str:
        return fingerprint(self.digest(kind, value))

    def digest(self, kind: str, value: str) -> bytes:
        return lookup_digest(self.keys.lookup, kind, value)

    def enrol(self, person_id: str, kind: str, typed: str, **kw) -> dict:
        """A credential as staff typed it (a fob's number in any printed form, a card
        UID, a PIN of OFFICE_PIN digits): normalised, then credential_add. A value in
        the wrong form is a CredentialFormatError naming what was wrong."""
        from ..core.credentials import normalize
        value = normalize(kind, str(typed), pin_min=OFFICE_PIN[0], pin_max=OFFICE_PIN[1])
        return self.credential_add(person_id, kind, value, **kw)

    def credential_add(self, person_id: str, kind: str, value: str, *,
                       valid_from: float | None = None, valid_until: float | None = None,
                       duress: bool = False, max_uses: int | None = None,
                       card: tuple[str, str] | None = None) -> dict:
        """value must be normalised (core.credentials.normalize). A duress credential
        (a PIN only) opens the door and raises a silent alarm. card: (type, door keys
        in hex) for a secure card personalised at the office (assurance high)."""
        self.person(person_id)
        if duress and kind != "pin":
            raise StoreError("only a PIN can be a duress credential")
        if max_uses is not None and not 1 <= max_uses <= 100_000:
            raise StoreError(f"uses must be 1-100000, got {max_uses}")
        if kind not in KINDS:
            raise StoreError(f"unknown credential kind {kind!r}")
        if kind == "fob":  # one canonical form, whichever form staff typed
            try:
                value = parse_fob(value).canonical
            except AccessdError as exc:
                raise StoreError(str(exc)) from None
        for what, t in (("valid-from", valid_from), ("valid-until", valid_until)):
            if t is not None:
                try:
                    check_epoch(t, what)
                except ValueError as exc:
                    raise StoreError(str(exc)) from None
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            raise StoreError("valid-until must be later than valid-from")
        if card is not None and (kind != "nfc" or card[0] not in SECURE_CARDS):
            raise StoreError(f"a secure card is an nfc credential of a known type "
                             f"({', '.join(SECURE_CARDS)})")
        digest = self.digest(kind, value)
        cid = "c" + secrets.token_hex(5)
        row = {"id": cid, "person_id": person_id, "kind": kind,
               "lookup": digest, "fingerprint": fingerprint(digest),
               "assurance": "high" if card else ASSURANCE[kind],
               "valid_from": valid_from, "valid_until": valid_until, "status": "active",
               "created": time.time(), "duress": int(duress), "max_uses": max_uses}
        if card is not None:
            row["card"] = card[0]
            row["card_sealed"] = self._data.seal(f"card:{cid}".encode(), {"keys": card[1]})
        # under the write lock: no other terminal enrols between the checks and this
        with self.db.atomic():
            aliases = self._check_new(kind, value)
            other = self.db.execute("SELECT id, person_id FROM credentials WHERE lookup = ?",
                                    [digest]).fetchone()
            if other is None:
                self.db.insert("credentials", row)
                self.db.insert_all("credential_aliases", (
                    {"credential_id": row["id"], "family": family, "lookup": lookup}
                    for family, lookup in aliases))
        if other is not None:
            if kind == "pin":
                # Never say whose: the clerk would learn another resident's PIN. An
                # administrator can see the clash (accessctl audit) and ask that
                # resident to change theirs.
                self.audit("pin.collision",
                           f"a PIN typed for person {person_id} is already the PIN of "
                           f"person {other[1]} ({other[0]}); refused (ask the holder to "
                           "change it if it may be known)", person=person_id)
                raise StoreError("this PIN cannot be used: choose another one (PINs are "
                                 "unique on a site; an administrator can see the clash "
                                 "with 'accessctl audit')")
            raise StoreError(f"that {kind} is already enrolled to "
                             f"{self.label(self.person(other[1]))} ({other[0]})")
        self.audit("credential.add", f"{kind} {cid} ({row['fingerprint']}) for person "
                                     f"{person_id}" + (" (duress)" if duress else ""),
                   person=person_id)
        return {k: v for k, v in row.items() if k not in ("lookup", "card_sealed")}

    def credential_check(self, kind: str, value: str) -> None:
        """Raise StoreError if this (normalised) credential could not be enrolled: no
        reader on the site could match it, or a reader could not tell it from an
        enrolled one. (A duplicate of the same value is left to credential_add.)"""
        self._check_new(kind, value)

    def unique_forms(self, kind: str, value: str) -> list[str]:
        """The forms of a credential that must not be another's too (for an import
        file's own duplicates): itself, and a fob's narrower forms some reader gives."""
        if kind != "fob":
            return [value]
        readers = self.site_readers()
        fob = parse_fob(value)
        return [fob.canonical] + [a.canonical for a in fob.aliases()
                                  if gives_any(readers, a.family)]

    def _check_new(self, kind: str, value: str) -> list[tuple[str, bytes]]:
        readers = self.site_readers()
        if readers is not None:
            problem = unreadable_reason(kind, value, readers)
            if problem:
                raise StoreError(f"refused: {problem}")
        return self._aliases(kind, value, readers)

    def _aliases(self, kind: str, value: str, readers) -> list[tuple[str, bytes]]:
        """A fob's narrower forms (family, lookup digest). Refuses one that a reader of
        this site would give for another credential too (they could not be told apart
        there), and the same fob again in any form."""
        if kind != "fob":
            return []
        fob = parse_fob(value)
        out = []
        exact = {f.family: self.digest(kind, f.canonical)
                 for f in [fob, *fob.aliases()]}
        for family, lookup in exact.items():
            own = family == fob.family
            if not own:
                out.append((family, lookup))
                if not gives_any(readers, family):
                    continue  # no reader here gives this form: a clash would not matter
            clash = self.db.execute(
                "SELECT c.id, c.person_id FROM credentials c WHERE c.lookup = ? "
                "UNION ALL SELECT c.id, c.person_id FROM credential_aliases a "
                "JOIN credentials c ON c.id = a.credential_id WHERE a.lookup = ?",
                [lookup, lookup]).fetchone()
            if clash and own:  # the same fob, or a richer enrolment of (it seems) it
                raise StoreError(f"that {kind} is already enrolled to "
                                 f"{self.label(self.person(clash[1]))} ({clash[0]})")
            if clash:
                raise StoreError(
                    f"refused: a reader giving {family} would read this fob the same as "
                    f"{self.label(self.person(clash[1]))}'s {kind} ({clash[0]}); the two "
                    "could not be told apart at such doors. Enrol the full ID if the "
                    "doors read it, or use another fob")
        # enrolled before canonical forms (plain decimal)?
        clash = self.db.execute("SELECT id, person_id FROM credentials WHERE lookup = ?",
                                [self.digest(kind, fob.legacy)]).fetchone()
        if clash:
            raise StoreError(f"that {kind} is already enrolled to "
                             f"{self.label(self.person(clash[1]))} ({clash[0]}, "
                             "enrolled before fob forms; revoke it and enrol again)")
        return out

    def credential_holder(self, kind: str, value: str) -> str | None:
        row = self.db.execute("SELECT person_id FROM credentials WHERE lookup = ?",
                              [self.digest(kind, value)]).fetchone()
        return row[0] if row else None

    def credentials(self, person_id: str | None = None, *, revoked: bool = False,
                    credential_id: str | None = None) -> list[dict]:
        """The site's credentials (fingerprints, never values); with revoked=True also
        the revoked ones the office remembers (status 'revoked')."""
        sql = ("SELECT id, person_id, kind, fingerprint, assurance, valid_from, valid_until, "
               "status, duress FROM credentials")
        if revoked:
            sql += (" UNION ALL SELECT id, person_id, kind, fingerprint, '', NULL, NULL, "
                    "status, 0 FROM retired_credentials")
        sql = f"SELECT * FROM ({sql}) AS c"
        args: list = []
        if person_id:
            sql += " WHERE person_id = ?"
            args.append(person_id)
        if credential_id:
            sql += (" AND" if person_id else " WHERE") + " id = ?"
            args.append(credential_id)
        cols = ("id", "person", "kind", "fingerprint", "assurance", "valid_from", "valid_until",
                "status", "duress")
        return [{**dict(zip(cols, r)), "duress": bool(r[8])}
                for r in self.db.execute(sql + " ORDER BY person_id, id", args)]

    def holders(self) -> dict[str, tuple[str, str, str, float | None]]:
        """Credential id and fingerprint -> (person id, kind, status, since when) for
        every credential the office knows, revoked ones included: how the log gets
        names. A live credential wins over a revoked one with the same fingerprint."""
        out: dict[str, tuple[str, str, str, float | None]] = {}
        for cid, fp, pid, kind, status, since in self.db.execute(
                "SELECT id, fingerprint, person_id, kind, status, retired "
                "FROM retired_credentials ORDER BY retired"):
            out[cid] = out[fp] = (pid, kind, status, since)
        for cid, fp, pid, kind, status, since in self.db.execute(
                "SELECT id, fingerprint, person_id, kind, status, status_since FROM credentials"):
            out[cid] = out[fp] = (pid, kind, status, since)
        return out

    def credential_status(self, credential_id: str, status: str | None) -> tuple[str, str]:
        """status None revokes the credential: it leaves the doors' bundles and its value
        can be enrolled again, but the office keeps who held it (retired_credentials),
        so the log still names them. Otherwise marks it (lost, suspended, active).
        Returns its (person id, kind)."""
        held = self.db.execute("SELECT person_id, kind FROM credentials WHERE id = ?",
                               [credential_id]).fetchone()
        if not held:
            if self.db.execute("SELECT 1 FROM retired_credentials WHERE id = ?",
                               [credential_id]).fetchone():
                raise StoreError(f"credential {credential_id!r} is already revoked")
            raise NotFoundError(f"no credential {credential_id!r}")
        with self.db.atomic():
            if status is None:
                self._retire("id", credential_id, time.time())
            else:
                if status not in STATUSES:
                    raise StoreError(f"unknown status {status!r}")
                self.db.execute("UPDATE credentials SET status = ?, status_since = ? "
                                "WHERE id = ?", [status, time.time(), credential_id])
        self.audit(f"credential.{status or 'revoke'}",
                   f"{held[1]} {credential_id} of person {held[0]}", person=held[0])
        return held[0], held[1]

    def _retire(self, column: str, value: str, now: float) -> None:
        """Revoke credentials (by id or by holder): they leave the doors' bundles, and the
        office keeps who held them (retired_credentials). Inside a transaction."""
        self.db.execute(
            "INSERT INTO retired_credentials (id, person_id, kind, fingerprint, status, "
            f"retired) SELECT id, person_id, kind, fingerprint, 'revoked', ? "
            f"FROM credentials WHERE {column} = ?", [now, value])
        self.db.execute(f"DELETE FROM credentials WHERE {column} = ?", [value])

    def _subject(self, subject: str, group_id: str | None = None) -> str:
        """'person' or 'credential': what a grant names (and does the group exist?)."""
        person, cred, group = self.db.execute(
            "SELECT (SELECT count(*) FROM people WHERE id = ?), "
            "(SELECT count(*) FROM credentials WHERE id = ?), "
            "(SELECT count(*) FROM groups WHERE id = ?)", [subject, subject, group_id]).fetchone()
        if person and cred:
            raise StoreError(f"{subject!r} is both a person and a credential id")
        if not person and not cred:
            raise NotFoundError(f"no person or credential {subject!r}")
        if group_id is not None and not group:
            raise NotFoundError(f"no door group {group_id!r}")
        return "person" if person else "credential"

    def grant(self, subject: str, group_id: str) -> str:
        """Let a person's credentials, or one credential, open a door group."""
        kind = self._subject(subject, group_id)
        table = "grants" if kind == "person" else "credential_grants"
        with self.db.atomic():
            self.db.execute(f"INSERT INTO {table} VALUES (?, ?) ON CONFLICT DO NOTHING",
                            [subject, group_id])
        self.audit("grant", f"{kind} {subject} -> group {group_id}",
                   person=subject if kind == "person" else None)
        return kind

    def ungrant(self, subject: str, group_id: str) -> None:
        kind = self._subject(subject)
        table, col = (("grants", "person_id") if kind == "person"
                      else ("credential_grants", "credential_id"))
        with self.db.atomic():
            self.db.execute(f"DELETE FROM {table} WHERE {col} = ? AND group_id = ?",
                            [subject, group_id])
        self.audit("ungrant", f"{kind} {subject} -/-> group {group_id}",
                   person=subject if kind == "person" else None)

    def grants(self, person_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT group_id FROM grants WHERE person_id = ? ORDER BY group_id", [person_id])]

    # ---- access policy ------------------------------------------------------------------
    def timezone_set(self, tz: str) -> None:
        sched.check_timezone(tz)
        with self.db.atomic():
            self.db.upsert("meta", {"key": "timezone", "value": tz}, pk="key")

    def schedule_set(self, name: str, spec: dict, *, replace: bool = False) -> sched.Schedule:
        """Add a schedule, or with replace=True change one; refused (PolicyError) if
        badly defined, StoreError if it exists and replace is not given."""
        s = sched.parse_schedule(name, spec)
        with self.db.atomic():
            if not replace and self.db.execute("SELECT 1 FROM schedules WHERE name = ?",
                                               [name]).fetchone():
                raise StoreError(f"schedule {name!r} already exists: 'schedule add {name} "
                                 "... --replace' changes it")
            self.db.upsert("schedules", {"name": name, "spec": json.dumps(s.to_spec())},
                           pk="name")
        return s

    def schedule_remove(self, name: str) -> None:
        used = self.db.execute(
            "SELECT 'person ' || id FROM people WHERE schedule = ? UNION "
            "SELECT 'role ' || role FROM role_schedules WHERE schedule = ? UNION "
            "SELECT 'holiday ' || day FROM holidays WHERE value = ?", [name] * 3).fetchone()
        if used:
            raise StoreError(f"schedule {name!r} is still used by {used[0]}")
        with self.db.atomic():
            self.db.execute("DELETE FROM schedules WHERE name = ?", [name])

    def holiday_set(self, day: str, value: str = "off") -> None:
        day, value = sched.check_holiday(day, value, self._schedule_names())
        with self.db.atomic():
            self.db.upsert("holidays", {"day": day, "value": value}, pk="day")

    def holiday_remove(self, day: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM holidays WHERE day = ?", [day])

    def role_schedule_set(self, role: str, schedule: str | None) -> None:
        if role not in ROLES:
            raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}")
        with self.db.atomic():
            if schedule is None:
                self.db.execute("DELETE FROM role_schedules WHERE role = ?", [role])
            else:
                self._check_schedule(schedule)
                self.db.upsert("role_schedules", {"role": role, "schedule": schedule},
                               pk="role")

    def person_schedule_set(self, person_id: str, schedule: str | None) -> None:
        self.person(person_id)
        if schedule is not None:
            self._check_schedule(schedule)
        with self.db.atomic():
            self.db.execute("UPDATE people SET schedule = ? WHERE id = ?", [schedule, person_id])

    def _schedule_names(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM schedules")}

    def _check_schedule(self, name: str) -> None:
        if name not in self._schedule_names():
            raise StoreError(f"no schedule {name!r} (add it with 'accessctl schedule add')")

    def policy(self) -> sched.Policy:
        schedules = {n: sched.parse_schedule(n, json.loads(spec)) for n, spec in
                     self.db.execute("SELECT name, spec FROM schedules")}
        holidays = dict(self.db.execute("SELECT day, value FROM holidays"))
        return sched.Policy(self.meta("timezone") or "UTC", schedules, holidays)

    def role_schedules(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT role, schedule FROM role_schedules"))

    def group_families(self, group_id: str) -> set[str] | None:
        """What the group's doors' readers give (None: a door declares none, so any)."""
        out: set[str] = set()
        for door in self.doors(group_id):
            if not door["readers"]:
                return None
            for name in door["readers"]:
                out.update(reader_gives(name))
        return out

    def group_whitelist(self, group_id: str) -> tuple[list[tuple[bytes, dict]], list[str]]:
        """The rows of a group's whitelist: each credential under its own value, and a
        fob also under each narrower form its doors' readers give. A narrower form two
        credentials share is left out (neither opens by it: the reader cannot tell
        them apart); the second list says which, for staff."""
        rows = list(self.group_credentials(group_id))
        by_id = {row["id"]: row for _, row in rows}
        taken = {digest for digest, _ in rows}
        families = self.group_families(group_id)
        shared: dict[bytes, list[tuple[str, str]]] = {}
        for cid, family, lookup in self.db.execute(
                "SELECT credential_id, family, lookup FROM credential_aliases"):
            if cid in by_id and (families is None or family in families):
                shared.setdefault(lookup, []).append((cid, family))
        problems = []
        for lookup, holders in shared.items():
            if lookup in taken:
                continue  # another credential's own value: that one wins
            if len(holders) > 1:
                problems.append(f"{holders[0][1]}: credentials "
                                f"{', '.join(sorted(c for c, _ in holders))} read the same "
                                "at such readers; none opens by it")
                continue
            rows.append((lookup, {**by_id[holders[0][0]], "alias": 1}))
        return rows, sorted(problems)

    def group_credentials(self, group_id: str):
        """(lookup digest, door row) for every credential of a person granted this group."""
        for row in self.db.execute(
                "SELECT c.lookup, c.id, c.kind, c.person_id, c.assurance, c.status, c.valid_from, "
                "c.valid_until, p.role, coalesce(p.schedule, r.schedule), c.duress, c.max_uses, "
                "c.card, c.card_sealed "
                "FROM credentials c JOIN people p ON p.id = c.person_id "
                "LEFT JOIN role_schedules r ON r.role = p.role "
                "WHERE c.person_id IN (SELECT person_id FROM grants WHERE group_id = ?) "
                "OR c.id IN (SELECT credential_id FROM credential_grants WHERE group_id = ?)",
                [group_id, group_id]):
            yield row[0], self._door_row(row[1:])

    def _door_row(self, r) -> dict:
        cid, kind, pid, assurance, status, vf, vu, role, schedule, duress, max_uses, card, \
            card_sealed = r
        row = {"id": cid, "kind": kind, "holder": pid, "assurance": assurance,
               "status": status, "from": vf, "until": vu, "role": role}
        if card:  # the card's door keys, for the door's sealed row only
            row["card"] = card
            row["card_keys"] = self._data.open(f"card:{cid}".encode(), bytes(card_sealed))["keys"]
        if schedule:
            row["schedule"] = schedule
        if duress:
            row["duress"] = True
        if max_uses:
            row["uses"] = max_uses
        return row

    def door_row(self, credential_id: str) -> dict:
        """The row a door would get for this credential (for `explain`)."""
        r = self.db.execute(
            "SELECT c.id, c.kind, c.person_id, c.assurance, c.status, c.valid_from, "
            "c.valid_until, p.role, coalesce(p.schedule, rs.schedule), c.duress, c.max_uses, "
            "c.card, c.card_sealed "
            "FROM credentials c "
            "JOIN people p ON p.id = c.person_id LEFT JOIN role_schedules rs ON rs.role = p.role "
            "WHERE c.id = ?", [credential_id]).fetchone()
        if r is None:
            raise NotFoundError(f"no credential {credential_id!r}")
        return self._door_row(r)

    def groups_of_credential(self, credential_id: str) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT group_id FROM grants g JOIN credentials c ON c.person_id = g.person_id "
            "WHERE c.id = ? UNION SELECT group_id FROM credential_grants WHERE credential_id = ?",
            [credential_id, credential_id])}
