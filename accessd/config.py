"""The door's one TOML config file: schema, validation and the effective config.

Everything is validated before anything starts: an unknown key, a wrong type, a
pin used twice, a missing or too widely readable key file all raise
`ConfigError` naming the file, the key and the reason. Relative paths are taken
relative to the directory of the config file.
"""

from __future__ import annotations

import grp
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, KeyFileError

DEFAULT_CONFIG = Path("/etc/accessd/accessd.toml")
PIN_FACTORIES = ("lgpio", "rpigpio", "pigpio", "native", "mock")
READER_KINDS = ("sim", "nfc", "em4100-serial", "wiegand", "keypad-matrix", "osdp",
                "qr-serial")
OSDP_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400)
NFC_TARGETS = ("106A", "106B", "212F")
FOB_FORMATS = ("rdm6300", "ascii-decimal")
FAIL_MODES = ("secure", "safe")
DOOR_MODES = ("normal", "lockdown", "held-open")

_REQUIRED = object()

# section -> key -> (types, default). Pins default to None: not fitted.
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "door": {
        "id": ((str,), _REQUIRED),
        "unlock_seconds": ((int, float), 5.0),
        "fail_mode": ((str,), "secure"),
        "held_open_seconds": ((int, float), 30.0),
        "prealarm_seconds": ((int, float), 10.0),
        "mode": ((str,), "normal"),
    },
    "gpio": {
        "pin_factory": ((str,), "lgpio"),
        "relay_pin": ((int,), _REQUIRED),
        "relay_active_high": ((bool,), True),
        "door_contact_pin": ((int,), None),
        "rex_pin": ((int,), None),
        "tamper_pin": ((int,), None),
        "fire_pin": ((int,), None),
        "buzzer_pin": ((int,), None),
        "led_green_pin": ((int,), None),
        "led_red_pin": ((int,), None),
        "bounce_ms": ((int,), 20),
    },
    "storage": {
        "data_dir": ((str,), "/var/lib/accessd"),
        "key_file": ((str,), "/etc/accessd/keys.json"),
        "max_events": ((int,), 1_000_000),   # the log keeps at most this many (~200 MB)
        "retention_days": ((int,), 30),      # uploaded records older than this go (nightly)
    },
    "api": {
        "socket": ((str,), "/run/accessd/control.sock"),
        "group": ((str,), ""),
        "simulation": ((bool,), False),
        "max_connections": ((int,), 64),           # clients served at once; more wait queued
        "idle_timeout_seconds": ((int, float), 30.0),  # a silent client is closed after this
    },
    "sync": {
        "url": ((str,), ""),                 # "" = this door is enrolled locally
        "interval_seconds": ((int, float), 300.0),
        "max_age_hours": ((int, float), 72.0),
        "timeout_seconds": ((int, float), 15.0),   # per HTTP request
    },
    "mqtt": {
        "url": ((str,), ""),                 # "" = none; mqtt://host:1883, mqtts://host:8883
        "site": ((str,), ""),                # topic segment; default: the key file's site
        "username": ((str,), ""),
        "password_file": ((str,), ""),       # mode 0600, the password on its first line
        "ca_file": ((str,), ""),             # mqtts: the broker's CA (default: the system's)
        "keepalive_seconds": ((int,), 30),
        "status_interval_seconds": ((int, float), 60.0),
        "reconnect_max_seconds": ((int, float), 30.0),
        "home_assistant": ((bool,), False),  # publish Home Assistant discovery messages
    },
    "update": {                               # software releases (accessd update, as root)
        "root": ((str,), "/opt/accessd"),           # releases/<version>/, current -> one
        "state_dir": ((str,), "/var/lib/accessd-update"),
        "python": ((str,), "/usr/bin/python3"),     # makes each release's venv
        "ready_seconds": ((int, float), 90.0),      # no READY within this: roll back
        "probation_seconds": ((int, float), 300.0),  # crashes counted this long after READY
        "crash_limit": ((int,), 3),                 # this many crashes in probation: roll back
    },
    "metrics": {
        "listen": ((str,), ""),              # "" = off; "127.0.0.1:9469" (OpenMetrics, HTTP)
    },
    "policy": {
        "pin_lockout_attempts": ((int,), 5),
        "pin_lockout_window_seconds": ((int, float), 300.0),
        "pin_lockout_seconds": ((int, float), 60.0),
        "pin_lockout_max_seconds": ((int, float), 900.0),
        "stranger_attempts": ((int,), 5),
        "stranger_window_seconds": ((int, float), 120.0),
        "temporary_max_age_hours": ((int, float), 24.0),
        "unsynced_clock": ((str,), "residents"),   # deny | residents | trust
        "card_pin": ((str,), "never"),             # never | always | a schedule's name
        "card_pin_timeout_seconds": ((int, float), 10.0),
        "high_assurance": ((str,), "never"),       # never | always | a schedule's name
        "held_open_schedule": ((str,), ""),       # a schedule that holds the door open
    },
    "pin": {
        "min_length": ((int,), 4),
        "max_length": ((int,), 8),
        "timeout_seconds": ((int, float), 5.0),
    },
}
_READER_SCHEMA: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), _REQUIRED),
    "kind": ((str,), _REQUIRED),
    "retry_max_seconds": ((int, float), 30.0),
}
# Options of each reader kind, checked before anything starts.
_READER_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "sim": {},
    "nfc": {
        "path": ((str,), _REQUIRED),          # usb, usb:054c:06c3, tty:AMA0:pn532, udp:HOST:PORT
        "targets": ((list,), ["106A"]),
    },
    "em4100-serial": {
        "port": ((str,), _REQUIRED),          # /dev/ttyAMA0, /dev/serial0, rfc2217://..., "sim"
        "baudrate": ((int,), 9600),
        "format": ((str,), "rdm6300"),
        "hold_ms": ((int,), 600),
    },
    "wiegand": {
        "d0_pin": ((int,), _REQUIRED),
        "d1_pin": ((int,), _REQUIRED),
        "gap_ms": ((int, float), 25.0),
        "raw_bits": ((list,), []),            # extra frame lengths accepted without parity
    },
    "keypad-matrix": {
        "row_pins": ((list,), _REQUIRED),
        "col_pins": ((list,), _REQUIRED),
        "keys": ((list,), ["123", "456", "789", "*0#"]),
        "debounce_ms": ((int,), 20),
    },
    "qr-serial": {
        "port": ((str,), _REQUIRED),          # /dev/serial0, /dev/ttyACM0, "sim"
        "baudrate": ((int,), 9600),
        "hold_ms": ((int,), 2000),            # the same code again within this: one scan
    },
    "osdp": {
        "port": ((str,), _REQUIRED),          # /dev/ttyUSB0, /dev/serial0, "sim"
        "address": ((int,), 0),               # the reader's OSDP address, 0-126
        "baudrate": ((int,), 115200),
        "install_mode": ((bool,), False),     # first start of a new reader: hand it its key
        "rs485_rts": ((bool,), False),        # the RS-485 driver is switched by RTS
        "raw_bits": ((list,), []),            # extra Wiegand lengths accepted without parity
    },
}
_PIN_KEYS = ("relay_pin", "door_contact_pin", "rex_pin", "tamper_pin", "fire_pin",
             "buzzer_pin", "led_green_pin", "led_red_pin")


