"""NFC readers through nfcpy: ISO 14443A (4-, 7- and 10-byte UIDs), ISO 14443B
and FeliCa IDm, from any nfcpy device.

Hardware and `path`:

| path              | device                                                   |
|-------------------|----------------------------------------------------------|
| usb               | the first USB reader nfcpy supports (ACR122U, RC-S380…)  |
| usb:054c:06c3     | a USB reader by vendor:product                           |
| tty:AMA0:pn532    | a PN532 on the Pi's UART (/dev/ttyAMA0)                  |
| tty:USB0:pn532    | a PN532 behind a USB-serial adapter                      |
| udp:HOST:PORT     | nfcpy's software RF link (simulation and tests)          |
| udp:HOST:auto     | the same on a free port chosen at start (in `status`)    |

Only the configured `targets` are polled (106A by default; 106B and 212F
opt-in): every technology polled adds to the time a tap takes. A card held on
the reader counts once: nfcpy holds the connection until it leaves. The value
is the card's identifier in upper-case hex (UID, PUPI or IDm). Phones emulate
cards with random UIDs; they need the cryptographic credentials of a later
release. An unplugged reader is a reader.fault, retried until it is back.

Secure cards (NTAG 424 DNA and MIFARE DESFire EV2/EV3, README "Secure cards"):
when the whitelist holds a UID as a secure card, the reader checks the card in the
same tap through nfcpy's ISO-DEP exchange: an NTAG 424 DNA's SUN message,
AuthenticateEV2First with the card's door key and its UID under secure messaging
(protocols/ntag424.py), and its read counter against the last one seen
(storage/secure_cards.py); a DESFire's site application, AuthenticateEV2First and
its UID under secure messaging (protocols/desfire.py). The credential goes to the core as
assurance "high", or "low" with the reason the check failed (a copied UID, a
replayed or foreign card), which the access pipeline denies. A card that leaves
or garbles its answers mid-check is a reader.bad_frame, never a decision.
"""

from __future__ import annotations

import logging
import threading

from ..errors import CardAuthError, ProtocolError, StoreError
from .readers import Reader

log = logging.getLogger(__name__)


def _link(path: str) -> str:
    """udp:HOST:auto is nfcpy's udp link on a free port of HOST, chosen now: two
    simulated doors on one machine never share a link (a card for one read by the
    other). `status` shows the port (the reader's `path`)."""
    if not (path.startswith("udp:") and path.endswith(":auto")):
        return path
    import socket
    host = path[len("udp:"):-len(":auto")] or "localhost"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((_resolve(host, path), 0))
        return f"udp:{host}:{s.getsockname()[1]}"


def _resolve(host: str, path: str) -> str:
    """The address of a udp link's host; a name that does not resolve (a minimal root
    with no /etc/hosts has no 'localhost') is an OSError naming it and the link."""
    import socket
    try:
        return socket.gethostbyname(host)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r} for the NFC link {path!r} ({exc.strerror}): "
                      "add it to /etc/hosts, or give an address (udp:127.0.0.1:PORT)") from None


# How long a simulated card stays in the field waiting for the reader to poll it:
# nearly the control socket's reply timeout (10 s), so a loaded machine whose reader
# loop polls late still reads it (the emulator's default is 5 s).
SIM_PRESENT_SECONDS = 9.0


