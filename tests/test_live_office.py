"""The office's side of the live channel against a real Mosquitto configured with the
files `accessctl broker setup` writes (password file, ACL, listener): door accounts
and the ACL between doors, signed commands (and the forged, replayed, expired and
foreign ones refused), remote capture for enrolment, `watch`, `alarms` and `ack`.
accessctl runs as its own process, as staff run it (the site's setup before each test
runs in this process, to save the start-up of eight processes a test)."""

import json
import shutil
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accessd.live import commands as wire
from accessd.live import broker as site_broker
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys
from accessd.storage.keys import write_key_file
from accessd.sync.token import issue
from accessd.testing import DaemonProcess, Mosquitto, free_tcp_port, write_sim_config

from .helpers import setup_site, wait_until

UID = "04A1B2C3"
STRANGER = "04000000"     # a card nobody holds: denied, so the door stays locked


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


class Estate:
    """A site with two doors, its broker set up by `accessctl broker setup` and running."""

    def __init__(self, tmp_path, persistence=True):
        self.tmp = tmp_path
        self.site_dir = tmp_path / "site"
        setup = self.setup_ctl      # the steps before the test: in this process
        setup("site", "init", "riverside")
        setup("group", "add", "bldg-a")
        for d in ("door-a", "door-b"):
            setup("door", "add", d, "--group", "bldg-a")
        self.anna = json.loads(setup("person", "add", "--name", "Anna Berg", "--unit", "12A",
                                     "--group", "bldg-a", "--json"))["person"]
        setup("enroll", "--person", self.anna, "--kind", "nfc", "--uid", UID)
        setup("publish")
        self.store = json.loads(setup("site", "show", "--json"))["store"]
        self.port = free_tcp_port()
        self.out = tmp_path / "broker-files"
        setup("broker", "setup", str(self.out), "--url", f"mqtt://127.0.0.1:{self.port}",
              "--listen", f"127.0.0.1:{self.port}", "--install-dir", str(self.out / "mosquitto"))
        conf = (self.out / "mosquitto" / "accessd.conf").read_text()
        self.broker = Mosquitto(tmp_path / "broker", port=self.port, extra=conf, listener=False,
                                persistence=persistence)
        self.doors = {}

    def setup_ctl(self, *args) -> str:
        return setup_site(self.site_dir, *args)

    def ctl(self, *args, ok=True, stdin=None):
        r = run("--site", str(self.site_dir), *args, stdin=stdin)
        if ok is not None:
            assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r

    def door(self, door="door-a", *, password=None, connected=True, readers=None):
        d = self.tmp / door
        config = write_sim_config(d, keys=False, door_id=door,
                                  **({"readers": readers} if readers else {}))
        site = SiteDB.open(self.site_dir)
        write_key_file(d / "keys/door-keys.json", door_keys(site, door))
        site.close()
        shutil.copy(self.out / "doors" / door / "mqtt-password", d / "mqtt-password")
        if password is not None:
            (d / "mqtt-password").write_text(password + "\n")
        toml = (self.out / "doors" / door / "mqtt.toml").read_text().replace(
            "/etc/accessd/mqtt-password", str(d / "mqtt-password"))
        config.write_text(config.read_text() + "\n" + toml + "reconnect_max_seconds = 2\n"
                          + f'[sync]\nurl = "{self.store}"\ninterval_seconds = 3600\n')
        proc = DaemonProcess(config).wait_ready()
        self.doors[door] = proc
        assert proc.request({"op": "sync"})["ok"]
        if connected:
            wait_until(lambda: proc.request({"op": "status"})["live"]["link"] == "connected",
                       timeout=20, what=f"{door} to log in to the broker")
        return proc

    def password(self, user):
        site = SiteDB.open(self.site_dir)
        try:
            return site_broker.password(site, user)
        finally:
            site.close()

    def signing_key(self):
        site = SiteDB.open(self.site_dir)
        try:
            return site.keys.signing
        finally:
            site.close()

    def close(self):
        for d in self.doors.values():
            d.terminate()
        self.broker.stop()


@pytest.fixture
def estate(tmp_path):
    e = Estate(tmp_path)
    yield e
    e.close()


