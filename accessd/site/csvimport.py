"""Import residents from a CSV file: every row is checked before anything is written.

Columns (header row required; order free; extra columns refused):

  name, unit, role, phone, kind, uid, groups, valid_from, valid_until

- role: resident, courier, visitor, staff, contractor
- kind/uid: nfc (hex UID) or fob (number); both empty for a person without a card.
  PINs are never imported from a file: residents type them at enrolment.
- groups: door groups separated by ';'
- valid_from/valid_until: 2026-12-31 or 2026-12-31T18:00 in the site's time zone,
  optional; a date alone starts at the beginning of that day and ends at its end
  (valid_until 2026-12-31 works through the 31st). An end already past is imported
  with a warning: that credential opens no door.

Re-running the same file changes nothing: people are matched by unit and name,
credentials by value. With errors, nothing is imported unless skip_bad is set,
and every error comes with its line number.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field

from ..core import when
from ..core.credentials import normalize
from ..core.text import check_text
from ..errors import AccessdError, CredentialFormatError, StoreError
from .db import NAME_MAX, PHONE_MAX, ROLES, UNIT_MAX, SiteDB

COLUMNS = ("name", "unit", "role", "phone", "kind", "uid", "groups", "valid_from", "valid_until")
REQUIRED = ("name", "unit", "role")


@dataclass
class Row:
    line: int
    name: str
    unit: str
    role: str
    phone: str | None
    kind: str | None
    value: str | None
    groups: list[str]
    valid_from: float | None
    valid_until: float | None


@dataclass
class ImportReport:
    rows: int = 0
    people_added: int = 0
    credentials_added: int = 0
    grants_added: int = 0
    unchanged: int = 0
    imported: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)


def parse(text: str, site: SiteDB, *, now: float | None = None,
          warnings: list | None = None) -> tuple[list[Row], list[tuple[int, str]]]:
    """Check every row; return the good rows and (line, message) for each bad one.
    (line, message) for rows that are good but probably not meant (an end in the
    past) go to `warnings`."""
    now = time.time() if now is None else now
    tz = site.timezone
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    if missing or extra:
        msg = "; ".join(filter(None, [f"missing column(s) {', '.join(missing)}" if missing else "",
                                      f"unknown column(s) {', '.join(extra)}" if extra else ""]))
        return [], [(1, f"header: {msg} (columns: {', '.join(COLUMNS)})")]
    groups = {g["id"] for g in site.groups()}
    rows, errors = [], []
    seen: dict[tuple[str, str], int] = {}
    try:
        records = list(enumerate(reader, start=2))
    except csv.Error as exc:  # the reader counts the failing line only once it is parsed
        return [], [(reader.line_num + 1, f"not readable as CSV: {exc}")]
    for i, raw in records:
        if None in raw:
            errors.append((i, f"more fields than the header has ({len(header)})"))
            continue
        get = lambda k: (raw.get(k) or "").strip()  # noqa: E731
        problems = []
        name, unit, role = get("name"), get("unit"), get("role")
        if not name:
            problems.append("name is empty")
        for col, value, most in (("name", name, NAME_MAX), ("unit", unit, UNIT_MAX),
                                 ("phone", get("phone"), PHONE_MAX)):
            try:
                check_text(col, value, most)
            except ValueError as exc:
                problems.append(str(exc))
        if role not in ROLES:
            problems.append(f"role {role!r} is not one of {', '.join(ROLES)}")
        kind, value = get("kind") or None, get("uid") or None
        if kind == "pin":
            problems.append("PINs are not imported from files (residents type them)")
        elif kind or value:
            if kind is None:
                problems.append("kind is empty: give nfc or fob for the uid")
            elif kind not in ("nfc", "fob"):
                problems.append(f"kind {kind!r} must be nfc or fob")
            elif not value:
                problems.append(f"kind {kind} needs a uid")
            else:
                try:
                    value = normalize(kind, value)
                except CredentialFormatError as exc:
                    problems.append(f"uid: {exc}")
        gl = [g.strip() for g in get("groups").split(";") if g.strip()]
        for g in gl:
            if g not in groups:
                problems.append(f"unknown door group {g!r}")
        vf = vu = None
        for col in ("valid_from", "valid_until"):
            text_ = get(col)
            if text_:
                if when.is_relative(text_):
                    problems.append(f"{col} {text_!r} is not a date (2026-12-31 or "
                                    "2026-12-31T18:00)")
                    continue
                try:
                    t = when.parse(text_, tz, end=col == "valid_until", now=now)
                except ValueError as exc:
                    problems.append(f"{col} {text_!r}: dates are {when.RANGE_WORDS}"
                                    if "dates are" in str(exc) else
                                    f"{col} {text_!r} is not a date (2026-12-31 or "
                                    "2026-12-31T18:00)")
                    continue
                vf, vu = (t, vu) if col == "valid_from" else (vf, t)
        if vf is not None and vu is not None and vu <= vf:
            problems.append("valid_until is not after valid_from")
        if kind and value and not problems:
            keys = [(kind, form) for form in site.unique_forms(kind, value)]
            clash = next((seen[k] for k in keys if k in seen), None)
            if clash is not None:
                problems.append(f"the same {kind} is on line {clash} too"
                                if (kind, value) in seen else
                                f"a reader on this site could not tell this {kind} from "
                                f"the one on line {clash}")
            else:
                seen.update((k, i) for k in keys)
                holder = site.credential_holder(kind, value)
                if holder is not None and holder != site.find_person(unit, name):
                    problems.append(f"that {kind} is already enrolled to "
                                    f"{site.label(site.person(holder))}")
                elif holder is None:
                    try:
                        site.credential_check(kind, value)
                    except StoreError as exc:
                        problems.append(str(exc))
        if problems:
            errors.append((i, "; ".join(problems)))
        else:
            rows.append(Row(i, name, unit, role, get("phone") or None, kind, value, gl, vf, vu))
            if vu is not None and vu <= now and warnings is not None:
                warnings.append((i, f"valid_until {get('valid_until')} is in the past (ended "
                                    f"{when.fmt(vu, tz, end=True)} {tz}): this credential "
                                    "opens no door"))
    return rows, errors


def decode(data: bytes, name: str) -> str:
    """The file's text (UTF-8, with or without a BOM), or a clear error naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AccessdCSVError(f"{name}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
                              "save the file as UTF-8") from None


