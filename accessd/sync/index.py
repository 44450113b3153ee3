"""The signed index of a door group's bundle: how a door learns that a newer
whitelist exists, from signed content and never from a transport validator.

  bundles/<group>.index = MAGIC | header JSON | Ed25519 signature (64 bytes)

  header = {"site", "group", "version", "issued", "bundle": {"name", "size", "sha256"}}

The office writes it after the bundle it names, on every publish. A door reads
it in full on every sync (with no If-None-Match, and Cache-Control: no-cache for
any cache on the way); it is a few hundred bytes. Only when it names a version
newer than the applied one does the door fetch the bundle, and then it checks
the body against the size and SHA-256 the index gives before anything else: a
body cut short, replaced on the way or still cached somewhere is refused with
that reason, and nothing unverified is kept for the next sync. ETags, file
modification times and Last-Modified play no part: two versions served with
one validator (nginx's ETag is the second and the size) cannot hide a revocation.

The signature's input starts with MAGIC, which no other thing the site signs
(bundles, tokens, commands, QR passes) starts with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature

from .bundle import BundleError, SIG_BYTES, _int_field, _number_field, _reject_constant

MAGIC = b"ACCESSD-INDEX/1\n"
MAX_INDEX = 4096   # bytes: an index is a few hundred


def index_name(group: str) -> str:
    return f"bundles/{group}.index"


def bundle_name(group: str) -> str:
    return f"bundles/{group}.bundle"


@dataclass(frozen=True)
class Index:
    site: str
    group: str
    version: int
    issued: float
    bundle: str       # the bundle's name in the store
    size: int
    sha256: str

    def matches(self, blob: bytes) -> str | None:
        """None if `blob` is the bundle this index names, else why not."""
        if len(blob) != self.size:
            return (f"the bundle fetched is {len(blob)} bytes, its signed index says "
                    f"{self.size} (cut short, or replaced on the way)")
        if sha256(blob).hexdigest() != self.sha256:
            return "the bundle fetched does not match its signed index (replaced on the way?)"
        return None


def make(signing_key, *, site: str, group: str, version: int, issued: float,
         bundle: bytes) -> bytes:
    doc = {"site": site, "group": group, "version": version, "issued": issued,
           "bundle": {"name": bundle_name(group), "size": len(bundle),
                      "sha256": sha256(bundle).hexdigest()}}
    body = MAGIC + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return body + signing_key.sign(body)


def verify(blob: bytes, *, public_key, site: str, group: str) -> Index:
    """The index, checked: format, signature, site and group. BundleError says why not."""
    if not isinstance(blob, (bytes, bytearray)) or not blob.startswith(MAGIC):
        raise BundleError("the store's index is not an accessd bundle index (bad magic)")
    if len(blob) > MAX_INDEX or len(blob) < len(MAGIC) + 2 + SIG_BYTES:
        raise BundleError(f"the store's index is {len(blob)} bytes: cut short or not one")
    body, sig = bytes(blob[:-SIG_BYTES]), bytes(blob[-SIG_BYTES:])
    try:
        public_key.verify(sig, body)
    except InvalidSignature:
        raise BundleError("the store's index has a bad signature: not signed by this site's "
                          "key, cut short or altered") from None
    try:
        doc = json.loads(body[len(MAGIC):], parse_constant=_reject_constant)
        b = doc["bundle"]
        fields = (doc["site"], doc["group"], b["name"], b["sha256"])
    except (ValueError, KeyError, TypeError, RecursionError):
        raise BundleError("the store's index lacks a field") from None
    if not all(isinstance(f, str) for f in fields):
        raise BundleError("the store's index has a field of the wrong type")
    what = "the store's index:"
    idx = Index(doc["site"], doc["group"], _int_field(doc, "version", 1, 2**63 - 1, what),
                _number_field(doc, "issued", what), b["name"],
                _int_field(b, "size", 1, 1 << 40, what), b["sha256"])
    if idx.site != site:
        raise BundleError(f"the store's index is for site {idx.site!r}, this door belongs "
                          f"to {site!r}")
    if idx.group != group or idx.bundle != bundle_name(group):
        raise BundleError(f"the store's index is for group {idx.group!r}, this door is in "
                          f"{group!r}")
    return idx
