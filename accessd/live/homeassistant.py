"""Home Assistant MQTT discovery for a door (mqtt.home_assistant = true).

On each connection the door publishes retained discovery messages under
homeassistant/<component>/<node>/<object>/config, so Home Assistant shows a
device per door with:

  lock           the relay (LOCKED / UNLOCKED), from .../status
  binary_sensor  the door contact (device class door) and tamper
  sensor         the last event's kind (its reason as an attribute) and the number
                 of alarms active at the door

all unavailable when .../availability says offline. When Home Assistant
restarts it says "online" on homeassistant/status (its birth message) and the
door publishes its discovery messages again. Home Assistant cannot open
the door: a door takes commands only when the office signed them, so the lock's
command topic is one the door never reads (the ACL does not even let Home
Assistant's account publish there).
"""

from __future__ import annotations

import json

from .. import __version__
from ..core.doorids import clash_key, node_id  # noqa: F401  (re-exported)

PREFIX = "homeassistant"


BIRTH_TOPIC = f"{PREFIX}/status"   # Home Assistant says "online" here when it starts


def discovery(site: str, door: str, base: str) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery message for one door."""
    node = node_id(site, door)
    device = {"identifiers": [node], "name": f"Door {door}", "manufacturer": "accessd",
              "model": "accessd door controller", "sw_version": __version__}
    common = {"availability_topic": f"{base}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    status = f"{base}/status"
    entities = [
        ("lock", "relay", {"name": "Lock", "state_topic": status,
                           "value_template": "{{ 'UNLOCKED' if value_json.relay == 'unlocked' "
                                             "else 'LOCKED' }}",
                           "command_topic": f"{base}/ha/lock-ignored", "optimistic": False}),
        ("binary_sensor", "door", {"name": "Door", "device_class": "door",
                                   "state_topic": status,
                                   "value_template": "{{ 'ON' if value_json.door_open "
                                                     "else 'OFF' }}"}),
        ("binary_sensor", "tamper", {"name": "Tamper", "device_class": "tamper",
                                     "state_topic": status,
                                     "value_template": "{{ 'ON' if 'tamper' in "
                                                       "value_json.alarms else 'OFF' }}"}),
        ("sensor", "last_event", {"name": "Last event", "state_topic": f"{base}/events",
                                  "value_template": "{{ value_json.kind }}",
                                  "json_attributes_topic": f"{base}/events",
                                  "json_attributes_template":
                                      "{{ {'reason': value_json.reason, 'at': value_json.ts}"
                                      " | tojson }}"}),
        ("sensor", "alarms", {"name": "Active alarms", "state_topic": status,
                              "value_template": "{{ value_json.alarms | length }}",
                              "json_attributes_topic": status,
                              "json_attributes_template":
                                  "{{ {'alarms': value_json.alarms} | tojson }}"}),
    ]
    out = []
    for component, obj, cfg in entities:
        # default_entity_id (HA 2025.10+; object_id is gone since 2026.4): the entity id
        # HA gives it, which HA writes in lower case
        doc = {**cfg, **common, "unique_id": f"{node}_{obj}",
               "default_entity_id": f"{component}.{node}_{obj}".lower()}
        out.append((f"{PREFIX}/{component}/{node}/{obj}/config",
                    json.dumps(doc, separators=(",", ":")).encode()))
    return out