class Client:
    """A plain MQTT client logged in as one of the site's accounts."""

    def __init__(self, port, user, password, client_id=""):
        self.messages = []
        self.cond = threading.Condition()
        self.rc = None
        self.subacks = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user, password)
        self.c.on_message = self._msg
        self.c.on_connect = self._conn
        self.c.on_subscribe = self._sub
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        with self.cond:
            self.cond.wait_for(lambda: self.rc is not None, 10)

    def _conn(self, c, u, f, rc, p):
        with self.cond:
            self.rc = rc
            self.cond.notify_all()

    def _msg(self, c, u, m):
        with self.cond:
            self.messages.append((m.topic, bytes(m.payload)))
            self.cond.notify_all()

    def _sub(self, c, u, mid, codes, p):
        with self.cond:
            self.subacks[mid] = codes
            self.cond.notify_all()

    def subscribe(self, topic):
        _, mid = self.c.subscribe(topic, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.subacks, 10)
            return not any(c.is_failure for c in self.subacks[mid])

    def wait_for(self, pred, timeout=20.0, what="a message"):
        with self.cond:
            assert self.cond.wait_for(pred, timeout), f"timed out waiting for {what}"

    def on(self, topic):
        with self.cond:
            return [p for t, p in self.messages if t == topic]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_the_broker_takes_the_generated_accounts_and_the_acl_keeps_doors_apart(estate):
    a = Client(estate.port, "door-door-a@riverside", estate.password("door-door-a@riverside"))
    b = Client(estate.port, "door-door-b@riverside", estate.password("door-door-b@riverside"))
    office = Client(estate.port, "office@riverside", estate.password("office@riverside"))
    intruder = Client(estate.port, "door-door-a@riverside", "not-the-password")
    anonymous = Client(estate.port, None, None)
    try:
        assert not a.rc.is_failure and not b.rc.is_failure and not office.rc.is_failure
        assert intruder.rc.is_failure and anonymous.rc.is_failure   # refused at login
        assert office.subscribe("accessd/riverside/#")
        assert b.subscribe("accessd/riverside/door-b/cmd")
        a.subscribe("accessd/riverside/door-b/cmd")   # granted by Mosquitto 2.0, but the
        # ACL is checked again on delivery: nothing of B's reaches A (asserted below)
        assert a.subscribe("accessd/riverside/door-a/cmd")
        a.c.publish("accessd/riverside/door-b/events", b"{}", qos=1)   # A posing as B
        a.c.publish("accessd/riverside/door-a/cmd", b"self-made", qos=1)  # A commanding A
        a.c.publish("accessd/riverside/door-a/events", b"from-a", qos=1)
        office.c.publish("accessd/riverside/door-b/cmd", b"for-b", qos=1)
        office.wait_for(lambda: office.on("accessd/riverside/door-a/events") == [b"from-a"],
                        what="A's own record")
        b.wait_for(lambda: b.on("accessd/riverside/door-b/cmd") == [b"for-b"],
                   what="B's command")
        # a marker after the rest: everything before it has been routed (or dropped)
        a.c.publish("accessd/riverside/door-a/status", b"marker", qos=1)
        office.wait_for(lambda: office.on("accessd/riverside/door-a/status") == [b"marker"])
    finally:
        for c in (a, b, office, intruder, anonymous):
            c.close()
    assert office.on("accessd/riverside/door-b/events") == []      # A's forgery dropped
    assert a.on("accessd/riverside/door-a/cmd") == []               # A cannot command itself
    assert a.on("accessd/riverside/door-b/cmd") == []
    passwd = (estate.out / "mosquitto" / "passwd").read_text()
    assert "$7$101$" in passwd and estate.password("office@riverside") not in passwd
    assert (estate.out / "doors" / "door-a" / "mqtt-password").stat().st_mode & 0o077 == 0


def test_a_door_with_a_wrong_password_is_refused_and_says_so_and_still_decides(estate):
    d = estate.door("door-a", password="guessed", connected=False)
    wait_until(lambda: d.request({"op": "status"})["live"]["link"].startswith(
        "refused by the broker: Not authorized"), timeout=20, what="the refusal")
    assert d.request({"op": "sim", "input": "tap", "uid": UID})["decision"] == "granted"
    assert d.request({"op": "status"})["live"]["backlog"] > 0      # kept for later


