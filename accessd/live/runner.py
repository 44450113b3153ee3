"""The door's side of the office's commands: verify, carry out, acknowledge.

The publisher hands each message from accessd/<site>/<door>/cmd to `handle()`
(in a thread of its own, never paho's network thread, since a sync or a capture
takes a while) and publishes the dict it returns on .../cmd/ack. A command that
fails verification (unsigned, forged, replayed, expired, for another door or
site) is not carried out; it is logged as `cmd.rejected` (an alarm: someone who
can reach the broker tried it) and acknowledged with the reason. A verified one
is logged as `cmd.received`, carried out through the control socket's own code
(so a remote mode change or unlock is recorded exactly as a local one, with who
asked), and acknowledged with its outcome.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from ..core.events import Notice
from ..errors import AccessdError, StoreError
from .commands import CommandError, CommandVerifier, seal_reply

log = logging.getLogger("accessd.live")


class CommandRunner:
    def __init__(self, verifier: CommandVerifier, controller, *,
                 wall: Callable[[], float]):
        self.verifier = verifier
        self.controller = controller
        self._wall = wall

    def _notice(self, kind: str, reason: str, detail: dict) -> None:
        self.controller.engine.post(Notice(kind, reason, detail))

    def handle(self, message: bytes) -> dict:
        now = self._wall()
        try:
            c = self.verifier.verify(message, now)
        except CommandError as exc:
            self._notice("cmd.rejected", f"command refused: {exc}",
                         {"cmd": exc.cmd, "nonce": exc.nonce[:8]})
            log.warning("mqtt: command refused: %s", exc)
            return {"nonce": exc.nonce, "cmd": exc.cmd, "ts": now, "ok": False,
                    "error": f"refused: {exc}"}
        except StoreError as exc:   # cannot remember the nonce: a replay could follow
            self._notice("cmd.rejected", f"command refused: {exc}", {})
            return {"ok": False, "ts": now, "error": f"refused: {exc}"}
        who = f"office ({c.by or 'staff'}) via MQTT"
        self._notice("cmd.received", f"command {c.cmd} from {who}",
                     {"cmd": c.cmd, "nonce": c.nonce[:8],
                      **({"mode": c.args["mode"]} if c.cmd == "mode" else {})})
        try:
            result = dict(self.controller.remote(c.cmd, c.args, who))
        except (AccessdError, ValueError) as exc:
            result = {"ok": False, "error": str(exc)}
        if c.cmd == "capture" and "value" in result:
            # the number never crosses the broker in clear: only the asking office opens it
            secret = json.dumps({"kind": result.pop("kind"), "value": result.pop("value")})
            result["sealed"] = seal_reply(c.args["reply_key"], secret.encode())
        result.pop("value", None)
        return {"nonce": c.nonce, "cmd": c.cmd, "ts": self._wall(), **result,
                "ok": bool(result.get("ok"))}
