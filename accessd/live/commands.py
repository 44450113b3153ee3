"""Signed commands from the office to a door over the live channel (the wire format,
for both ends).

A command is one MQTT message on accessd/<site>/<door>/cmd:

    base64url(JSON payload) "." base64url(Ed25519 signature)

    payload = {"v": 1, "site", "door", "cmd", "args": {...}, "iat", "exp",
               "nonce", "by"}

signed by the site key over b"accessd-cmd-v1\\0" + payload, so that a command can
never pass for an unlock token (and a token never for a command). The door
checks the signature with the site's public key from its key file, that the
command names this site and this door, that it lives at most MAX_TTL and has
not expired (the unlock tokens' rule: sync/token.lifetime_problem), and that its
nonce was never seen (the door's used-token store, on disk, across restarts).
Whatever fails is refused, logged at the door (`cmd.rejected`, an alarm) and
acknowledged with the reason on .../cmd/ack.

Commands: sync-now; mode {"mode": normal|lockdown|held-open}; unlock {"token":
an unlock token from sync/token.py, itself one-time}; capture {"timeout": s,
"reply_key": the office's one-off X25519 public key}; resend {"log", "from"}:
publish the log again from that record on (the office missed some: a broker
that lost its messages). A captured card number is
never sent in clear through the broker: the door seals it to the reply key
(X25519, HKDF-SHA256, AES-GCM) and only the office that asked can open it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config import DOOR_MODES
from ..errors import AccessdError
from ..sync.token import b64 as _b64, lifetime_problem, unb64 as _unb64

COMMANDS = ("sync-now", "mode", "unlock", "capture", "resend")
DOMAIN = b"accessd-cmd-v1\x00"
MAX_TTL = 300.0      # seconds a command may live at most
MAX_MESSAGE = 8192   # bytes; anything longer is refused unread
SEAL_INFO = b"accessd capture reply v1"


class CommandError(AccessdError, ValueError):
    """A command was refused; the message says why. `nonce` and `cmd` are what the
    message claimed (for the ack), when it could be read at all."""

    def __init__(self, message: str, nonce: str = "", cmd: str = ""):
        super().__init__(message)
        self.nonce = nonce
        self.cmd = cmd


@dataclass(frozen=True)
class Command:
    cmd: str
    args: dict
    nonce: str
    by: str
    exp: float


def _check_args(cmd: str, args) -> dict:
    """The arguments each command takes, checked the same at both ends."""
    if not isinstance(args, dict):
        raise CommandError("'args' must be an object")
    allowed = {"sync-now": set(), "mode": {"mode"}, "unlock": {"token"},
               "capture": {"timeout", "reply_key"}, "resend": {"log", "from"}}[cmd]
    extra = set(args) - allowed
    if extra:
        raise CommandError(f"{cmd} takes no argument {sorted(extra)[0]!r}")
    if cmd == "mode" and args.get("mode") not in DOOR_MODES:
        raise CommandError(f"mode must be one of {', '.join(DOOR_MODES)}")
    if cmd == "unlock" and (not isinstance(args.get("token"), str) or not args["token"]):
        raise CommandError("unlock needs a 'token' (accessctl token)")
    if cmd == "resend":
        log_id, first = args.get("log"), args.get("from")
        if not isinstance(log_id, str) or not 0 < len(log_id) <= 64:
            raise CommandError("resend needs the 'log' (the door's log identity)")
        if type(first) is not int or not 0 < first < 2 ** 62:
            raise CommandError("resend needs 'from', the first record number to send again")
    if cmd == "capture":
        t = args.get("timeout")
        if type(t) not in (int, float) or not 0 < t <= 600:
            raise CommandError("capture needs a 'timeout' of 1-600 seconds")
        try:
            key = _unb64(args.get("reply_key") or "")
        except (ValueError, TypeError):
            key = b""
        if len(key) != 32:
            raise CommandError("capture needs a 'reply_key' (a 32-byte X25519 key)")
    return args


def sign(signing_key, *, site: str, door: str, cmd: str, args: dict | None = None,
         now: float, ttl: float = 60.0, by: str = "") -> tuple[bytes, str]:
    """The message to publish on the door's cmd topic, and its nonce (the ack's key)."""
    if cmd not in COMMANDS:
        raise CommandError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
    if not 0 < ttl <= MAX_TTL:
        raise CommandError(f"ttl must be 1-{MAX_TTL:g} seconds")
    args = _check_args(cmd, dict(args or {}))
    nonce = secrets.token_hex(16)
    payload = json.dumps({"v": 1, "site": site, "door": door, "cmd": cmd, "args": args,
                          "iat": now, "exp": now + ttl, "nonce": nonce, "by": by[:64]},
                         separators=(",", ":"), sort_keys=True).encode()
    return (_b64(payload) + "." + _b64(signing_key.sign(DOMAIN + payload))).encode(), nonce


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a command may carry")


def peek(message: bytes) -> tuple[str, str]:
    """(nonce, cmd) a message claims, unverified, for acknowledging a refusal; ("", "")
    when it cannot be read."""
    try:
        p = json.loads(_unb64(message.decode().split(".")[0]), parse_constant=_no_constant)
        nonce, cmd = p.get("nonce", ""), p.get("cmd", "")
        return (nonce[:64] if isinstance(nonce, str) else "",
                cmd[:32] if isinstance(cmd, str) else "")
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        return "", ""


class CommandVerifier:
    """Checks commands for one door of one site; `used` remembers nonces until their
    command expires (storage.used_tokens.UsedTokens on a door: on disk)."""

    def __init__(self, public_key, site: str, door: str, used):
        self.public_key = public_key
        self.site = site
        self.door = door
        self.used = used

    def verify(self, message: bytes, now: float) -> Command:
        nonce, cmd = peek(message)

        def refuse(why: str) -> CommandError:
            return CommandError(why, nonce, cmd)
        if not isinstance(message, (bytes, bytearray)) or len(message) > MAX_MESSAGE:
            raise refuse("malformed command (too long)")
        try:
            body, sig = bytes(message).decode("ascii").split(".")
            payload, signature = _unb64(body), _unb64(sig)
        except (ValueError, UnicodeDecodeError):
            raise refuse("malformed command (not a signed message)") from None
        try:
            self.public_key.verify(signature, DOMAIN + payload)
        except InvalidSignature:
            raise refuse("bad signature: not signed by this site's key, or altered") from None
        try:
            p = json.loads(payload, parse_constant=_no_constant)
            site, door, cmd = str(p["site"]), str(p["door"]), p["cmd"]
            iat, exp, nonce, args = p["iat"], p["exp"], str(p["nonce"]), p["args"]
            by = str(p.get("by", ""))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise refuse("command lacks a field or has a wrong type") from None
        why = lifetime_problem("command", iat, exp, now, MAX_TTL)
        if why:
            raise refuse(why)
        if p.get("v") != 1:
            raise refuse(f"command version {p.get('v')!r} is not understood")
        if site != self.site:
            raise refuse(f"command is for site {site!r}, not this one")
        if door != self.door:
            raise refuse(f"command is for door {door!r}, not this one")
        if cmd not in COMMANDS:
            raise refuse(f"unknown command {cmd!r}")
        args = _check_args(cmd, args)
        refused = self.used.claim("cmd:" + nonce, float(exp), float(iat))
        if refused:
            raise refuse("command was already received (replay)"
                         if refused.startswith("already") else f"command is {refused}")
        return Command(cmd, args, nonce, by, exp)


# ---- the capture reply: sealed to the office's one-off key ---------------------------

def reply_keypair() -> tuple[X25519PrivateKey, str]:
    """The office's one-off key for a capture: the private half, and the public half as
    the command's 'reply_key'."""
    priv = X25519PrivateKey.generate()
    raw = priv.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    return priv, _b64(raw)


def _kdf(shared: bytes, eph: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=eph, info=SEAL_INFO).derive(shared)


def seal_reply(reply_key: str, data: bytes) -> str:
    """At the door: data sealed so that only the holder of reply_key's private half reads
    it (a fresh ephemeral key each time)."""
    peer = X25519PublicKey.from_public_bytes(_unb64(reply_key))
    eph = X25519PrivateKey.generate()
    eph_raw = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    nonce = secrets.token_bytes(12)
    box = AESGCM(_kdf(eph.exchange(peer), eph_raw)).encrypt(nonce, data, eph_raw)
    return _b64(eph_raw + nonce + box)


def open_reply(priv: X25519PrivateKey, sealed: str) -> bytes:
    try:
        raw = _unb64(sealed)
        eph_raw, nonce, box = raw[:32], raw[32:44], raw[44:]
        shared = priv.exchange(X25519PublicKey.from_public_bytes(eph_raw))
        return AESGCM(_kdf(shared, eph_raw)).decrypt(nonce, box, eph_raw)
    except (ValueError, TypeError, InvalidTag):
        raise CommandError("the door's sealed reply cannot be opened") from None
