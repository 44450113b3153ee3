"""The core thread: takes events off one queue, asks decide() and the door state
machine, sets the outputs, then hands records to the event log.

Everything it touches is injected (whitelist, outputs, log writer, clock), so a
test can drive `handle()` and `tick()` by hand with a fake clock. The relay is
set before the log record is even queued; a reply to a control-socket request
is sent only once the request's records are committed.
"""

from __future__ import annotations

import gc
import logging
import queue
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Protocol

from .config import Config
from .core import door as fsm
from .core import guards, pinentry
from .core.decide import (CARD_PIN_REQUIRED, NO_PIN, PIN_LOCKOUT, PIN_MISMATCH, UNREADABLE,
                          Decision, decide)
from .core.schedule import in_schedule
from .core.events import (Barrier, CaptureRequest, CredentialPresented, InputChanged,
                          KeyPressed, Notice, ReaderNotice, RemoteUnlock, SetMode,
                          StatusRequest, Stop, SwapWhitelist)
from .errors import StoreError
from .storage.crypto import fingerprint

CAPTURE_KINDS = ("nfc", "fob")  # what enrolment may capture at a door

log = logging.getLogger(__name__)


class OutputPort(Protocol):
    def apply(self, out: fsm.Outputs) -> None: ...
    def safe(self) -> None: ...


