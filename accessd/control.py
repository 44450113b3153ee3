"""The control socket: a Unix stream socket taking JSON-lines requests.

Requests (one JSON object per line, one reply line each):

  {"op": "status"}
  {"op": "unlock"}                               remote unlock, logged with the caller's uid
  {"op": "unlock", "token": "..."}               intercom / app unlock with a signed token
  {"op": "capture", "timeout": 30}               the next card or fob presented: its kind
                                                 and fingerprint, never its number
  {"op": "capture", "timeout": 30, "enroll": {"holder": "12A-1", "valid_until": null}}
                                                 ... enrolled into this door's whitelist
                                                 (a door without an office)
  {"op": "command", "message": "..."}            a command the office signed (as on MQTT;
                                                 a capture's number comes sealed to it)
  {"op": "sync"}                                 pull and apply this door's bundle now
  {"op": "sim", "input": "tap", "uid": "04A1B2C3"}          simulation only
  {"op": "sim", "input": "fob", "number": "12648430"}
  {"op": "sim", "input": "pin", "keys": "1234#"}
  {"op": "sim", "input": "door", "state": "open" | "closed"}
  {"op": "sim", "input": "rex"}
  {"op": "sim", "input": "tamper", "state": "on" | "off"}
  {"op": "sim", "input": "fire", "state": "on" | "off"}
  {"op": "mode", "mode": "normal" | "lockdown" | "held-open"}   logged with the caller's uid

Every reply has "ok"; a failed one has "error" saying what was wrong. A reply to
an action is sent only once the action's log records are committed.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import socket
import socketserver
import stat
import struct
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from pathlib import Path

from .core.credentials import normalize
from .core.events import Barrier, CaptureRequest, RemoteUnlock, StatusRequest
from .core.pinentry import KEYS
from .errors import (AccessdError, CredentialFormatError, DaemonUnavailable, HardwareError,
                     ProtocolError, StoreError)

log = logging.getLogger(__name__)
MAX_LINE = 64 * 1024
REPLY_TIMEOUT = 10.0
SIM_INPUTS = ("tap", "fob", "pin", "qr", "door", "rex", "tamper", "fire")


def _field(req: dict, name: str, kind=str, choices=None):
    if name not in req:
        raise ProtocolError(f"missing field {name!r}")
    value = req[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"field {name!r} must be {kind.__name__}")
    if choices and value not in choices:
        raise ProtocolError(f"field {name!r} must be one of {', '.join(choices)}")
    return value


class Controller:
    """Turns parsed requests into core queue items; runs in the socket's threads."""

    def __init__(self, engine, readers, inputs, *, simulation: bool, sync=None, tokens=None):
        self.engine = engine
        self.sync = sync
        self.tokens = tokens  # a TokenVerifier when the door belongs to a site
        self._token_lock = threading.Lock()
        self.readers = {r.name: r for r in readers}
        self.inputs = inputs
        self.simulation = simulation
        self.connection_info = lambda: {}  # the server fills this in
        self.publisher = None  # the live channel's publisher, when mqtt.url is set
        self.log_check = None  # the service's: a new log identity when an upload asks
        self.commands = None   # a live.runner.CommandRunner: signed commands (a site door)
        self.enroll_local = None   # the service's: enrol a captured credential (local door)

    def _enrol_fields(self, enrol) -> dict:
        if self.enroll_local is None:
            raise ProtocolError("this door's whitelist comes from its office: enrol at the "
                                "office ('accessctl --site DIR enroll --capture-at DOOR')")
        if not isinstance(enrol, dict) or set(enrol) - {"holder", "valid_from", "valid_until"}:
            raise ProtocolError("field 'enroll' must be an object with holder, valid_from, "
                                "valid_until")
        holder = enrol.get("holder")
        if not isinstance(holder, str) or not holder.strip() or len(holder) > 64 \
                or any(ord(c) < 32 or ord(c) == 127 for c in holder):
            raise ProtocolError("enroll.holder must be 1-64 printable characters")
        out = {"holder": holder.strip()}
        for name in ("valid_from", "valid_until"):
            v = enrol.get(name)
            if v is not None and (type(v) not in (int, float) or not 0 <= v < 253402300800):
                raise ProtocolError(f"enroll.{name} must be a time (seconds since 1970)")
            out[name] = None if v is None else float(v)
        return out

    def _wait(self, fut: Future, timeout: float = REPLY_TIMEOUT) -> dict:
        try:
            return fut.result(timeout)
        except FutureTimeout:
            return {"ok": False, "error": "timed out waiting for the door (event log stuck?)"}

    def dispatch(self, req, peer_uid: int | None) -> dict:
        if not isinstance(req, dict):
            raise ProtocolError("request must be a JSON object")
        op = _field(req, "op")
        if op == "status":
            fut: Future = Future()
            self.engine.post(StatusRequest(fut))
            st = self._wait(fut)
            if st.get("ok"):
                st["control"] = self.connection_info()
            if self.publisher is not None and st.get("ok"):
                st["live"] = self.publisher.info()
            if self.sync is not None and st.get("ok"):
                st["sync"] = self.sync.info()
            return st
        if op == "unlock":
            who = _who(peer_uid)
            if "token" in req:
                who = self._check_token(req["token"], who)
            fut = Future()
            self.engine.post(RemoteUnlock(who, fut))
            return self._wait(fut)
        if op == "capture":
            timeout = req.get("timeout", 30)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) \
                    or not 0 < timeout <= 600:
                raise ProtocolError("field 'timeout' must be a number of seconds, 0-600")
            enrol = req.get("enroll")
            if enrol is not None:
                enrol = self._enrol_fields(enrol)
            fut = Future()
            self.engine.post(CaptureRequest(float(timeout), fut))
            got = self._wait(fut, timeout + REPLY_TIMEOUT)
            value = got.pop("value", None)   # the number never leaves the daemon in clear
            if enrol is not None and got.get("ok") and value is not None:
                return {**got, **self.enroll_local(got["kind"], value, **enrol)}
            return got
        if op == "command":
            # a command the office signed, given here instead of over MQTT (an office
            # terminal beside the door): checked and carried out exactly the same way
            if self.commands is None:
                raise ProtocolError("this door takes no signed commands (it has no site "
                                    "key file)")
            message = _field(req, "message", str)
            return self.commands.handle(message.encode())
        if op == "mode":
            from .config import DOOR_MODES
            from .core.events import SetMode
            mode = _field(req, "mode", str, DOOR_MODES)
            fut = Future()
            self.engine.post(SetMode(mode, _who(peer_uid), fut))
            return self._wait(fut)
        if op == "sim":
            return self._sim(req)
        if op == "sync":
            if self.sync is None:
                raise ProtocolError("this door does not sync (no sync.url in its config)")
            from .sync.door import reply_seconds
            from .updater import request_update
            request_update(self.sync.cfg.storage.data_dir)   # and the updater looks too
            fut = self.sync.request()
            try:
                return fut.result(reply_seconds(self.sync.cfg.sync.timeout_seconds))
            except FutureTimeout:
                return {"ok": False, "result": "the sync worker did not answer in time "
                                               f"(last result: {self.sync.last_result})"}
        if op == "log-check" and self.log_check is not None:
            return self.log_check()
        raise ProtocolError(f"unknown op {op!r} (known: status, unlock, mode, capture, sim, "
                            "sync, log-check)")

    def remote(self, cmd: str, args: dict, who: str) -> dict:
        """A verified command from the office over the live channel (live/runner.py):
        the same actions as the socket's ops, logged with `who`."""
        from .core.events import SetMode
        if cmd == "sync-now":
            return self.dispatch({"op": "sync"}, None)
        fut: Future = Future()
        if cmd == "mode":
            self.engine.post(SetMode(args["mode"], who, fut))
            return self._wait(fut)
        if cmd == "unlock":
            self.engine.post(RemoteUnlock(self._check_token(args["token"], who), fut))
            return self._wait(fut)
        if cmd == "capture":
            self.engine.post(CaptureRequest(float(args["timeout"]), fut))
            return self._wait(fut, args["timeout"] + REPLY_TIMEOUT)
        if cmd == "resend" and self.publisher is not None:
            return self.publisher.rewind(args["log"], args["from"])
        raise ProtocolError(f"unknown command {cmd!r}")

    def _check_token(self, token, who: str) -> str:
        from .core.events import Notice
        from .sync.token import TokenError
        if self.tokens is None:
            raise ProtocolError("this door takes no tokens (it has no site key file)")
        try:
            with self._token_lock:
                p = self.tokens.verify(token, self.engine.clock.wall())
        except (TokenError, StoreError) as exc:
            self.engine.post(Notice("unlock.rejected", f"token refused: {exc}",
                                    {"peer": who}))
            raise ProtocolError(f"token refused: {exc}") from None
        return f"token from {p.get('by') or 'the office'} (via {who})"

    def _sim_reader(self, req: dict, what: str):
        """The reader to simulate `what` on: the one named, or the first that can."""
        name = req.get("reader")
        if name is not None:
            if not isinstance(name, str) or name not in self.readers:
                raise ProtocolError(f"no reader named {name!r}")
            reader = self.readers[name]
            if what not in reader.sim_inputs():
                raise ProtocolError(f"reader {name!r} ({reader.kind}) cannot simulate a {what}")
            return reader
        for reader in self.readers.values():
            if what in reader.sim_inputs():
                return reader
        raise ProtocolError(f"no configured reader can simulate a {what}")

    def _sim(self, req: dict) -> dict:
        if not self.simulation:
            raise ProtocolError("simulation is off on this door (api.simulation = false)")
        what = _field(req, "input", str, SIM_INPUTS)
        fut: Future = Future()
        try:
            if what in ("tap", "fob"):
                field, kind = ("uid", "nfc") if what == "tap" else ("number", "fob")
                card = None
                if what == "tap" and req.get("card") is not None:  # an emulated secure card
                    from .protocols.cards import card_from_image
                    card = card_from_image(req["card"])
                    req = {**req, "uid": card.uid.hex()}
                value = normalize(kind, _field(req, field))
                reader = self._sim_reader(req, what)
                if card is not None:
                    if reader.kind != "nfc":
                        raise ProtocolError(f"reader {reader.name!r} ({reader.kind}) cannot "
                                            "talk to a secure card: use an nfc reader on udp")
                    reader.sim_present(kind, value, fut, card=card)
                    return {**self._wait(fut), "card": card.image()}
                reader.sim_present(kind, value, fut)
            elif what == "qr":
                text = _field(req, "text")
                if not text or len(text) > 2048 or any(c in text for c in "\r\n"):
                    raise ProtocolError("field 'text' must be one line of 1-2048 characters")
                self._sim_reader(req, what).sim_present("qr", text, fut)
            elif what == "pin":
                keys = _field(req, "keys")
                if not keys or any(k not in KEYS for k in keys) or len(keys) > 32:
                    raise ProtocolError("field 'keys' must be 1-32 keypad keys (0-9, * and #)")
                self._sim_reader(req, what).sim_keys(keys, fut)
            else:
                if what == "door":
                    state = _field(req, "state", str, ("open", "closed"))
                    self.inputs.sim_door(state == "open")
                elif what == "rex":
                    self.inputs.sim_rex()
                elif what == "fire":
                    state = _field(req, "state", str, ("on", "off"))
                    self.inputs.sim_fire(state == "on")
                else:
                    state = _field(req, "state", str, ("on", "off"))
                    self.inputs.sim_tamper(state == "on")
                self.engine.post(Barrier(fut))
        except (CredentialFormatError, HardwareError, ValueError, OSError) as exc:
            raise ProtocolError(str(exc)) from None
        return self._wait(fut)


