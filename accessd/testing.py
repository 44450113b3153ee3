"""Run a simulated door for tests, the benchmark and the crash test.

`write_sim_config` makes a complete simulated door in a directory (config, key
file); `DaemonProcess` starts the real daemon as a subprocess with its own
systemd notify socket, waits for READY=1, and talks to its control socket.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .control import Client
from .storage.keys import generate, write_key_file
from .site.sql import postgres_bindir  # (tests import it from here)

SIM_CONFIG = """\
[door]
id = "{door_id}"
unlock_seconds = {unlock_seconds}
fail_mode = "{fail_mode}"
held_open_seconds = {held_open_seconds}
prealarm_seconds = {prealarm_seconds}
mode = "normal"

[gpio]
pin_factory = "mock"
relay_pin = 17
relay_active_high = true
door_contact_pin = 27
rex_pin = 22
tamper_pin = 23
fire_pin = 18
buzzer_pin = 24
led_green_pin = 5
led_red_pin = 6

[policy]
unsynced_clock = "trust"

[storage]
data_dir = "data"
key_file = "keys/door-keys.json"

[api]
socket = "run/control.sock"
simulation = true

{readers}"""

SIM_READER = """
[[readers]]
name = "front"
kind = "sim"
"""

OSDP_SIM_READER = """
[[readers]]
name = "entry-osdp"
kind = "osdp"
port = "sim"
install_mode = true
"""

REAL_READERS = """
[[readers]]
name = "front-nfc"
kind = "nfc"
path = "udp:localhost:{nfc_port}"

[[readers]]
name = "front-fob"
kind = "em4100-serial"
port = "sim"

[[readers]]
name = "front-keypad"
kind = "keypad-matrix"
row_pins = [12, 16, 20, 21]
col_pins = [13, 19, 26]

[[readers]]
name = "gate"
kind = "wiegand"
d0_pin = 7
d1_pin = 8
"""


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_sim_config(directory: Path, *, keys: bool = True, real_readers: bool = False,
                     **overrides) -> Path:
    """A simulated door: a `sim` reader, or (real_readers) an NFC reader on nfcpy's
    udp link, a serial fob reader on a pty, a matrix keypad and a Wiegand reader."""
    readers = REAL_READERS.format(nfc_port=free_udp_port()) if real_readers else SIM_READER
    values = {"door_id": "test-door", "unlock_seconds": 5, "fail_mode": "secure",
              "held_open_seconds": 30, "prealarm_seconds": 10, "readers": readers, **overrides}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "accessd.toml"
    path.write_text(SIM_CONFIG.format(**values))
    if keys and not (directory / "keys/door-keys.json").exists():
        write_key_file(directory / "keys/door-keys.json", generate())
    return path


class DaemonProcess:
    """The real `accessd run` in a subprocess, with a notify socket to watch it."""

    def __init__(self, config: Path, *, watchdog_usec: int | None = None, env: dict | None = None):
        self.config = Path(config)
        self.dir = self.config.parent
        self.notify_path = self.dir / "notify.sock"
        if self.notify_path.exists():
            self.notify_path.unlink()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.messages: list[str] = []
        e = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), **(env or {})}
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        self.stderr_path = self.dir / "daemon.stderr"
        self._stderr = open(self.stderr_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "accessd", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=self._stderr, env=e)
        self.ready_after: float | None = None

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        """Wait for a notify datagram containing `needle`; return it."""
        for m in self.messages:
            if needle in m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {needle!r} from the daemon; stderr: {self.stderr()}")
            if self.proc.poll() is not None and needle != "STOPPING=1":
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            self.notify.settimeout(min(left, 0.5))
            try:
                msg = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(msg)
            if needle in msg:
                return msg

    def wait_ready(self, timeout: float = 20.0) -> "DaemonProcess":
        self.wait_for("READY=1", timeout)
        self.ready_after = time.monotonic() - self.started
        return self

    def client(self) -> Client:
        from .config import load_config
        return Client(load_config(self.config).api.socket)

    def request(self, req: dict) -> dict:
        with self.client() as c:
            return c.request(req)

    def events(self) -> list[dict]:
        """The door's event log as committed (a read-only connection, as staff tools
        use), each record's detail decoded."""
        import json as _json

        from .config import load_config
        from .storage.eventlog import iter_events, open_reader
        conn = open_reader(load_config(self.config).storage.eventlog_path)
        try:
            return [{**r, "detail": _json.loads(r["detail"] or "{}")} for r in iter_events(conn)]
        finally:
            conn.close()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(10)
        self.close()
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()
        self._stderr.close()