class Engine:
    def __init__(self, cfg: Config, whitelist, outputs: OutputPort, logw, clock, *,
                 door_open: bool = False, tamper: bool = False, fire: bool = False,
                 readers_health: Callable[[], list] = lambda: [], notifier=None,
                 q: queue.SimpleQueue | None = None):
        self.cfg = cfg
        self.whitelist = whitelist
        self.hw = outputs
        self.logw = logw
        self.clock = clock
        self.readers_health = readers_health
        self.notifier = notifier
        self.door_cfg = fsm.DoorSettings(cfg.door.unlock_seconds, cfg.door.held_open_seconds,
                                         cfg.door.prealarm_seconds)
        self.pin_cfg = pinentry.PinSettings(cfg.pin.min_length, cfg.pin.max_length,
                                            cfg.pin.timeout_seconds)
        self.mode = cfg.door.mode
        pol = cfg.policy
        self.lockout_cfg = guards.LockoutSettings(pol.pin_lockout_attempts,
                                                  pol.pin_lockout_window_seconds,
                                                  pol.pin_lockout_seconds,
                                                  pol.pin_lockout_max_seconds)
        self.stranger_cfg = guards.StrangerSettings(pol.stranger_attempts,
                                                    pol.stranger_window_seconds)
        self.lockouts: dict[str, guards.Lockout] = {}  # per keypad reader
        self.clock_synced: bool | None = None
        self.clock_error: str | None = None
        # card+PIN: (card record, reader, deadline) of a card waiting for its PIN
        self.pending_card: tuple | None = None
        self.uses: dict[str, int] = {}  # use-counted passes: grants at this door
        self.scheduled_hold = False  # policy.held_open_schedule is open now
        # once a minute: the held-open schedule, and (doors that sync) the whitelist's age
        self._next_minute = (clock.monotonic() if cfg.policy.held_open_schedule or cfg.sync.url
                             else None)
        self.stale_alarm = False
        self.denials: tuple[float, ...] = ()
        self.fire = fire
        self.state = fsm.DoorState(door_open=door_open, tamper=tamper,
                                   hold_open=fire or self.mode == "held-open")
        self.pin = pinentry.PinEntry()
        self.capture: tuple[Future, float] | None = None
        self.q: queue.SimpleQueue = q if q is not None else queue.SimpleQueue()
        self.started_mono = clock.monotonic()
        self.counters = {"granted": 0, "denied": 0, "errors": 0}
        # queued -> outputs in their decided state (µs), and relay set -> log committed (µs),
        # for the benchmark.
        self.decision_latency_us: deque[float] = deque(maxlen=200_000)
        self.log_lag_us: deque[float] = deque(maxlen=200_000)
        self._applied: fsm.Outputs | None = None
        self._next_watchdog = None
        if notifier is not None and notifier.watchdog_interval:
            self._next_watchdog = clock.monotonic()
        self._apply()

    # ---- plumbing -------------------------------------------------------
    def post(self, item) -> None:
        self.q.put(item)

    def _apply(self) -> int | None:
        out = fsm.outputs(self.state)
        if out != self._applied:
            self.hw.apply(out)
            self._applied = out
            return time.perf_counter_ns()
        return None

    def _record(self, kind: str, reason: str, *, credential: str | None = None,
                detail: dict | None = None, t_relay: int | None = None) -> Future:
        fut = self.logw.submit(kind, reason, credential=credential, detail=detail)
        if t_relay is not None:
            fut.add_done_callback(
                lambda f, t=t_relay: self.log_lag_us.append((time.perf_counter_ns() - t) / 1e3))
        return fut

    def _step(self, event, now: float) -> tuple[list[Future], int | None]:
        self.state, emits = fsm.step(self.state, event, now, self.door_cfg)
        t_relay = self._apply()
        futs = [self._record(e.kind, e.reason) for e in emits]
        return futs, t_relay

    @staticmethod
    def _reply_when_logged(reply: Future | None, futs: list[Future], payload: dict) -> None:
        if reply is None:
            return
        if not futs:
            reply.set_result(payload)
            return
        last = futs[-1]  # the writer commits in order: the last one done means all done

        def done(f: Future) -> None:
            if reply.done():
                return
            failed = next((x.exception() for x in futs if x.exception() is not None), None)
            if failed is not None:
                reply.set_result({**payload, "ok": False,
                                  "error": f"action taken but not logged: {failed}"})
            else:  # the request's own record comes first; alarms it raised follow it
                reply.set_result({**payload, "seq": futs[0].result()})
        last.add_done_callback(done)

    def deadline(self) -> float | None:
        ds = [fsm.next_deadline(self.state, self.door_cfg), self.pin.deadline(self.pin_cfg),
              self.capture[1] if self.capture else None, self._next_watchdog,
              self.pending_card[2] if self.pending_card else None, self._next_minute]
        live = [d for d in ds if d is not None]
        return min(live) if live else None

    # ---- main loop ------------------------------------------------------
    def run(self) -> None:
        """Run until a Stop item arrives; the relay is made safe on the way out."""
        # Everything built at startup lives as long as the daemon: keep it out of
        # every garbage collection, so collections on the tap path stay short.
        gc.collect()
        gc.freeze()
        while True:
            d = self.deadline()
            timeout = None if d is None else max(0.0, d - self.clock.monotonic())
            try:
                item = self.q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, Stop):
                self.hw.safe()
                return
            try:
                if item is None:
                    self.tick(self.clock.monotonic())
                else:
                    self.handle(item, self.clock.monotonic())
            except Exception as exc:  # the door must keep deciding
                self.counters["errors"] += 1
                log.exception("core error while handling %s", type(item).__name__)
                self._record("core.error", f"{type(exc).__name__}: {exc}")
                reply = getattr(item, "reply", None)
                if reply is not None and not reply.done():
                    reply.set_result({"ok": False, "error": f"internal error: {exc}"})

    def tick(self, now: float) -> None:
        futs, _ = self._step(fsm.Tick(), now)
        self.pin, timed_out = pinentry.expire(self.pin, now, self.pin_cfg)
        if timed_out:
            self._record("pin.timeout", "PIN entry cleared: no key pressed in time")
        if self.pending_card and now >= self.pending_card[2]:
            card, reader, _ = self.pending_card
            self.pending_card = None
            self._step(fsm.Deny(), now)
            self.counters["denied"] += 1
            self._record("access.denied", NO_PIN, credential=card.credential_id,
                         detail={"reader": reader, "kind": card.kind})
        if self._next_minute is not None and now >= self._next_minute:
            self._next_minute = now + 60.0
            if self.cfg.policy.held_open_schedule:
                self._check_hold_schedule(now)
            if self.cfg.sync.url:
                self._check_stale()
        if self.capture and now >= self.capture[1]:
            self.capture[0].set_result({"ok": False, "error": "no credential presented in time"})
            self.capture = None
        if self._next_watchdog is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_interval

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
        digest = self.whitelist.digest(item.kind, item.value)
        fp = fingerprint(digest)
        # Enrolment capture takes a card or fob (never a PIN: it is typed at the office),
        # and the credential is still decided: a resident's tap still opens the door.
        extra = {}
        if self.capture is not None and item.kind in CAPTURE_KINDS:
            reply, _ = self.capture
            self.capture = None
            fut = self._record("enrol.captured", f"{item.kind} captured for enrolment",
                               credential=fp, detail={"reader": item.reader})
            self._reply_when_logged(reply, [fut], {"ok": True, "kind": item.kind,
                                                   "value": item.value, "fingerprint": fp})
            extra = {"captured": fp}
        lockout = self.lockouts.get(item.reader, guards.Lockout())
        record = None
        if item.kind == "pin" and lockout.active(now):
            decision = Decision(False, f"{PIN_LOCKOUT} ({lockout.locked_until - now:.0f} s left)")
        else:
            wall = self.clock.wall()
            synced = self._clock_synced()
            try:
                record = self.whitelist.lookup(digest)
                used = self._uses(record) if record is not None and record.uses else 0
                decision = decide(record, self.mode, wall, item.kind, self.whitelist.policy,
                                  whitelist_age_h=self.whitelist.age_hours(wall),
                                  temporary_max_age_h=self.cfg.policy.temporary_max_age_hours,
                                  clock_synced=synced, unsynced=self.cfg.policy.unsynced_clock,
                                  used=used)
            except StoreError as exc:
                log.error("%s", exc)
                decision = Decision(False, UNREADABLE)
        decision = self._card_pin(item, decision, record, now)
        if decision is None:  # a card accepted, waiting for its PIN
            self.pending_card = (record, item.reader, now + self.cfg.policy.card_pin_timeout_seconds)
            fut = self._record("access.pending", "card accepted; PIN required",
                               credential=record.credential_id,
                               detail={"reader": item.reader, "kind": item.kind})
            self._reply_when_logged(item.reply, [fut], {
                "ok": True, "decision": "pending", "reason": "card accepted; PIN required",
                "credential": record.credential_id, "reader": item.reader,
                "relay": self._relay_word(), **extra})
            return
        futs, t_relay = self._step(fsm.Unlock() if decision.granted else fsm.Deny(), now)
        if decision.granted and decision.credential_id in self.uses:
            self.uses[decision.credential_id] += 1
        self.decision_latency_us.append(((t_relay or time.perf_counter_ns()) - item.t_queued) / 1e3)
        self.counters["granted" if decision.granted else "denied"] += 1
        cred = decision.credential_id or fp
        fut = self._record("access.granted" if decision.granted else "access.denied",
                           decision.reason, credential=cred, t_relay=t_relay,
                           detail={"reader": item.reader, "kind": item.kind,
                                   "assurance": decision.assurance})
        futs.insert(0, fut)
        futs += self._guards(item, decision, record, lockout, now, cred)
        self._reply_when_logged(item.reply, futs, {
            "ok": True, "decision": "granted" if decision.granted else "denied",
            "reason": decision.reason, "credential": cred, "reader": item.reader,
            "relay": self._relay_word(), **extra})

    def _uses(self, record) -> int:
        """Entries a use-counted pass made here: counted once from the log, then kept."""
        cid = record.credential_id
        if cid not in self.uses:
            self.uses[cid] = self.logw.count_grants(cid)
        return self.uses[cid]

    def card_pin_required(self) -> bool:
        mode = self.cfg.policy.card_pin
        if mode in ("never", "always"):
            return mode == "always"
        policy = self.whitelist.policy
        if policy is None or mode not in policy.schedules:
            return True  # the schedule is not known here: ask for the PIN (fail closed)
        return in_schedule(policy, mode, self.clock.wall())

    def _card_pin(self, item, decision: Decision, record, now: float) -> Decision | None:
        """Apply card+PIN: None means 'card accepted, wait for the PIN'."""
        if item.kind == "pin" and self.pending_card is not None:
            card, _, _ = self.pending_card
            self.pending_card = None
            if not decision.granted:
                return decision
            if record is None or record.holder != card.holder:
                return Decision(False, PIN_MISMATCH, card.credential_id, card.assurance)
            return Decision(True, "granted: card+PIN", card.credential_id, card.assurance)
        if not decision.granted or not self.card_pin_required():
            return decision
        if item.kind == "pin":
            return Decision(False, CARD_PIN_REQUIRED, decision.credential_id, decision.assurance)
        return None

    def _guards(self, item, decision: Decision, record, lockout: guards.Lockout, now: float,
                cred: str) -> list[Future]:
        """Duress, PIN lockout and stranger alarms after a decision (logged after it)."""
        futs = []
        if decision.granted and record is not None and record.duress:
            # silent: the door opens as usual, nothing at the door shows it
            futs.append(self._record("alarm.duress", "duress PIN used", credential=cred,
                                     detail={"reader": item.reader}))
        if item.kind == "pin" and not decision.reason.startswith(PIN_LOCKOUT):
            if decision.granted:
                self.lockouts.pop(item.reader, None)
            else:
                lockout, seconds = guards.pin_failed(lockout, now, self.lockout_cfg)
                self.lockouts[item.reader] = lockout
                if seconds is not None:
                    futs.append(self._record(
                        "pin.lockout", f"{self.lockout_cfg.attempts} wrong PINs: keypad locked "
                                       f"for {seconds:g} s", detail={"reader": item.reader}))
        if not decision.granted:
            self.denials, count = guards.denial(self.denials, now, self.stranger_cfg)
            if count is not None:
                futs.append(self._record(
                    "alarm.stranger", f"{count} denied attempts within "
                                      f"{self.stranger_cfg.window:g} s", detail={"count": count}))
        return futs

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
        state = self.clock.sync_state()
        synced = state.synced
        if state.error != self.clock_error:
            self.clock_error = state.error
            if state.error:
                self._record("clock.check_failed",
                             f"cannot read the kernel's clock state: {state.error}; "
                             + ("systemd-timesyncd says synchronised" if state.synced
                                else "taken as not synchronised"))
        if synced != self.clock_synced:
            if not synced:
                self._record("clock.unsynced", "system clock is not synchronised: credentials "
                             f"limited in time follow policy '{self.cfg.policy.unsynced_clock}'")
            elif self.clock_synced is not None:
                self._record("clock.synced", "system clock synchronised")
            self.clock_synced = synced
        return synced

    def _check_stale(self) -> None:
        """sync.stale once per episode, on the core's own clock: it holds even when
        the sync worker is stuck or gone."""
        age_h = self.whitelist.age_hours(self.clock.wall())
        limit = self.cfg.sync.max_age_hours
        stale = age_h is not None and age_h > limit
        if stale and not self.stale_alarm:
            self._record("sync.stale", f"whitelist is {age_h:.0f} h old (maximum {limit:g} h)",
                         detail={"version": int(self.whitelist.meta().get("version", 0) or 0)})
        self.stale_alarm = stale

    def _hold_open(self) -> bool:
        return self.fire or self.mode == "held-open" or self.scheduled_hold

    def _check_hold_schedule(self, now: float) -> None:
        name = self.cfg.policy.held_open_schedule
        policy = self.whitelist.policy
        hold = bool(policy and name in policy.schedules
                    and in_schedule(policy, name, self.clock.wall()))
        if hold != self.scheduled_hold:
            self.scheduled_hold = hold
            self._record("door.mode", f"held open by schedule '{name}'" if hold
                         else f"schedule '{name}' ended: door no longer held open")
            self._step(fsm.HoldOpen(self._hold_open()), now)

    # ---- status ---------------------------------------------------------
    def _relay_word(self) -> str:
        return "locked" if self.state.locked else "unlocked"

    def status(self) -> dict:
        s = self.state
        wl_meta = {}
        try:
            wl_meta = self.whitelist.meta()
        except Exception as exc:  # status must answer even when storage does not
            wl_meta = {"error": str(exc)}
        alarms = [name for name, on in (("door.forced", s.forced), ("door.held_open", s.held_alarm),
                                        ("tamper", s.tamper), ("fire.release", self.fire)) if on]
        return {
            "ok": True,
            "door": self.cfg.door.id,
            "mode": self.mode,
            "fail_mode": self.cfg.door.fail_mode,
            "relay": self._relay_word(),
            "door_open": s.door_open,
            "alarms": alarms,
            "pin_typing": bool(self.pin.digits),
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 1),
            "counters": dict(self.counters),
            "whitelist": {"credentials": int(wl_meta.get("count", 0) or 0),
                          "version": int(wl_meta.get("version", 0) or 0),
                          **({"error": wl_meta["error"]} if "error" in wl_meta else {})},
            "log": {"id": self.logw.log.log_id, "last_seq": self.logw.log.last_seq,
                    "pending": self.logw.pending,
                    "degraded": self.logw.degraded_since is not None,
                    "error": self.logw.last_error},
            "readers": self.readers_health(),
            "clock": {**self.clock.sync_state().as_dict(),
                      "policy": self.cfg.policy.unsynced_clock},
            "assurance_note": "NFC UIDs, 125 kHz fobs and PINs are low-assurance "
                              "credentials: they can be cloned or observed.",
        }
