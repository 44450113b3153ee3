"""A real nginx serving a WebDAV store, and an HTTP proxy that misbehaves as networks,
caches and on-path attackers do: for tests and the benchmark.

`Nginx` runs Debian's nginx (package nginx-full: the dav module and the dav_ext
module for PROPFIND) on a free 127.0.0.1 port with a configuration of its own in
a temporary directory, optionally behind HTTP Basic auth. Its ETag is nginx's
own: the file's modification second and size in hex, so two objects of one size
written in the same second share it.

`FaultProxy` sits in front of any HTTP server and, for the next response to a
request whose path ends with a given name, can shorten the body by some bytes
while keeping the message well formed (Content-Length matching), cut the
connection after some bytes, hold the response back (a stalled store), or serve
other bytes (an on-path attacker). It handles one request per connection, as
accessd's urllib client makes them (Connection: close).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from .testing import free_tcp_port, terminate, wait_listening

DAV_EXT = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)


class Nginx:
    """Debian's nginx as a WebDAV store on 127.0.0.1 (PUT, MKCOL, PROPFIND), serving
    `root`; with `users` ({name: password}) every request needs HTTP Basic auth."""

    def __init__(self, workdir: Path, root: Path, *, users: dict[str, str] | None = None):
        exe = nginx_path()
        if exe is None or not os.path.exists(DAV_EXT):
            raise FileNotFoundError("nginx with the WebDAV modules is not installed (Debian: "
                                    "apt-get install nginx-full)")
        self.dir, self.root = Path(workdir), Path(root)
        for d in (self.dir / "tmp", self.root):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        auth = ""
        if users:
            (self.dir / "htpasswd").write_text(
                "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
            auth = (f'auth_basic "accessd store"; '
                    f"auth_basic_user_file {self.dir / 'htpasswd'};")
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        tmp = self.dir / "tmp"
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(f"""\
load_module {DAV_EXT};
{user}daemon off;
master_process off;
worker_processes 1;
pid {self.dir / 'nginx.pid'};
error_log {self.dir / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
  access_log {self.dir / 'access.log'};
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    client_max_body_size 0;
    location / {{
      dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      {auth}
    }}
  }}
}}
""")
        self.exe = exe
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> "Nginx":
        self.proc = subprocess.Popen([self.exe, "-p", str(self.dir), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(self.proc, self.port, 10, "nginx")
        return self

    def stop(self) -> None:
        terminate(self.proc)


class FaultProxy:
    """An HTTP proxy to 127.0.0.1:`target`. Each rule applies once, to the next response
    for a request whose path ends with its name:

      shorten(name, n)  the body n bytes short, Content-Length made to match
      cut(name, n)      the connection closed after n bytes of the response
      stall(name)       the response held back until release() (or close())
      serve(name, body) these bytes instead of the server's (status and headers kept,
                        Content-Length made to match): an on-path attacker

    `requests` lists (method, path, headers) of what passed through."""

    def __init__(self, target: int):
        self.target = target
        self.requests: list[tuple[str, str, dict]] = []
        self._rules: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---- rules ---------------------------------------------------------------------
    def _add(self, what: str, name: str, arg=None) -> None:
        with self._lock:
            self._rules.append((what, name, arg))

    def shorten(self, name: str, n: int) -> None:
        self._add("shorten", name, n)

    def cut(self, name: str, n: int) -> None:
        self._add("cut", name, n)

    def stall(self, name: str) -> None:
        self._released.clear()
        self._add("stall", name)

    def serve(self, name: str, body: bytes) -> None:
        self._add("serve", name, body)

    def release(self) -> None:
        self._released.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._rules)

    def _take(self, path: str):
        with self._lock:
            for i, (what, name, arg) in enumerate(self._rules):
                if path.split("?")[0].endswith(name):
                    del self._rules[i]
                    return what, arg
        return None, None

    # ---- plumbing ------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read_head(sock) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _serve(self, client) -> None:
        try:
            head, body = self._read_head(client)
            if not head:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (ln.partition(":") for ln in lines[1:])}
            want = int(headers.get("content-length", "0") or 0)
            while len(body) < want:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.requests.append((method, path, headers))
            kept = [ln for ln in lines[1:] if not ln.lower().startswith("connection:")]
            request = "\r\n".join([lines[0], *kept, "Connection: close"]).encode("latin-1")
            upstream = socket.create_connection(("127.0.0.1", self.target))
            try:
                upstream.sendall(request + b"\r\n\r\n" + body)
                response = b""
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    response += chunk
            finally:
                upstream.close()
            what, arg = self._take(path)
            if what == "stall":
                while not self._released.wait(0.1):
                    if self._closed:
                        return
            elif what == "cut":
                client.sendall(response[:arg])
                return
            elif what in ("shorten", "serve"):
                rhead, _, rbody = response.partition(b"\r\n\r\n")
                rbody = rbody[:max(0, len(rbody) - arg)] if what == "shorten" else arg
                rlines = [ln for ln in rhead.decode("latin-1").split("\r\n")
                          if not ln.lower().startswith("content-length:")]
                rlines.append(f"Content-Length: {len(rbody)}")
                response = "\r\n".join(rlines).encode("latin-1") + b"\r\n\r\n" + rbody
            client.sendall(response)
        except OSError:
            pass
        finally:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def close(self) -> None:
        self._closed = True
        self._released.set()
        self._srv.close()