@dataclass(frozen=True)
class DoorConfig:
    id: str
    unlock_seconds: float
    fail_mode: str
    held_open_seconds: float
    prealarm_seconds: float
    mode: str


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str
    relay_pin: int
    relay_active_high: bool
    door_contact_pin: int | None
    rex_pin: int | None
    tamper_pin: int | None
    fire_pin: int | None
    buzzer_pin: int | None
    led_green_pin: int | None
    led_red_pin: int | None
    bounce_ms: int


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path
    key_file: Path
    max_events: int
    retention_days: int = 30

    @property
    def whitelist_path(self) -> Path:
        return self.data_dir / "whitelist.db"

    @property
    def eventlog_path(self) -> Path:
        return self.data_dir / "events.db"


@dataclass(frozen=True)
class ApiConfig:
    socket: Path
    group: str
    simulation: bool
    max_connections: int = 64
    idle_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class SyncConfig:
    url: str
    interval_seconds: float
    max_age_hours: float
    timeout_seconds: float


@dataclass(frozen=True)
class PolicyConfig:
    pin_lockout_attempts: int
    pin_lockout_window_seconds: float
    pin_lockout_seconds: float
    pin_lockout_max_seconds: float
    stranger_attempts: int
    stranger_window_seconds: float
    temporary_max_age_hours: float
    unsynced_clock: str
    card_pin: str
    card_pin_timeout_seconds: float
    high_assurance: str
    held_open_schedule: str


