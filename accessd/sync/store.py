"""Bundle and log stores: where the office puts bundles and doors put logs.

  file:///srv/accessd/store   a directory (the embedded default: office and door on
                              one Pi, or a shared mount). An https:// store (HTTP PUT
                              and GET with ETag) is still to come.

Names inside a store: bundles/<group>.bundle and logs/<door>/<first>-<last>.ndjson.gz.
Writes are atomic (a temporary file, fsync, rename), so a reader never sees
half a bundle or half a batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import AccessdError, ConfigError


class StoreError(AccessdError, OSError):
    """The store cannot be reached, read or written."""


class FileStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in Path(name).parts:
            raise StoreError(f"bad store name {name!r}")
        return self.root / name

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
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))


def open_store(url: str):
    """A store from its URL (file:// now; https:// is the web-server transport)."""
    u = urlparse(url)
    if u.scheme == "file" and not u.netloc:
        return FileStore(Path(unquote(u.path)))
    raise ConfigError(f"store URL {url!r}: use file:///path (https:// stores are not "
                      "supported yet)")