def integrity_ok(path: Path) -> bool:
    import sqlite3
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def crash_round(config: Path, uids: list[str], rng, *, max_acks: int = 80) -> dict:
    """Start the daemon, stream taps, SIGKILL it after a random number of replies,
    restart it, and check what survived. Returns a report; report["ok"] says all held."""
    import threading

    from .config import load_config
    from .storage.eventlog import open_reader, verify_chain

    cfg = load_config(config)
    d = DaemonProcess(config).wait_ready()
    kill_after = rng.randint(1, max_acks)
    acked: dict[int, tuple[str, str]] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def stream():
        try:
            with d.client() as c:
                while not killed.is_set():
                    uid = rng.choice(uids)
                    r = c.request({"op": "sim", "input": "tap", "uid": uid})
                    if r.get("ok") and "seq" in r:
                        with lock:
                            acked[r["seq"]] = ("access." + r["decision"], r["credential"])
                            if len(acked) >= kill_after:
                                d.proc.kill()
                                killed.set()
        except Exception:
            pass  # the kill cuts the connection: expected

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    d.kill()
    report = {"acked": len(acked), "kill_after": kill_after}
    report["integrity_events"] = integrity_ok(cfg.storage.eventlog_path)
    report["integrity_whitelist"] = integrity_ok(cfg.storage.whitelist_path)
    conn = open_reader(cfg.storage.eventlog_path)
    rows = {r["seq"]: (r["kind"], r["credential"]) for r in conn.execute(
        "SELECT seq, kind, credential FROM events")}
    report["lost"] = sorted(s for s, v in acked.items() if rows.get(s) != v)
    rep = verify_chain(conn)
    conn.close()
    report["chain_ok"] = rep.ok
    # and the door comes back, continuing the same chain
    d2 = DaemonProcess(config).wait_ready()
    r = d2.request({"op": "sim", "input": "tap", "uid": uids[0]})
    d2.terminate()
    conn = open_reader(cfg.storage.eventlog_path)
    report["restart_chain_ok"] = verify_chain(conn).ok and r.get("seq", 0) > max(rows, default=0)
    conn.close()
    report["ok"] = (not report["lost"] and report["chain_ok"] and report["restart_chain_ok"]
                    and report["integrity_events"] and report["integrity_whitelist"])
    return report


class DavServer:
    """A real WebDAV server (WsgiDAV on cheroot) on 127.0.0.1, serving a directory,
    with switches to make it fail: `fail = 500` answers every request with that
    status, `delay = 3` answers that late, `fail_after = n` fails after n more
    requests. For tests and the benchmark (wsgidav and cheroot: the test extra)."""

    def __init__(self, root: Path):
        import threading as _threading

        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fail: int | None = None
        self.delay = 0.0
        self.fail_after: int | None = None
        self.requests: list[tuple[str, str, int]] = []
        dav = WsgiDAVApp({"provider_mapping": {"/": str(self.root)},
                          "simple_dc": {"user_mapping": {"*": True}},
                          "http_authenticator": {"domain_controller": None},
                          "verbose": 0, "logging": {"enable": False}})

        def app(environ, start_response):
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            if self.fail_after is not None:
                self.fail_after -= 1
                if self.fail_after < 0:
                    self.fail, self.fail_after = 500, None
            if self.delay:
                _threading.Event().wait(self.delay)  # a slow server, on the server side
            if self.fail:
                self.requests.append((method, path, self.fail))
                start_response(f"{self.fail} Injected Failure", [("Content-Length", "0")])
                return [b""]
            def sr(st, headers, exc_info=None):
                self.requests.append((method, path, int(st.split()[0])))
                return start_response(st, headers, exc_info)
            return dav(environ, sr)

        self.server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
        self.server.prepare()
        self.url = f"http://127.0.0.1:{self.server.bind_addr[1]}/"
        self._thread = _threading.Thread(target=self.server.serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.stop()


def mosquitto_path() -> str | None:
    """The mosquitto broker (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    import shutil
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
        None)


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, name: str) -> None:
    """Poll until a server process started on 127.0.0.1:port accepts connections (a
    process starting up, not a timer); RuntimeError if it exits or does not listen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = proc.stderr.read().decode() if proc.stderr else "(see its log)"
            raise RuntimeError(f"{name} exited: {said}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout} s")


def terminate(proc: subprocess.Popen | None) -> None:
    """SIGTERM a server process and wait for it; SIGKILL if it does not go in 10 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Mosquitto:
    """A real Mosquitto broker on a free 127.0.0.1 port, for tests, the demo and the
    benchmark. Persistent (sessions and retained messages survive a kill and a
    restart on the same port: it saves after every change; durable=False saves only
    on a clean stop, as a broker configured for speed does; persistence=False keeps
    nothing across a restart, as Mosquitto run from accessd.conf alone). Extra config lines
    (an ACL, a password file) go in `extra`; with listener=False, `extra` brings its
    own `listener` line for `port` (e.g. the file 'accessctl broker setup' wrote)."""

    def __init__(self, workdir: Path, *, extra: str = "", port: int | None = None,
                 listener: bool = True, durable: bool = True, persistence: bool = True):
        import getpass
        exe = mosquitto_path()
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install "
                                    "mosquitto)")
        self.exe = exe
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port = port or free_tcp_port()
        self.url = f"mqtt://127.0.0.1:{port}"
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            (f"listener {port} 127.0.0.1\n" if listener else "")   # else: `extra` has it
            + f"user {getpass.getuser()}\n"
            + (f"persistence true\npersistence_location {self.dir}/\n" if persistence else
               "persistence false\n")
            + ("autosave_interval 1\nautosave_on_changes true\n" if durable and persistence
               else "")
            + f"log_dest file {self.dir}/mosquitto.log\n"
            + (extra if extra else "allow_anonymous true\n"))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_listening(self.proc, self.port, timeout, "mosquitto")
        return self

    def kill(self) -> None:
        """SIGKILL: the broker dies as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc)


