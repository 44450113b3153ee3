"""DoorService in process: startup order, shutdown makes the relay safe first."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accessd.config import load_config
from accessd.control import Client
from accessd.sdnotify import Notifier
from accessd.service import DoorService
from accessd.storage.eventlog import open_reader

from .test_daemon import enrol

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("fail_mode,energised_while_locked", [("secure", 0), ("safe", 1)])
def test_stop_leaves_the_relay_de_energised(sim_config, factory, fail_mode, energised_while_locked):
    enrol(sim_config)
    cfg = load_config(sim_config)
    cfg = dataclasses.replace(cfg, door=dataclasses.replace(cfg.door, fail_mode=fail_mode))
    svc = DoorService(cfg, pin_factory=factory, notifier=Notifier(env={}))
    svc.start()
    relay = factory.pin(cfg.gpio.relay_pin)
    try:
        assert relay.state == energised_while_locked
        with Client(cfg.api.socket) as c:
            assert c.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})["relay"] == "unlocked"
        assert relay.state == 1 - energised_while_locked
    finally:
        svc.stop("test")
    assert relay.state == 0          # fail-secure: locked; fail-safe: released
    assert not cfg.api.socket.exists()
    kinds = [r["kind"] for r in open_reader(cfg.storage.eventlog_path).execute(
        "SELECT kind FROM events ORDER BY seq")]
    assert kinds[-1] == "daemon.stopped"


def test_relay_safe_command(sim_config):
    r = subprocess.run([sys.executable, "-m", "accessd", "relay-safe", "--config", str(sim_config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "relay on GPIO17 de-energised (locked)" in r.stdout


def test_unusable_pin_factory_is_a_config_error(sim_config):
    text = sim_config.read_text().replace('pin_factory = "mock"', 'pin_factory = "rpigpio"')
    sim_config.write_text(text)
    r = subprocess.run([sys.executable, "-m", "accessd", "run", "--config", str(sim_config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert ("gpio.pin_factory: the rpigpio library is not installed (No module named 'RPi'); "
            "on Raspberry Pi OS install python3-rpi-lgpio; on a PC use pin_factory = \"mock\""
            ) in r.stderr


def test_systemd_unit_matches_the_pi_config():
    unit = (ROOT / "systemd/accessd.service").read_text()
    settings = {}
    for line in unit.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2))
    assert settings["Type"] == ["notify"] and settings["WatchdogSec"]
    assert settings["Restart"] == ["on-failure"]
    assert "relay-safe" in settings["ExecStopPost"][0]
    assert set(settings["SupplementaryGroups"][0].split()) >= {"gpio", "dialout"}
    assert settings["ProtectSystem"] == ["strict"] and settings["NoNewPrivileges"] == ["yes"]
    cfg_path = settings["ExecStart"][0].split("--config ")[1]
    assert cfg_path == "/etc/accessd/accessd.toml"
    pi = (ROOT / "config/pi-door.toml").read_text()
    data_dir = re.search(r'data_dir = "([^"]+)"', pi).group(1)
    assert settings["ReadWritePaths"] == [data_dir]
    sock = re.search(r'socket = "([^"]+)"', pi).group(1)
    assert sock.startswith("/run/" + settings["RuntimeDirectory"][0] + "/")


def test_install_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts/install-on-pi")]).returncode == 0
