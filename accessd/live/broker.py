"""The office's side of the MQTT broker: accounts, ACL and Mosquitto configuration.

One broker (Debian's `mosquitto` on the office machine) serves a site. Every door
has an account of its own, `door-<door>@<site>`, and the office one
`office@<site>`. Passwords are not stored anywhere: each is derived from the
site's data key (HMAC-SHA256 over the account name and a generation number), so
`accessctl broker setup` writes the same passwords every time it runs (adding a
door does not change the others') until `--rotate` moves to the next generation.
The broker gets only their PBKDF2-SHA512 hashes (Mosquitto's `$7$` format); each
door gets its own password in a 0600 file for its [mqtt] password_file.

The ACL lets a door publish only under accessd/<site>/<door>/ (events, alarms,
status, availability, cmd/ack) and its Home Assistant discovery topics, and read
only its own .../cmd; the office reads the whole site and writes only commands;
Home Assistant's account (homeassistant@<site>) only reads, but for its birth
message on homeassistant/status, which doors read to announce themselves again.
Mosquitto denies everything an ACL file does not grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..errors import BrokerError
from . import topics
from .homeassistant import BIRTH_TOPIC as HA_BIRTH, PREFIX as HA_PREFIX
from .homeassistant import node_id as ha_node
from ..site.db import SiteDB

PBKDF2_ITERATIONS = 101    # what mosquitto_passwd writes by default


def office_user(site_id: str) -> str:
    return f"office@{site_id}"


def ha_user(site_id: str) -> str:
    return f"homeassistant@{site_id}"


def door_user(site_id: str, door: str) -> str:
    return f"door-{door}@{site_id}"


def generation(site: SiteDB) -> int:
    return int(site.meta("mqtt_generation") or 1)


def password(site: SiteDB, user: str) -> str:
    """The account's password, derived (never stored): 32 characters, base64url."""
    mac = hmac.digest(site.keys.data, b"mqtt-password\x00%d\x00" % generation(site)
                      + user.encode(), "sha256")
    return base64.urlsafe_b64encode(mac[:24]).decode()


