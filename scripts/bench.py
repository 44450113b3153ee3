"""accessd benchmark: prints one JSON document with the figures of DESIGN.md section 5.

  decision_ms       credential event queued -> relay pin set, in process, per whitelist size,
                    taps 3 ms apart (the core idles between them, as on a real door)
  decision_warm_ms  the same with taps 0.2 ms apart (CPU and caches stay hot)
  log_lag_ms        relay pin set -> its log record committed (synchronous=FULL)
  eventlog_append_ms  one durable append on its own
  daemon            per size: start -> READY=1 (s), RSS after taps (MB), peak RSS
  idle_cpu_percent  the daemon with no taps, over --idle seconds, percent of one core
  readers           end to end through nfcpy (udp), pyserial (pty) and gpiozero (Wiegand pulses)
  office            publish a 100k bundle, apply it with taps streaming (decisions during it),
                    upload 250k events
  live              the MQTT live channel through a local Mosquitto: alarm (input change)
                    -> office receipt; catch-up rate of a 50k-record backlog; decision
                    latency at 50 taps/s with the publisher off, on, broker down and
                    broker blackholed; RSS the publisher adds
  lookup_options    at the largest size: each way of doing the tap's lookup, and the floors
                    under all of them, interleaved tap by tap (scripts/bench_lookup.py)
  estate            the office at estate scale, on SQLite and on PostgreSQL (a server the
                    bench starts, as the tests do): 225 doors in 25 groups from a CSV,
                    5,000 residents from a CSV, publish to the 25 groups, logs pull of
                    225 doors x 1,000 events, site doctor
  revocation        revoke + publish -> the moment each of 225 doors denies the card
                    (scripts/bench_revocation.py): on a file store and on S3 (moto), each
                    door syncing every --revocation-interval s, and pushed over the live
                    channel (sync-now to every door through a local Mosquitto)
  console           the office console's pages at 5,000 residents and 1M events
                    (scripts/bench_console.py)
  retention         the office purging 1M events older than it keeps (SQLite, PostgreSQL),
                    and a door purging 100k uploaded records with the decision latency
                    while it does (scripts/bench_retention.py)
  release           a release published to 225 doors, fetched and checked by each from
                    an HTTP store; one door's offline install (scripts/bench_release.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from accessd.clock import SystemClock
from accessd.config import load_config
from accessd.core.events import CredentialPresented
from accessd.engine import Engine
from accessd.hw.gpio import DoorOutputs
from accessd.storage.eventlog import EventLog, LogWriter, PendingRecord, utc_iso
from accessd.storage.keys import load_key_file
from accessd.storage.whitelist import Whitelist
from accessd.storage.whitelist_admin import WhitelistAdmin
from accessd.testing import DaemonProcess, free_tcp_port, write_sim_config
from bench_lookup import bench_lookup_options
from bench_revocation import bench_revocation


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summary_ms(us_values):
    return {"n": len(us_values), "p50": round(pct(us_values, 50) / 1000, 4),
            "p99": round(pct(us_values, 99) / 1000, 4), "max": round(max(us_values) / 1000, 4)}


def uid_for(i: int) -> str:
    return f"{i:014X}"  # 7-byte UIDs


def build_door(directory: Path, n: int, **cfg) -> Path:
    config = write_sim_config(directory, **cfg)
    c = load_config(config)
    admin = WhitelistAdmin(c.storage.whitelist_path, load_key_file(c.storage.key_file))
    chunk = 50_000
    for start in range(0, n, chunk):
        admin.enroll_many(("nfc", uid_for(i), f"h{i}", None, None, "active")
                          for i in range(start, min(n, start + chunk)))
    admin.close()
    return config


def start_engine(config: Path):
    """The core on a real whitelist and event log, MockFactory outputs, its own thread.
    Returns (engine, pin factory, stop); stop() waits for the log, then shuts down."""
    from accessd.core.events import Stop
    cfg = load_config(config)
    keys = load_key_file(cfg.storage.key_file)
    clock = SystemClock()
    wl = Whitelist(cfg.storage.whitelist_path, keys)
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    factory = MockFactory()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, wl, out, logw, clock)
    core = threading.Thread(target=engine.run, daemon=True)
    core.start()

    def stop():
        if logw.last_future is not None:
            logw.last_future.result(30)
        engine.post(Stop())
        core.join(5)
        logw.stop()
        out.close()
        wl.close()
    return engine, factory, stop


def bench_decisions(config: Path, n: int, taps: int, gap: float) -> dict:
    engine, factory, stop = start_engine(config)
    rng = random.Random(n)
    for _ in range(taps):
        # unlock_seconds is 1 ms here, so every grant moves the relay again
        engine.post(CredentialPresented("bench", "nfc", uid_for(rng.randrange(n))))
        time.sleep(gap)
    stop()
    return {"decision_ms": summary_ms(list(engine.decision_latency_us)),
            "log_lag_ms": summary_ms(list(engine.log_lag_us))}


def bench_append(directory: Path, count: int = 500) -> dict:
    log = EventLog(directory / "append.db", "bench")
    times = []
    for i in range(count):
        rec = PendingRecord(utc_iso(time.time()), "access.granted", f"c{i}", "granted", {})
        t0 = time.perf_counter_ns()
        log.append([rec])
        times.append((time.perf_counter_ns() - t0) / 1e3)
    log.close()
    return summary_ms(times)


def proc_status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = round(int(v.split()[0]) / 1024, 1)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_daemon(config: Path, n: int, idle: float | None) -> dict:
    d = DaemonProcess(config).wait_ready(60)
    res = {"start_to_ready_s": round(d.ready_after, 3)}
    rng = random.Random(1)
    lat = []
    with d.client() as c:
        for i in range(200):
            uid = uid_for(rng.randrange(n)) if i % 4 else "04FFFFFF"
            t0 = time.perf_counter_ns()
            r = c.request({"op": "sim", "input": "tap", "uid": uid})
            lat.append((time.perf_counter_ns() - t0) / 1e3)
            assert r["ok"], r
    res["socket_tap_reply_ms"] = summary_ms(lat)  # includes the durable log commit
    st = proc_status(d.proc.pid)
    res["rss_mb"], res["peak_rss_mb"] = st["VmRSS"], st["VmHWM"]
    if idle:
        c0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(idle)
        res["idle_cpu_percent"] = round(100 * (cpu_seconds(d.proc.pid) - c0)
                                        / (time.monotonic() - t0), 3)
    d.terminate()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="whitelist sizes, comma-separated (default: %(default)s)")
    ap.add_argument("--taps", type=int, default=2000, help="taps per size for decision latency")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    ap.add_argument("--no-readers", action="store_true", help="skip the reader end-to-end runs")
    ap.add_argument("--no-office", action="store_true",
                    help="skip publish/apply (100k) and upload (250k events)")
    ap.add_argument("--no-live", action="store_true",
                    help="skip the MQTT live channel (needs mosquitto installed)")
    ap.add_argument("--no-secure", action="store_true",
                    help="skip the secure card (NTAG 424 DNA, DESFire) check timings")
    ap.add_argument("--no-options", action="store_true",
                    help="skip the lookup options at the largest size (sqlite, immutable, "
                         "apsw, a compact index, keep-warm, and the floors)")
    ap.add_argument("--no-estate", action="store_true",
                    help="skip the office at estate scale (225 doors, 5,000 residents) "
                         "on SQLite and PostgreSQL")
    ap.add_argument("--no-revocation", action="store_true",
                    help="skip revocation propagation to 225 doors (file, S3, live push)")
    ap.add_argument("--revocation-interval", type=float, default=10.0,
                    help="the doors' sync interval in the revocation runs (default: "
                         "%(default)s s)")
    ap.add_argument("--no-console", action="store_true",
                    help="skip the office console (pages with 5,000 residents, 225 doors and "
                         "1M events on SQLite and PostgreSQL; an alarm to the dashboard)")
    ap.add_argument("--no-retention", action="store_true",
                    help="skip retention (the office purging 1M events on SQLite and "
                         "PostgreSQL; a door purging 100k records while it decides taps)")
    ap.add_argument("--no-release", action="store_true",
                    help="skip releases (225 doors fetching a release from an HTTP store; "
                         "needs the package index to build it)")
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        assert all(s > 0 for s in sizes)
    except (ValueError, AssertionError):
        ap.error(f"--sizes must be positive integers separated by commas, got {args.sizes!r}")
    result = {"machine": {"arch": platform.machine(), "python": platform.python_version(),
                          "cpus": os.cpu_count()},
              "targets": {"decision_p99_ms_at_1M": 0.3, "rss_mb_at_1M": 60,
                          "idle_cpu_percent": 1.0, "start_to_ready_s_at_1M": 1.5,
                          "log_lag_p99_ms": 50, "apply_100k_s": 3,
                          "decision_p99_ms_during_apply": 5, "upload_250k_s": 20,
                          "alarm_to_office_p99_ms": 50, "catch_up_events_per_s": 5000,
                          "publisher_rss_added_mb": 10, "secure_card_added_compute_ms": 15,
                          "revocation_push_p99_s": 5,
                          "revocation_timer_p99": "one sync interval"},
              "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="accessd-bench-") as tmp:
        result["eventlog_append_ms"] = bench_append(Path(tmp))
        for n in sizes:
            t0 = time.monotonic()
            config = build_door(Path(tmp) / f"door-{n}", n, unlock_seconds=0.001)
            entry = {"build_whitelist_s": round(time.monotonic() - t0, 1)}
            # cold: taps 3 ms apart, so the core sleeps between them as on a real door;
            # warm: taps 0.2 ms apart, caches and CPU stay hot (how a tight loop measures).
            entry.update(bench_decisions(config, n, args.taps, 0.003))
            warm = bench_decisions(config, n, args.taps, 0.0002)
            entry["decision_warm_ms"] = warm["decision_ms"]
            entry["daemon"] = bench_daemon(config, n, args.idle if n == max(sizes) else None)
            entry["whitelist_mb"] = round(
                load_config(config).storage.whitelist_path.stat().st_size / 2**20, 1)
            if n == max(sizes) and not args.no_options:
                entry["lookup_options"] = bench_lookup_options(config, n, 7 * args.taps,
                                                               uid_for, summary_ms)
            result["sizes"][str(n)] = entry
            print(f"bench: {n} credentials done", file=sys.stderr)
        if not args.no_readers:
            result["readers"] = bench_readers(Path(tmp) / "readers")
            print("bench: readers done", file=sys.stderr)
        if not args.no_office:
            result["office"] = bench_office(Path(tmp) / "office")
            print("bench: office done", file=sys.stderr)
        if not args.no_live:
            result["live"] = bench_live(Path(tmp) / "live")
            print("bench: live done", file=sys.stderr)
        if not args.no_secure:
            result["secure_cards"] = bench_secure_cards()
            print("bench: secure cards done", file=sys.stderr)
        if not args.no_estate:
            result["estate"] = {db: bench_estate(Path(tmp) / "estate", db)
                                for db in ("sqlite", "postgresql")}
            print("bench: estate done", file=sys.stderr)
        if not args.no_revocation:
            result["revocation"] = bench_revocation(Path(tmp) / "revocation",
                                                    interval=args.revocation_interval)
            print("bench: revocation done", file=sys.stderr)
        if not args.no_console:
            from bench_console import bench_console
            result["console"] = bench_console(Path(tmp) / "console")
            print("bench: console done", file=sys.stderr)
        if not args.no_retention:
            from bench_retention import bench_retention
            result["retention"] = bench_retention(Path(tmp) / "retention")
            print("bench: retention done", file=sys.stderr)
        if not args.no_release:
            from bench_release import bench_release, bench_switch
            result["release"] = bench_release(Path(tmp) / "release")
            result["release"]["one_door"] = bench_switch(Path(tmp) / "switch")
            print("bench: release done", file=sys.stderr)
    print(json.dumps(result, indent=2))


def bench_secure_cards(checks: int = 300, taps: int = 20) -> dict:
    """Both secure cards' checks at the door: an NTAG 424 DNA's (ntag424.verify: SUN,
    EV2 auth, UID under secure messaging; 6 APDU exchanges) and a DESFire EV3's
    (desfire.verify: select the application, EV2 auth, UID; 4 exchanges)."""
    from accessd.protocols import cards, desfire, ntag424
    uid = bytes.fromhex("04DE5F1EACC040")
    keys = ntag424.card_keys(bytes(range(16)), uid)
    card = cards.Ntag424Card(uid)
    ntag424.personalise(card.apdu, uid, keys)
    out = {"ntag424": _bench_card_check(card, lambda send: ntag424.verify(send, uid, keys),
                                        checks, taps)}
    dcard = cards.DesfireCard(uid)
    dkeys = desfire.card_keys(bytes(range(16)), uid)
    desfire.personalise(dcard.apdu, uid, dkeys)
    out["desfire"] = _bench_card_check(dcard, lambda send: desfire.verify(send, uid, dkeys),
                                       checks, taps)
    out["note"] = ("a plain UID read adds nothing after activation; a secure card adds "
                   "the check_over_udp_link time, of which own_compute is ours")
    return out


def _bench_card_check(card, check, checks: int, taps: int) -> dict:
    """One card's check: the door's own compute (the emulated card's time taken
    out), and the whole check through nfcpy's udp link, from activation to done."""
    import nfc

    from accessd.hw.nfc_emulator import CardEmulator
    from accessd.testing import free_udp_port
    uid = card.uid
    in_card = [0.0]

    def send(apdu):
        t = time.perf_counter()
        rsp = card.apdu(apdu)
        in_card[0] += time.perf_counter() - t
        return rsp
    own = []
    for _ in range(checks):
        in_card[0] = 0.0
        t = time.perf_counter()
        check(send)
        own.append((time.perf_counter() - t - in_card[0]) * 1e6)
    path = f"udp:localhost:{free_udp_port()}"
    clf = nfc.ContactlessFrontend(path)
    link = []
    try:
        for _ in range(taps):
            done = threading.Event()
            t = threading.Thread(target=CardEmulator(path).present, args=(uid,),
                                 kwargs={"kind": "type4", "hold": 0.3, "applet": card.apdu})
            t.start()

            def on_connect(tag):
                t0 = time.perf_counter()
                check(tag.transceive)
                link.append((time.perf_counter() - t0) * 1e6)
                done.set()
                return False
            clf.connect(rdwr={"targets": ["106A"], "on-connect": on_connect},
                        terminate=done.is_set)
            t.join(5)
    finally:
        clf.close()
    return {"own_compute_ms": summary_ms(own), "check_over_udp_link_ms": summary_ms(link),
            "checks": checks, "taps": taps}


