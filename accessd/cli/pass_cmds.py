"""Office commands for signed QR passes (visitors, couriers, contractors):
`accessctl pass issue|revoke|list`. Each parses, calls accessd.site.passes, prints."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.table import Table

from ..core.credentials import TEMPORARY_ROLES
from ..core.passes import MAX_USES
from ..site import passes as site_passes
from .common import SafePath, console, fmt_time, json_opt, out, parse_when, site_of


def register(main) -> None:
    @main.group("pass")
    def pass_group() -> None:
        """Signed QR passes for visitors and couriers, checked offline at the door.

        \b
        Example:
          accessctl --site /srv/accessd-site pass issue --group bldg-a \\
              --for "DHL courier" --role courier --until 18h --out courier.png
        """

    @pass_group.command("issue")
    @click.option("--group", "group", required=True, help="The door group it opens.")
    @click.option("--for", "label", required=True,
                  help="Who it is for, as the door's log will name it (at most 40 bytes).")
    @click.option("--role", type=click.Choice(TEMPORARY_ROLES), default="visitor",
                  show_default=True, help="Who they are (the door's temporary-pass rules).")
    @click.option("--from", "valid_from", default=None,
                  help="Start: 2026-12-24T09:00 (site time zone), a date, or 2h (from now). "
                       "Default: now.")
    @click.option("--until", "valid_until", required=True,
                  help="End: 2026-12-24T18:00, a date (its end), or 8h (from now).")
    @click.option("--entries", "uses", type=click.IntRange(1, MAX_USES), default=1,
                  show_default=True, help="Entries allowed at each door of the group.")
    @click.option("--out", "out_path", type=SafePath(dir_okay=False, path_type=Path),
                  help="Write the pass: .png or .svg (a QR code to print or send), .txt "
                       "(its text).")
    @click.option("--show/--no-show", default=True, show_default=True,
                  help="Print the QR code on the terminal.")
    @json_opt
    @click.pass_obj
    def pass_issue(obj, group, label, role, valid_from, valid_until, uses, out_path, show,
                   as_json):
        """Issue a signed pass: the office's Ed25519 signature, one door group, a time
        window and a number of entries at each door. The pass text is printed once and
        not kept at the office: send the QR code to the visitor.

        \b
        Examples:
          accessctl --site /srv/accessd-site pass issue --group bldg-a --for "Ana (plumber)" \\
              --role contractor --from 2026-12-01T08:00 --until 2026-12-01T17:00 --entries 4 \\
              --out ana.png
          accessctl --site /srv/accessd-site pass issue --group bldg-a --for "DHL" \\
              --role courier --until 8h --out dhl.svg
        """
        site = site_of(obj)
        tz, now = site.timezone, time.time()
        vf = parse_when(valid_from, tz=tz, now=now, param="--from") if valid_from else now
        vu = parse_when(valid_until, tz=tz, end=True, now=now, param="--until")
        if vu <= vf:
            raise click.BadParameter("must be after --from", param_hint="--until")
        if out_path is not None and out_path.suffix.lower() not in site_passes.QR_FORMATS:
            raise click.BadParameter(f"{out_path}: must end in "
                                     + ", ".join(site_passes.QR_FORMATS), param_hint="--out")
        p, text = site_passes.issue(site, group=group, role=role, label=label,
                                    valid_from=vf, valid_until=vu, uses=uses)
        if out_path is not None:
            try:
                site_passes.write_qr(text, out_path)
            except OSError as exc:
                raise click.BadParameter(f"cannot write {out_path}: {exc.strerror}",
                                         param_hint="--out")
        doc = {"pass": p.credential_id, "group": group, "for": label, "role": role,
               "from": p.valid_from, "until": p.valid_until, "entries": uses, "text": text,
               **({"file": str(out_path)} if out_path else {})}

        def human():
            if show and not out_path:
                import segno
                segno.make(text, error="m", micro=False).terminal(compact=True)
            click.echo(f"{p.credential_id} for {label} ({role}) at group {group}: "
                       f"{fmt_time(p.valid_from, tz)} to {fmt_time(p.valid_until, tz)}, "
                       f"{uses} entr{'y' if uses == 1 else 'ies'} at each door")
            if out_path:
                click.echo(f"QR code written to {out_path}")
            click.echo(f"text: {text}")
        out(as_json, doc, human)

    @pass_group.command("revoke")
    @click.argument("pass_id")
    @json_opt
    @click.pass_obj
    def pass_revoke(obj, pass_id, as_json):
        """Revoke a pass before it ends; doors refuse it once they have the next
        bundle (run 'accessctl publish').

        \b
        Example:
          accessctl --site /srv/accessd-site pass revoke pass-3f2a9c0d1e4b5a67
        """
        site = site_of(obj)
        row = site_passes.revoke(site, pass_id)
        out(as_json, row, lambda: click.echo(
            f"pass-{row['id']} ({row['label']}) revoked; publish to send it to the doors"))

    @pass_group.command("list")
    @click.option("--all", "all_passes", is_flag=True,
                  help="Also passes that ended or were revoked.")
    @json_opt
    @click.pass_obj
    def pass_list(obj, all_passes, as_json):
        """Passes still running (or all of them), newest first.

        \b
        Example:
          accessctl --site /srv/accessd-site pass list --all
        """
        site = site_of(obj)
        rows = site_passes.listing(site, all_passes=all_passes)
        tz = site.timezone

        def human():
            t = Table("pass", "for", "role", "group", "from", "until", "entries", "state")
            now = time.time()
            for r in rows:
                state = ("revoked by " + r["revoked_by"] if r["revoked"]
                         else "ended" if r["valid_until"] <= now else "running")
                t.add_row(f"pass-{r['id']}", r["label"], r["role"], r["group_id"],
                          fmt_time(r["valid_from"], tz), fmt_time(r["valid_until"], tz),
                          str(r["uses"]), state)
            console.print(t)
        out(as_json, rows, human)
