"""The NFC reader on the office machine (a USB reader nfcpy drives, e.g. an ACR122U
or a PN533 board; `udp:HOST:PORT` for nfcpy's software link in tests): one card's
UID, for enrolling a card at the desk. Used by `accessctl enroll --nfc-reader` and
by the console's "read it on the office reader" (accessctl web --nfc-reader)."""

from __future__ import annotations

import threading
import time

from ..errors import HardwareError

_ONE_AT_A_TIME = threading.Lock()    # one reader: one read at a time


def read_uid(path: str, timeout: float) -> str:
    """The UID (hex, upper case) of the next card presented within `timeout` seconds;
    HardwareError naming the reader when it cannot be opened or no card came."""
    import nfc
    if not _ONE_AT_A_TIME.acquire(timeout=timeout):
        raise HardwareError(f"the office reader {path!r} is busy with another enrolment")
    try:
        clf = nfc.ContactlessFrontend()
        try:
            if not clf.open(path):
                raise HardwareError(f"no NFC reader found at {path!r}")
        except OSError as exc:
            raise HardwareError(f"cannot open the NFC reader at {path!r}: {exc}") from None
        deadline = time.monotonic() + timeout
        try:
            tag = clf.connect(rdwr={"targets": ["106A", "212F"],
                                    "on-connect": lambda t: False, "iterations": 1,
                                    "interval": 0.1, "beep-on-connect": True},
                              terminate=lambda: time.monotonic() > deadline)
        finally:
            clf.close()
        if not tag:
            raise HardwareError(f"no card was presented on {path!r} within {timeout:g} s")
        return bytes(tag.identifier).hex().upper()
    finally:
        _ONE_AT_A_TIME.release()
