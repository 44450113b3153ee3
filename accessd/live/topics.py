"""Topic names and payloads of the live channel (one place, for door and office).

  accessd/<site>/<door>/events        every log record, QoS 1, JSON (seq and hash)
  accessd/<site>/<door>/alarms        the alarm records again, QoS 1
  accessd/<site>/<door>/status        retained: mode, relay, door, readers, whitelist ...
  accessd/<site>/<door>/availability  retained: "online", or "offline" (also the Last Will)
  accessd/<site>/<door>/cmd           office -> door: signed commands (live/commands.py)
  accessd/<site>/<door>/cmd/ack       door -> office: each command's outcome
"""

from __future__ import annotations

import json

ROOT = "accessd"



def base(site: str, door: str) -> str:
    return f"{ROOT}/{site}/{door}"


def event_payload(log_id: str, row: dict) -> bytes:
    """A log record as published: the row exactly as the door wrote it (the same form
    as an uploaded batch's line), so the office checks its hash and chain the same way."""
    return json.dumps({**row, "log": log_id}, separators=(",", ":")).encode()