@dataclass(frozen=True)
class MqttConfig:
    url: str
    site: str
    username: str
    password_file: Path | None
    ca_file: Path | None
    keepalive_seconds: int
    status_interval_seconds: float
    reconnect_max_seconds: float
    home_assistant: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def password(self) -> str:
        """The first line of password_file ("" without one)."""
        if self.password_file is None:
            return ""
        return next(iter(self.password_file.read_text(encoding="utf-8").splitlines()), "").strip()


@dataclass(frozen=True)
class UpdateConfig:
    root: Path
    state_dir: Path
    python: Path
    ready_seconds: float
    probation_seconds: float
    crash_limit: int


@dataclass(frozen=True)
class MetricsConfig:
    host: str            # "" = no metrics endpoint
    port: int

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class PinConfig:
    min_length: int
    max_length: int
    timeout_seconds: float


@dataclass(frozen=True)
class ReaderConfig:
    name: str
    kind: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: Path
    door: DoorConfig
    gpio: GpioConfig
    storage: StorageConfig
    api: ApiConfig
    pin: PinConfig
    readers: tuple[ReaderConfig, ...]
    sync: SyncConfig
    policy: PolicyConfig
    mqtt: MqttConfig
    metrics: MetricsConfig
    update: UpdateConfig | None = None

    def as_dict(self) -> dict:
        """The effective config, ready to print; holds no secret (keys live in the key file)."""
        out: dict[str, Any] = {"config_file": str(self.path)}
        for name in ("door", "gpio", "storage", "api", "pin", "sync", "policy", "mqtt",
                     "metrics", "update"):
            section = getattr(self, name)
            if section is None:
                continue
            out[name] = {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in section.__dict__.items()}
        out["readers"] = [{"name": r.name, "kind": r.kind, **r.options} for r in self.readers]
        if "@" in out["sync"]["url"]:  # user:password@host: never print the password
            from urllib.parse import urlparse
            u = urlparse(out["sync"]["url"])
            out["sync"]["url"] = u._replace(netloc=f"{u.username}:<redacted>@{u.hostname}"
                                            + (f":{u.port}" if u.port else "")).geturl()
        return out


# Every number a config may hold, with the range a door can live with: checked at
# load (exit 2), so NaN, infinity or 1e308 never reach a timer (a relay that never
# relocks, a core or sync thread that dies at its first wait).
RANGES: dict[str, tuple[float, float]] = {
    "door.unlock_seconds": (0.001, 600), "door.held_open_seconds": (1, 86400),
    "door.prealarm_seconds": (0, 86400),
    "gpio.bounce_ms": (0, 1000),
    "storage.max_events": (1000, 100_000_000), "storage.retention_days": (1, 3650),
    "update.ready_seconds": (5, 3600), "update.probation_seconds": (0, 86400),
    "update.crash_limit": (1, 100),
    "api.max_connections": (1, 1024), "api.idle_timeout_seconds": (0.1, 3600),
    "sync.interval_seconds": (1, 86400), "sync.max_age_hours": (0.01, 8760),
    "sync.timeout_seconds": (0.1, 600),
    "mqtt.keepalive_seconds": (5, 3600), "mqtt.status_interval_seconds": (1, 86400),
    "mqtt.reconnect_max_seconds": (1, 3600),
    "policy.pin_lockout_attempts": (1, 1000), "policy.stranger_attempts": (1, 1000),
    "policy.pin_lockout_window_seconds": (1, 86400), "policy.pin_lockout_seconds": (1, 86400),
    "policy.pin_lockout_max_seconds": (1, 604800),
    "policy.stranger_window_seconds": (1, 86400),
    "policy.temporary_max_age_hours": (0.01, 8760),
    "policy.card_pin_timeout_seconds": (1, 600),
    "pin.min_length": (1, 16), "pin.max_length": (1, 16), "pin.timeout_seconds": (0.5, 600),
    "readers.retry_max_seconds": (0.1, 3600), "readers.baudrate": (300, 4_000_000),
    "readers.hold_ms": (0, 60_000), "readers.gap_ms": (2, 500),
    "readers.debounce_ms": (0, 1000),
}
MAX_CONFIG_BYTES = 1 << 20   # a config is a few kB; never read a device or a huge file


