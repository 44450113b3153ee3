"""Door ids as other systems see them: Home Assistant's node id for a door, and the
key under which two door ids would be one door there (and one line of the broker's
ACL). Pure naming rules, shared by the office library and the live channel."""

from __future__ import annotations


def node_id(site: str, door: str) -> str:
    """Home Assistant's node id for a door (letters, digits, '_' and '-' only). Door
    ids that differ only in '.' against '_' or in case would share one (and one line
    of the broker's ACL): the site refuses such a pair (clash_key)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in f"accessd_{site}_{door}")


def clash_key(door: str) -> str:
    """What Home Assistant makes of a door id: two doors with the same key would be
    one device there."""
    return node_id("", door).lower()
