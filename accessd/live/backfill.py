"""What the office is missing of each door's live log, and when to ask the door again.

A broker killed before it saved its state, or one run without persistence,
loses the office's session and whatever it held for it; records published while
the office was away from a restarted broker are dropped too. None of that is
lost at the door: its event log is its outbox. So the office compares the head
of each door's log (the `log` of its retained status: identity and last number)
and the records it has seen (the highest number stored for that log, in the site
database, whether it came live or in an upload) and, when a gap outlives GRACE
seconds (records may still be on their way), sends the door a signed `resend`
command from the first missing number; the door publishes from there again and
the intake keeps each record once. Asked again after RETRY seconds if nothing
came. A log the office has never seen a record of is left to the nightly upload
when it is longer than FIRST_FILL records (no flood of old history at first watch).

Pure bookkeeping: times are passed in, the caller sends the commands.
"""

from __future__ import annotations

from dataclasses import dataclass

GRACE = 3.0          # seconds a gap may be records still in flight
RETRY = 30.0         # seconds before asking the same door again with no progress
FIRST_FILL = 5000    # records of a log never seen that are asked for at most


@dataclass
class _Door:
    log: str = ""
    head: int = 0          # the door's last record, as its status says
    have: int | None = None   # the highest number stored of `log` (None: not read yet)
    gap_since: float | None = None
    asked_at: float | None = None
    asked_have: int = 0


class GapFiller:
    def __init__(self, site):
        self.site = site
        self.doors: dict[str, _Door] = {}
        self.asked = 0

    def _stored(self, door: str, log: str) -> int:
        row = self.site.db.execute("SELECT max(seq) FROM events WHERE door = ? AND log = ?",
                                   [door, log]).fetchone()
        return row[0] or 0

    def _door(self, door: str, log: str) -> _Door:
        d = self.doors.setdefault(door, _Door())
        if d.log != log:                   # a door's new log: start over
            d.log, d.head, d.have, d.gap_since, d.asked_at = log, 0, None, None, None
        if d.have is None:
            d.have = self._stored(door, log)
        return d

    def heard(self, door: str, log: str, head: int, now: float) -> None:
        """The door's status: its log `log` ends at `head`."""
        if not isinstance(log, str) or type(head) is not int or head < 0:
            return
        d = self._door(door, log)
        d.head = max(d.head, head)
        self._check(d, now)

    def arrived(self, door: str, log: str, seq: int, now: float) -> None:
        """A record of `door`'s log came and was stored (or was had already)."""
        d = self._door(door, log)
        if seq > d.head:
            d.head = seq
        if seq == d.have + 1:
            d.have = seq
        elif seq > d.have + 1:       # a hole before it: was it filled meanwhile?
            d.have = max(d.have, self._contiguous(door, log, d.have))
        self._check(d, now)

    def _contiguous(self, door: str, log: str, start: int) -> int:
        """The end of the run of stored records that follows `start`."""
        n = start
        for (seq,) in self.site.db.execute(
                "SELECT seq FROM events WHERE door = ? AND log = ? AND seq > ? ORDER BY seq",
                [door, log, start]):
            if seq != n + 1:
                break
            n = seq
        return n

    def _check(self, d: _Door, now: float) -> None:
        if d.head <= d.have:
            d.gap_since = None
        elif d.gap_since is None:
            d.gap_since = now

    def due(self, now: float) -> list[tuple[str, str, int]]:
        """(door, log, first missing record) for each door to ask now."""
        out = []
        for door, d in self.doors.items():
            if d.gap_since is None or now - d.gap_since < GRACE:
                continue
            if d.have == 0 and d.head > FIRST_FILL:
                continue                     # never seen: the nightly upload brings it
            if d.asked_at is not None and now - d.asked_at < RETRY and d.have == d.asked_have:
                continue
            if d.asked_at is not None and d.have > d.asked_have and now - d.asked_at < GRACE:
                continue                     # it is coming: give it time
            d.asked_at, d.asked_have = now, d.have
            self.asked += 1
            out.append((door, d.log, d.have + 1))
        return out

    def missing(self) -> dict[str, int]:
        """Records each door is known to have that the office has not (for the view)."""
        return {door: d.head - d.have for door, d in self.doors.items()
                if d.have is not None and d.head > d.have}
