"""Config validation: every bad input names the file, the key and the reason."""

import os
import subprocess
import sys

import pytest

from accessd.config import load_config
from accessd.errors import ConfigError, KeyFileError


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_sim_config_loads(sim_config):
    cfg = load_config(sim_config)
    assert cfg.door.id == "test-door" and cfg.gpio.pin_factory == "mock"
    assert cfg.storage.data_dir == sim_config.parent.resolve() / "data"
    assert cfg.readers[0].kind == "sim"


def test_shipped_configs_are_valid(tmp_path):
    from pathlib import Path
    from accessd.storage.keys import generate, write_key_file
    root = Path(__file__).resolve().parents[1] / "config"
    for name in ("sim.toml", "pi-door.toml"):
        text = (root / name).read_text()
        p = tmp_path / name
        p.write_text(text.replace("/etc/accessd/", str(tmp_path) + "/etc/")
                     .replace('group = "accessd"', 'group = ""'))
        cfg = load_config(p, require_keys=False)
        write_key_file(cfg.storage.key_file, generate())
        assert load_config(p).door.id


@pytest.mark.parametrize("old,new,message", [
    ('mode = "normal"', 'mode = "normal"\ncolour = "red"', r"door\.colour: unknown key"),
    ("unlock_seconds = 5", 'unlock_seconds = "five"', r"door\.unlock_seconds: must be a number, got str"),
    ("unlock_seconds = 5", "unlock_seconds = -1", r"door\.unlock_seconds: must be 0\.001 to 600"),
    ("rex_pin = 22", "rex_pin = 17", r"gpio\.rex_pin: GPIO17 is also used by gpio\.relay_pin"),
    ("rex_pin = 22", "rex_pin = true", r"gpio\.rex_pin: must be an integer, got bool"),
    ("rex_pin = 22", "rex_pin = 99", r"gpio\.rex_pin: must be a BCM GPIO number"),
    ('fail_mode = "secure"', 'fail_mode = "open"', r"door\.fail_mode: must be one of secure, safe"),
    ('pin_factory = "mock"', 'pin_factory = "arduino"', r"gpio\.pin_factory: must be one of"),
    ("prealarm_seconds = 10", "prealarm_seconds = 40", r"door\.prealarm_seconds: must be at least 0 and less"),
    ('kind = "sim"', 'kind = "iris"', r"readers\[0\]\.kind: must be one of sim"),
    ('kind = "sim"', 'kind = "sim"\nbaud = 9600', r"readers\[0\]\.baud: unknown key"),
    ("[api]", "[apii]", r"apii: unknown section"),
    ('id = "test-door"', 'id = "front door"', r"door\.id: must be 1-64 characters without spaces"),
    ('id = "test-door"\n', "", r"door\.id: is required"),
    ("simulation = true", 'simulation = true\ngroup = "no-such-group-xyz"', r"api\.group: no such group"),
    ("[door]", "[door", r"not valid TOML"),
])
def test_bad_config_is_rejected_with_file_key_and_reason(sim_config, old, new, message):
    edit(sim_config, old, new)
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(sim_config)
    assert str(sim_config) in str(exc.value)


def test_missing_key_file(sim_config):
    (sim_config.parent / "keys/door-keys.json").unlink()
    with pytest.raises(KeyFileError, match=r"storage\.key_file: .* does not exist \(create it with"):
        load_config(sim_config)


def test_world_readable_key_file(sim_config):
    os.chmod(sim_config.parent / "keys/door-keys.json", 0o644)
    with pytest.raises(KeyFileError, match=r"readable or writable by other users \(mode 0644\)"):
        load_config(sim_config)


def test_key_file_inside_data_dir_is_refused(sim_config):
    edit(sim_config, 'key_file = "keys/door-keys.json"', 'key_file = "data/keys.json"')
    with pytest.raises(KeyFileError, match="inside the data directory"):
        load_config(sim_config)


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_config("/nonexistent/accessd.toml")


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "accessd", *args], capture_output=True,
                          text=True, timeout=60, **kw)


def test_daemon_exits_2_on_bad_config_before_starting_anything(sim_config):
    edit(sim_config, "rex_pin = 22", "rex_pin = 17")
    r = run_cli("run", "--config", str(sim_config))
    assert r.returncode == 2
    assert f"{sim_config}: gpio.rex_pin: GPIO17 is also used by gpio.relay_pin" in r.stderr
    assert not (sim_config.parent / "data").exists()


def test_check_config_prints_effective_config_without_secrets(sim_config):
    r = run_cli("check-config", "--config", str(sim_config))
    assert r.returncode == 0, r.stderr
    assert 'relay_pin = 17' in r.stdout and "key_fingerprint" in r.stdout
    assert "held_open_seconds = 30.0" in r.stdout   # defaults are shown as effective values
    keyfile = (sim_config.parent / "keys/door-keys.json").read_text()
    import json
    for k in json.loads(keyfile).values():
        assert k not in r.stdout


def test_check_config_reports_bad_key_file(sim_config):
    (sim_config.parent / "keys/door-keys.json").write_text('{"format": "other"}')
    os.chmod(sim_config.parent / "keys/door-keys.json", 0o600)
    r = run_cli("check-config", "--config", str(sim_config))
    assert r.returncode == 2 and "not an accessd door key file" in r.stderr