def bench_readers(directory: Path, taps: int = 12) -> dict:
    """End to end through each real reader stack into the core, on one door:
    NFC (nfcpy udp link), a fob frame on a pty (pyserial), a Wiegand pulse train."""
    from accessd.config import ReaderConfig
    from accessd.hw.fob_serial import FobSerialReader
    from accessd.hw.nfc import NfcReader
    from accessd.hw.nfc_emulator import CardEmulator
    from accessd.hw.wiegand import WiegandReader
    from accessd.protocols.em4100 import frame_rdm6300
    from accessd.protocols.wiegand import encode_h10301
    from accessd.testing import free_udp_port

    config = build_door(directory, 1000, unlock_seconds=0.001)
    cfg = load_config(config)
    admin = WhitelistAdmin(cfg.storage.whitelist_path, load_key_file(cfg.storage.key_file))
    admin.enroll("nfc", "01020304", "bench-nfc")
    admin.enroll("fob", "12648430", "bench-fob")
    admin.close()
    clock = SystemClock()
    engine, factory, stop = start_engine(config)
    queued: list[int] = []

    def post(item):
        if hasattr(item, "t_queued"):
            queued.append(item.t_queued)
        engine.post(item)

    def one(trigger) -> tuple[float, float] | None:
        """(stimulus -> credential event, stimulus -> relay) in ms, or None if lost."""
        n = len(engine.decision_latency_us)
        q0 = len(queued)
        t0 = trigger()
        deadline = time.monotonic() + 5
        while len(engine.decision_latency_us) == n and time.monotonic() < deadline:
            time.sleep(0.0005)
        if len(engine.decision_latency_us) == n or len(queued) == q0:
            return None
        to_event = (queued[q0] - t0) / 1e6
        return to_event, to_event + engine.decision_latency_us[n] / 1000

    res = {}
    # NFC: card enters the field -> nfcpy connect -> relay
    port = free_udp_port()
    nfc_r = NfcReader(ReaderConfig("nfc", "nfc", {"path": f"udp:localhost:{port}",
                                                  "targets": ["106A"]}), post, clock)
    nfc_r.start()
    nfc_r.opened.wait(5)
    card = CardEmulator(f"udp:localhost:{port}")
    samples = []
    for _ in range(taps):
        nfc_r.field_clear.wait(5)
        t = {}

        def present():
            t["t0"] = time.perf_counter_ns()
            threading.Thread(target=card.present, args=(bytes.fromhex("01020304"),),
                             kwargs={"hold": 0.2}, daemon=True).start()
            return t["t0"]
        s = one(present)
        if s:
            samples.append(s)
    nfc_r.stop(5)
    connect = [a for a, _ in samples]
    total = [b for _, b in samples]
    res["nfc_udp"] = {"n": len(samples),
                      "nfcpy_connect_ms_p50": round(statistics.median(connect), 2),
                      "card_to_relay_ms_p50": round(statistics.median(total), 2),
                      "ours_ms_p50": round(statistics.median(b - a for a, b in samples), 3),
                      "ours_ms_max": round(max(b - a for a, b in samples), 3),
                      "note": "nfcpy_connect includes up to 1 s of its udp poll cycle"}
    # fob: frame written to the pty -> pyserial -> parser -> relay
    fob_r = FobSerialReader(ReaderConfig("fob", "em4100-serial", {
        "port": "sim", "baudrate": 9600, "format": "rdm6300", "hold_ms": 0}), post, clock)
    fob_r.start()
    fob_r.opened.wait(5)
    samples = _pty_to_relay(one, fob_r._sim_master, frame_rdm6300(12648430), 200)
    fob_r.stop()
    res["fob_pty_frame_to_relay_ms"] = summary_ms(samples)
    # Wiegand: last bit -> frame end after the gap -> relay
    wg = WiegandReader(ReaderConfig("gate", "wiegand", {"d0_pin": 7, "d1_pin": 8, "gap_ms": 25,
                                                        "raw_bits": []}), post, clock,
                       factory=factory)
    wg.start()
    wg.opened.wait(5)
    bits = encode_h10301(192, 65518)
    samples, flush = [], []
    for _ in range(50):
        def pulses():
            pins = {0: factory.pin(7), 1: factory.pin(8)}
            t = time.perf_counter()
            for i, b in enumerate(bits):
                if i:
                    t += 0.002  # one bit every 2 ms
                    while time.perf_counter() < t:
                        pass
                pins[b].drive_low()
                last = time.perf_counter_ns()  # the reader stamps the falling edge
                pins[b].drive_high()
            return last
        s = one(pulses)
        if s:
            samples.append(s[1] * 1000)
            flush.append((s[0] - 25) * 1000)
        time.sleep(0.01)
    wg.stop()
    summ = summary_ms(samples)
    res["wiegand_last_bit_to_relay_ms"] = {**summ, "gap_ms": 25,
                                           "beyond_gap_p50_ms": round(summ["p50"] - 25, 3),
                                           "beyond_gap_p99_ms": round(summ["p99"] - 25, 3),
                                           "frame_flush_late_ms": summary_ms(flush)}
    res["osdp_card_to_relay_ms"] = _bench_osdp(directory, cfg, post, clock, one)
    res["qr_scan_to_relay_ms"] = _bench_qr(engine, post, clock, one)
    stop()
    return res