def test_setup_again_keeps_passwords_and_rotate_changes_them(estate):
    before = (estate.out / "doors" / "door-a" / "mqtt-password").read_text()
    estate.ctl("door", "add", "door-c", "--group", "bldg-a")
    estate.ctl("broker", "setup", str(estate.out), "--url", f"mqtt://127.0.0.1:{estate.port}")
    assert (estate.out / "doors" / "door-a" / "mqtt-password").read_text() == before
    assert (estate.out / "doors" / "door-c" / "mqtt-password").exists()
    assert "user door-door-c@riverside" in (estate.out / "mosquitto" / "acl").read_text()
    estate.ctl("broker", "setup", str(estate.out), "--url", f"mqtt://127.0.0.1:{estate.port}",
               "--rotate")
    assert (estate.out / "doors" / "door-a" / "mqtt-password").read_text() != before
    r = estate.ctl("broker", "setup", str(estate.out), "--url", "http://x", ok=False)
    assert r.returncode == 1 and "must be mqtt://HOST[:PORT]" in r.stderr
    r = estate.ctl("broker", "setup", str(estate.out), "--url", "mqtt://x",
                   "--listen", "nowhere", ok=False)
    assert "--listen" in r.stderr and "HOST:PORT" in r.stderr


def door_log(proc, kind):
    return [e for e in proc.events() if e["kind"] == kind]


def test_remote_mode_and_unlock_are_carried_out_and_logged_with_who(estate):
    d = estate.door("door-a")
    r = estate.ctl("remote", "mode", "door-a", "lockdown")
    assert "door door-a: mode lockdown" in r.stdout
    assert d.request({"op": "status"})["mode"] == "lockdown"
    changed = door_log(d, "door.mode")[-1]
    assert "via MQTT" in changed["reason"] and "normal -> lockdown" in changed["reason"]
    estate.ctl("remote", "mode", "door-a", "normal")
    r = estate.ctl("remote", "unlock", "door-a")
    assert "door door-a: unlocked (relay unlocked)" in r.stdout
    assert "via MQTT" in door_log(d, "unlock.remote")[-1]["reason"]
    received = [e["detail"]["cmd"] for e in door_log(d, "cmd.received")]
    assert received == ["mode", "mode", "unlock"]
    r = estate.ctl("remote", "sync-now", "door-a")
    assert "door door-a: " in r.stdout and "up to date" in r.stdout
    # door-b is not running: nobody answers
    r = estate.ctl("remote", "mode", "door-b", "lockdown", "--timeout", "2", ok=False)
    assert "door door-b did not answer within 2 s" in r.stderr
    r = estate.ctl("remote", "mode", "no-such-door", "lockdown", ok=False)
    assert "no-such-door" in r.stderr