def _range(path: Path, key: str, value, rule: str) -> None:
    lo, hi = RANGES[rule]
    if not lo <= value <= hi:
        raise _err(path, key, f"must be {lo:g} to {hi:g}, got {value!r}")


def _err(path: Path, key: str, reason: str, cls: type = ConfigError) -> ConfigError:
    return cls(f"{path}: {key}: {reason}")


def _typename(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if types == (int, float):
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_section(path: Path, prefix: str, raw: Any, schema: dict) -> dict:
    if not isinstance(raw, dict):
        raise _err(path, prefix, f"must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise _err(path, f"{prefix}.{unknown[0]}",
                   f"unknown key (known keys: {', '.join(sorted(schema))})")
    values = {}
    for key, (types, default) in schema.items():
        if key not in raw:
            if default is _REQUIRED:
                raise _err(path, f"{prefix}.{key}", "is required")
            values[key] = default
            continue
        value = raw[key]
        # bool is an int subclass in Python; a pin of `true` is a mistake.
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise _err(path, f"{prefix}.{key}",
                       f"must be {_typename(types)}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _err(path, f"{prefix}.{key}", f"must be a finite number, got {value!r}")
        rule = f"{'readers' if prefix.startswith('readers[') else prefix}.{key}"
        if rule in RANGES and not isinstance(value, bool):
            _range(path, f"{prefix}.{key}", value, rule)
        if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
            bad = next(c for c in value if ord(c) < 32 or ord(c) == 127)
            raise _err(path, f"{prefix}.{key}", f"contains a control character "
                                                f"(U+{ord(bad):04X}); paths and names cannot")
        values[key] = float(value) if types == (int, float) else value
    return values



def _choice(path: Path, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _err(path, key, f"must be one of {', '.join(choices)}; got {value!r}")


def check_key_file(path: Path, key_file: Path, data_dir: Path, *, must_exist: bool = True,
                   door_id: str = "", site_door: bool = False) -> None:
    """A key file must exist, be a regular file, and not be readable by others."""
    where = "storage.key_file"
    try:
        data_dir_r = data_dir.resolve()
        if key_file.resolve().is_relative_to(data_dir_r):
            raise _err(path, where, f"{key_file} is inside the data directory {data_dir}; "
                       "keep keys outside it", KeyFileError)
    except OSError:
        pass
    try:
        st = key_file.stat()
    except FileNotFoundError:
        if must_exist and site_door:   # its keys come from the office, never made here
            raise _err(path, where, f"{key_file} does not exist: this door syncs with an "
                       "office, which makes its key file ('accessctl --site SITE door keys "
                       f"{door_id} --out keys.json', or 'door provision'); install it here, "
                       "mode 0600", KeyFileError) from None
        if must_exist:
            raise _err(path, where, f"{key_file} does not exist (create it with "
                       f"'accessctl --config {path} keys init')", KeyFileError) from None
        return
    except PermissionError:
        raise _err(path, where, f"{key_file} cannot be read by this user", KeyFileError) from None
    if not stat.S_ISREG(st.st_mode):
        raise _err(path, where, f"{key_file} is not a regular file", KeyFileError)
    if st.st_mode & 0o077:
        raise _err(path, where, f"{key_file} is readable or writable by other users "
                   f"(mode {stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {key_file}'", KeyFileError)


def _check_raw_bits(path: Path, where: str, raw_bits: list) -> None:
    for n in raw_bits:
        if isinstance(n, bool) or not isinstance(n, int) or not 9 <= n <= 64 or n in (26, 34, 37):
            raise _err(path, f"{where}.raw_bits", "must list frame lengths 9-64 other than "
                                                  f"26, 34 and 37; got {n!r}")


def _check_reader(path: Path, where: str, kind: str, o: dict, pins: dict[int, str]) -> None:
    """Kind-specific checks; reader GPIO pins join the 'used twice' check."""
    def pin(key: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 53:
            raise _err(path, f"{where}.{key}", f"must be a BCM GPIO number 0-53, got {value!r}")
        if value in pins:
            raise _err(path, f"{where}.{key}", f"GPIO{value} is also used by {pins[value]}")
        pins[value] = f"{where}.{key}"

    if kind == "nfc":
        if not o["path"].strip():
            raise _err(path, f"{where}.path", "must name an nfcpy device (usb, tty:AMA0:pn532, "
                                              "udp:localhost:auto)")
        if not o["targets"] or any(t not in NFC_TARGETS for t in o["targets"]):
            raise _err(path, f"{where}.targets",
                       f"must be a non-empty list of {', '.join(NFC_TARGETS)}; got {o['targets']!r}")
    elif kind in ("em4100-serial", "qr-serial"):
        if kind == "em4100-serial":
            _choice(path, f"{where}.format", o["format"], FOB_FORMATS)
        elif not o["port"].strip():
            raise _err(path, f"{where}.port", "must name a serial port (/dev/serial0) or \"sim\"")
        if o["baudrate"] <= 0:
            raise _err(path, f"{where}.baudrate", f"must be positive, got {o['baudrate']}")
    elif kind == "wiegand":
        pin("d0_pin", o["d0_pin"])
        pin("d1_pin", o["d1_pin"])
        _check_raw_bits(path, where, o["raw_bits"])
    elif kind == "keypad-matrix":
        for key in ("row_pins", "col_pins"):
            if not o[key]:
                raise _err(path, f"{where}.{key}", "must list at least one pin")
            for j, p in enumerate(o[key]):
                pin(f"{key}[{j}]", p)
        keys = o["keys"]
        if (len(keys) != len(o["row_pins"]) or any(not isinstance(k, str) for k in keys)
                or any(len(k) != len(o["col_pins"]) for k in keys)):
            raise _err(path, f"{where}.keys", f"must be {len(o['row_pins'])} strings (one per row) of "
                                              f"{len(o['col_pins'])} keys (one per column)")
        bad = {c for k in keys for c in k} - set("0123456789*#ABCD")
        if bad:
            raise _err(path, f"{where}.keys", f"unknown keys {''.join(sorted(bad))!r}")
    elif kind == "osdp":
        if not o["port"].strip():
            raise _err(path, f"{where}.port", "must name a serial port (/dev/ttyUSB0) or \"sim\"")
        if not 0 <= o["address"] <= 126:
            raise _err(path, f"{where}.address", f"must be an OSDP address 0-126, got {o['address']}")
        if o["baudrate"] not in OSDP_BAUDS:
            raise _err(path, f"{where}.baudrate", "must be one of "
                       + ", ".join(map(str, OSDP_BAUDS)) + f"; got {o['baudrate']}")
        _check_raw_bits(path, where, o["raw_bits"])


def load_config(path: str | os.PathLike | None = None, *, require_keys: bool = True) -> Config:
    """Read and validate a config file; raise ConfigError on the first problem."""
    path = Path(path or os.environ.get("ACCESSD_CONFIG") or DEFAULT_CONFIG)
    shown = repr(str(path))[1:-1]     # (a control character in the name, escaped)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):   # a FIFO blocks, /dev/zero never ends
            raise ConfigError(f"{shown}: not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{shown}: {st.st_size} bytes; a config is at most "
                              f"{MAX_CONFIG_BYTES >> 10} kB")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        raw = tomllib.loads(data.decode())
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{shown}: cannot be read by this user") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not valid UTF-8: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: not valid TOML: nested too deeply") from None
    except ValueError:                   # a NUL byte in the path (TOML's own are above)
        raise ConfigError(f"{shown}: not a usable file name") from None
    except OSError as exc:               # a name too long, a loop of links, ...
        raise ConfigError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    base = path.parent.resolve()

    known = set(_SCHEMA) | {"readers"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _err(path, unknown[0], f"unknown section (known sections: {', '.join(sorted(known))})")
    if "door" not in raw:
        raise _err(path, "door", "section is required")
    if "gpio" not in raw:
        raise _err(path, "gpio", "section is required")
    s = {name: _check_section(path, name, raw.get(name, {}), schema)
         for name, schema in _SCHEMA.items()}

    d = s["door"]
    if not d["id"].strip() or len(d["id"]) > 64 or any(c.isspace() for c in d["id"]):
        raise _err(path, "door.id", f"must be 1-64 characters without spaces, got {d['id']!r}")
    if d["prealarm_seconds"] < 0 or d["prealarm_seconds"] >= d["held_open_seconds"]:
        raise _err(path, "door.prealarm_seconds",
                   f"must be at least 0 and less than door.held_open_seconds "
                   f"({d['held_open_seconds']}), got {d['prealarm_seconds']}")
    _choice(path, "door.fail_mode", d["fail_mode"], FAIL_MODES)
    _choice(path, "door.mode", d["mode"], DOOR_MODES)

    g = s["gpio"]
    _choice(path, "gpio.pin_factory", g["pin_factory"], PIN_FACTORIES)
    seen: dict[int, str] = {}
    for key in _PIN_KEYS:
        pin = g[key]
        if pin is None:
            continue
        if not 0 <= pin <= 53:
            raise _err(path, f"gpio.{key}", f"must be a BCM GPIO number 0-53, got {pin}")
        if pin in seen:
            raise _err(path, f"gpio.{key}", f"GPIO{pin} is also used by {seen[pin]}")
        seen[pin] = f"gpio.{key}"

    st = s["storage"]
    storage = StorageConfig(data_dir=base / st["data_dir"], key_file=base / st["key_file"],
                            max_events=st["max_events"],
                            retention_days=st["retention_days"])
    if storage.data_dir.exists() and not storage.data_dir.is_dir():
        raise _err(path, "storage.data_dir", f"{storage.data_dir} is a file, not a directory")
    check_key_file(path, storage.key_file, storage.data_dir, must_exist=require_keys,
                   door_id=d["id"], site_door=bool(s["sync"]["url"] or s["mqtt"]["url"]))

    a = s["api"]
    if a["group"]:
        try:
            grp.getgrnam(a["group"])
        except KeyError:
            raise _err(path, "api.group", f"no such group {a['group']!r}") from None
    sock = base / a["socket"]
    if len(os.fsencode(sock)) > 107:
        raise _err(path, "api.socket", f"path is too long for a Unix socket ({sock})")
    if (sock.exists() or sock.is_symlink()) and not stat.S_ISSOCK(os.lstat(sock).st_mode):
        raise _err(path, "api.socket", f"{sock} exists and is not a socket (it would be "
                                       "replaced): choose another path")

    sy = s["sync"]
    if sy["url"]:
        from .sync.store import check_url
        try:
            check_url(sy["url"])
        except ConfigError as exc:
            raise _err(path, "sync.url", str(exc).replace("store URL ", "")) from None
        except ValueError as exc:        # urllib: "Invalid IPv6 URL", a port out of range
            raise _err(path, "sync.url", f"{sy['url']!r}: {exc}") from None

    po = s["policy"]
    for key in ("pin_lockout_attempts", "stranger_attempts"):
        if po[key] < 1:
            raise _err(path, f"policy.{key}", f"must be 1 or more, got {po[key]}")
    _choice(path, "policy.unsynced_clock", po["unsynced_clock"], ("deny", "residents", "trust"))
    for key in ("card_pin", "high_assurance"):
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$", po[key]):
            raise _err(path, f"policy.{key}", "must be never, always, or a schedule's name, "
                                              f"got {po[key]!r}")
    if po["held_open_schedule"] and not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                                 po["held_open_schedule"]):
        raise _err(path, "policy.held_open_schedule", "must be a schedule's name, got "
                                                      f"{po['held_open_schedule']!r}")
    if po["pin_lockout_max_seconds"] < po["pin_lockout_seconds"]:
        raise _err(path, "policy.pin_lockout_max_seconds",
                   "must be at least policy.pin_lockout_seconds")

    p = s["pin"]
    if not 1 <= p["min_length"] <= p["max_length"] <= 16:
        raise _err(path, "pin.max_length" if p["min_length"] >= 1 else "pin.min_length",
                   f"need 1 <= min_length <= max_length <= 16, got {p['min_length']} and "
                   f"{p['max_length']}")

    readers_raw = raw.get("readers", [])
    if not isinstance(readers_raw, list):
        raise _err(path, "readers", "must be an array of tables ([[readers]])")
    readers = []
    names: set[str] = set()
    ports: dict[str, str] = {}
    for i, r in enumerate(readers_raw):
        where = f"readers[{i}]"
        if not isinstance(r, dict):
            raise _err(path, where, "must be a table")
        kind = r.get("kind")
        if not isinstance(kind, str):
            raise _err(path, f"{where}.kind", "is required: one of " + ", ".join(READER_KINDS))
        _choice(path, f"{where}.kind", kind, READER_KINDS)
        schema = {**_READER_SCHEMA, **_READER_OPTIONS[kind]}
        rv = _check_section(path, where, r, schema)
        if rv["name"] in names:
            raise _err(path, f"{where}.name", f"reader name {rv['name']!r} is used twice")
        names.add(rv["name"])
        opts = {k: v for k, v in rv.items() if k not in ("name", "kind")}
        _check_reader(path, where, kind, opts, seen)
        port = opts.get("port")
        if port is not None and port != "sim":
            if port in ports:
                raise _err(path, f"{where}.port", f"{port} is also used by {ports[port]} "
                                                  "(one reader per serial port)")
            ports[port] = where
        readers.append(ReaderConfig(name=rv["name"], kind=kind, options=opts))

    u = s["update"]
    for key in ("root", "state_dir", "python"):
        if not u[key] or not (base / u[key]).is_absolute():
            raise _err(path, f"update.{key}", f"must be a path, got {u[key]!r}")

    return Config(
        path=path,
        door=DoorConfig(**d),
        gpio=GpioConfig(**g),
        storage=storage,
        api=ApiConfig(socket=sock, group=a["group"], simulation=a["simulation"],
                      max_connections=a["max_connections"],
                      idle_timeout_seconds=float(a["idle_timeout_seconds"])),
        pin=PinConfig(**p),
        readers=tuple(readers),
        sync=SyncConfig(**sy),
        policy=PolicyConfig(**po),
        mqtt=_mqtt(path, base, s["mqtt"]),
        metrics=_metrics(path, s["metrics"]),
        update=UpdateConfig(root=base / u["root"], state_dir=base / u["state_dir"],
                            python=base / u["python"], ready_seconds=float(u["ready_seconds"]),
                            probation_seconds=float(u["probation_seconds"]),
                            crash_limit=u["crash_limit"]),
    )


def _metrics(path: Path, m: dict) -> MetricsConfig:
    listen = m["listen"].strip()
    if not listen:
        return MetricsConfig("", 0)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _err(path, "metrics.listen", f"{listen!r}: must be HOST:PORT, e.g. "
                                           "127.0.0.1:9469")
    return MetricsConfig(host, int(port))


def _mqtt(path: Path, base: Path, m: dict) -> MqttConfig:
    from urllib.parse import urlparse
    if m["url"]:
        try:
            u = urlparse(m["url"])
            u.port
        except ValueError as exc:
            raise _err(path, "mqtt.url", f"{m['url']!r}: {exc}") from None
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname or u.path not in ("", "/"):
            raise _err(path, "mqtt.url", "must be mqtt://host[:port] or mqtts://host[:port], "
                                         f"got {m['url']!r}")
        if u.username or u.password:
            raise _err(path, "mqtt.url", "put the user in mqtt.username and the password in "
                                         "mqtt.password_file, not in the URL")
        try:
            u.port
        except ValueError:
            raise _err(path, "mqtt.url", f"bad port in {m['url']!r}") from None
    if m["site"] and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", m["site"]):
        raise _err(path, "mqtt.site", "must be 1-64 letters, digits, '.', '_' or '-'")
    pw = base / m["password_file"] if m["password_file"] else None
    if pw is not None and m["url"]:
        try:
            st = pw.stat()
        except FileNotFoundError:
            raise _err(path, "mqtt.password_file", f"{pw} does not exist") from None
        except PermissionError:
            raise _err(path, "mqtt.password_file", f"{pw} cannot be read by this user") from None
        if st.st_mode & 0o077:
            raise _err(path, "mqtt.password_file", f"{pw} is readable by group or others "
                                                   f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
    ca = base / m["ca_file"] if m["ca_file"] else None
    if ca is not None and m["url"] and not ca.is_file():
        raise _err(path, "mqtt.ca_file", f"{ca} is not a file")
    return MqttConfig(url=m["url"], site=m["site"], username=m["username"], password_file=pw,
                      ca_file=ca, keepalive_seconds=m["keepalive_seconds"],
                      status_interval_seconds=float(m["status_interval_seconds"]),
                      reconnect_max_seconds=float(m["reconnect_max_seconds"]),
                      home_assistant=m["home_assistant"])