class AccessdCSVError(AccessdError, ValueError):
    """A CSV file cannot be read at all."""


def import_csv(site: SiteDB, text: str, *, skip_bad: bool = False, progress=None,
               now: float | None = None) -> ImportReport:
    warnings: list[tuple[int, str]] = []
    rep = ImportReport()
    try:
        # one transaction for the checks and the rows: no other terminal enrols between
        with site.db.atomic():
            rows, errors = parse(text, site, now=now, warnings=warnings)
            rep = ImportReport(rows=len(rows) + len(errors), errors=errors, warnings=warnings)
            if errors and (not skip_bad or not rows):   # (every row bad: nothing imported)
                return rep
            for row in rows:
                pid = site.find_person(row.unit, row.name)
                changed = False
                had = set()
                if pid is None:
                    pid = site.person_add(row.name, row.unit, row.role, row.phone)
                    rep.people_added += 1
                    changed = True
                else:
                    had = set(site.grants(pid))
                if row.kind and site.credential_holder(row.kind, row.value) is None:
                    site.credential_add(pid, row.kind, row.value, valid_from=row.valid_from,
                                        valid_until=row.valid_until)
                    rep.credentials_added += 1
                    changed = True
                for g in row.groups:
                    if g not in had:
                        site.grant(pid, g)
                        rep.grants_added += 1
                        changed = True
                rep.unchanged += not changed
                if progress:
                    progress()
    except AccessdError as exc:  # nothing is kept: the transaction rolls back
        rep.errors.append((0, f"import stopped, nothing imported: {exc}"))
        rep.people_added = rep.credentials_added = rep.grants_added = rep.unchanged = 0
        return rep
    rep.imported = True
    return rep


def export_csv(site: SiteDB) -> str:
    """People, their credentials (as fingerprints, never values) and groups."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["person", "name", "unit", "role", "phone", "credential", "kind", "fingerprint",
                "status", "valid_from", "valid_until", "groups"])
    for p in site.people():
        creds = site.credentials(p.id) or [None]
        groups = ";".join(site.grants(p.id))
        for c in creds:
            w.writerow([p.id, p.name, p.unit, p.role, p.phone or ""] +
                       ([c["id"], c["kind"], c["fingerprint"], c["status"],
                         c["valid_from"] or "", c["valid_until"] or ""] if c else [""] * 6) +
                       [groups])
    return out.getvalue()
