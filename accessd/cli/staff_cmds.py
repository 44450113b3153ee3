"""Office commands of `accessctl` for the console: staff accounts (`staff add`, list,
role, password, remove), a resident's one-time sign-in code (`person code`), and
`web`, which serves the office console."""

from __future__ import annotations

import sys

import click

from ..site import staff
from .common import fail, json_opt, out, site_of


def _password(password_stdin: bool) -> str:
    if password_stdin:
        pw = sys.stdin.readline().rstrip("\n")
        if not pw:
            raise click.BadParameter("no password on standard input", param_hint="--password-stdin")
        return pw
    if not sys.stdin.isatty():
        raise click.UsageError("no terminal to type the password at: pipe it in with "
                               "--password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("staff")
def staff_group() -> None:
    """Staff accounts of the office console (accessctl web): admin, staff, auditor.

    \b
    Example:
      accessctl --site /srv/accessd-site staff add alice --role admin
    """


@staff_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(staff.STAFF_ROLES), required=True,
              help="admin: everything; staff: people, passes, publish, alarms; auditor: read.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def staff_add(obj, name, role, password_stdin):
    """Add a staff account (the password is asked twice, 10 characters or more, and
    kept only as an argon2id hash).

    \b
    Examples:
      accessctl --site /srv/accessd-site staff add alice --role admin
      printf 'correct horse battery\\n' | accessctl --site /srv/site staff add bo \\
          --role staff --password-stdin
    """
    site = site_of(obj)
    staff.add(site, name, role, _password(password_stdin))
    click.echo(f"staff account {name} ({role}) added")


@staff_group.command("list")
@json_opt
@click.pass_obj
def staff_list(obj, as_json):
    """List the staff accounts.

    \b
    Example:
      accessctl --site /srv/accessd-site staff list
    """
    rows = staff.listing(site_of(obj))
    out(as_json, rows, lambda: [click.echo(f"{r['name']}  {r['role']}") for r in rows]
        or click.echo("no staff accounts (accessctl staff add NAME --role admin)"))


@staff_group.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(staff.STAFF_ROLES))
@click.pass_obj
def staff_role(obj, name, role):
    """Change a staff member's role.

    \b
    Example:
      accessctl --site /srv/accessd-site staff role bo auditor
    """
    staff.set_role(site_of(obj), name, role)
    click.echo(f"{name} is now {role}")


@staff_group.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def staff_password(obj, name, password_stdin):
    """Set a new password (their open sessions end).

    \b
    Example:
      accessctl --site /srv/accessd-site staff password bo
    """
    staff.set_password(site_of(obj), name, _password(password_stdin))
    click.echo(f"new password for {name}")


@staff_group.command("remove")
@click.argument("name")
@click.pass_obj
def staff_remove(obj, name):
    """Remove a staff account (its sessions end).

    \b
    Example:
      accessctl --site /srv/accessd-site staff remove bo
    """
    staff.remove(site_of(obj), name)
    click.echo(f"staff account {name} removed")


@click.command("resident-code")
@click.argument("person_id")
@click.option("--days", type=click.IntRange(1, 90), default=staff.CODE_DAYS, show_default=True,
              help="Days the code is good for (it works once).")
@click.pass_obj
def resident_code(obj, person_id, days):
    """Print a one-time sign-in code for a resident's page (the console's /me/login).

    \b
    Example:
      accessctl --site /srv/accessd-site resident-code p1a2b3c4
    """
    site = site_of(obj)
    code = staff.resident_code(site, site.person_named(person_id), days=days)
    click.echo(code)


@click.command("web")
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="Address and port to serve on (put nginx with TLS in front for others).")
@click.option("--broker", "broker_url", help="The site's MQTT broker (default: the one "
                                             "'broker setup' recorded).")
@click.option("--no-live", is_flag=True, help="Do not follow the live channel.")
@click.option("--secure-cookies", is_flag=True,
              help="Mark cookies Secure (behind HTTPS: the nginx proxy or --certfile).")
@click.option("--nfc-reader", help="The office's NFC reader (an nfcpy path, e.g. usb): "
                                   "person pages offer 'read it on the office reader'.")
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True),
              help="Serve HTTPS with this certificate (PEM) ...")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True),
              help="... and this private key.")
@click.pass_obj
def web(obj, listen, broker_url, no_live, secure_cookies, nfc_reader, certfile, keyfile):
    """Serve the office console: staff sign in at /, residents at /me.

    \b
    Examples:
      accessctl --site /srv/accessd-site web --listen 127.0.0.1:8080
      accessctl --site /srv/accessd-site web --listen 0.0.0.0:8443 \\
          --certfile /etc/accessd/console.pem --keyfile /etc/accessd/console.key
    """
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or \
            not all(c.isalnum() or c in ".-:" for c in host):
        raise click.BadParameter(f"{listen!r}: give HOST:PORT, e.g. 127.0.0.1:8080",
                                 param_hint="--listen")
    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    try:
        import uvicorn

        from ..web.app import Console, create_app
    except ImportError as exc:
        fail(f"the console needs its extra: pip install 'accessd[web]' ({exc.name} is missing)")
    site_dir, database = obj.site_location()
    console = Console(site_dir, database, broker_url=broker_url, live=not no_live,
                      secure_cookies=secure_cookies or bool(certfile), nfc_reader=nfc_reader)
    click.echo(f"office console on http{'s' if certfile else ''}://{listen}/ "
               f"(site {console.site_id})", err=True)
    uvicorn.run(create_app(console), host=host, port=int(port), log_level="warning",
                ssl_certfile=certfile, ssl_keyfile=keyfile, proxy_headers=True,
                server_header=False)


COMMANDS = [staff_group, resident_code, web]
