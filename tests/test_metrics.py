"""The door's metrics endpoint (prometheus_client), scraped over HTTP from a real
daemon: decisions by outcome, the latency histogram, whitelist and clock gauges,
the OpenMetrics format on request, and a port that is taken."""

import socket
import urllib.request

import pytest

from accessd.testing import DaemonProcess, free_tcp_port, write_sim_config


def scrape(port, accept=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the scrape")


@pytest.fixture
def door(tmp_path):
    port = free_tcp_port()
    config = write_sim_config(tmp_path / "door")
    config.write_text(config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    d = DaemonProcess(config).wait_ready()
    d.port = port
    yield d
    d.terminate()


def test_decisions_latency_and_door_state_are_scraped(door):
    door.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})    # nobody: denied
    door.request({"op": "sim", "input": "tap", "uid": "04A1B2C4"})
    door.request({"op": "unlock"})
    door.request({"op": "sim", "input": "door", "state": "open"})
    ctype, text = scrape(door.port)
    assert ctype.startswith("text/plain")
    assert value(text, 'accessd_decisions_total{outcome="denied"}') == 2
    assert value(text, 'accessd_decisions_total{outcome="granted"}') == 0
    assert value(text, "accessd_decision_latency_seconds_count") == 2
    assert value(text, "accessd_relay_unlocked") == 1
    assert value(text, "accessd_door_open") == 1
    assert value(text, "accessd_whitelist_credentials") == 0
    assert value(text, "accessd_clock_synced") in (0, 1)
    assert "accessd_whitelist_age_seconds" not in text       # enrolled at the door: no age
    assert "accessd_log_backlog_records" not in text         # this door does not upload


def test_openmetrics_on_request_and_an_alarm_counted(door):
    door.request({"op": "sim", "input": "tamper", "state": "on"})
    ctype, text = scrape(door.port, "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert value(text, 'accessd_alarms_total{kind="tamper"}') == 1


def test_a_taken_metrics_port_stops_the_start_with_its_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_sim_config(tmp_path / "door")
        config.write_text(config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        d = DaemonProcess(config)
        rc = d.proc.wait(20)
        err = d.stderr()
        d.close()
    assert rc == 2 and f"metrics.listen: cannot listen on 127.0.0.1:{port}" in err


def test_a_bad_listen_address_is_named(tmp_path):
    from accessd.config import load_config
    from accessd.errors import ConfigError
    config = write_sim_config(tmp_path / "door")
    config.write_text(config.read_text() + '\n[metrics]\nlisten = "localhost"\n')
    with pytest.raises(ConfigError, match="metrics.listen: 'localhost': must be HOST:PORT"):
        load_config(config)
