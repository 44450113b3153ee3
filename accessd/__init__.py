"""accessd: the door controller that runs beside each unit door.

Readers put events on one queue, a single core thread decides from a local
encrypted whitelist and drives the lock relay, and every attempt lands in a
hash-chained SQLite event log. See README.md and DESIGN.md.
"""

__version__ = "0.2.0"
