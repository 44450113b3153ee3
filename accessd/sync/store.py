"""Bundle and log stores: where the office puts bundles and doors put logs.

  file:///srv/accessd/store   a directory (the embedded default: office and door on
                              one Pi, or a shared mount)
  https://host/accessd/       a web server that takes PUT (WebDAV: nginx's dav module,
                              Apache mod_dav, WsgiDAV); doors GET (Cache-Control: no-cache).
                              user:password@ in the URL is sent as HTTP Basic auth.
  s3://bucket/prefix          Amazon S3 or an S3-compatible service (MinIO, Ceph,
                              Alibaba OSS, ...): see s3store.py.

Names inside a store: bundles/<group>.bundle and .index, and
logs/<door>/<log>/<first>-<last>.ndjson.gz.
Writes are atomic (a temporary file, fsync, rename), so a reader never sees
half a bundle or half a batch.
"""

from __future__ import annotations

import os
import base64
import http.client
import socket
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote, urlparse, urlunparse

from ..errors import ConfigError
from .names import StoreError, check_name

__all__ = ["StoreError", "check_name", "FileStore", "HttpStore", "check_url", "open_store"]


class FileStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise StoreError(f"{path}: cannot write: {exc.strerror or exc}") from None

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            if not self.root.is_dir():
                raise StoreError(f"{self.root}: store directory does not exist") from None
            return None
        except OSError as exc:
            raise StoreError(f"{self._path(name)}: cannot read: {exc.strerror or exc}") from None

    def list(self, prefix: str) -> list[str]:
        return sorted(self.versions(prefix))

    def versions(self, prefix: str) -> dict[str, str]:
        """Every name under `prefix` with a tag that changes when its content is
        replaced (size and modification time)."""
        base = self._path(prefix)
        if not base.is_dir():
            return {}
        out = {}
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                out[str(p.relative_to(self.root))] = f"{st.st_size}-{st.st_mtime_ns}"
        return out


def answered(status: int) -> str:
    """What a store's HTTP status means for whoever reads the error."""
    if status == 401:
        return ("server answered 401: it wants a user and password (give them in the URL, "
                "user:password@host; at the office 'accessctl site store' keeps them)")
    if status == 403:
        return "server answered 403: this user may not do that (the server's access rules)"
    return f"server answered {status}"


class HttpStore:
    """A store on a web server: PUT to write (creating collections with MKCOL as
    needed), GET to read (always the whole object), PROPFIND to list."""

    def __init__(self, url: str, timeout: float = 15.0):
        u = urlparse(url)
        self._auth = None
        if u.username:
            token = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode()
        netloc = u.hostname + (f":{u.port}" if u.port else "")
        path = u.path if u.path.endswith("/") else u.path + "/"
        self.base = urlunparse((u.scheme, netloc, path, "", "", ""))
        self.base_path = path
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.base  # never shows the password

    def _request(self, method: str, name: str, data: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
        url = self.base + quote(name)
        h = dict(headers or {})
        if self._auth:
            h["Authorization"] = self._auth
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), b""
        except http.client.IncompleteRead as exc:
            raise StoreError(f"{method} {url}: the body was cut short ({len(exc.partial)} "
                             f"bytes, {exc.expected} more expected)") from None
        except http.client.HTTPException as exc:  # a garbled status line or headers
            raise StoreError(f"{method} {url}: not a valid HTTP answer "
                             f"({type(exc).__name__}: {str(exc)[:80]})") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
                reason = f"no answer within {self.timeout:g} s"
            raise StoreError(f"{method} {url}: {reason}") from None
        except ValueError as exc:  # e.g. a header urllib cannot make sense of
            raise StoreError(f"{method} {url}: {exc}") from None

    def put(self, name: str, data: bytes) -> None:
        status, _, _ = self._request("PUT", name, data)
        if status in (404, 409):  # the collection does not exist yet
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                st, _, _ = self._request("MKCOL", "/".join(parts[:i]) + "/")
                if st not in (201, 405):  # 405: exists already
                    raise StoreError(f"MKCOL {self.base}{'/'.join(parts[:i])}/: "
                                     f"{answered(st)}")
            status, _, _ = self._request("PUT", name, data)
        if status not in (200, 201, 204):
            raise StoreError(f"PUT {self.base}{name}: {answered(status)}")

    def get(self, name: str) -> bytes | None:
        """The whole object, fresh from the server: never a validator's 304, and no
        cache on the way may answer for it (freshness is the signed index's job)."""
        status, headers, body = self._request("GET", name,
                                              headers={"Cache-Control": "no-cache"})
        if status == 404:
            return None
        if status != 200:
            raise StoreError(f"GET {self.base}{name}: {answered(status)}")
        return body

    def list(self, prefix: str) -> list[str]:
        return sorted(self.versions(prefix))

    def versions(self, prefix: str) -> dict[str, str]:
        """Every name under `prefix` (PROPFIND, depth 1, walked) with its ETag, or
        its length and modification time where the server gives no ETag."""
        out: dict[str, str] = {}
        todo = [prefix.rstrip("/") + "/"]
        while todo:
            coll = todo.pop()
            status, _, body = self._request("PROPFIND", coll, headers={"Depth": "1"})
            if status == 404:
                continue
            if status != 207:
                raise StoreError(f"PROPFIND {self.base}{coll}: {answered(status)}")
            try:
                tree = ET.fromstring(body)
            except ET.ParseError:
                raise StoreError(f"PROPFIND {self.base}{coll}: not a WebDAV answer") from None
            for resp in tree.findall("{DAV:}response"):
                href = unquote(urlparse(resp.findtext("{DAV:}href") or "").path)
                if not href.startswith(self.base_path):
                    continue
                rel = href[len(self.base_path):]
                is_coll = resp.find(".//{DAV:}collection") is not None
                if not rel or rel.rstrip("/") == coll.rstrip("/"):
                    continue
                if is_coll:
                    todo.append(rel if rel.endswith("/") else rel + "/")
                elif not rel.rsplit("/", 1)[-1].startswith("."):
                    out[rel] = (resp.findtext(".//{DAV:}getetag")
                                or f"{resp.findtext('.//{DAV:}getcontentlength')}-"
                                   f"{resp.findtext('.//{DAV:}getlastmodified')}")
        return out


def check_url(url: str) -> None:
    """ConfigError unless this is a store URL accessd can use."""
    try:
        u = urlparse(url)
        u.port, u.hostname
    except ValueError as exc:   # "Invalid IPv6 URL", a port beyond 65535
        raise ConfigError(f"store URL {url!r}: {exc}") from None
    if u.scheme == "s3":
        from .s3store import parse_url
        parse_url(url)
    elif not ((u.scheme == "file" and not u.netloc and u.path.startswith("/"))
              or (u.scheme in ("http", "https") and u.hostname)):
        raise ConfigError(f"store URL {url!r}: use file:///path, https://host/path/ or "
                          "s3://bucket/prefix")


def open_store(url: str, timeout: float = 15.0):
    """A store from its URL: file:///path, http(s)://host/path/ or s3://bucket/prefix."""
    check_url(url)
    u = urlparse(url)
    if u.scheme == "file":
        return FileStore(Path(unquote(u.path)))
    if u.scheme == "s3":
        from .s3store import S3Store
        return S3Store(url, timeout)
    return HttpStore(url, timeout)