def _pty_to_relay(one, fd: int, data: bytes, n: int) -> list[float]:
    """Write `data` to a serial reader's pty n times: each write -> relay, in µs."""
    samples = []
    for _ in range(n):
        def write():
            t0 = time.perf_counter_ns()
            os.write(fd, data)
            return t0
        got = one(write)
        if got:
            samples.append(got[1] * 1000)
        time.sleep(0.003)
    return samples


def _bench_osdp(directory: Path, cfg, post, clock, one, taps: int = 100) -> dict:
    """An OSDP reader's card report: submitted at libosdp's peripheral device (our
    simulated reader) -> the control panel's poll picks it up in the secure channel
    -> the door's reader thread -> relay. On a pty, so without the wire time."""
    from accessd.config import ReaderConfig
    from accessd.hw.osdp import OsdpReader
    from accessd.hw.osdp_peer import OsdpPeer
    from accessd.storage.reader_keys import ReaderKeys
    peer = OsdpPeer(0).start()
    keys = ReaderKeys(directory / "reader-keys.db", load_key_file(cfg.storage.key_file))
    r = OsdpReader(ReaderConfig("osdp", "osdp", {
        "port": peer.port, "address": 0, "baudrate": 115200, "install_mode": True,
        "rs485_rts": False, "raw_bits": []}), post, clock, reader_keys=keys)
    r.start()
    deadline = time.monotonic() + 15
    while not r.sc_active and time.monotonic() < deadline:
        time.sleep(0.01)
    samples = []
    uid = bytes.fromhex("01020304")
    for _ in range(taps):
        def report():
            t0 = time.perf_counter_ns()
            peer.card_uid(uid)
            return t0
        got = one(report)
        if got:
            samples.append(got[1] * 1000)
        time.sleep(random.uniform(0.005, 0.06))   # not in step with the polls
    r.stop()
    peer.stop()
    keys.close()
    # a card report in the secure channel is about 30 bytes each way, 10 bits a byte
    wire_ms = round(2 * 30 * 10 / 115200 * 1000, 2)
    return {**summary_ms(samples), "wire_time_at_115200_ms": wire_ms,
            "note": "mostly waiting for the control panel's next poll (libosdp polls "
                    "every 50 ms); add wire_time on a real RS-485 line"}


