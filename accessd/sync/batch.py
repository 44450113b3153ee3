"""An uploaded log batch: one range of one door's log, signed by that door's own key.

  logs/<door>/<log id>/<first, 12 digits>-<last, 12 digits>.ndjson.gz

gzip of NDJSON lines:

  {"batch": 2, "door", "log", "first", "last", "count", "key"}   the header
  {record}  ...                                                    count records, in order
  {"sig": base64(Ed25519 signature)}                               the last line

The signature covers DOMAIN followed by every byte before the last line (the
header and the records exactly as written). "key" names the door's public key
(the first 16 hex digits of its SHA-256). The door's signing key is in its key
file (`log_key`); the office derives the public half from its own keys
(site/keys.door_log_key), so whoever can write to the store, but is neither the
door nor the office, cannot add a batch, change one, or pass off one door's
batch as another's. The office refuses a batch that is unsigned (made before
doors signed, or not by a door), signed by another key, or from a door the site
does not have, and says which and why.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import AccessdError

FORMAT = 2
DOMAIN = b"accessd-log-batch-v1\x00"
MAX_BATCH_BYTES = 256 << 20    # uncompressed; a batch of 5,000 records is about 2 MB


class BatchError(AccessdError, ValueError):
    """An uploaded batch is refused; the message says why."""


@dataclass(frozen=True)
class Header:
    door: str
    log: str
    first: int
    last: int
    count: int
    key: str


def key_id(public) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(raw).hexdigest()[:16]


def encode(door: str, log_id: str, rows: list[dict], log_key: bytes) -> bytes:
    """The batch of `rows` (the log's records, each gaining its log id), signed."""
    signer = Ed25519PrivateKey.from_private_bytes(log_key)
    head = {"batch": FORMAT, "door": door, "log": log_id, "first": rows[0]["seq"],
            "last": rows[-1]["seq"], "count": len(rows), "key": key_id(signer.public_key())}
    body = (json.dumps(head, separators=(",", ":")) + "\n"
            + "".join(json.dumps({**r, "log": log_id}, separators=(",", ":")) + "\n"
                      for r in rows)).encode()
    sig = base64.b64encode(signer.sign(DOMAIN + body)).decode()
    return gzip.compress(body + json.dumps({"sig": sig}).encode() + b"\n",
                         compresslevel=6, mtime=0)


def _decompress(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=31)     # gzip, bounded: a small file must not expand to GBs
    try:
        out = d.decompress(data, MAX_BATCH_BYTES)
    except zlib.error as exc:
        raise BatchError(f"not a gzip file ({exc})") from None
    if d.unconsumed_tail:
        raise BatchError(f"larger than {MAX_BATCH_BYTES >> 20} MB uncompressed")
    if not d.eof:
        raise BatchError("the gzip data is cut short")
    return out


def decode(data: bytes, *, door: str, log_id: str, public_key) -> tuple[Header, list]:
    """The header and the records (parsed JSON, unchecked) of a batch stored under
    door `door` and log `log_id`, after its signature by `public_key` (None: the site
    has no such door) is checked. BatchError says why a batch is refused."""
    text = _decompress(data)
    try:
        first_line, _, _ = text.partition(b"\n")
        head = json.loads(first_line)
    except ValueError:
        raise BatchError("its first line is not JSON") from None
    if not isinstance(head, dict) or "batch" not in head:
        raise BatchError("unsigned: not from a door that signs its uploads (an accessd from "
                         "before signed logs, or not from a door at all)")
    if head.get("batch") != FORMAT:
        raise BatchError(f"batch format {head.get('batch')!r} is not understood")
    if public_key is None:
        raise BatchError(f"from door {door!r}, which this site does not have")
    body, sep, tail = text.rstrip(b"\n").rpartition(b"\n")
    try:
        sig = base64.b64decode(json.loads(tail)["sig"], validate=True)
        public_key.verify(sig, DOMAIN + body + sep)
    except (ValueError, KeyError, TypeError, InvalidSignature):
        raise BatchError(f"not signed with the key of door {door!r} (forged, altered, or "
                         "signed by another door)") from None
    try:
        h = Header(str(head["door"]), str(head["log"]), int(head["first"]),
                   int(head["last"]), int(head["count"]), str(head.get("key", "")))
        rows = [json.loads(line) for line in body.split(b"\n")[1:]]
    except (ValueError, KeyError, TypeError):
        raise BatchError("its header lacks a field, or a record is not JSON") from None
    if h.door != door or h.log != log_id:
        raise BatchError(f"signed for door {h.door!r}, log {h.log!r}: stored under another "
                         "name (moved?)")
    if h.count != len(rows):
        raise BatchError(f"its header says {h.count} records, it holds {len(rows)}")
    return h, rows
