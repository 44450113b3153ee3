"""The decision tail's options, measured side by side (`scripts/bench`, key "lookup_options").

DESIGN.md asks for decision p99 <= 0.3 ms at 1M credentials with a flat RSS. The tap's
lookup is: HMAC the credential (the whitelist holds only keyed digests), find the sealed
row, open it (AES-GCM, the digest as associated data), build the record. This measures
each way of doing that, and the floors under any of them, *interleaved*: every tap picks
an option at random, so a noisy neighbour or a slow minute on a VM hits all of them alike.
Taps are 3 ms apart, as in `decision_ms`.

  wakeup            a queue handoff to another thread and nothing else (the core's wake-up)
  hmac              the lookup digest alone
  crypto_floor      digest + AES-GCM open + record, from a row held in memory (no storage)
  sqlite            Whitelist.lookup as shipped (sqlite3, read-only, 2 MB page cache)
  sqlite_immutable  the same with SQLite's immutable=1 (no locks or WAL checks per read)
  apsw              the same query through apsw, if it is installed in .venv
  compact_index     a prototype read-only hash index: a bucket directory (8 bytes per
                    8 credentials, in memory) and one pread of the bucket per lookup
  keep_warm         sqlite, with a throw-away lookup 1 ms before each tap (what a
                    keep-warm timer would buy; `keep_warm_cpu_percent` is its cost if it
                    ran every millisecond of idle)
"""

from __future__ import annotations

import array
import os
import queue
import random
import sqlite3
import struct
import threading
import time
from pathlib import Path

from accessd.config import load_config
from accessd.core.credentials import CredentialRecord
from accessd.storage.crypto import Sealer, lookup_digest
from accessd.storage.keys import load_key_file
from accessd.storage.whitelist import Whitelist

GAP = 0.003


def _sqlite_query(conn, keys, sealer):
    def lookup(uid: str):
        d = lookup_digest(keys.lookup, "nfc", uid)
        row = conn.execute("SELECT sealed FROM credentials WHERE lookup = ?", (d,)).fetchone()
        return CredentialRecord.from_row(sealer.open(d, row[0]))
    return lookup


