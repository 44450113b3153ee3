"""The running door's status, as `accessctl status` and the control socket show it."""

from __future__ import annotations


def door_status(engine) -> dict:
    """Relay, door, alarms, whitelist, log, readers, clock: from the engine's state.
    Runs in the core thread (a StatusRequest), so it sees one consistent moment."""
    s = engine.state
    cfg = engine.cfg
    try:
        wl_meta = engine.whitelist.meta()
    except Exception as exc:  # status must answer even when storage does not
        wl_meta = {"error": str(exc)}
    alarms = [name for name, on in (("door.forced", s.forced), ("door.held_open", s.held_alarm),
                                    ("tamper", s.tamper), ("fire.release", engine.fire)) if on]
    logw = engine.logw
    return {
        "ok": True,
        "door": cfg.door.id,
        "mode": engine.mode,
        "release": _release(),
        "fail_mode": cfg.door.fail_mode,
        "relay": engine._relay_word(),
        "door_open": s.door_open,
        "alarms": alarms,
        "pin_typing": bool(engine.pin.digits),
        "uptime_s": round(engine.clock.monotonic() - engine.started_mono, 1),
        "counters": dict(engine.counters),
        "whitelist": {"credentials": int(wl_meta.get("count", 0) or 0),
                      "version": int(wl_meta.get("version", 0) or 0),
                      "age_hours": _age(engine),
                      **({"error": wl_meta["error"]} if "error" in wl_meta else {})},
        "log": {"id": logw.log.log_id, "last_seq": logw.log.last_seq, "pending": logw.pending,
                "degraded": logw.degraded_since is not None, "error": logw.last_error},
        "readers": engine.readers_health(),
        "clock": {**engine.clock.sync_state().as_dict(), "policy": cfg.policy.unsynced_clock},
        "assurance": {"high": ["secure NFC cards (NTAG 424 DNA, MIFARE DESFire EV2/EV3), "
                               "checked with their own keys"],
                      "low": ["NFC UIDs", "125 kHz fobs", "Wiegand card numbers", "PINs",
                              "QR passes (signed, but a photo of one works too)"],
                      "required": cfg.policy.high_assurance},
        "assurance_note": "NFC UIDs, 125 kHz fobs, Wiegand numbers and PINs are "
                          "low-assurance credentials: they can be cloned or observed; a QR "
                          "pass cannot be forged, but a photo of it works until it is used up "
                          "or ends. Secure cards (NTAG 424 DNA, DESFire EV2/EV3) are high: "
                          "they prove their keys. High assurance required: "
                          f"{cfg.policy.high_assurance}.",
    }


def _age(engine) -> float | None:
    """Hours since the office issued the whitelist (None: enrolled at the door)."""
    try:
        age = engine.whitelist.age_hours(engine.clock.wall())
    except Exception:
        return None
    return None if age is None else round(age, 3)


def _release() -> str | None:
    """The software release this door runs (None: installed from a checkout)."""
    from .updater import this_release
    return this_release()
