"""The live channel against a real Mosquitto on a free localhost port: the door's
publisher (its event log is the outbox) through broker crashes, a door started
while the broker is down, and a SIGKILLed door; the office stores what arrives
once, with the chain checked."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from accessd.config import load_config
from accessd.errors import ConfigError
from accessd.site import intake
from accessd.site.db import SiteDB
from accessd.testing import DaemonProcess, Mosquitto, write_sim_config

from .helpers import wait_until

UID = "04A1B2C3"


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker")
    yield b
    b.stop()


class Office:
    """An office subscriber with a persistent session (clean_session=False, QoS 1):
    the broker keeps what the doors publish while it is away."""

    def __init__(self, broker, client_id="office-test"):
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("accessd/#", qos=1)
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.reconnect_delay_set(1, 1)
        self.c.connect("127.0.0.1", broker.port, keepalive=30)
        self.c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, c, u, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def events(self, door="door-a"):
        with self.cond:
            return [json.loads(p) for t, p in self.messages
                    if t == f"accessd/riverside/{door}/events"]

    def wait_for(self, pred, timeout=30.0, what="messages"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; have "
                                         f"{[t for t, _ in self.messages][-5:]}")
                self.cond.wait(min(left, 0.5))

    def seqs(self, door="door-a"):
        return [e["seq"] for e in self.events(door)]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def door_config(tmp_path, broker, door="door-a", **mqtt_extra):
    config = write_sim_config(tmp_path / door, door_id=door)
    extra = "".join(f"{k} = {v}\n" for k, v in mqtt_extra.items())
    config.write_text(config.read_text() + f'\n[mqtt]\nurl = "{broker.url}"\nsite = "riverside"\n'
                      f"reconnect_max_seconds = 2\n{extra}")
    return config


def taps(d, n, uid=UID):
    for _ in range(n):
        assert d.request({"op": "sim", "input": "tap", "uid": uid})["decision"] in (
            "granted", "denied")


def last_seq(d):
    return d.request({"op": "status"})["log"]["last_seq"]


def deduped(seqs):
    seen, out = set(), []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def test_records_arrive_in_order_with_no_gap_across_a_broker_crash(tmp_path, broker):
    office = Office(broker)
    d = DaemonProcess(door_config(tmp_path, broker)).wait_ready()
    try:
        taps(d, 20)
        n = last_seq(d)
        office.wait_for(lambda: len(set(office.seqs())) >= n, what=f"{n} records")
        broker.kill()                                   # mid-stream: the broker crashes
        taps(d, 30)                                     # the door decides as before
        st = d.request({"op": "status"})
        assert st["live"]["link"].startswith("disconnected")
        broker.start()
        n = last_seq(d)
        office.wait_for(lambda: len(set(office.seqs())) >= n, what=f"{n} records after")
        wait_until(lambda: d.request({"op": "status"})["live"]["backlog"] == 0,
                   timeout=20, what="the door to see every PUBACK")
        st = d.request({"op": "status"})
    finally:
        d.terminate()
        office.close()
    got = deduped(office.seqs())
    assert got[:n] == list(range(1, n + 1))             # every record, in order, no gap
    assert st["live"]["link"] == "connected" and st["live"]["backlog"] == 0


def test_a_door_started_while_the_broker_is_down_catches_up(tmp_path, broker):
    office = Office(broker)
    office.close()                                      # its session stays at the broker
    broker.stop()
    d = DaemonProcess(door_config(tmp_path, broker)).wait_ready()
    try:
        taps(d, 15)
        n = last_seq(d)
        st = d.request({"op": "status"})
        assert st["live"]["backlog"] >= n - 1 and st["live"]["acked_seq"] == 0
        broker.start()
        office = Office(broker)
        office.wait_for(lambda: len(set(office.seqs())) >= n, what=f"{n} records")
    finally:
        d.terminate()
        office.close()
    assert deduped(office.seqs())[:n] == list(range(1, n + 1))


def test_a_sigkilled_door_resumes_and_the_office_keeps_each_record_once(tmp_path, broker):
    site = SiteDB.init(tmp_path / "site", "riverside")
    office = Office(broker)
    config = door_config(tmp_path, broker)
    d = DaemonProcess(config).wait_ready()
    taps(d, 25)
    n1 = last_seq(d)
    office.wait_for(lambda: len(set(office.seqs())) >= n1, what="first records")
    d.kill()                                            # SIGKILL: no goodbye
    d = DaemonProcess(config).wait_ready()
    try:
        taps(d, 25)
        n = last_seq(d)
        office.wait_for(lambda: len(set(office.seqs())) >= n, what="all records")
    finally:
        d.terminate()
    office.wait_for(lambda: any(e["kind"] == "daemon.stopped" for e in office.events()),
                    what="daemon.stopped")
    office.close()
    rep = intake.DoorIntake("door-a")
    for topic, payload in office.messages:
        if topic.endswith("/events"):
            intake.load_live(site, "door-a", payload, rep)
    assert rep.bad == []
    stored = [r[0] for r in site.db.execute("SELECT seq FROM events ORDER BY seq")]
    total = max(stored)
    assert stored == list(range(1, total + 1))          # no loss, each once
    log_id = site.db.execute("SELECT DISTINCT log FROM events").fetchall()
    assert len(log_id) == 1
    gaps, links = intake.verify_door(site, "door-a", log_id[0][0])
    assert gaps == [] and links == []                   # the chain holds across the kill
    assert rep.added == total


def test_the_office_refuses_a_record_for_another_door_or_garbage(tmp_path, broker):
    site = SiteDB.init(tmp_path / "site", "riverside")
    office = Office(broker)
    d = DaemonProcess(door_config(tmp_path, broker)).wait_ready()
    try:
        taps(d, 1)
        office.wait_for(lambda: len(office.events()) >= 2)
    finally:
        d.terminate()
        office.close()
    payload = next(p for t, p in office.messages if t.endswith("/events"))
    rep = intake.load_live(site, "door-b", payload)             # published as door-b
    assert rep.added == 0 and "record of door 'door-a'" in rep.bad[0][1]
    rep = intake.load_live(site, "door-a", b"\xff not json")
    assert rep.added == 0 and "unreadable record" in rep.bad[0][1]
    forged = json.loads(payload)
    forged["reason"] = "nothing happened"
    rep = intake.load_live(site, "door-a", json.dumps(forged).encode())
    assert rep.bad == [(forged["seq"], "record hash does not match its contents")]


def test_status_and_availability_are_retained(tmp_path, broker):
    d = DaemonProcess(door_config(tmp_path, broker)).wait_ready()
    try:
        taps(d, 1)
        late = Office(broker, client_id="late-office")  # subscribes after the fact
        late.wait_for(lambda: any(t.endswith("/status") for t, _ in late.messages)
                      and any(t.endswith("/availability") for t, _ in late.messages))
    finally:
        d.terminate()
    avail = [p for t, p in late.messages if t.endswith("/availability")]
    status = json.loads([p for t, p in late.messages if t.endswith("/status")][-1])
    late.wait_for(lambda: [p for t, p in late.messages
                           if t.endswith("/availability")][-1] == b"offline",
                  what="offline on a clean stop")
    late.close()
    assert avail[0] == b"online"
    assert status["door"] == "door-a" and status["relay"] in ("locked", "unlocked")
    assert set(status["whitelist"]) == {"credentials", "version", "age_hours"}
    assert "live" in status


@pytest.mark.parametrize("line,message", [
    ('url = "http://127.0.0.1:1883"', "mqtt.url: must be mqtt://host[:port]"),
    ('url = "mqtt://user:pw@127.0.0.1"', "mqtt.url: put the user in mqtt.username"),
    ('url = "mqtt://127.0.0.1"\nsite = "a/b"', "mqtt.site: must be 1-64 letters"),
    ('url = "mqtt://127.0.0.1"\npassword_file = "nope.txt"', "mqtt.password_file: "),
    ('url = "mqtt://127.0.0.1"\nkeepalive_seconds = 1', "mqtt.keepalive_seconds: must be 5 to 3600"),
])
def test_bad_mqtt_config_is_named(tmp_path, line, message):
    config = write_sim_config(tmp_path / "d")
    config.write_text(config.read_text() + f"\n[mqtt]\n{line}\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(config)


def test_a_password_file_readable_by_others_is_refused(tmp_path):
    config = write_sim_config(tmp_path / "d")
    pw = tmp_path / "d" / "mqtt-password"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    config.write_text(config.read_text() + f'\n[mqtt]\nurl = "mqtt://127.0.0.1"\n'
                                           f'username = "door-a"\npassword_file = "{pw}"\n')
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_config(config)
    pw.chmod(0o600)
    assert load_config(config).mqtt.password() == "s3cret"
