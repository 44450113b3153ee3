"""Signed QR passes at the office: issue (sign, and the QR image), revoke, list.

A pass is signed with the site's Ed25519 key (core/passes.py has the format) and
is good at the doors of one group, in its window, for a number of entries at
each door. The site database keeps what was issued and by whom, never the pass
text (whoever holds the text holds the pass). A revoked pass's id goes into its
group's next bundles until its window has passed; publish after revoking.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core import passes
from ..errors import CredentialFormatError, NotFoundError, StoreError
from .db import NAME_MAX, SiteDB, _pass_owner, text as checked_text
from .personal import SITE

QR_FORMATS = (".png", ".svg", ".txt")


def issue(site: SiteDB, *, group: str, role: str, label: str, valid_from: float,
          valid_until: float, uses: int, by: str | None = None) -> tuple[passes.Pass, str]:
    """Sign a new pass; returns it and its text (what the QR code holds). by: who
    issued it (default: the site's actor)."""
    site.group_key(group)  # the group exists (NotFoundError otherwise)
    label = checked_text("the pass's label", label, NAME_MAX, required=True)
    if valid_until <= time.time():
        raise CredentialFormatError("the pass would already have ended: give a --until in "
                                    "the future")
    p = passes.new_pass(site=site.site_id, group=group, role=role, label=label,
                        valid_from=int(valid_from), valid_until=int(valid_until), uses=uses)
    text = passes.sign(p, site.keys.signing)
    by = by or site.actor
    owner = _pass_owner(by)
    with site.db.atomic():
        site.db.insert("passes", {"id": p.pass_id, "group_id": group, "role": role,
                                  "label": "", "valid_from": p.valid_from,
                                  "label_sealed": site.personal.seal(owner, f"pass:{p.pass_id}",
                                                                     label),
                                  "valid_until": p.valid_until, "uses": uses,
                                  "issued": time.time(), "issued_by": by})
    site.audit("pass.issue", f"pass {p.pass_id} ({role}) at group {group}",
               person=None if owner == SITE else owner, note=label)
    return p, text


def revoke(site: SiteDB, pass_id: str) -> dict:
    pass_id = pass_id.strip().lower().removeprefix("pass-")
    with site.db.atomic():
        done = site.db.execute("UPDATE passes SET revoked = ?, revoked_by = ? "
                               "WHERE id = ? AND revoked IS NULL",
                               [time.time(), site.actor, pass_id]).rowcount
    if not done:
        row = site.db.execute("SELECT revoked_by FROM passes WHERE id = ?",
                              [pass_id]).fetchone()
        if row is None:
            raise NotFoundError(f"no pass {pass_id!r} (see 'accessctl pass list --all')")
        raise StoreError(f"pass {pass_id} was already revoked by {row[0]}")
    site.audit("pass.revoke", f"pass {pass_id}")
    return dict(_rows(site, "WHERE id = ?", [pass_id])[0])


_COLS = ("id", "group_id", "role", "label", "valid_from", "valid_until", "uses", "issued",
         "issued_by", "revoked", "revoked_by")


def label(site: SiteDB, pass_id: str, sealed, issued_by: str, *, fresh: bool = True) -> str:
    """A pass's label, opened ("(erased)" once the resident who issued it is forgotten)."""
    got = site.personal.open(_pass_owner(issued_by), f"pass:{pass_id}", sealed, fresh=fresh)
    return "(erased)" if got is None else got


def _rows(site: SiteDB, where: str, args) -> list[dict]:
    cols = ", ".join("label_sealed" if c == "label" else c for c in _COLS)
    sql = f"SELECT {cols} FROM passes {where} ORDER BY issued DESC, id"
    out = [dict(zip(_COLS, r)) for r in site.db.execute(sql, args)]
    site.personal.open_many({_pass_owner(r["issued_by"]) for r in out})
    for r in out:
        r["label"] = label(site, r["id"], r["label"], r["issued_by"], fresh=False)
    return out


def get(site: SiteDB, pass_id: str) -> dict | None:
    """One pass by its id (with or without 'pass-'), or None."""
    rows = _rows(site, "WHERE id = ?", [pass_id.strip().lower().removeprefix("pass-")])
    return rows[0] if rows else None


def issued_by(site: SiteDB, who: str) -> list[dict]:
    """The passes one actor issued (e.g. 'resident:p1a2b3c4'), newest first."""
    return _rows(site, "WHERE issued_by = ?", [who])


def listing(site: SiteDB, *, all_passes: bool = False, now: float | None = None) -> list[dict]:
    """Passes still running (or all of them), newest first."""
    if all_passes:
        return _rows(site, "", [])
    return _rows(site, "WHERE valid_until > ? AND revoked IS NULL",
                 [time.time() if now is None else now])


def revoked_ids(site: SiteDB, group: str, now: float) -> list[str]:
    """The ids a group's bundle must refuse: revoked passes not yet run out."""
    return [r[0] for r in site.db.execute(
        "SELECT id FROM passes WHERE group_id = ? AND revoked IS NOT NULL AND valid_until > ? "
        "ORDER BY id", [group, now])]


def write_qr(text: str, path: Path, *, scale: int = 6) -> None:
    """The pass as a QR image (PNG or SVG, by the file's name) or as its text (.txt)."""
    import segno
    suffix = path.suffix.lower()
    if suffix not in QR_FORMATS:
        raise CredentialFormatError(f"{path}: write the pass as {', '.join(QR_FORMATS)}")
    if suffix == ".txt":
        path.write_text(text + "\n")
        return
    segno.make(text, error="m", micro=False).save(str(path), scale=scale, border=4)


# ---- passes residents issue themselves (the resident page) ---------------------------
RESIDENT_LIMITS = {"resident_pass_per_month": 5, "resident_pass_hours": 24,
                   "resident_pass_entries": 3}
RESIDENT_ROLES = ("visitor", "courier")


def resident_limits(site: SiteDB) -> dict[str, int]:
    """What a resident may issue: passes in any 30 days, hours a pass may last, entries
    at each door. The office sets them (site meta); these are the defaults."""
    out = {}
    for key, default in RESIDENT_LIMITS.items():
        try:
            out[key] = int(site.meta(key) or default)
        except ValueError:
            out[key] = default
    return out


def resident_issued(site: SiteDB, person_id: str, now: float) -> int:
    return site.db.execute("SELECT count(*) FROM passes WHERE issued_by = ? AND issued > ?",
                           [f"resident:{person_id}", now - 30 * 86400]).fetchone()[0]


def resident_issue(site: SiteDB, person_id: str, *, group: str, role: str, label: str,
                   hours: float, entries: int, now: float | None = None
                   ) -> tuple[passes.Pass, str]:
    """A resident's pass for their visitor or courier: only for a door group the
    resident holds, within the office's limits (CredentialFormatError says which)."""
    now = time.time() if now is None else now
    lim = resident_limits(site)
    if group not in site.grants(person_id):
        raise CredentialFormatError("you can only issue passes for your own building")
    if role not in RESIDENT_ROLES:
        raise CredentialFormatError(f"a pass is for a {' or a '.join(RESIDENT_ROLES)}")
    if not 0 < hours <= lim["resident_pass_hours"]:
        raise CredentialFormatError(f"a pass lasts at most {lim['resident_pass_hours']} hours")
    if not 1 <= entries <= lim["resident_pass_entries"]:
        raise CredentialFormatError(f"a pass allows 1 to {lim['resident_pass_entries']} "
                                    "entries")
    with site.db.atomic():
        if resident_issued(site, person_id, now) >= lim["resident_pass_per_month"]:
            raise CredentialFormatError(f"you have issued {lim['resident_pass_per_month']} "
                                        "passes in the last 30 days, the most allowed")
        return issue(site, group=group, role=role, label=label, valid_from=now,
                     valid_until=now + hours * 3600, uses=entries,
                     by=f"resident:{person_id}")


def qr_svg(text: str, *, scale: int = 6) -> str:
    """The pass as an SVG QR code (for a page or for printing)."""
    import segno
    return segno.make(text, error="m", micro=False).svg_inline(scale=scale, border=4)
