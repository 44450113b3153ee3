"""Who may use the office console, and how they sign in: staff accounts, sessions,
residents' one-time codes, and throttling of failed sign-ins.

Staff accounts (admin, staff, auditor) have a password hashed with argon2id
(argon2-cffi); the site database keeps only the hash. A sign-in opens a session:
the browser holds a random token in a cookie, the database only its SHA-256, with
a CSRF token and the time it was last used (a session idle for IDLE_SECONDS, or
older than MAX_SECONDS, is over). Residents have no password: staff print a
one-time code (good for CODE_DAYS, used once) that opens a resident session.

Failed sign-ins are counted per account and per client address: after
MAX_FAILURES within LOCK_SECONDS the key is locked for LOCK_SECONDS, whatever
password comes next (so a guesser gets a handful of tries per quarter hour).
Every sign-in, sign-out, lockout and account change goes into the audit trail.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from ..errors import AccessdError, NotFoundError, StoreError
from .db import SiteDB, check_id

STAFF_ROLES = ("admin", "staff", "auditor")
IDLE_SECONDS = 30 * 60          # a session unused this long is over
MAX_SECONDS = 12 * 3600         # and none lasts longer than a working day
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
CODE_DAYS = 14
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"   # no 0/O, 1/I/L: read off paper


class LoginRefused(AccessdError, PermissionError):
    """A sign-in was refused: wrong name or password, a used or expired code, a lock."""


@dataclass(frozen=True)
class Actor:
    """Who a request comes from: kind 'staff' (role admin|staff|auditor) or
    'resident' (role 'resident', subject the person's id); None when signed out."""
    kind: str
    subject: str
    role: str
    csrf: str = ""
    token_hash: str = ""

    @property
    def label(self) -> str:
        """How the audit trail names them."""
        return f"web:{self.subject}" if self.kind == "staff" else f"resident:{self.subject}"


def _hasher():
    from argon2 import PasswordHasher
    return PasswordHasher()   # argon2id, the library's RFC 9106 low-memory profile


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StoreError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


# ---- accounts -----------------------------------------------------------------------
def add(site: SiteDB, name: str, role: str, password: str) -> None:
    check_id("staff", name)
    if role not in STAFF_ROLES:
        raise StoreError(f"role {role!r} must be one of {', '.join(STAFF_ROLES)}")
    pw_hash = _hasher().hash(_check_password(password))
    with site.db.atomic():
        if site.db.execute("SELECT 1 FROM staff WHERE name = ?", [name]).fetchone():
            raise StoreError(f"staff account {name!r} exists already")
        site.db.insert("staff", {"name": name, "role": role, "pw_hash": pw_hash,
                                 "created": time.time(), "disabled": None})
    site.audit("staff.add", f"staff account {name} ({role})")


def set_password(site: SiteDB, name: str, password: str) -> None:
    pw_hash = _hasher().hash(_check_password(password))
    with site.db.atomic():
        if not site.db.execute("UPDATE staff SET pw_hash = ? WHERE name = ?",
                               [pw_hash, name]).rowcount:
            raise NotFoundError(f"no staff account {name!r}")
        site.db.execute("DELETE FROM web_sessions WHERE kind = 'staff' AND subject = ?", [name])
    site.audit("staff.password", f"staff account {name}: new password (sessions ended)")


def set_role(site: SiteDB, name: str, role: str) -> None:
    if role not in STAFF_ROLES:
        raise StoreError(f"role {role!r} must be one of {', '.join(STAFF_ROLES)}")
    with site.db.atomic():
        if not site.db.execute("UPDATE staff SET role = ? WHERE name = ?", [role, name]).rowcount:
            raise NotFoundError(f"no staff account {name!r}")
    site.audit("staff.role", f"staff account {name} is now {role}")


def remove(site: SiteDB, name: str) -> None:
    with site.db.atomic():
        if not site.db.execute("DELETE FROM staff WHERE name = ?", [name]).rowcount:
            raise NotFoundError(f"no staff account {name!r}")
        site.db.execute("DELETE FROM web_sessions WHERE kind = 'staff' AND subject = ?", [name])
    site.audit("staff.remove", f"staff account {name}")


def listing(site: SiteDB) -> list[dict]:
    return [{"name": r[0], "role": r[1], "created": r[2]}
            for r in site.db.execute("SELECT name, role, created FROM staff ORDER BY name")]


# ---- throttling ---------------------------------------------------------------------
def _locked(site: SiteDB, keys: list[str], now: float) -> float | None:
    for key in keys:
        row = site.db.execute("SELECT locked_until FROM login_failures WHERE key = ?",
                              [key]).fetchone()
        if row and row[0] and row[0] > now:
            return row[0]
    return None


def _failed(site: SiteDB, keys: list[str], now: float) -> None:
    with site.db.atomic():
        for key in keys:
            row = site.db.execute("SELECT count, first FROM login_failures WHERE key = ?",
                                  [key]).fetchone()
            if row is None or now - row[1] > LOCK_SECONDS:
                count, first = 1, now
            else:
                count, first = row[0] + 1, row[1]
            locked = now + LOCK_SECONDS if count >= MAX_FAILURES else None
            site.db.upsert("login_failures", {"key": key, "count": count, "first": first,
                                              "locked_until": locked}, pk="key")
            if locked:
                site.audit("login.locked", f"{key}: {count} failed sign-ins; locked for "
                                           f"{LOCK_SECONDS // 60} minutes")


def _cleared(site: SiteDB, key: str) -> None:
    with site.db.atomic():
        site.db.execute("DELETE FROM login_failures WHERE key = ?", [key])


def _open_session(site: SiteDB, kind: str, subject: str, now: float, terminal: str) -> str:
    token = secrets.token_urlsafe(32)
    with site.db.atomic():
        site.db.execute("DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                        [now - IDLE_SECONDS, now - MAX_SECONDS])
        site.db.insert("web_sessions", {"token_hash": _sha(token), "kind": kind,
                                        "subject": subject, "csrf": secrets.token_urlsafe(24),
                                        "created": now, "last_seen": now,
                                        "terminal": terminal[:64]})
    return token


# ---- signing in ---------------------------------------------------------------------
def login(site: SiteDB, name: str, password: str, *, now: float | None = None,
          terminal: str = "") -> str:
    """A new session's token for a staff member, or LoginRefused (the same words for
    a wrong name and a wrong password)."""
    now = time.time() if now is None else now
    name = str(name)[:64]
    keys = [f"staff:{name}"] + ([f"addr:{terminal}"] if terminal else [])
    if _locked(site, keys, now):
        raise LoginRefused("too many failed sign-ins: try again in a quarter of an hour, "
                           "or ask an administrator")
    row = site.db.execute("SELECT pw_hash, role FROM staff WHERE name = ? AND disabled IS NULL",
                          [name]).fetchone()
    ok = False
    hasher = _hasher()
    if row is not None and isinstance(password, str) and len(password) <= MAX_PASSWORD:
        from argon2.exceptions import VerificationError, InvalidHashError
        try:
            ok = hasher.verify(row[0], password)
        except (VerificationError, InvalidHashError):
            ok = False
    if not ok:
        _failed(site, keys, now)
        site.audit("login.failed", f"staff sign-in from {terminal or '?'}",
                   note=f"as {name!r}")
        raise LoginRefused("wrong name or password")
    _cleared(site, f"staff:{name}")
    if hasher.check_needs_rehash(row[0]):
        with site.db.atomic():
            site.db.execute("UPDATE staff SET pw_hash = ? WHERE name = ?",
                            [hasher.hash(password), name])
    token = _open_session(site, "staff", name, now, terminal)
    site.actor = f"web:{name}"
    site.audit("login", f"staff {name} signed in from {terminal or '?'}")
    return token


def resident_code(site: SiteDB, person_id: str, *, now: float | None = None,
                  days: float = CODE_DAYS) -> str:
    """A one-time sign-in code for a resident, to print for them (shown once; only its
    hash is kept). An earlier unused code of theirs stops working."""
    now = time.time() if now is None else now
    person = site.person(person_id)
    if person.forgotten:
        raise StoreError(f"person {person.id} was erased: no sign-in code")
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    with site.db.atomic():
        site.db.execute("UPDATE resident_codes SET used = ? WHERE person_id = ? AND used IS NULL",
                        [now, person.id])
        site.db.insert("resident_codes", {"code_hash": _sha(raw), "person_id": person.id,
                                          "issued": now, "expires": now + days * 86400,
                                          "used": None, "issued_by": site.actor})
    site.audit("resident.code", f"a sign-in code for person {person.id} ({person.unit})",
               person=person.id)
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _norm_code(code: str) -> str:
    return "".join(c for c in str(code).upper()[:64] if c.isalnum())


def resident_login(site: SiteDB, code: str, *, now: float | None = None,
                   terminal: str = "") -> str:
    now = time.time() if now is None else now
    keys = [f"addr:{terminal}"] if terminal else []
    if _locked(site, keys, now):
        raise LoginRefused("too many wrong codes: try again in a quarter of an hour")
    h = _sha(_norm_code(code))
    with site.db.atomic():
        row = site.db.execute("SELECT person_id FROM resident_codes WHERE code_hash = ? AND "
                              "used IS NULL AND expires > ?", [h, now]).fetchone()
        if row is not None:
            site.db.execute("UPDATE resident_codes SET used = ? WHERE code_hash = ?", [now, h])
    if row is None:
        if keys:
            _failed(site, keys, now)
        site.audit("login.failed", f"resident sign-in with a wrong or used code from "
                                   f"{terminal or '?'}")
        raise LoginRefused("this code is wrong, used or expired: ask the office for a new one")
    token = _open_session(site, "resident", row[0], now, terminal)
    site.actor = f"resident:{row[0]}"
    site.audit("login", f"resident {row[0]} signed in with a code")
    return token


def session(site: SiteDB, token: str | None, *, now: float | None = None) -> Actor | None:
    """The actor of a session cookie (and its idle clock restarted), or None."""
    if not token or len(token) > 200:
        return None
    now = time.time() if now is None else now
    h = _sha(token)
    row = site.db.execute("SELECT kind, subject, csrf, created, last_seen FROM web_sessions "
                          "WHERE token_hash = ?", [h]).fetchone()
    if row is None or now - row[4] > IDLE_SECONDS or now - row[3] > MAX_SECONDS:
        return None
    kind, subject, csrf = row[0], row[1], row[2]
    if kind == "staff":
        r = site.db.execute("SELECT role FROM staff WHERE name = ? AND disabled IS NULL",
                            [subject]).fetchone()
        if r is None:
            return None
        role = r[0]
    else:
        try:
            site.person(subject)
        except NotFoundError:
            return None
        role = "resident"
    if now - row[4] > 30:   # one write a half-minute at most, not one a request
        with site.db.atomic():
            site.db.execute("UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", [now, h])
    return Actor(kind, subject, role, csrf, h)


def logout(site: SiteDB, actor: Actor) -> None:
    with site.db.atomic():
        site.db.execute("DELETE FROM web_sessions WHERE token_hash = ?", [actor.token_hash])
    site.audit("logout", f"{actor.label} signed out")