class NfcReader(Reader):
    kind = "nfc"

    def __init__(self, *args, secure=None, **kw):
        super().__init__(*args, **kw)
        self.secure = secure  # storage.secure_cards.SecureCards: checks secure cards
        try:
            self.path = _link(self.options["path"])
        except OSError:          # said as the reader's fault when it opens
            self.path = self.options["path"]
        self.targets = list(self.options["targets"])
        self.clf = None
        self.field_clear = threading.Event()  # no card held on the reader
        self.field_clear.set()

    def open(self) -> None:
        import nfc  # only doors with an NFC reader load nfcpy
        self.path = _link(self.path)          # (udp:HOST:auto not resolved at start)
        if self.path.startswith("udp:"):
            _resolve(self.path.split(":")[1] or "localhost", self.path)
        clf = nfc.ContactlessFrontend()
        try:
            found = clf.open(self.path)
        except FileNotFoundError:
            raise OSError(f"no USB access for {self.path!r} (is libusb-1.0 installed?)") from None
        if not found:
            raise OSError(f"no NFC reader found at {self.path!r}")
        self.clf = clf

    def serve(self) -> None:
        options = {"targets": self.targets, "on-connect": self._on_connect,
                   "iterations": 1, "interval": 0.05, "beep-on-connect": False}
        while not self.stopping.is_set():
            try:
                result = self.clf.connect(rdwr=options, terminate=self.stopping.is_set)
            except (ValueError, IndexError, TypeError) as exc:
                # nfcpy lets some malformed RF data escape as these: noise, not a fault
                self.field_clear.set()
                self.bad_frame(f"malformed data on the RF link ({type(exc).__name__}: {exc})")
                continue
            self.field_clear.set()
            if result is False and not self.stopping.is_set():
                # nfcpy swallowed an I/O error: reopen once quietly; a fault if that fails
                self.close()
                self.open()

    def _on_connect(self, tag) -> bool:
        self.field_clear.clear()
        value = bytes(tag.identifier).hex().upper()
        record = None
        if self.secure is not None:
            try:
                record = self.secure.lookup(value)
            except StoreError as exc:   # the core finds it unreadable too, and denies
                log.error("reader %s: %s", self.name, exc)
        if record is None:
            self.credential("nfc", value)
        else:
            self._check_secure(tag, value, record)
        return True  # hold until the card leaves: one presentation, one event

    def _check_secure(self, tag, value: str, record) -> None:
        """A secure card's check in this tap (module docstring)."""
        import nfc.tag
        from ..protocols import desfire, ntag424
        refusal = ""
        try:
            if tag.type != "Type4Tag":
                raise CardAuthError(f"a {tag.type} card showed a secure card's UID "
                                    "(a copy of the UID?)")
            if record.card == "desfire":
                desfire.verify(tag.transceive, bytes.fromhex(value),
                               desfire.DesfireKeys.from_hex(record.card_keys))
            else:
                keys = ntag424.CardKeys.from_hex(record.card_keys)
                v = ntag424.verify(tag.transceive, bytes.fromhex(value), keys)
                last = self.secure.advance(value, v.counter)
                if last is not None:
                    raise CardAuthError(f"read counter {v.counter} is not above the last "
                                        f"seen ({last}): a replayed or cloned card")
        except CardAuthError as exc:
            refusal = str(exc)
        except (ProtocolError, nfc.tag.TagCommandError) as exc:
            self.no_credential("nfc", value, f"secure card check cut short: {exc}")
            return
        except StoreError as exc:
            refusal = f"cannot check the card's counter: {exc}"
        self.credential("nfc", value, assurance="low" if refusal else "high", refusal=refusal)

    def close(self) -> None:
        if self.clf is not None:
            try:
                self.clf.close()
            finally:
                self.clf = None

    def health(self) -> dict:
        return {**super().health(), "path": self.path}

    # ---- simulation: a card on nfcpy's udp link ------------------------------------
    def sim_inputs(self) -> set[str]:
        return {"tap"} if self.path.startswith("udp") else set()

    def sim_present(self, kind: str, value: str, reply, card=None) -> None:
        """A simulated card on the udp link: a plain one with this UID, or `card`, an
        emulated secure card (protocols/cards.py) that answers the reader's APDUs."""
        from .nfc_emulator import CardEmulator
        if kind != "nfc":
            raise ValueError(f"reader {self.name} reads NFC cards, not {kind}")
        uid = bytes.fromhex(value)
        if len(uid) not in (4, 7, 8):
            raise ValueError("a simulated card needs a 4- or 7-byte UID (or an 8-byte FeliCa IDm)")
        if len(uid) == 8 and "212F" not in self.targets:
            raise ValueError(f"reader {self.name} does not poll FeliCa (targets)")
        self._require_open()
        # the previous card must have left the field first, as with real cards
        self.field_clear.wait(3)
        self._expect(value, reply, kind="nfc")
        emulator = CardEmulator(self.path)
        kind = "felica" if len(uid) == 8 else ("type4" if card is not None else "type2")
        threading.Thread(target=emulator.present, args=(uid,),
                         kwargs={"kind": kind, "hold": 0.8, "timeout": SIM_PRESENT_SECONDS,
                                 "applet": card.apdu if card is not None else None},
                         name=f"card-{self.name}", daemon=True).start()
