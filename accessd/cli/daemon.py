"""`accessd`: the door daemon's entry point (run, check-config, relay-safe, upload,
init)."""

from __future__ import annotations

import json
import sys

import click

from .. import __version__
from ..config import DEFAULT_CONFIG, load_config
from ..errors import AccessdError, ConfigError
from .common import DaemonGroup, SafePath

CONFIG_OPT = click.option(
    "--config", "-c", "config_path", type=SafePath(dir_okay=False), envvar="ACCESSD_CONFIG",
    default=str(DEFAULT_CONFIG), show_default=True, help="The door's TOML config file.")


def _load(config_path: str, **kw):
    try:
        return load_config(config_path, **kw)
    except ConfigError as exc:
        click.echo(f"accessd: config error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=DaemonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accessd")
def main() -> None:
    """The accessd door daemon.

    \b
    Example:
      accessd run --config /etc/accessd/accessd.toml
    """


@main.command()
@click.argument("directory", type=SafePath(file_okay=False))
@click.option("--accessd-bin", help="The accessd the systemd units start (default: the one "
                                    "installed beside this Python).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist there.")
def init(directory: str, accessd_bin: str | None, force: bool) -> None:
    """Write a commented door config, the systemd units, the udev rules, the Pi's
    config.txt lines and the wiring docs into DIRECTORY (for a pip-installed door).

    Nothing is installed system-wide: copy accessd.toml to /etc/accessd/, the
    units to /etc/systemd/system/ and the rules to /etc/udev/rules.d/ (on a Pi,
    scripts/install-on-pi from a checkout does all of it).

    \b
    Example:
      accessd init ./accessd-files
    """
    import shutil
    from pathlib import Path

    from ..examples import write_examples
    if accessd_bin is not None and (not accessd_bin.startswith("/") or any(
            ord(c) < 32 or ord(c) == 127 for c in accessd_bin)):
        raise click.BadParameter(f"{accessd_bin!r}: give the absolute path of the accessd "
                                 "program, e.g. /opt/accessd/current/bin/accessd",
                                 param_hint="--accessd-bin")
    if accessd_bin is None:
        beside = Path(sys.executable).parent / "accessd"
        accessd_bin = str(beside) if beside.exists() else (shutil.which("accessd") or None)
    try:
        written = write_examples(Path(directory), accessd_bin=accessd_bin, force=force)
    except (AccessdError, OSError) as exc:
        click.echo(f"accessd: init: {exc}", err=True)
        sys.exit(1)
    for path, what in written:
        click.echo(f"wrote {path}  ({what})")
    if accessd_bin and Path(accessd_bin).resolve().is_relative_to("/home") or \
            accessd_bin and Path(accessd_bin).resolve().is_relative_to("/root"):
        click.echo(f"warning: {accessd_bin} is under a home directory, which the units "
                   "hide from the service (ProtectHome=yes): systemd will not start it. "
                   "Install accessd under /opt (scripts/install-on-pi does) or give "
                   "--accessd-bin a path outside /home and /root", err=True)
    click.echo(f"units start {accessd_bin or '/opt/accessd/current/bin/accessd'}. Next: edit "
               "accessd.toml (door.id, pins, readers), copy it to /etc/accessd/accessd.toml, "
               "then 'accessctl keys init' and 'accessd check-config'.")


@main.command()
@CONFIG_OPT
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def run(config_path: str, log_level: str) -> None:
    """Run the door: readers, decisions, lock relay, event log, control socket.

    Stops cleanly on SIGTERM or SIGINT (relay to its safe state first); a
    second SIGINT exits at once. Exit code 2 means the config is wrong.

    \b
    Example:
      accessd run --config config/sim.toml
    """
    cfg = _load(config_path)
    from ..service import run as run_service, setup_logging
    setup_logging(log_level)
    sys.exit(run_service(cfg))


