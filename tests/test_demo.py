"""./scripts/demo, as a newcomer runs it (not on a terminal, so it stops by itself)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_shows_granted_and_denied_taps_with_the_relay(tmp_path):
    env = {**os.environ, "ACCESSD_DEMO_DIR": str(tmp_path / "demo")}
    r = subprocess.run([str(ROOT / "scripts/demo")], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "GRANTED" in out and "relay: unlocked" in out
    assert "DENIED" in out and "denied: unknown credential" in out
    assert "denied: wrong PIN" in out and "denied: expired" in out
    for kind in ("door.prealarm", "door.held_open", "rex", "door.locked"):
        assert kind in out, kind
    assert "sim tap 04A1B2C3" in out            # how to tap from a second terminal
    # the office side: residents imported, a signed bundle pulled, the log back with names
    assert "imported: 4 people" in out and "version 1" in out
    assert "chain intact" in out and "Anna Berg (12A)" in out and "Vera Visitor" in out
    # policy: a courier outside delivery hours, explained; a duress PIN's silent alarm
    assert "denied: outside schedule 'delivery'" in out
    assert "DOES NOT OPEN: denied: outside schedule 'delivery'" in out
    assert "alarm.duress" in out and "duress PIN used" in out
    # a secure card: personalised at the office, opens; a copy of its UID does not
    assert "enrolled ntag424 card" in out and "assurance high" in out
    assert "denied: secure card failed its key check" in out
    assert "GRANTED c" in out.split("entry's OSDP reader")[1].split("\n")[2]    # OSDP
    assert "at entry-osdp" in out and "osdp: ok, secure channel" in out
    assert "(entry 1 of 1)" in out and "pass used up (1 of 1 entries)" in out   # QR pass
    assert "scanned code is not a pass" in out
    assert "Greta (Anna's guest) (visitor's QR pass)" in out   # named at the office
    assert "04D1A2B3C4D5E6" not in (tmp_path / "demo/daemon.log").read_text()
    assert "accessd stopped" in out
    assert "04A1B2C3" not in (tmp_path / "demo/daemon.log").read_text()
    # the live channel (Mosquitto is installed by scripts/test): the office's watch view
    # receives the demo's alarms as they happen, then they are listed and one is acked
    assert "office <- " in out
    assert "ALARM #" in out and "duress PIN" in out and "door held open" in out
    assert "Open alarms" in out and "acknowledged by" in out
    assert "door sim-door-1: mode lockdown" in out
