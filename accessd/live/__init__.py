"""The live channel: a door's events, alarms and status to an MQTT broker in real time."""