def test_a_control_character_in_a_path_is_a_config_error_not_a_crash(tmp_path):
    """A NUL in a path used to raise ValueError deep in pathlib: exit 1 and a restart loop."""
    import subprocess
    import sys

    from accessd.testing import write_sim_config
    cfg = write_sim_config(tmp_path / "d")
    cfg.write_text(cfg.read_text().replace('data_dir = "data"', 'data_dir = "da\\u0000ta"'))
    r = subprocess.run([sys.executable, "-m", "accessd", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "storage.data_dir: contains a control character (U+0000)" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("section,line,key", [
    ("door", "unlock_seconds = nan", "door.unlock_seconds"),      # the relay never relocks
    ("door", "unlock_seconds = inf", "door.unlock_seconds"),      # the core dies at unlock
    ("door", "unlock_seconds = 1e308", "door.unlock_seconds"),    # unlocked for ever
    ("door", "held_open_seconds = nan", "door.held_open_seconds"),  # no held-open alarm
    ("api", "idle_timeout_seconds = inf", "api.idle_timeout_seconds"),
    ("api", "idle_timeout_seconds = nan", "api.idle_timeout_seconds"),
    ("sync", "interval_seconds = inf", "sync.interval_seconds"),   # the sync thread dies
    ("sync", "timeout_seconds = -inf", "sync.timeout_seconds"),
    ("pin", "timeout_seconds = 1e400", "pin.timeout_seconds"),
    ("policy", "card_pin_timeout_seconds = nan", "policy.card_pin_timeout_seconds"),
    ("mqtt", "reconnect_max_seconds = 99999", "mqtt.reconnect_max_seconds"),
    ("storage", "max_events = 99999999999999", "storage.max_events"),
    ("storage", "retention_days = 0", "storage.retention_days"),   # purged before upload
])
def test_every_number_is_finite_and_in_its_range(tmp_path, section, line, key):
    """Each number in the schema has a range a door can live with, checked at load:
    check-config and start refuse it with exit 2, naming the key."""
    from click.testing import CliRunner

    from accessd.cli.daemon import main as accessd_main
    from accessd.config import RANGES
    from accessd.testing import write_sim_config
    cfg = write_sim_config(tmp_path / "d")
    text = cfg.read_text()
    text = (text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1) if f"[{section}]\n"
            in text else text + f"\n[{section}]\n{line}\n")
    name = line.split(" = ")[0]
    text = "\n".join(x for x in text.splitlines() if not (x.startswith(f"{name} = ")
                                                         and x != line)) + "\n"
    cfg.write_text(text)
    r = CliRunner().invoke(accessd_main, ["check-config", "--config", str(cfg)])
    assert r.exit_code == 2, r.output
    assert f"{key}: must be" in r.output and "Traceback" not in r.output
    lo, hi = RANGES[key]
    assert "finite" in r.output or f"{lo:g} to {hi:g}" in r.output


def test_config_files_and_values_that_once_gave_tracebacks(tmp_path):
    """A FIFO, /dev/zero, a directory, a 300-character name, a NUL in the path, deep
    TOML, a bad IPv6 URL, port 99999, a data_dir that is a file, a socket path that
    is a regular file (which start once deleted): one message each, exit 2."""
    from click.testing import CliRunner

    from accessd.cli.daemon import main as accessd_main
    from accessd.testing import DaemonProcess, write_sim_config

    def check(path, needle):
        r = CliRunner().invoke(accessd_main, ["check-config", "--config", str(path)])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, \
            (path, r.output)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    check(fifo, "not a regular file")
    check("/dev/zero", "not a regular file")
    check(tmp_path, "is a directory")
    check(tmp_path / ("x" * 300 + ".toml"), "cannot be read: File name too long")
    check(str(tmp_path / "a") + "\0b", "cannot contain a NUL byte")
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    check(deep, "nested too deeply")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 21) + "\n")
    check(big, "a config is at most 1024 kB")
    cfg = write_sim_config(tmp_path / "d")
    good = cfg.read_text()
    for extra, needle in (('[sync]\nurl = "http://[::1/x/"\n', "sync.url: 'http://[::1/x/'"),
                          ('[sync]\nurl = "http://host:99999/x/"\n', "sync.url:"),
                          ('[mqtt]\nurl = "mqtt://[fe80::1"\n', "mqtt.url:"),
                          ('[mqtt]\nurl = "mqtt://host:99999"\n', "mqtt.url:")):
        cfg.write_text(good + "\n" + extra)
        check(cfg, needle)
    cfg.write_text(good)
    (tmp_path / "d" / "data").write_text("not a directory")
    check(cfg, "storage.data_dir: ")
    (tmp_path / "d" / "data").unlink()
    sock = tmp_path / "d" / "run" / "control.sock"
    sock.parent.mkdir()
    sock.write_text("precious")
    check(cfg, "exists and is not a socket")
    d = DaemonProcess(cfg)
    assert d.proc.wait(20) == 2
    d.close()
    assert sock.read_text() == "precious"                  # not deleted
