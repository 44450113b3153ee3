"""The office's live view without a broker: messages fed to `Estate` as they would
arrive from accessd/<site>/#, stored in a real site database, drawn by rich."""

import json
import time

from rich.console import Console

from accessd.live import topics
from accessd.live.estate import Estate, plain_line, render
from accessd.site.db import SiteDB
from accessd.storage.eventlog import EventLog, PendingRecord, iter_events, open_reader, utc_iso


def records(tmp_path, door, kinds):
    """Real records of a door's log (hash-chained), as the publisher sends them."""
    log = EventLog(tmp_path / f"{door}.db", door)
    log.append([PendingRecord(utc_iso(time.time()), kind, cred, reason, {})
                for kind, cred, reason in kinds])
    log_id = log.log_id
    log.close()
    conn = open_reader(tmp_path / f"{door}.db")
    rows = list(iter_events(conn))
    conn.close()
    return [topics.event_payload(log_id, r) for r in rows]


def site_with_doors(tmp_path):
    site = SiteDB.init(tmp_path / "site", "riverside")
    site.group_add("g")
    site.door_add("door-a", "g")
    site.door_add("door-b", "g")
    return site


def test_alarms_come_first_then_doors_then_events_with_names(tmp_path):
    site = site_with_doors(tmp_path)
    anna = site.person_add("Anna Berg", "12A", "resident")
    cred = site.credential_add(anna, "nfc", "04A1B2C3")
    est = Estate(site)
    base = topics.base("riverside", "door-a")
    lines = est.feed(f"{base}/availability", b"online", retained=True)
    assert lines == [{"type": "availability", "door": "door-a", "online": True,
                      "retained": True}]
    est.feed(f"{base}/status", json.dumps({"ts": time.time(), "mode": "normal",
                                           "relay": "locked", "door_open": False,
                                           "whitelist": {"version": 3, "credentials": 1}}
                                          ).encode())
    out = []
    for p in records(tmp_path, "door-a", [("access.granted", cred["id"], "granted"),
                                          ("door.forced", None, "door opened while locked")]):
        out += est.feed(f"{base}/events", p)
    assert [x["kind"] for x in out] == ["access.granted", "door.forced"]
    assert out[0]["person"] == "Anna Berg (12A)" and "alarm" not in out[0]
    assert out[1]["alarm"] == "door forced" and out[1]["alarm_id"] == site.alarms()[0]["id"]
    est.feed(f"{topics.base('riverside', 'door-b')}/availability", b"offline")
    console = Console(record=True, width=140)
    console.print(render(est, "UTC"))
    text = console.export_text()
    assert text.index("Open alarms (1)") < text.index("Doors") < text.index("Latest events")
    assert "door forced" in text and "door opened while locked" in text
    row_a = next(line for line in text.splitlines() if "door-a" in line and "online" in line)
    assert "v3, 1 credentials" in row_a and "locked" in row_a
    assert any("door-b" in line and "offline" in line for line in text.splitlines())
    assert "Anna Berg (12A)" in text
    assert "1 online" in text and "1 offline" in text
    assert plain_line(out[1], "UTC").endswith("ALARM #1 door forced: door opened while locked")


def test_a_redelivered_record_is_stored_once_and_shown_once(tmp_path):
    site = site_with_doors(tmp_path)
    est = Estate(site)
    p = records(tmp_path, "door-a", [("rex", None, "request to exit")])[0]
    topic = f"{topics.base('riverside', 'door-a')}/events"
    assert len(est.feed(topic, p)) == 1
    assert est.feed(topic, p) == []                         # QoS 1 redelivery: dropped
    assert site.db.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_bad_messages_are_refused_with_their_reason_and_nothing_is_stored(tmp_path):
    site = site_with_doors(tmp_path)
    est = Estate(site)
    base = topics.base("riverside", "door-a")
    good = json.loads(records(tmp_path, "door-a", [("door.forced", None, "forced")])[0])
    forged = dict(good, reason="nothing to see")
    cases = {
        f"{base}/events": [b"not json", json.dumps(forged).encode(),
                           json.dumps(dict(good, door="door-b")).encode()],
        f"{base}/status": [b"\xff", b"[1, 2]"],
        f"{base}/cmd/ack": [b"{"],
    }
    refused = []
    for topic, payloads in cases.items():
        for p in payloads:
            refused += est.feed(topic, p)
    assert [r["type"] for r in refused] == ["refused"] * 6
    assert "unreadable record" in refused[0]["error"]
    assert "record hash does not match" in refused[1]["error"]
    assert "record of door 'door-b'" in refused[2]["error"]
    assert refused[3]["error"] == "unreadable status"
    assert site.db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert site.alarms() == []                              # a forged alarm opens nothing
    # another site's topics and unknown sub-topics are not ours
    assert est.feed("accessd/elsewhere/door-a/events", json.dumps(good).encode()) == []
    assert est.feed(f"{base}/alarms", json.dumps(good).encode()) == []