def _who(uid: int | None) -> str:
    if uid is None:
        return "unknown peer"
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except OSError:
        return None


MAX_DEPTH = 16  # no request nests deeper than 2; refuse before the parser recurses


def json_depth(line: bytes) -> int:
    """The deepest nesting of [ and { in a JSON text, strings skipped (no parsing)."""
    depth = deepest = 0
    in_str = escaped = False
    for b in line:
        if in_str:
            if escaped:
                escaped = False
            elif b == 0x5C:      # backslash
                escaped = True
            elif b == 0x22:      # "
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # type: ignore[attr-defined]
        super().setup()
        self._buf = b""

    def _readline(self) -> bytes:
        """The next request line, which must arrive whole within idle_timeout of the
        last reply: a deadline for the whole line, not for each read, so a client
        trickling a byte at a time cannot hold its slot. b"" when it is closed, late or
        gone; at most MAX_LINE + 1 bytes."""
        deadline = time.monotonic() + self.server.idle_timeout  # type: ignore[attr-defined]
        sock = self.request
        while b"\n" not in self._buf and len(self._buf) <= MAX_LINE:
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except OSError:
                return b""
            if not chunk:        # closed: what came before it is the last request
                line, self._buf = self._buf[:MAX_LINE + 1], b""
                return line
            self._buf += chunk
        cut = self._buf.find(b"\n")
        if cut < 0 or cut > MAX_LINE:
            line, self._buf = self._buf[:MAX_LINE + 1], b""
        else:
            line, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
        return line

    def handle(self) -> None:
        controller: Controller = self.server.controller  # type: ignore[attr-defined]
        uid = peer_uid(self.request)
        lineno = 0
        while True:
            line = self._readline()
            if not line:
                return
            lineno += 1
            if len(line) > MAX_LINE:
                self._reply({"ok": False, "error": f"line {lineno}: request longer than "
                                                    f"{MAX_LINE} bytes; closing"})
                return
            if not line.strip():
                continue
            if json_depth(line) > MAX_DEPTH:
                if not self._reply({"ok": False, "error": f"line {lineno}: request nested "
                                                          f"deeper than {MAX_DEPTH} levels"}):
                    return
                continue
            try:
                req = json.loads(line)
            except json.JSONDecodeError as exc:
                req = {"ok": False, "error": f"line {lineno}: malformed JSON: {exc.msg} "
                                              f"at column {exc.colno}"}
            except UnicodeDecodeError:
                req = {"ok": False, "error": f"line {lineno}: not UTF-8"}
            except ValueError as exc:   # a number beyond what the parser takes, ...
                req = {"ok": False, "error": f"line {lineno}: malformed JSON: "
                                             f"{str(exc)[:120]}"}
            else:
                req = None if req is None else {"request": req}
            if req is not None and "error" in req:
                if not self._reply(req):
                    return
                continue
            try:
                reply = controller.dispatch(req["request"] if req else None, uid)
            except ProtocolError as exc:
                reply = {"ok": False, "error": f"line {lineno}: {exc}"}
            except AccessdError as exc:
                reply = {"ok": False, "error": f"line {lineno}: {exc}"}
            except Exception as exc:  # never let one request take the daemon down
                log.exception("control request failed")
                reply = {"ok": False, "error": f"line {lineno}: internal error: {exc}"}
            if not self._reply(reply):
                return

    def _reply(self, obj: dict) -> bool:
        try:
            self.wfile.write(json.dumps(obj).encode() + b"\n")
            self.wfile.flush()
            return True
        except OSError:
            return False


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per connection, at most `max_connections` at once: the accept loop
    waits for a free slot, and clients beyond it wait in the listen backlog
    (`request_queue_size`) instead of being refused. A client silent for
    `idle_timeout` seconds is closed, so idle clients cannot hold the slots."""
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 512

    def __init__(self, path: Path, controller: Controller, group: str = "", *,
                 max_connections: int = 64, idle_timeout: float = 30.0):
        self.path = Path(path)
        self.controller = controller
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._slots = threading.Semaphore(max_connections)
        self._count_lock = threading.Lock()
        self.connections = 0
        self.per_uid = max(1, max_connections // 4)
        self._by_uid: dict[int | None, int] = {}      # connections served, per peer uid
        self._waiting: dict[int | None, list] = {}    # beyond a uid's share, in order
        self._uids: dict[int, int | None] = {}
        self._stopping = threading.Event()
        controller.connection_info = lambda: {"connections": self.connections,
                                              "max_connections": self.max_connections}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if (self.path.exists() or self.path.is_symlink()) and \
                not stat.S_ISSOCK(os.lstat(self.path).st_mode):
            raise HardwareError(f"{self.path}: exists and is not a socket; not replacing it")
        if self.path.exists() or self.path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale socket from a crash
            else:
                raise HardwareError(f"{self.path}: another accessd is already listening here")
            finally:
                probe.close()
        old = os.umask(0o117)  # the socket is born 0660
        try:
            super().__init__(str(self.path), _Handler)
        finally:
            os.umask(old)
        if group:
            os.chown(self.path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(self.path, 0o660)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="control", daemon=True)

    def process_request(self, request, client_address) -> None:
        """A connection beyond its user's share (a quarter of the slots) waits in that
        user's own queue, not in a slot: a user opening many connections, or keeping
        them busy, cannot lock out an intercom running as another user."""
        uid = peer_uid(request)
        with self._count_lock:
            if self._by_uid.get(uid, 0) >= self.per_uid:
                waiting = self._waiting.setdefault(uid, [])
                if len(waiting) < self.request_queue_size:
                    waiting.append((request, client_address))
                    return
                full = True
            else:
                self._by_uid[uid] = self._by_uid.get(uid, 0) + 1
                full = False
        if full:
            self._refuse(request, f"{_who(uid)} has {self.request_queue_size} more "
                                  "connections waiting already")
            return
        while not self._slots.acquire(timeout=0.5):  # all slots busy: wait, stay stoppable
            if self._stopping.is_set():
                self._release_uid(uid)
                self.shutdown_request(request)
                return
        self._serve(request, client_address, uid)

    def _serve(self, request, client_address, uid) -> None:
        """Holding a slot and a share of uid's: serve the connection in a thread."""
        with self._count_lock:
            self.connections += 1
            self._uids[id(request)] = uid
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)
            raise

    def _refuse(self, request, why: str) -> None:
        try:
            request.sendall(json.dumps({"ok": False, "error": why}).encode() + b"\n")
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release_uid(self, uid) -> None:
        with self._count_lock:
            left = self._by_uid.get(uid, 1) - 1
            if left:
                self._by_uid[uid] = left
            else:
                self._by_uid.pop(uid, None)

    def _release(self, request) -> None:
        with self._count_lock:
            uid = self._uids.pop(id(request), None)
            self.connections -= 1
            waiting = self._waiting.get(uid)
            nxt = waiting.pop(0) if waiting else None
            if waiting is not None and not waiting:
                del self._waiting[uid]
        if nxt is not None and not self._stopping.is_set():
            self._serve(*nxt, uid)          # the slot and the share pass to the next one
            return
        if nxt is not None:
            self.shutdown_request(nxt[0])
        self._release_uid(uid)
        self._slots.release()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.shutdown()
        self.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class Client:
    """A blocking JSON-lines client for accessctl, tests and the intercom."""

    def __init__(self, path: Path, timeout: float = 15.0):
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self._connect(timeout)
        except FileNotFoundError:
            raise DaemonUnavailable(f"{self.path}: no control socket (is accessd running?)") from None
        except PermissionError:
            raise DaemonUnavailable(f"{self.path}: permission denied (are you in the door's "
                                    "api.group?)") from None
        except OSError as exc:
            raise DaemonUnavailable(f"{self.path}: cannot connect: {exc.strerror}") from None
        self._rfile = self.sock.makefile("rb")

    def _connect(self, timeout: float) -> None:
        """connect(); a full listen backlog answers EAGAIN to a socket with a timeout:
        try again until the timeout instead of failing the caller."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        delay = 0.001
        while True:
            try:
                self.sock.connect(str(self.path))
                return
            except BlockingIOError:
                if time.monotonic() + delay > deadline:
                    raise OSError(errno.EAGAIN, "the door's control socket stayed busy "
                                                f"for {timeout:g} s") from None
                pause.wait(delay)
                delay = min(delay * 2, 0.05)

    def request(self, req: dict, timeout: float | None = None) -> dict:
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            line = self._rfile.readline()
        except OSError as exc:
            raise DaemonUnavailable(f"{self.path}: connection failed: {exc}") from None
        if not line:
            raise DaemonUnavailable(f"{self.path}: daemon closed the connection")
        return json.loads(line)

    def close(self) -> None:
        self._rfile.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