def test_forged_replayed_expired_and_foreign_commands_are_refused_and_logged(estate):
    d = estate.door("door-a")
    office = Client(estate.port, "office@riverside", estate.password("office@riverside"))
    key = estate.signing_key()
    topic = "accessd/riverside/door-a/cmd"
    try:
        assert office.subscribe(f"{topic}/ack")

        def send(message):
            n = len(office.on(f"{topic}/ack"))
            office.c.publish(topic, message, qos=1)
            office.wait_for(lambda: len(office.on(f"{topic}/ack")) > n, what="an ack")
            return json.loads(office.on(f"{topic}/ack")[-1])

        now = time.time()
        good, _ = wire.sign(key, site="riverside", door="door-a", cmd="mode",
                            args={"mode": "lockdown"}, now=now, by="test")
        assert send(good)["ok"] is True
        d.request({"op": "mode", "mode": "normal"})
        replay = send(good)
        forged, _ = wire.sign(Ed25519PrivateKey.generate(), site="riverside", door="door-a",
                              cmd="mode", args={"mode": "held-open"}, now=now)
        expired, _ = wire.sign(key, site="riverside", door="door-a", cmd="mode",
                               args={"mode": "held-open"}, now=now - 120, ttl=60)
        for_b, _ = wire.sign(key, site="riverside", door="door-b", cmd="mode",
                             args={"mode": "held-open"}, now=now)
        foreign, _ = wire.sign(key, site="elsewhere", door="door-a", cmd="mode",
                               args={"mode": "held-open"}, now=now)
        body, sig = good.decode().split(".")
        altered = (wire._b64(wire._unb64(body).replace(b"lockdown", b"held-open")) + "." + sig)
        token = issue(key, "door-a", now=now, ttl=30).encode()   # a token is not a command
        answers = {name: send(m) for name, m in [
            ("forged", forged), ("expired", expired), ("for_b", for_b), ("foreign", foreign),
            ("altered", altered.encode()), ("token", token), ("garbage", b"\xff\x00 hello")]}
    finally:
        office.close()
    assert replay["ok"] is False and "already received (replay)" in replay["error"]
    assert "bad signature" in answers["forged"]["error"]
    assert "expired" in answers["expired"]["error"]
    assert "for door 'door-b'" in answers["for_b"]["error"]
    assert "for site 'elsewhere'" in answers["foreign"]["error"]
    assert "bad signature" in answers["altered"]["error"]
    assert "bad signature" in answers["token"]["error"]
    assert "malformed" in answers["garbage"]["error"]
    assert all(a["ok"] is False for a in answers.values())
    assert d.request({"op": "status"})["mode"] == "normal"        # nothing was carried out
    rejected = door_log(d, "cmd.rejected")
    assert len(rejected) == 8                                     # each one logged
    assert all(r["reason"].startswith("command refused: ") for r in rejected)


def test_remote_capture_enrols_a_card_and_its_number_never_crosses_the_broker(estate):
    d = estate.door("door-a")
    sniffer = Client(estate.port, "office@riverside", estate.password("office@riverside"))
    assert sniffer.subscribe("accessd/riverside/#")
    bo = json.loads(estate.ctl("person", "add", "--name", "Bo Lund", "--unit", "14C",
                               "--json").stdout)["person"]
    proc = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                             str(estate.site_dir), "enroll", "--person", bo, "--kind", "nfc",
                             "--capture-at", "door-a", "--capture-timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: door_log(d, "cmd.received"), timeout=30,
                   what="the door to take the capture command")
        d.request({"op": "sim", "input": "tap", "uid": "04C0FFEE"})
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sniffer.close()
    assert proc.returncode == 0, out + err
    assert "enrolled nfc" in out and "Bo Lund (14C)" in out
    site = SiteDB.open(estate.site_dir)
    try:
        assert site.credential_holder("nfc", "04C0FFEE") == bo
    finally:
        site.close()
    everything = b"".join(p for _, p in sniffer.messages)
    assert b"04C0FFEE" not in everything.upper() and b"04c0ffee" not in everything
    assert any(b'"sealed"' in p for t, p in sniffer.messages if t.endswith("/cmd/ack"))