@main.command("check-config")
@CONFIG_OPT
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like text.")
def check_config(config_path: str, as_json: bool) -> None:
    """Validate the config and print the effective values (no secrets).

    \b
    Example:
      accessd check-config --config /etc/accessd/accessd.toml
    """
    cfg = _load(config_path)
    eff = cfg.as_dict()
    try:
        from ..storage.keys import load_key_file
        keys = load_key_file(cfg.storage.key_file)
        keys.check_door(cfg.door.id, cfg.storage.key_file)
        eff["storage"]["key_fingerprint"] = keys.fingerprint
    except AccessdError as exc:
        click.echo(f"accessd: config error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(eff, indent=2))
        return
    click.echo(f"# effective config from {eff.pop('config_file')}")
    readers = eff.pop("readers")
    for section, values in eff.items():
        click.echo(f"\n[{section}]")
        for k, v in values.items():
            click.echo(f"# {k}: not set" if v is None else f"{k} = {json.dumps(v)}")
    for r in readers:
        click.echo("\n[[readers]]")
        for k, v in r.items():
            click.echo(f"{k} = {json.dumps(v)}")
    click.echo("\n# config OK")


@main.command("relay-safe")
@CONFIG_OPT
def relay_safe(config_path: str) -> None:
    """Drive the lock relay to its safe (de-energised) state and exit.

    systemd runs this as ExecStopPost=, so the relay is made safe even after a
    crash. Fail-secure doors end locked, fail-safe doors released.

    \b
    Example:
      accessd relay-safe --config /etc/accessd/accessd.toml
    """
    cfg = _load(config_path, require_keys=False)
    from gpiozero import DigitalOutputDevice
    from ..hw.gpio import make_pin_factory
    try:
        factory = make_pin_factory(cfg.gpio.pin_factory)
        relay = DigitalOutputDevice(cfg.gpio.relay_pin, active_high=cfg.gpio.relay_active_high,
                                    initial_value=False, pin_factory=factory)
        relay.off()
        relay.close()
    except (AccessdError, OSError, RuntimeError) as exc:
        click.echo(f"accessd: cannot make the relay safe: {exc}", err=True)
        sys.exit(1)
    click.echo(f"relay on GPIO{cfg.gpio.relay_pin} de-energised "
               f"({'locked' if cfg.door.fail_mode == 'secure' else 'released'})")


@main.command()
@CONFIG_OPT
@click.option("--store", "store_url", help="Store URL (default: sync.url of the config).")
def upload(config_path: str, store_url: str | None) -> None:
    """Upload the events not yet acknowledged, in batches, to the store.

    Runs nightly from accessd-upload.timer; safe to run any time and to
    interrupt: it resumes after the last acknowledged batch.

    \b
    Example:
      accessd upload --config /etc/accessd/accessd.toml
    """
    cfg = _load(config_path, require_keys=False)
    from ..sync.store import StoreError, open_store
    from ..sync.upload import LogForked, upload as do_upload
    url = store_url or cfg.sync.url
    if not url:
        click.echo("accessd: no store: set sync.url in the config or give --store", err=True)
        sys.exit(2)
    try:
        store = open_store(url, cfg.sync.timeout_seconds)
        try:
            res = do_upload(cfg, store)
        except LogForked as exc:
            click.echo(f"accessd: {exc}", err=True)
            if not _new_log_identity(cfg):
                click.echo("accessd: cannot upload until the log has a new identity: start "
                           "accessd (it gives it one at start), then upload again", err=True)
                sys.exit(1)
            click.echo("accessd: the log has a new identity; uploading it from its start",
                       err=True)
            res = do_upload(cfg, store)
    except (StoreError, OSError) as exc:
        click.echo(f"accessd: upload stopped: {exc} (what was sent is acknowledged; "
                   "run again to resume)", err=True)
        sys.exit(1)
    except (AccessdError, ValueError) as exc:
        click.echo(f"accessd: cannot upload: {exc}", err=True)
        sys.exit(1)
    from .common import plural
    click.echo(f"uploaded {plural(res['events'], 'event')} in "
               f"{plural(res['batches'], 'batch', 'batches')} "
               f"(acknowledged up to #{res['acked_seq']})")
    # retention: what the office has and is older than storage.retention_days goes
    import time as _time

    from ..storage.eventlog import purge_uploaded, utc_iso
    days = cfg.storage.retention_days
    try:
        gone = purge_uploaded(cfg.storage.eventlog_path, acked_seq=res["acked_seq"],
                              before=utc_iso(_time.time() - days * 86400))
    except AccessdError as exc:
        click.echo(f"accessd: uploaded, but the log was not purged: {exc}", err=True)
        sys.exit(1)
    if gone:
        click.echo(f"purged {plural(gone, 'uploaded record')} older than {days} days")


@main.command()
@CONFIG_OPT
@click.option("--recover", is_flag=True,
              help="At boot, before the door starts: finish a switch that was cut short "
                   "(back to the release run before it).")
def update(config_path: str, recover: bool) -> None:
    """Install the release the office published for this door, and roll it back by
    itself if it does not come up (as root; accessd-update.service runs it hourly
    and on sync-now).

    Exit 0: applied, or nothing to do; 1: refused, failed or rolled back (the
    reason is printed and logged as a release.* event).

    \b
    Example:
      sudo accessd update --config /etc/accessd/accessd.toml
    """
    cfg = _load(config_path, require_keys=not recover)
    from ..storage.keys import load_key_file
    from ..sync.store import open_store
    from ..updater import Updater
    if recover:
        up = Updater(cfg, None, say=click.echo)
        res = up.recover()
    else:
        if not cfg.sync.url:
            click.echo("accessd: update: this door has no store (sync.url): releases come "
                       "from the site's store", err=True)
            sys.exit(2)
        try:
            keys = load_key_file(cfg.storage.key_file)
        except AccessdError as exc:
            click.echo(f"accessd: update: {exc}", err=True)
            sys.exit(2)
        if keys.site is None:
            click.echo("accessd: update: this door's key file has no site: releases are "
                       "signed by a site's office", err=True)
            sys.exit(2)
        up = Updater(cfg, keys, open_store(cfg.sync.url, cfg.sync.timeout_seconds),
                     say=click.echo)
        try:
            res = up.run()
        except OSError as exc:
            click.echo(f"accessd: update: {exc}", err=True)
            sys.exit(1)
    click.echo(f"{res.result}: {res.message}")
    if recover:      # going back to the release before a cut-short switch is a success
        sys.exit(1 if res.result == "failed" else 0)
    sys.exit(0 if res.ok else 1)


@main.command("verify-release")
@click.argument("directory", type=SafePath(file_okay=False, exists=True))
@click.option("--key-file", type=SafePath(dir_okay=False, exists=True), required=True,
              help="The door's key file (it holds the site's public key).")
def verify_release(directory: str, key_file: str) -> None:
    """Check a release directory (manifest and wheels/) against the site's key:
    the manifest's signature and every file's size and SHA-256. The offline
    installer runs it before anything from the release is used.

    \b
    Example:
      accessd verify-release /boot/firmware/accessd/release --key-file /etc/accessd/keys.json
    """
    from pathlib import Path

    from ..storage.keys import load_key_file
    from ..updater import verify_release_dir
    try:
        m = verify_release_dir(Path(directory), load_key_file(Path(key_file)))
    except AccessdError as exc:
        click.echo(f"accessd: verify-release: {exc}", err=True)
        sys.exit(1)
    click.echo(f"release {m.version}: signature and {len(m.files)} files verified")


def _new_log_identity(cfg) -> bool:
    """Ask the running daemon (its control socket) to give the log a new identity, as
    the upload found it must; False when no daemon answers (it does so at start)."""
    from ..control import Client
    from ..errors import DaemonUnavailable
    try:
        with Client(cfg.api.socket) as c:
            r = c.request({"op": "log-check"}, timeout=30)
    except (DaemonUnavailable, OSError, AccessdError):
        return False
    return bool(r.get("ok") and r.get("reset"))


if __name__ == "__main__":
    main()