def _apsw_query(path: Path, keys, sealer):
    try:
        import apsw
    except ImportError:
        return None
    conn = apsw.Connection(f"file:{path}?mode=ro",
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    conn.execute("PRAGMA cache_size = -2000")

    def lookup(uid: str):
        d = lookup_digest(keys.lookup, "nfc", uid)
        for (sealed,) in conn.execute("SELECT sealed FROM credentials WHERE lookup = ?", (d,)):
            return CredentialRecord.from_row(sealer.open(d, sealed))
    return lookup


def build_compact_index(whitelist: Path, out: Path) -> None:
    """Buckets of (16 bytes of digest, length, sealed row) by the digest's first 4 bytes,
    about 8 rows a bucket; a header of bucket offsets. Built once from the SQLite file."""
    conn = sqlite3.connect(f"file:{whitelist}?mode=ro", uri=True)
    count = conn.execute("SELECT count(*) FROM credentials").fetchone()[0]
    nb = 1 << max(1, (count // 8).bit_length())
    buckets: list[list[bytes]] = [[] for _ in range(nb)]
    for d, sealed in conn.execute("SELECT lookup, sealed FROM credentials"):
        buckets[int.from_bytes(d[:4], "big") & (nb - 1)].append(
            d[8:24] + struct.pack(">H", len(sealed)) + sealed)
    conn.close()
    offsets, at = [], 8 + 8 * (nb + 1)
    for b in buckets:
        offsets.append(at)
        at += sum(map(len, b))
    offsets.append(at)
    with open(out, "wb") as f:
        f.write(struct.pack(">Q", nb))
        f.write(array.array("Q", offsets).tobytes())
        for b in buckets:
            f.write(b"".join(b))


def _compact_query(index: Path, keys, sealer):
    fd = os.open(index, os.O_RDONLY)
    nb = struct.unpack(">Q", os.pread(fd, 8, 0))[0]
    offsets = array.array("Q")
    offsets.frombytes(os.pread(fd, 8 * (nb + 1), 8))

    def lookup(uid: str):
        d = lookup_digest(keys.lookup, "nfc", uid)
        b = int.from_bytes(d[:4], "big") & (nb - 1)
        buf = os.pread(fd, offsets[b + 1] - offsets[b], offsets[b])
        key, i = d[8:24], 0
        while i < len(buf):
            n = int.from_bytes(buf[i + 16:i + 18], "big")
            if buf[i:i + 16] == key:
                return CredentialRecord.from_row(sealer.open(d, buf[i + 18:i + 18 + n]))
            i += 18 + n
        return None
    return lookup, lambda: os.close(fd)


def bench_lookup_options(config: Path, n: int, taps: int, uid_for, summary_ms) -> dict:
    """Each option's latency (ms), `taps` taps in all spread over the options at random."""
    cfg = load_config(config)
    keys = load_key_file(cfg.storage.key_file)
    sealer = Sealer(keys.seal)
    path = cfg.storage.whitelist_path
    wl = Whitelist(path, keys)
    immutable = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    immutable.execute("PRAGMA cache_size = -2000")
    index = path.with_name("compact-index.bin")
    build_compact_index(path, index)
    compact, close_compact = _compact_query(index, keys, sealer)
    held_digest = lookup_digest(keys.lookup, "nfc", uid_for(0))
    held = immutable.execute("SELECT sealed FROM credentials WHERE lookup = ?",
                             (held_digest,)).fetchone()[0]

    def shipped(uid: str):
        return wl.lookup(lookup_digest(keys.lookup, "nfc", uid))

    options = {
        "hmac": lambda uid: lookup_digest(keys.lookup, "nfc", uid),
        "crypto_floor": lambda uid: (lookup_digest(keys.lookup, "nfc", uid),
                                     CredentialRecord.from_row(sealer.open(held_digest, held))),
        "sqlite": shipped,
        "sqlite_immutable": _sqlite_query(immutable, keys, sealer),
        "compact_index": compact,
        "keep_warm": shipped,
    }
    apsw_lookup = _apsw_query(path, keys, sealer)
    if apsw_lookup is not None:
        options["apsw"] = apsw_lookup
    names = ["wakeup", *options]
    lat: dict[str, list[float]] = {name: [] for name in names}
    warm_cost: list[float] = []

    handoff: queue.SimpleQueue = queue.SimpleQueue()

    def core():
        while (t := handoff.get()) is not None:
            lat["wakeup"].append((time.perf_counter_ns() - t) / 1e3)
    waker = threading.Thread(target=core, daemon=True)
    waker.start()

    rng = random.Random(n)
    for _ in range(taps):
        name, uid = rng.choice(names), uid_for(rng.randrange(n))
        if name == "wakeup":
            handoff.put(time.perf_counter_ns())
            time.sleep(GAP)
            continue
        if name == "keep_warm":
            time.sleep(GAP - 0.001)
            t0 = time.perf_counter_ns()
            shipped(uid_for(0))
            warm_cost.append((time.perf_counter_ns() - t0) / 1e3)
            time.sleep(0.001)
        t0 = time.perf_counter_ns()
        found = options[name](uid)
        lat[name].append((time.perf_counter_ns() - t0) / 1e3)
        if found is None:
            raise AssertionError(f"{name}: an enrolled credential was not found")
        if name != "keep_warm":
            time.sleep(GAP)
    handoff.put(None)
    waker.join(5)
    close_compact()
    immutable.close()
    wl.close()
    result = {name: summary_ms(v) for name, v in lat.items() if v}
    result["apsw"] = result.get("apsw", "not installed (.venv/bin/pip install apsw)")
    result["compact_index_mb"] = round(index.stat().st_size / 2**20, 1)
    if warm_cost:
        # one warm-up lookup per millisecond of idle: its median cost is the CPU share
        result["keep_warm_cpu_percent"] = round(100 * summary_ms(warm_cost)["p50"], 1)
    index.unlink()
    return result