def test_watch_stores_events_with_names_opens_alarms_and_ack_closes_them(estate):
    d = estate.door("door-a")
    watch = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                              str(estate.site_dir), "watch", "--json", "--seconds", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(60, watch.kill)
    killer.start()
    lines = []
    try:
        lines.append(json.loads(watch.stdout.readline()))   # subscribed: retained state
        d.request({"op": "sim", "input": "door", "state": "open"})  # no grant: forced
        d.request({"op": "sim", "input": "door", "state": "closed"})
        d.request({"op": "sim", "input": "tap", "uid": UID})       # Anna: granted
        for text in watch.stdout:
            lines.append(json.loads(text))
            if lines[-1].get("kind") == "access.granted":
                break
    finally:
        killer.cancel()
        watch.kill()
        watch.wait(10)
    events = [x for x in lines if x["type"] == "event"]
    granted = next(e for e in events if e["kind"] == "access.granted")
    assert granted["person"] == "Anna Berg (12A)" and granted["door"] == "door-a"
    forced_line = next(e for e in events if e["kind"] == "door.forced")
    assert forced_line["alarm"] == "door forced" and forced_line["alarm_id"]
    assert any(x["type"] == "availability" and x["online"] for x in lines)
    r = estate.ctl("alarms", "--json")
    alarms = json.loads(r.stdout)
    forced = [a for a in alarms if a["kind"] == "door.forced"]
    assert len(forced) == 1 and forced[0]["door"] == "door-a"
    plain = estate.ctl("alarms").stdout
    assert "door forced" in plain and f"{forced[0]['id']}" in plain
    r = estate.ctl("ack", str(forced[0]["id"]), "--note", "checked: resident's guest")
    assert f"alarm #{forced[0]['id']} acknowledged by" in r.stdout
    assert not [a for a in json.loads(estate.ctl("alarms", "--json").stdout)
                if a["kind"] == "door.forced"]
    acked = [a for a in json.loads(estate.ctl("alarms", "--all", "--json").stdout)
             if a["kind"] == "door.forced"][0]
    assert acked["acked_by"] and acked["note"] == "checked: resident's guest"
    r = estate.ctl("ack", str(forced[0]["id"]), ok=False)
    assert "already acknowledged" in r.stderr
    r = estate.ctl("ack", "999999", ok=False)
    assert "no alarm #999999" in r.stderr
    # what watch stored is in the office's log, checked like an upload
    site = SiteDB.open(estate.site_dir)
    try:
        kinds = [k for (k,) in site.db.execute("SELECT kind FROM events WHERE door = 'door-a'")]
    finally:
        site.close()
    assert "access.granted" in kinds and "door.forced" in kinds
    # the nightly upload then only fills the gaps, and the chain is checked across both
    live = len(kinds)
    d.terminate()
    r = subprocess.run([sys.executable, "-m", "accessd", "upload", "--config", str(d.config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = estate.ctl("logs", "pull")
    assert "door-a: 1 batch" in r.stdout and f"{live} already had" in r.stdout
    assert "chain intact" in r.stdout


def test_office_commands_without_a_broker_say_what_to_do(tmp_path):
    site = tmp_path / "site"
    assert run("--site", str(site), "site", "init", "riverside").returncode == 0
    r = run("--site", str(site), "watch", "--seconds", "1")
    assert r.returncode == 1 and "no broker yet: run 'accessctl broker setup'" in r.stderr
    port = free_tcp_port()       # nothing listens there
    r = run("--site", str(site), "watch", "--broker", f"mqtt://127.0.0.1:{port}")
    assert r.returncode == 1 and f"cannot reach the broker 127.0.0.1:{port}" in r.stderr
    r = run("--site", str(site), "alarms")
    assert r.returncode == 0 and "no open alarms" in r.stdout
    r = run("--site", str(site), "watch", "--session", "my terminal")
    assert r.returncode == 1 and "--session: letters, digits" in r.stderr


def test_home_assistant_sees_each_door_as_a_device_and_cannot_command_it(estate):
    d = estate.door("door-a")
    ha = Client(estate.port, "homeassistant@riverside",
                (estate.out / "homeassistant" / "mqtt-password").read_text().strip())
    try:
        assert not ha.rc.is_failure
        ha.subscribe("homeassistant/#")
        ha.subscribe("accessd/riverside/+/status")
        ha.wait_for(lambda: len([t for t, _ in ha.messages if t.endswith("/config")]) >= 5,
                    what="the discovery messages (retained)")
        ha.wait_for(lambda: ha.on("accessd/riverside/door-a/status"), what="a status")
        # Home Assistant's account publishing a (signed!) command: dropped by the ACL
        message, _ = wire.sign(estate.signing_key(), site="riverside", door="door-a",
                               cmd="mode", args={"mode": "held-open"}, now=time.time())
        ha.c.publish("accessd/riverside/door-a/cmd", message, qos=1).wait_for_publish(5)
        assert estate.ctl("remote", "mode", "door-a", "normal").returncode == 0  # a marker
    finally:
        ha.close()
    configs = {t: json.loads(p) for t, p in ha.messages if t.endswith("/config")}
    node = "accessd_riverside_door-a"
    assert set(configs) == {f"homeassistant/lock/{node}/relay/config",
                            f"homeassistant/binary_sensor/{node}/door/config",
                            f"homeassistant/binary_sensor/{node}/tamper/config",
                            f"homeassistant/sensor/{node}/last_event/config",
                            f"homeassistant/sensor/{node}/alarms/config"}
    lock = configs[f"homeassistant/lock/{node}/relay/config"]
    assert lock["state_topic"] == "accessd/riverside/door-a/status"
    assert lock["availability_topic"] == "accessd/riverside/door-a/availability"
    assert lock["device"]["identifiers"] == [node]
    assert len({c["unique_id"] for c in configs.values()}) == 5
    # HA 2026.4 takes default_entity_id (its domain first) and no longer object_id
    assert all("object_id" not in c for c in configs.values())
    assert lock["default_entity_id"] == "lock.accessd_riverside_door-a_relay"
    assert configs[f"homeassistant/sensor/{node}/alarms/config"]["default_entity_id"] == \
        "sensor.accessd_riverside_door-a_alarms"
    status = json.loads(ha.on("accessd/riverside/door-a/status")[-1])
    assert status["relay"] == "locked" and status["door_open"] is False  # what templates read
    assert [e["detail"]["cmd"] for e in door_log(d, "cmd.received")] == ["mode"]  # ours only
    assert d.request({"op": "status"})["mode"] == "normal"


def test_tls_to_the_broker_with_the_sites_ca_and_a_wrong_ca_is_refused(tmp_path):
    from accessd.testing import make_tls
    ca, crt, key = make_tls(tmp_path / "tls")
    other_ca, _, _ = make_tls(tmp_path / "other", name="impostor")
    e = Estate.__new__(Estate)
    e.tmp, e.site_dir, e.doors = tmp_path, tmp_path / "site", {}
    e.ctl("site", "init", "riverside")
    e.ctl("group", "add", "bldg-a")
    e.ctl("door", "add", "door-a", "--group", "bldg-a")
    e.ctl("publish")
    e.store = json.loads(e.ctl("site", "show", "--json").stdout)["store"]
    e.port = free_tcp_port()
    e.out = tmp_path / "broker-files"
    e.ctl("broker", "setup", str(e.out), "--url", f"mqtts://127.0.0.1:{e.port}",
          "--listen", f"127.0.0.1:{e.port}", "--install-dir", str(e.out / "mosquitto"),
          "--tls-cert", str(crt), "--tls-key", str(key), "--ca-file", str(ca))
    conf = (e.out / "mosquitto" / "accessd.conf").read_text()
    assert f"certfile {crt}" in conf and "tls_version tlsv1.2" in conf
    e.broker = Mosquitto(tmp_path / "broker", port=e.port, extra=conf, listener=False)
    try:
        # the door's mqtt.toml names /etc/accessd/ca.crt: put the site's CA there for it
        toml = e.out / "doors" / "door-a" / "mqtt.toml"
        toml.write_text(toml.read_text().replace("/etc/accessd/ca.crt", str(ca)))
        d = e.door("door-a")                           # logs in over TLS
        r = e.ctl("remote", "mode", "door-a", "lockdown")   # the office too (its CA file)
        assert "mode lockdown" in r.stdout
        d.terminate()
        toml.write_text(toml.read_text().replace(str(ca), str(other_ca)))
        config = write_sim_config(tmp_path / "door-a", keys=False, door_id="door-a")
        config.write_text(config.read_text() + "\n" + toml.read_text().replace(
            "/etc/accessd/mqtt-password", str(tmp_path / "door-a" / "mqtt-password")))
        bad = DaemonProcess(config).wait_ready()       # the door runs, but will not log in
        e.doors["bad"] = bad
        wait_until(lambda: "certificate verify failed" in bad.request({"op": "status"})[
            "live"]["link"], timeout=20, what="the link to report the certificate")
        assert bad.request({"op": "sim", "input": "tap", "uid": UID})["ok"]  # still decides
    finally:
        e.close()


def test_home_assistant_may_say_it_is_back_and_the_doors_announce_themselves_again(estate):
    """HA publishes "online" on homeassistant/status when it starts (its birth message):
    its account may (it could not), and each door sends its discovery again."""
    estate.door("door-a")
    ha = Client(estate.port, "homeassistant@riverside",
                (estate.out / "homeassistant" / "mqtt-password").read_text().strip())
    try:
        ha.subscribe("homeassistant/#")
        ha.wait_for(lambda: len([t for t, _ in ha.messages if t.endswith("/config")]) >= 5,
                    what="the discovery messages (retained)")
        before = len(ha.messages)
        ha.c.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
        ha.wait_for(lambda: ha.on("homeassistant/status") == [b"online"],
                    what="HA's own birth message (the ACL let it through)")
        ha.wait_for(lambda: len([t for t, _ in ha.messages[before:]
                                 if t.endswith("/config")]) >= 5,
                    what="door-a announcing itself again")
    finally:
        ha.close()


def test_a_left_over_or_cleared_command_message_raises_no_alarm(estate):
    """A retained message left on a door's command topic is not a command sent now, and
    an empty one (how a retained message is cleared) is never a command: neither is
    logged as a refused command (an alarm) at the door, at start or after."""
    office = Client(estate.port, "office@riverside", estate.password("office@riverside"))
    try:
        office.c.publish("accessd/riverside/door-a/cmd", b"left-over", qos=1,
                         retain=True).wait_for_publish(5)
        d = estate.door("door-a")
        office.c.publish("accessd/riverside/door-a/cmd", b"", qos=1,
                         retain=True).wait_for_publish(5)      # cleared, while it listens
        assert estate.ctl("remote", "mode", "door-a", "normal").returncode == 0  # a marker
    finally:
        office.close()
    assert door_log(d, "cmd.rejected") == []
    assert [e["detail"]["cmd"] for e in door_log(d, "cmd.received")] == ["mode"]
    assert "ignored a retained message" in d.stderr()


def test_door_ids_home_assistant_would_take_for_one_are_refused(tmp_path):
    site = SiteDB.init(tmp_path / "site", "riverside")
    try:
        site.group_add("gates")
        site.door_add("gate.1", "gates")
        for twin in ("gate_1", "Gate.1", "GATE_1"):
            with pytest.raises(Exception, match=f"door id '{twin}' is too like door 'gate.1'"):
                site.door_add(twin, "gates")
        site.door_add("gate-1", "gates")       # '-' stays '-': a door of its own
        assert [d["id"] for d in site.doors()] == ["gate-1", "gate.1"]
        acl = site_broker.acl("riverside", [d["id"] for d in site.doors()])
        lines = [ln for ln in acl.splitlines() if ln.startswith("topic write homeassistant/")]
        assert len(lines) == len(set(lines)) == 3      # two doors and HA's birth message
    finally:
        site.close()


@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "no-persistence"])
def test_watch_hears_every_record_once_across_a_broker_killed_with_sigkill(tmp_path,
                                                                          persistence):
    """The broker is SIGKILLed mid-stream (with its state saved every second, and run
    from the generated accessd.conf alone: nothing kept) while the door goes on, a
    forced door among its records; it comes back on the same port. `watch` says it is
    not receiving, subscribes again, and asks the door for what the broker lost: the
    office stores every record once, in order, and the alarm is open (watch once
    subscribed once only and heard nothing more, while running)."""
    e = Estate(tmp_path, persistence=persistence)
    watch = None
    try:
        d = e.door("door-a")
        watch = subprocess.Popen([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                                  str(e.site_dir), "watch", "--json", "--seconds", "120"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[dict] = []
        cond = threading.Condition()

        def read():
            for text in watch.stdout:
                with cond:
                    lines.append(json.loads(text))
                    cond.notify_all()
        threading.Thread(target=read, daemon=True).start()

        def seen(pred, what, timeout=60):
            with cond:
                assert cond.wait_for(lambda: any(pred(x) for x in lines), timeout), \
                f"watch never printed {what}"

        def last_seq():
            return d.request({"op": "status"})["log"]["last_seq"]
        seen(lambda x: x["type"] == "status", "the retained status")
        for _ in range(3):
            d.request({"op": "sim", "input": "tap", "uid": STRANGER})
        n = last_seq()
        seen(lambda x: x.get("type") == "event" and x["seq"] == n, f"record #{n}")
        e.broker.kill()                                      # SIGKILL
        seen(lambda x: x == {**x, "type": "link", "receiving": False}, "NOT RECEIVING")
        d.request({"op": "sim", "input": "door", "state": "open"})     # forced: an alarm
        d.request({"op": "sim", "input": "door", "state": "closed"})
        for _ in range(4):
            d.request({"op": "sim", "input": "tap", "uid": STRANGER})
        e.broker.start()                                     # the same port
        for _ in range(2):
            d.request({"op": "sim", "input": "tap", "uid": STRANGER})
        n = last_seq()
        seen(lambda x: x["type"] == "link" and x["receiving"], "receiving again")
        seen(lambda x: x.get("type") == "event" and x["seq"] == n, f"record #{n}", 90)
        with cond:
            assert cond.wait_for(lambda: {x["seq"] for x in lines if x["type"] == "event"}
                                 >= set(range(1, n + 1)), 60), "a record never arrived"
    finally:
        if watch is not None:
            watch.kill()
            watch.wait(10)
        e.close()
    printed = [x["seq"] for x in lines if x["type"] == "event"]
    assert sorted(printed) == list(range(1, len(printed) + 1))      # each once, none missing
    site = SiteDB.open(e.site_dir)
    try:
        seqs = [s for (s,) in site.db.execute(
            "SELECT seq FROM events WHERE door = 'door-a' ORDER BY seq")]
        assert seqs[:n] == list(range(1, n + 1))                     # stored once each
        assert [a["kind"] for a in site.alarms(open_only=True)].count("door.forced") == 1
    finally:
        site.close()


def test_records_a_restarted_broker_dropped_are_asked_of_the_door(tmp_path):
    """A broker run without persistence restarts while no watch runs: it has forgotten
    the office's session, and drops what the door publishes meanwhile (nobody
    subscribed). The next watch learns the door's log head from its status and asks
    the door for the records it missed; the door sends them from its log."""
    e = Estate(tmp_path, persistence=False)
    try:
        d = e.door("door-a")

        def watch(count):
            r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                                str(e.site_dir), "watch", "--json", "--count", str(count),
                                "--seconds", "60"], capture_output=True, text=True, timeout=90)
            return [json.loads(x) for x in r.stdout.splitlines()]
        d.request({"op": "sim", "input": "tap", "uid": STRANGER})
        before = d.request({"op": "status"})["log"]["last_seq"]
        assert {x["seq"] for x in watch(before) if x["type"] == "event"} == \
            set(range(1, before + 1))
        e.broker.kill()
        e.broker.start()
        wait_until(lambda: d.request({"op": "status"})["live"]["link"] == "connected",
                   timeout=20, what="the door back on the broker")
        for _ in range(3):
            d.request({"op": "sim", "input": "tap", "uid": STRANGER})
        wait_until(lambda: d.request({"op": "status"})["live"]["backlog"] == 0, timeout=20,
                   what="the broker to take (and drop) the door's records")
        head = d.request({"op": "status"})["log"]["last_seq"]
        lines = watch(head - before)
    finally:
        e.close()
    asks = [x for x in lines if x["type"] == "backfill"]
    assert asks and asks[0]["door"] == "door-a" and asks[0]["from"] == before + 1
    assert sorted(x["seq"] for x in lines if x["type"] == "event") == \
        list(range(before + 1, head + 1))


def test_publish_push_reaches_every_door_at_once_and_wait_names_the_late_ones(estate):
    """A revocation with --push: each door is told over the live channel to sync now
    (their timers are an hour away), and publish waits until every door says it runs
    the new version; with a door switched off, --wait names it and exits 1."""
    a, b = estate.door("door-a"), estate.door("door-b")
    card = json.loads(estate.ctl("list", "--json").stdout)[0]["id"]
    estate.ctl("revoke", card, "--mark", "lost")
    r = estate.ctl("publish", "--push")
    assert "applied by 2 of 2 doors" in r.stdout, r.stdout + r.stderr
    for d in (a, b):
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["reason"] == \
            "denied: credential reported lost"
    b.terminate()
    del estate.doors["door-b"]
    r = estate.ctl("publish", "--push", "--wait", "5", ok=False)
    assert r.returncode == 1
    assert "applied by 1 of 2 doors" in r.stdout and "not yet applied (1): door-b" in r.stderr
    # no push: door-a's timer is an hour away, so neither has it within 3 s
    doc = json.loads(estate.ctl("publish", "--wait", "3", "--json", ok=False).stdout)
    assert doc["doors"] == {"door-a": None, "door-b": None}
