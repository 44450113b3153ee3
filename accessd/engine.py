"""The core thread's door: each queue item in, the door's outputs and log records out.

A credential goes through one path, top to bottom: look it up in the whitelist,
ask the pure access pipeline (core/access.py), step the door state machine with
its answer, set the outputs, then hand the records to the log writer and reply
once they are committed. The relay is set before the log record is even queued.
Everything is injected (whitelist, outputs, log writer, clock), so a test drives
`handle()` and `tick()` by hand with a fake clock. The loop itself is loop.py.
"""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import Future
from typing import Callable, Protocol

from .config import Config
from .core import door as fsm
from .core import access, passes, pinentry, watch
from .core.credentials import lookup_values
from .core.events import (Barrier, CaptureRequest, CredentialPresented, InputChanged,
                          KeyPressed, Notice, ReaderNotice, RemoteUnlock, SetMode,
                          StatusRequest, SwapWhitelist)
from .errors import StoreError
from .loop import CoreLoop
from .storage.crypto import fingerprint

CAPTURE_KINDS = ("nfc", "fob")  # what enrolment may capture at a door

log = logging.getLogger(__name__)


class OutputPort(Protocol):
    def apply(self, out: fsm.Outputs) -> None: ...
    def safe(self) -> None: ...


class Engine(CoreLoop):
    def __init__(self, cfg: Config, whitelist, outputs: OutputPort, logw, clock, *,
                 door_open: bool = False, tamper: bool = False, fire: bool = False,
                 readers_health: Callable[[], list] = lambda: [], notifier=None,
                 q: queue.SimpleQueue | None = None, pass_check=None):
        """pass_check: (site public key, site id, door group) to check QR passes with;
        None on a door enrolled locally."""
        super().__init__(logw, clock, notifier=notifier, q=q)
        self.cfg = cfg
        self.pass_check = pass_check
        self.whitelist = whitelist
        self.hw = outputs
        self.readers_health = readers_health
        self.door_cfg = fsm.DoorSettings(cfg.door.unlock_seconds, cfg.door.held_open_seconds,
                                         cfg.door.prealarm_seconds)
        self.pin_cfg = pinentry.PinSettings(cfg.pin.min_length, cfg.pin.max_length,
                                            cfg.pin.timeout_seconds)
        self.mode = cfg.door.mode
        self.access_cfg = access.settings_from(cfg.policy)
        self.access = access.AccessState()  # pending card, lockouts, denials, uses
        self.clock_seen = watch.ClockSeen()
        self.scheduled_hold = False  # policy.held_open_schedule is open now
        # once a minute: the held-open schedule, and (doors that sync) the whitelist's age
        self._next_minute = (clock.monotonic() if cfg.policy.held_open_schedule or cfg.sync.url
                             else None)
        self.stale_alarm = False
        self.fire = fire
        self.state = fsm.DoorState(door_open=door_open, tamper=tamper,
                                   hold_open=fire or self.mode == "held-open")
        self.pin = pinentry.PinEntry()
        self.capture: tuple[Future, float] | None = None
        self._applied: fsm.Outputs | None = None
        self._apply()

    # ---- plumbing -------------------------------------------------------
    def _apply(self) -> int | None:
        out = fsm.outputs(self.state)
        if out != self._applied:
            self.hw.apply(out)
            self._applied = out
            return time.perf_counter_ns()
        return None

    def _step(self, event, now: float) -> tuple[list[Future], int | None]:
        self.state, emits = fsm.step(self.state, event, now, self.door_cfg)
        t_relay = self._apply()
        futs = [self._record(e.kind, e.reason) for e in emits]
        return futs, t_relay

    def deadlines(self) -> list[float | None]:
        return [fsm.next_deadline(self.state, self.door_cfg), self.pin.deadline(self.pin_cfg),
                self.capture[1] if self.capture else None,
                self.access.pending.deadline if self.access.pending else None, self._next_minute]

    def on_stop(self) -> None:
        self.hw.safe()

    def tick(self, now: float) -> None:
        futs, _ = self._step(fsm.Tick(), now)
        self.pin, timed_out = pinentry.expire(self.pin, now, self.pin_cfg)
        if timed_out:
            self._record("pin.timeout", "PIN entry cleared: no key pressed in time")
        expired = access.expire(self.access, now)
        if expired is not None:
            self._carry_out(expired, now)
        if self._next_minute is not None and now >= self._next_minute:
            self._next_minute = now + 60.0
            self._minute(now)
        if self.capture and now >= self.capture[1]:
            self.capture[0].set_result({"ok": False, "error": "no credential presented in time"})
            self.capture = None
        super().tick(now)  # the systemd watchdog

    def handle(self, item, now: float) -> None:
        # Deadlines that passed while the item waited come first.
        d = self.deadline()
        if d is not None and now >= d:
            self.tick(now)
        if isinstance(item, CredentialPresented):
            self._credential(item, now)
        elif isinstance(item, KeyPressed):
            self._key(item, now)
        elif isinstance(item, InputChanged):
            self._input(item, now)
        elif isinstance(item, RemoteUnlock):
            futs, t = self._step(fsm.Unlock(), now)
            futs.insert(0, self._record("unlock.remote", f"remote unlock by {item.who}", t_relay=t))
            self._reply_when_logged(item.reply, futs, {"ok": True, "relay": self._relay_word()})
        elif isinstance(item, CaptureRequest):
            if self.capture is not None:
                item.reply.set_result({"ok": False, "error": "another capture is already waiting"})
            else:
                self.capture = (item.reply, now + item.timeout)
        elif isinstance(item, Barrier):
            last = self.logw.last_future
            self._reply_when_logged(item.reply, [last] if last else [], self.status())
        elif isinstance(item, StatusRequest):
            item.reply.set_result(self.status())
        elif isinstance(item, ReaderNotice):
            self._record(item.kind, item.detail, detail={"reader": item.reader})
        elif isinstance(item, SetMode):
            old = self.mode
            self.mode = item.mode
            futs = [self._record("door.mode", f"mode {old} -> {item.mode} by {item.who}")]
            futs += self._step(fsm.HoldOpen(self._hold_open()), now)[0]
            self._reply_when_logged(item.reply, futs, {"ok": True, "mode": self.mode,
                                                       "relay": self._relay_word()})
        elif isinstance(item, Notice):
            self._record(item.kind, item.reason, detail=item.detail)
        elif isinstance(item, SwapWhitelist):
            self._swap(item)
        else:
            raise TypeError(f"unknown queue item {item!r}")

    # ---- handlers -------------------------------------------------------
    def _credential(self, item: CredentialPresented, now: float) -> None:
        """Look the credential up, ask the access pipeline, carry out its outcome."""
        record, unreadable, captured, refusal = None, False, None, item.refusal
        if item.kind == "qr":
            record, fp, refusal = self._pass(item.value)
        else:
            (first, _), *narrower = lookup_values(item.kind, item.value)
            digest = self.whitelist.digest(item.kind, first)
            fp = fingerprint(digest)
            captured = self._capture(item, fp)
            try:
                record = self.whitelist.lookup(digest)
                for value, alias_ok in narrower:  # a fob enrolled with fewer bits
                    if record is not None:
                        break
                    record = self.whitelist.lookup(self.whitelist.digest(item.kind, value),
                                                   alias_ok=alias_ok)
            except StoreError as exc:
                log.error("%s", exc)
                unreadable = True
        if record is not None and record.uses and self.access.used(record.credential_id) is None:
            # a use-counted pass: its grants here, counted once from the log
            self.access = self.access.with_used(record.credential_id,
                                                self.logw.count_grants(record.credential_id))
        wall = self.clock.wall()
        at = access.Situation(self.mode, wall, self.whitelist.policy,
                              self.whitelist.age_hours(wall), self._clock_synced(), unreadable)
        outcome = access.present(self.access, access.Presented(item.reader, item.kind, fp,
                                                               item.assurance, refusal),
                                 record, at, self.access_cfg, now)
        self._carry_out(outcome, now, item, captured)

    def _pass(self, text: str):
        """A scanned QR pass: (its record, its name in the log, why it is refused)."""
        if self.pass_check is None:
            return None, "pass-?", ("denied: this door cannot check passes (it has no site "
                                    "key: enrolled locally)")
        pk, site, group = self.pass_check
        try:
            p, refusal = passes.verify(text, pk, site=site, group=group,
                                       revoked=self.whitelist.revoked_passes)
        except passes.PassFormatError as exc:   # the reader lets only passes through
            return None, "pass-?", f"denied: {exc}"
        fp = p.credential_id if p is not None else "pass-?"
        return (p.record() if p is not None and not refusal else None), fp, refusal

    def _carry_out(self, outcome: access.Outcome, now: float, item=None, captured=None) -> None:
        """The door machine, the outputs, then the log records and the reply."""
        self.access = outcome.state
        futs, t_relay = [], None
        if outcome.unlock is not None:
            futs, t_relay = self._step(fsm.Unlock() if outcome.unlock else fsm.Deny(), now)
            self.counters["granted" if outcome.unlock else "denied"] += 1
            if item is not None:
                us = ((t_relay or time.perf_counter_ns()) - item.t_queued) / 1e3
                self.decision_latency_us.append(us)
                if self.observer is not None:
                    self.observer.decision(outcome.decision, us / 1e6)
        first, *alarms = outcome.records
        futs.insert(0, self._record(first.kind, first.reason, credential=first.credential,
                                    detail=first.detail, t_relay=t_relay))
        futs += self._log(alarms)
        if item is not None:
            self._reply_when_logged(item.reply, futs, {
                "ok": True, "decision": outcome.decision, "reason": outcome.reason,
                "credential": outcome.credential, "reader": item.reader,
                "relay": self._relay_word(), **({"captured": captured} if captured else {})})

    def _capture(self, item: CredentialPresented, fp: str) -> str | None:
        """Enrolment capture takes a card or fob (never a PIN: it is typed at the office);
        the credential is still decided, so a resident's tap still opens the door."""
        if self.capture is None or item.kind not in CAPTURE_KINDS:
            return None
        reply, _ = self.capture
        self.capture = None
        fut = self._record("enrol.captured", f"{item.kind} captured for enrolment",
                           credential=fp, detail={"reader": item.reader})
        self._reply_when_logged(reply, [fut], {"ok": True, "kind": item.kind,
                                               "value": item.value, "fingerprint": fp})
        return fp

    def _swap(self, item: SwapWhitelist) -> None:
        try:
            self.whitelist.replace_with(item.path)
        except Exception as exc:
            fut = self._record("sync.rejected", f"cannot install whitelist: {exc}")
            self._reply_when_logged(item.reply, [fut], {"ok": False, "error": str(exc)})
            return
        count = self.whitelist.count()
        fut = self._record("sync.applied", f"whitelist version {item.version} applied",
                           detail={"version": item.version, "credentials": count})
        self._reply_when_logged(item.reply, [fut], {"ok": True, "version": item.version,
                                                    "credentials": count})

    def _key(self, item: KeyPressed, now: float) -> None:
        self.pin, outcome = pinentry.press(self.pin, item.key, now, self.pin_cfg)
        if outcome.kind == "submit":
            self._credential(CredentialPresented(item.reader, "pin", outcome.pin,
                                                 item.reply, item.t_queued), now)
            return
        futs = []
        if outcome.kind == "invalid":
            futs.append(self._record("pin.invalid", outcome.reason, detail={"reader": item.reader}))
            futs += self._step(fsm.Deny(), now)[0]
        self._reply_when_logged(item.reply, futs, {"ok": True, "decision": outcome.kind,
                                                   "reason": outcome.reason})

    def _input(self, item: InputChanged, now: float) -> None:
        if item.name == "door":
            self._step(fsm.DoorContact(open=item.active), now)
        elif item.name == "rex":
            if item.active:
                futs, t = self._step(fsm.Unlock(), now)
                self._record("rex", "unlocked by request-to-exit button", t_relay=t)
        elif item.name == "tamper":
            self._step(fsm.Tamper(active=item.active), now)
        elif item.name == "fire":
            if item.active != self.fire:
                self.fire = item.active
                self._record("fire.release" if item.active else "fire.cleared",
                             "fire panel: door released and held open" if item.active
                             else "fire panel back to normal")
                self._step(fsm.HoldOpen(self._hold_open()), now)
        else:
            raise ValueError(f"unknown input {item.name!r}")

    def _clock_synced(self) -> bool:
        if self.cfg.policy.unsynced_clock == "trust":
            return True  # the clock is believed as it is: nothing to check or report
        st = self.clock.sync_state()
        self.clock_seen, records = watch.clock(self.clock_seen, st.synced, st.error,
                                               self.cfg.policy.unsynced_clock)
        self._log(records)
        return st.synced

    def _minute(self, now: float) -> None:
        """The held-open schedule and (a door that syncs) the whitelist's age."""
        wall = self.clock.wall()
        if self.cfg.policy.held_open_schedule:
            hold, rec = watch.hold_schedule(self.scheduled_hold, self.whitelist.policy,
                                            self.cfg.policy.held_open_schedule, wall)
            if rec is not None:
                self.scheduled_hold = hold
                self._log([rec])
                self._step(fsm.HoldOpen(self._hold_open()), now)
        if self.cfg.sync.url:  # on the core's clock: it holds if the sync worker does not
            version = int(self.whitelist.meta().get("version", 0) or 0)
            self.stale_alarm, rec = watch.stale(self.stale_alarm,
                                                self.whitelist.age_hours(wall),
                                                self.cfg.sync.max_age_hours, version)
            self._log([rec] if rec else [])

    def _hold_open(self) -> bool:
        return self.fire or self.mode == "held-open" or self.scheduled_hold

    # ---- status ---------------------------------------------------------
    def _relay_word(self) -> str:
        return "locked" if self.state.locked else "unlocked"

    def status(self) -> dict:
        from .status import door_status
        return door_status(self)