def _bench_qr(engine, post, clock, one, scans: int = 200, checks: int = 2000) -> dict:
    """A signed pass: its check alone (parse + Ed25519 verify), and a scanner's line
    written to the qr-serial reader's pty -> pyserial -> the core's check -> relay."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from accessd.config import ReaderConfig
    from accessd.core import passes
    from accessd.hw.qr_serial import QrSerialReader
    key = Ed25519PrivateKey.generate()
    now = int(time.time())
    text = passes.sign(passes.new_pass(site="bench", group="g", role="visitor", label="bench",
                                       valid_from=now - 60, valid_until=now + 3600,
                                       uses=passes.MAX_USES), key)
    pk = key.public_key()
    verify = []
    for _ in range(checks):
        t = time.perf_counter()
        passes.verify(text, pk, site="bench", group="g")
        verify.append((time.perf_counter() - t) * 1e6)
    engine.pass_check = (pk, "bench", "g")
    r = QrSerialReader(ReaderConfig("qr", "qr-serial", {"port": "sim", "baudrate": 9600,
                                                        "hold_ms": 0}), post, clock)
    r.start()
    r.opened.wait(5)
    line = text.encode() + b"\r\n"
    samples = _pty_to_relay(one, r._sim_master, line, scans)
    r.stop()
    return {"verify_ms": summary_ms(verify), "line_to_relay_ms": summary_ms(samples),
            "pass_chars": len(text),
            "wire_time_at_9600_ms": round(len(line) * 10 / 9600 * 1000, 1),
            "wire_time_at_115200_ms": round(len(line) * 10 / 115200 * 1000, 1)}



def bench_office(directory: Path, n: int = 100_000, events: int = 250_000) -> dict:
    """Publish an n-credential bundle, apply it on a door while taps stream in,
    and upload `events` log records."""
    from accessd.site.db import SiteDB
    from accessd.site.publish import door_keys, publish
    from accessd.storage.keys import write_key_file
    from accessd.sync.door import SyncWorker
    from accessd.sync.store import FileStore
    from accessd.sync.upload import upload
    from accessd.core.events import CredentialPresented

    res = {}
    site = SiteDB.init(directory / "site", "bench")
    site.group_add("g")
    site.door_add("bench-door", "g")
    t0 = time.monotonic()
    with site.db.atomic():
        for i in range(n):
            pid = site.person_add(f"Resident {i}", f"{i // 4}", "resident", person_id=f"p{i}")
            site.credential_add(pid, "nfc", uid_for(i))
            site.grant(pid, "g")
    res["site_build_s"] = round(time.monotonic() - t0, 1)
    store = FileStore(directory / "store")
    t0 = time.monotonic()
    out = publish(site, store)
    res["publish_100k"] = {"seconds": round(time.monotonic() - t0, 2),
                           "credentials": out[0]["credentials"],
                           "bundle_mb": round(out[0]["bytes"] / 2**20, 1)}
    # the door: running core, taps every 2 ms from another thread while the bundle applies
    config = write_sim_config(directory / "door", keys=False, door_id="bench-door",
                              unlock_seconds=0.001)
    config.write_text(config.read_text() + f'\n[sync]\nurl = "{store.url}"\n')
    write_key_file(directory / "door/keys/door-keys.json", door_keys(site, "bench-door"))
    cfg = load_config(config)
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    from accessd.storage.keys import load_key_file
    keys = load_key_file(cfg.storage.key_file)
    WhitelistAdmin(cfg.storage.whitelist_path, keys).close()   # the door's empty start
    engine, factory, stop = start_engine(config)
    worker = SyncWorker(cfg, keys, engine.post, SystemClock())
    tapping = threading.Event()
    tapping.set()

    def taps():
        rng = random.Random(3)
        while tapping.is_set():
            engine.post(CredentialPresented("bench", "nfc", uid_for(rng.randrange(n))))
            time.sleep(0.002)
    tapper = threading.Thread(target=taps, daemon=True)
    tapper.start()
    time.sleep(0.3)
    before = len(engine.decision_latency_us)
    t0 = time.monotonic()
    result = worker.sync_once()
    apply_s = time.monotonic() - t0
    during = list(engine.decision_latency_us)[before:]
    tapping.clear()
    tapper.join(2)
    stop()
    res["apply_100k"] = {"seconds": round(apply_s, 2), "result": result["result"],
                         "decisions_during": summary_ms(during) if during else None}
    # upload: a door log of `events` records to the file store
    log_cfg = load_config(write_sim_config(directory / "uploader", door_id="bench-door"))
    el = EventLog(log_cfg.storage.eventlog_path, "bench-door")
    ts = utc_iso(time.time())
    for start in range(0, events, 5000):
        el.append([PendingRecord(ts, "access.granted", f"c{i}", "granted", {"reader": "front"})
                   for i in range(start, min(events, start + 5000))])
    el.close()
    t0 = time.monotonic()
    up = upload(log_cfg, FileStore(directory / "store"))
    res["upload_250k_file"] = {"seconds": round(time.monotonic() - t0, 2),
                               "events": up["events"], "batches": up["batches"]}
    from accessd.sync.store import HttpStore
    from accessd.sync.upload import state_path
    from accessd.testing import DavServer
    state_path(log_cfg.storage.data_dir).unlink()
    dav = DavServer(directory / "www")
    try:
        t0 = time.monotonic()
        up = upload(log_cfg, HttpStore(dav.url))
        res["upload_250k_http"] = {"seconds": round(time.monotonic() - t0, 2),
                                   "events": up["events"], "batches": up["batches"],
                                   "server": "WsgiDAV on cheroot, 127.0.0.1"}
    finally:
        dav.stop()
    site.close()
    return res


class _Subscriber:
    """The office end for the live figures: a QoS 1 subscriber noting arrival times."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt
        self.got: list[tuple[float, bytes]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-office",
                             protocol=mqtt.MQTTv311)
        subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert subscribed.wait(10)

    def _msg(self, c, u, m):
        with self.cond:
            self.got.append((time.perf_counter(), bytes(m.payload)))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.got) >= n, timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _with_mqtt(config: Path, url: str) -> Path:
    config.write_text(config.read_text() + f'\n[mqtt]\nurl = "{url}"\nsite = "bench"\n'
                      "reconnect_max_seconds = 2\n")
    return config


