"""What every store shares: its error and the rule for names inside it.

Kept apart from store.py so that the S3 store (s3store.py) and the file and HTTP
stores (store.py) both build on it without importing each other.
"""

from __future__ import annotations

from ..errors import AccessdError


class StoreError(AccessdError, OSError):
    """The store cannot be reached, read or written."""


def check_name(name: str) -> str:
    """A name inside a store: relative, never climbing out of it."""
    if name.startswith("/") or ".." in name.split("/"):
        raise StoreError(f"bad store name {name!r}")
    return name