def mosquitto_hash(pw: str, salt: bytes | None = None) -> str:
    """Mosquitto 2's password-file hash: $7$iterations$salt$PBKDF2-HMAC-SHA512."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, PBKDF2_ITERATIONS)
    return (f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def acl(site_id: str, doors: list[str], *, home_assistant: bool = True) -> str:
    lines = [f"# accessd site {site_id}: who may publish and read what (Mosquitto acl_file)",
             "# written by 'accessctl broker setup'; anything not granted here is denied", "",
             f"user {office_user(site_id)}",
             f"topic read {topics.ROOT}/{site_id}/#",
             f"topic write {topics.ROOT}/{site_id}/+/cmd", ""]
    if home_assistant:   # Home Assistant reads; it never commands a door
        lines += [f"user {ha_user(site_id)}",
                  *(f"topic read {topics.ROOT}/{site_id}/+/{t}" for t in
                    ("events", "alarms", "status", "availability")),
                  f"topic read {HA_PREFIX}/#",
                  f"topic write {HA_BIRTH}", ""]   # its birth message: doors re-announce
    for door in doors:
        b = topics.base(site_id, door)
        lines += [f"user {door_user(site_id, door)}",
                  *(f"topic write {b}/{t}" for t in ("events", "alarms", "status",
                                                      "availability", "cmd/ack")),
                  f"topic read {b}/cmd"]
        if home_assistant:
            lines += [f"topic write {HA_PREFIX}/+/{ha_node(site_id, door)}/+/config",
                      f"topic read {HA_BIRTH}"]
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def mosquitto_conf(site_id: str, install_dir: Path, listener: Listener) -> str:
    lines = [f"# accessd site {site_id}: broker settings (put this file in "
             "/etc/mosquitto/conf.d/)",
             "# written by 'accessctl broker setup'",
             f"listener {listener.port} {listener.host}".rstrip(),
             "allow_anonymous false",
             "# an office terminal away for a day finds what the doors published meanwhile",
             "# (QoS 1, persistent session); beyond this the nightly upload fills the gap",
             "max_queued_messages 200000",
             "# a terminal not seen for this long loses its session (and what it queued)",
             "persistent_client_expiration 14d",
             "# alarms go out at once, not held back to fill a packet (Nagle)",
             "set_tcp_nodelay true",
             f"password_file {install_dir / 'passwd'}",
             f"acl_file {install_dir / 'acl'}"]
    if listener.tls:
        lines += [f"certfile {listener.cert_file}", f"keyfile {listener.key_file}",
                  "tls_version tlsv1.2"]
        if listener.ca_file:
            lines.append(f"cafile {listener.ca_file}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def check_url(url: str) -> str:
    try:
        u = urlparse(url)
        u.hostname
    except ValueError as exc:   # "Invalid IPv6 URL"
        raise BrokerError(f"broker URL {url!r}: {exc}") from None
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise BrokerError(f"broker URL {url!r}: must be mqtt://HOST[:PORT] or "
                          "mqtts://HOST[:PORT]")
    if u.username or u.password:
        raise BrokerError(f"broker URL {url!r}: no user or password in the URL (each door "
                          "gets its own account)")
    try:
        u.port
    except ValueError:
        raise BrokerError(f"broker URL {url!r}: the port is not a number 1-65535") from None
    return url


def setup(site: SiteDB, out: Path, *, url: str, install_dir: Path, listener: Listener,
          ca_file: Path | None = None, rotate: bool = False,
          home_assistant: bool = True) -> dict:
    """Write the broker's files (out/mosquitto/) and each door's (out/doors/<door>/), and
    remember the broker's URL for the office's own commands (watch, remote)."""
    check_url(url)
    if listener.tls and not listener.key_file:
        raise BrokerError("a TLS listener needs both --tls-cert and --tls-key")
    if urlparse(url).scheme == "mqtts" and not listener.tls:
        raise BrokerError(f"{url}: mqtts:// needs a TLS listener (--tls-cert, --tls-key)")
    site_id = site.site_id
    doors = [d["id"] for d in site.doors()]
    # one transaction around the settings and the files: a file that cannot be written
    # leaves the site as it was (a new generation is not kept without its files)
    with site.db.atomic():
        if rotate:
            site.meta_set("mqtt_generation", str(generation(site) + 1))
        site.meta_set("mqtt_url", url)
        site.meta_set("mqtt_ca_file", str(ca_file.resolve()) if ca_file else "")
        _write_files(site, out, site_id, doors, url=url, install_dir=install_dir,
                     listener=listener, ca_file=ca_file, rotate=rotate,
                     home_assistant=home_assistant)
    return {"doors": doors, "users": _users(site_id, doors, home_assistant),
            "generation": generation(site)}


def _users(site_id: str, doors: list[str], home_assistant: bool) -> list[str]:
    return ([office_user(site_id)] + ([ha_user(site_id)] if home_assistant else [])
            + [door_user(site_id, d) for d in doors])


def _write_files(site: SiteDB, out: Path, site_id: str, doors: list[str], *, url: str,
                 install_dir: Path, listener: Listener, ca_file: Path | None, rotate: bool,
                 home_assistant: bool) -> None:
    users = _users(site_id, doors, home_assistant)
    _write(out / "mosquitto" / "passwd",
           "".join(f"{u}:{mosquitto_hash(password(site, u))}\n" for u in users), 0o600)
    _write(out / "mosquitto" / "acl", acl(site_id, doors, home_assistant=home_assistant),
           0o644)
    _write(out / "mosquitto" / "accessd.conf",
           mosquitto_conf(site_id, install_dir, listener), 0o644)
    if home_assistant:
        _write(out / "homeassistant" / "mqtt-password",
               password(site, ha_user(site_id)) + "\n", 0o600)
    for d in doors:
        user = door_user(site_id, d)
        _write(out / "doors" / d / "mqtt-password", password(site, user) + "\n", 0o600)
        _write(out / "doors" / d / "mqtt.toml", "\n".join([
            f"# door {d} of site {site_id}: paste into /etc/accessd/accessd.toml",
            "[mqtt]", f'url = "{url}"', f'site = "{site_id}"', f'username = "{user}"',
            'password_file = "/etc/accessd/mqtt-password"   # this directory\'s file, 0600',
            *([f'ca_file = "/etc/accessd/{ca_file.name}"   # a copy of {ca_file}']
              if ca_file else []),
            f"home_assistant = {'true' if home_assistant else 'false'}", ""]), 0o644)
    site.audit("broker.setup", f"{len(doors)} door accounts for {url}"
               + (f", password generation {generation(site)}" if rotate else ""))


@dataclass(frozen=True)
class OfficeBroker:
    """How the office reaches its broker (from 'broker setup')."""
    url: str
    username: str
    password: str
    ca_file: Path | None


def office_broker(site: SiteDB, url: str | None = None) -> OfficeBroker:
    url = url or site.meta("mqtt_url")
    if not url:
        raise BrokerError("this site has no broker yet: run 'accessctl broker setup' "
                          "(or give --broker URL)")
    check_url(url)
    ca = site.meta("mqtt_ca_file")
    user = office_user(site.site_id)
    return OfficeBroker(url, user, password(site, user), Path(ca) if ca else None)