def _blackhole():
    """A TCP port that accepts connections and never answers (a broker gone silent)."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()

    def close():
        stop.set()
        for c in held:
            c.close()
        srv.close()
    return srv.getsockname()[1], close


def _decisions_at_50_per_s(config: Path, n: int, taps: int, mqtt_url: str | None) -> dict:
    """In-process core + log writer (+ the publisher, wired as the daemon wires it), taps
    20 ms apart: the decision latency the publisher may cost."""
    from accessd.live.publisher import Publisher
    cfg = load_config(config)
    engine, factory, stop = start_engine(config)
    pub = None
    if mqtt_url:
        import dataclasses
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, url=mqtt_url,
                                                                site="bench"))
        pub = Publisher(cfg, site="bench", status=lambda: {}, wall=time.time)
        engine.logw.on_commit = pub.nudge
        pub.start()
    rng = random.Random(7)
    time.sleep(0.5)
    for _ in range(taps):
        engine.post(CredentialPresented("bench", "nfc", uid_for(rng.randrange(n))))
        time.sleep(0.02)
    stop()
    if pub is not None:
        pub.stop(1.0)
    return summary_ms(list(engine.decision_latency_us))


def bench_live(directory: Path, n: int = 10_000, taps: int = 500,
               backlog: int = 50_000) -> dict:
    from accessd.testing import Mosquitto, mosquitto_path
    from accessd.storage.eventlog import EventLog, PendingRecord
    if mosquitto_path() is None:
        return {"skipped": "mosquitto is not installed (apt-get install mosquitto)"}
    res: dict = {}
    # Debian's default saving; TCP_NODELAY and the queue 'accessctl broker setup' configures
    broker = Mosquitto(directory / "broker", durable=False,
                       extra="set_tcp_nodelay true\nmax_queued_messages 200000\n"
                             "allow_anonymous true\n")
    try:
        # 1. alarm: the tamper input changes at the door -> the record at the office
        config = _with_mqtt(build_door(directory / "alarm", n), broker.url)
        office = _Subscriber(broker.port, "accessd/bench/+/alarms")
        d = DaemonProcess(config).wait_ready(60)
        lat = []
        with d.client() as c:
            for i in range(200):
                k = len(office.got)
                t0 = time.perf_counter()
                c.request({"op": "sim", "input": "tamper", "state": "on"})
                if office.wait(k + 1, 5):
                    lat.append((office.got[k][0] - t0) * 1e6)
                c.request({"op": "sim", "input": "tamper", "state": "off"})
        d.terminate()
        office.close()
        res["alarm_to_office_ms"] = summary_ms(lat)
        res["alarms_lost"] = 200 - len(lat)

        # 2. catch-up: a door whose log holds `backlog` records the broker never saw
        config = _with_mqtt(build_door(directory / "catchup", 10), broker.url)
        cfg = load_config(config)
        log = EventLog(cfg.storage.eventlog_path, cfg.door.id)
        now = utc_iso(time.time())
        for start in range(0, backlog, 5000):
            log.append([PendingRecord(now, "access.denied", "fp:0000", "unknown credential",
                                      {}) for _ in range(5000)])
        log.close()
        office = _Subscriber(broker.port, "accessd/bench/+/events")
        t0 = time.perf_counter()
        d = DaemonProcess(config).wait_ready(60)
        ok = office.wait(backlog, 120)
        t1 = office.got[-1][0] if office.got else time.perf_counter()
        res["catch_up"] = {"records": len(office.got), "complete": ok,
                           "seconds": round(t1 - t0, 2),
                           "events_per_s": round(len(office.got) / (t1 - t0))}
        d.terminate()
        office.close()

        # 3. decisions at 50 taps/s: publisher off, on, broker down, broker blackholed
        config = build_door(directory / "decide", n, unlock_seconds=0.001)
        hole_port, close_hole = _blackhole()
        runs = {"publisher_off": None, "publisher_on": broker.url,
                "broker_down": f"mqtt://127.0.0.1:{free_tcp_port()}",
                "broker_blackholed": f"mqtt://127.0.0.1:{hole_port}"}
        res["decision_at_50_per_s_ms"] = {name: _decisions_at_50_per_s(config, n, taps, url)
                                          for name, url in runs.items()}
        close_hole()

        # 4. RSS the publisher adds: the same door and taps with and without [mqtt]
        rss = {}
        for name, url in (("without", None), ("with", broker.url)):
            config = build_door(directory / f"rss-{name}", n)
            if url:
                _with_mqtt(config, url)
            d = DaemonProcess(config).wait_ready(60)
            with d.client() as c:
                for i in range(300):
                    c.request({"op": "sim", "input": "tap", "uid": uid_for(i)})
            time.sleep(1.0)
            rss[name] = proc_status(d.proc.pid)["VmRSS"]
            d.terminate()
        res["rss_mb"] = {**rss, "added": round(rss["with"] - rss["without"], 1)}
    finally:
        broker.stop()
    res["note"] = (f"one Mosquitto on localhost; decisions on a {n}-credential whitelist, "
                   f"{taps} taps 20 ms apart per run")
    return res


def _estate_files(blocks: int = 25, doors: int = 9, residents: int = 5000):
    """The doors file (blocks groups of `doors` doors) and a residents file (a fob
    each, by its full EM ID, granted their block)."""
    doors_csv = ["door,group,description,readers\n"]
    for b in range(blocks):
        doors_csv += [f"blk{b:02d}-d{d},blk{b:02d},Block {b} door {d},rdm6300;keypad\n"
                      for d in range(doors)]
    people = ["name,unit,role,phone,kind,uid,groups,valid_from,valid_until\n"]
    people += [f"Resident {i},{i // 4}{'ABCD'[i % 4]},resident,+47{i:08d},fob,"
               f"{0x0100000000 + i * 7919:010x},blk{i % blocks:02d},,\n"
               for i in range(residents)]
    return "".join(doors_csv), "".join(people)


def _door_batches(store, door: str, events: int, batch: int = 500) -> None:
    """What a door's `accessd upload` leaves in the store: `events` records of one
    log, hash-chained, in batches of `batch` (written directly: faster to prepare)."""
    import gzip
    from accessd.storage.eventlog import GENESIS, record_hash
    from accessd.sync.upload import batch_name
    log_id, prev, rows = "20261123T000000-bench", GENESIS, []
    t0 = time.time() - 86400
    for seq in range(1, events + 1):
        r = {"seq": seq, "ts": utc_iso(t0 + seq * 60), "door": door,
             "kind": "access.granted" if seq % 10 else "access.denied",
             "credential": f"c{seq % 977:010x}" if seq % 10 else "fp:00c0ffee00",
             "reason": "granted" if seq % 10 else "unknown credential",
             "detail": '{"reader":"front"}', "prev_hash": prev}
        r["hash"] = prev = record_hash(r["seq"], r["ts"], r["door"], r["kind"],
                                       r["credential"], r["reason"], r["detail"],
                                       r["prev_hash"])
        rows.append({**r, "log": log_id})
    for i in range(0, events, batch):
        part = rows[i:i + batch]
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in part)
        store.put(batch_name(door, log_id, part[0]["seq"], part[-1]["seq"]),
                  gzip.compress(body.encode()))


def bench_estate(directory: Path, database: str, *, residents: int = 5000,
                 events: int = 1000) -> dict:
    """The office at estate scale on one database: 225 doors in 25 groups from a
    file, 5,000 residents from a CSV, a publish to the 25 groups, and logs pull of
    225 doors x `events` records (library calls, as the commands make them)."""
    from accessd.site import csvimport, intake
    from accessd.site.db import SiteDB
    from accessd.site.provision import doctor, import_doors
    from accessd.site.publish import publish
    from accessd.sync.store import FileStore
    server = url = None
    if database == "postgresql":
        from accessd.testing import Postgres
        try:
            server = Postgres()
        except (FileNotFoundError, RuntimeError) as exc:
            return {"skipped": str(exc)}
        url = server.database("estate")
    res: dict = {"database": database}
    try:
        site = SiteDB.init(directory / f"site-{database}", "estate", url)
        doors_csv, people_csv = _estate_files(residents=residents)
        t0 = time.monotonic()
        rep = import_doors(site, doors_csv)
        res[f"door_import_{rep.doors_added}"] = {
            "seconds": round(time.monotonic() - t0, 2), "doors": rep.doors_added,
            "groups": rep.groups_added}
        t0 = time.monotonic()
        rep = csvimport.import_csv(site, people_csv)
        res[f"import_{residents}_residents"] = {
            "seconds": round(time.monotonic() - t0, 2), "people": rep.people_added,
            "credentials": rep.credentials_added, "errors": len(rep.errors)}
        store = FileStore(directory / f"store-{database}")
        t0 = time.monotonic()
        out = publish(site, store)
        res[f"publish_{len(out)}_groups"] = {
            "seconds": round(time.monotonic() - t0, 2), "groups": len(out),
            "credentials": sum(r["credentials"] for r in out)}
        doors = [d["id"] for d in site.doors()]
        for door in doors:
            _door_batches(store, door, events)
        t0 = time.monotonic()
        pulled = intake.pull(site, store)
        secs = time.monotonic() - t0
        added = sum(r.added for r in pulled.values())
        res[f"logs_pull_{len(doors)}x{events}"] = {
            "seconds": round(secs, 2), "events": added, "events_per_s": round(added / secs),
            "chains_intact": all(r.ok for r in pulled.values())}
        t0 = time.monotonic()
        doc = doctor(site)
        res[f"site_doctor_{len(doc)}"] = {"seconds": round(time.monotonic() - t0, 2),
                                          "doors": len(doc)}
        site.close()
    finally:
        if server:
            server.stop()
    return res


if __name__ == "__main__":
    main()