def make_tls(directory: Path, name: str = "test") -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (PEM files):
    (ca.crt, server.crt, server.key). For TLS tests against a real broker."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, pub, signer, *, ca: bool, san=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = cert(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    srv = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
               key.public_key(), ca_key, ca=False,
               san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost")])
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class S3Server:
    """moto's standalone S3-protocol server (a real HTTP server speaking the S3 API)
    on a free 127.0.0.1 port, in its own process, with one bucket. Clients find it
    with `url` (s3://bucket/prefix?endpoint=...) and `env` (test keys)."""

    env = {"AWS_ACCESS_KEY_ID": "accessd-test", "AWS_SECRET_ACCESS_KEY": "accessd-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self, bucket: str = "accessd", prefix: str = "site"):
        self.port = free_tcp_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.url = f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"
        import tempfile
        # its request log goes to a file: a pipe nobody reads fills up and stops the server
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=self._log, env={**os.environ, **self.env})
        wait_listening(self.proc, self.port, 30, "moto.server")
        self.client().create_bucket(Bucket=bucket)

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                         Prefix=prefix)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


class CuttingProxy:
    """A TCP proxy to 127.0.0.1:`target` that can cut connections the way a
    network does: with `cut_after` set, each connection is closed once that many
    bytes have gone from the client to the server (an upload cut short)."""

    def __init__(self, target: int):
        self.target = target
        self.cut_after: int | None = None
        self.cuts = 0
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False),
                             daemon=True).start()

    def _pipe(self, src, dst, upstream: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                limit = self.cut_after if upstream else None
                if limit is not None and sent + len(data) > limit:
                    dst.sendall(data[:max(0, limit - sent)])
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop = True
        self._srv.close()


class Postgres:
    """A real PostgreSQL server for tests and the benchmark: a new cluster in a
    temporary directory (initdb, password login), on a free 127.0.0.1 port. As root
    it runs as the 'postgres' user (the server refuses root). `database()` creates
    an empty database and returns its postgresql:// URL."""

    user, password = "accessd", "accessd-test-pw"

    def __init__(self):
        import pwd
        import shutil
        import tempfile
        bindir = postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install "
                                    "postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="accessd-pg-"))
        run_as: dict = {}
        if os.geteuid() == 0:
            account = "postgres" if _has_user("postgres") else "nobody"
            pw = pwd.getpwnam(account)
            run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if run_as:
            os.chown(pwfile, run_as["user"], run_as["group"])
        self._rm = shutil.rmtree
        data = self.dir / "data"
        init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", self.user,
                               f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                               "--locale=C", "--no-sync"], capture_output=True, **run_as)
        if init.returncode:
            self._rm(self.dir, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {init.stderr.decode()[-500:]}")
        self.port = free_tcp_port()
        # its log to a file: a pipe nobody reads would stall the server once full
        self.log = self.dir / "server.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=subprocess.DEVNULL, stderr=log, **run_as)
        try:
            wait_listening(self.proc, self.port, 30, "postgres")
        except RuntimeError as exc:
            said = self.log.read_text(errors="replace")[-500:]
            self.stop()
            raise RuntimeError(f"{exc}\n{said}") from None
        self._n = 0

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def database(self, name: str | None = None) -> str:
        """A new, empty database; its URL (with the password)."""
        import psycopg
        self._n += 1
        name = name or f"site{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def dump(self, url: str) -> bytes:
        """pg_dump of a database (plain SQL), as a backup would take it."""
        from .site.sql import pg_tool
        return pg_tool("pg_dump", url, "--no-owner")

    def restore(self, dump: bytes) -> str:
        """A new database loaded from a pg_dump; its URL."""
        from .site.sql import pg_tool
        url = self.database()
        pg_tool("psql", url, "-q", "-v", "ON_ERROR_STOP=1", data=dump)
        return url

    def stop(self) -> None:
        terminate(self.proc)
        self._rm(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
