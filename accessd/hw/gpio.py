"""Door I/O on GPIO through gpiozero: lock relay, buzzer, LEDs, door contact, REX, tamper.

Hardware: a relay board on `relay_pin` (active high or low), a piezo buzzer and
two LEDs on plain outputs, and three dry-contact inputs wired to GND with the
Pi's internal pull-ups:

| input        | wiring                                   | pin low means    |
|--------------|------------------------------------------|------------------|
| door contact | normally-closed reed switch to GND       | door closed      |
| REX          | normally-open push button to GND         | button pressed   |
| tamper       | normally-closed enclosure switch to GND  | enclosure closed |
| fire         | fire panel's normally-closed contact     | no fire alarm    |

A cut wire therefore reads as "door open" / "tampered": the safe side.
The relay's safe state is always de-energised: a fail-secure strike is then
locked, a fail-safe maglock released, as on a power cut.

The backend (pin factory) comes from config: lgpio (Pi 5 and later OS
releases), rpigpio, pigpio, native, or mock (gpiozero's MockFactory, for
simulation and tests).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import BadPinFactory, GPIOZeroError, PinUnknownPi

from ..config import GpioConfig
from ..core.door import Outputs
from ..core.events import InputChanged
from ..errors import ConfigError, HardwareError

log = logging.getLogger(__name__)


def _lgpio_workdir() -> None:
    """lgpio makes its notification pipe (.lgd-nfy*) in $LG_WD, else in the working
    directory, chdir()s there, and leaves the pipe behind; under systemd's
    ProtectSystem=strict the default working directory "/" is read-only. Without
    LG_WD, use the unit's runtime (or state) directory, which systemd creates writable
    for the service; outside a unit (relay-safe or check-config run by hand), a
    private directory of this process's own, removed when it exits: a root-owned pipe
    left in /tmp would stop the next user's lgpio ("Can't set permissions")."""
    if "LG_WD" in os.environ:
        return
    for var in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        if os.environ.get(var):
            os.environ["LG_WD"] = os.environ[var].split(":")[0]
            return
    import atexit
    import shutil
    import tempfile
    wd = tempfile.mkdtemp(prefix="accessd-lgpio-")
    os.environ["LG_WD"] = wd
    atexit.register(shutil.rmtree, wd, True)


def _load_factory(name: str):
    if name == "mock":
        from gpiozero.pins.mock import MockFactory
        return MockFactory()
    if name == "lgpio":
        _lgpio_workdir()
        from gpiozero.pins.lgpio import LGPIOFactory
        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory
        return RPiGPIOFactory()
    if name == "pigpio":
        from gpiozero.pins.pigpio import PiGPIOFactory
        return PiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory
        return NativeFactory()
    raise ConfigError(f"gpio.pin_factory: unknown factory {name!r} "
                      "(lgpio, rpigpio, pigpio, native or mock)")


_PACKAGES = {"lgpio": "python3-lgpio", "rpigpio": "python3-rpi-lgpio", "pigpio": "python3-pigpio"}


def make_pin_factory(name: str):
    """Build the gpiozero pin factory named in config.

    Imports happen here, not at module top, so a Pi-only library is only loaded
    on the Pi. What goes wrong is reported as what it is: a library that is not
    installed or a machine that is not a Pi is a ConfigError (restarting will not
    help); a library that is there but cannot start (its pipe, a GPIO chip it may
    not open) is a HardwareError, which systemd may retry.
    """
    try:
        return _load_factory(name)
    except ImportError as exc:
        how = " (scripts/install-on-pi does)" if name == "lgpio" else ""
        raise ConfigError(
            f"gpio.pin_factory: the {name} library is not installed ({exc}); on Raspberry "
            f"Pi OS install {_PACKAGES.get(name, name)}{how}; "
            f"on a PC use pin_factory = \"mock\"") from None
    except (PinUnknownPi, BadPinFactory) as exc:
        raise ConfigError(
            f"gpio.pin_factory: {name!r} loaded, but this machine is not a Raspberry Pi "
            f"({type(exc).__name__}: {exc}); on a PC use pin_factory = \"mock\"") from None
    except OSError as exc:
        where = os.environ.get("LG_WD") or os.getcwd()
        hint = (f" (lgpio's notification pipe goes in {where}: it must be writable; "
                "set LG_WD or the unit's WorkingDirectory=)") if name == "lgpio" else ""
        raise HardwareError(f"gpio backend {name} failed to start: "
                            f"{type(exc).__name__}: {exc}{hint}") from None
    except (RuntimeError, GPIOZeroError) as exc:
        raise HardwareError(f"gpio backend {name} failed to start: "
                            f"{type(exc).__name__}: {exc}") from None


def _device(cls, pin: int, factory, what: str, **kw):
    try:
        return cls(pin, pin_factory=factory, **kw)
    except (GPIOZeroError, OSError, RuntimeError) as exc:
        raise HardwareError(f"cannot open GPIO{pin} for the {what}: {exc}") from None


class DoorOutputs:
    """Relay, buzzer and LEDs. `apply()` sets them from the door state machine's outputs."""

    def __init__(self, gcfg: GpioConfig, fail_mode: str, factory):
        self.fail_mode = fail_mode
        self._devices = []
        self._last: Outputs | None = None
        # fail-secure: energise to unlock. fail-safe (maglock): energise to lock.
        locked_level = fail_mode == "safe"
        self.relay = self._add(DigitalOutputDevice, gcfg.relay_pin, factory, "lock relay",
                               active_high=gcfg.relay_active_high, initial_value=locked_level)
        self.buzzer = self._opt(gcfg.buzzer_pin, factory, "buzzer")
        self.green = self._opt(gcfg.led_green_pin, factory, "green LED")
        self.red = self._opt(gcfg.led_red_pin, factory, "red LED")

    def _add(self, cls, pin, factory, what, **kw):
        try:
            dev = _device(cls, pin, factory, what, **kw)
        except Exception:
            self.close()
            raise
        self._devices.append(dev)
        return dev

    def _opt(self, pin, factory, what):
        return None if pin is None else self._add(DigitalOutputDevice, pin, factory, what,
                                                   initial_value=False)

    def relay_energised_for(self, unlocked: bool) -> bool:
        return unlocked if self.fail_mode == "secure" else not unlocked

    def apply(self, out: Outputs) -> None:
        """Set what changed since the last call, the relay first (it is on the tap path)."""
        last = self._last
        self._last = out
        if last is None or out.relay_unlocked != last.relay_unlocked:
            energise = self.relay_energised_for(out.relay_unlocked)
            self.relay.on() if energise else self.relay.off()
        for dev, name in ((self.green, "green"), (self.buzzer, "buzzer"), (self.red, "red")):
            on = getattr(out, name)
            if dev is not None and (last is None or on != getattr(last, name)):
                dev.on() if on else dev.off()

    def safe(self) -> None:
        """De-energise the relay (fail-secure: locked; fail-safe: released) and go quiet."""
        self._last = None
        for dev in self._devices:
            try:
                dev.off()
            except Exception:  # best effort on the way down
                log.exception("cannot switch off %s", dev)

    def close(self) -> None:
        for dev in self._devices:
            dev.close()
        self._devices.clear()


class DoorInputs:
    """Door contact, REX and tamper inputs; each change is posted to the core."""

    def __init__(self, gcfg: GpioConfig, factory, post: Callable[[object], None]):
        self.factory = factory
        self.gcfg = gcfg
        self._devices: dict[str, DigitalInputDevice] = {}
        bounce = gcfg.bounce_ms / 1000 if gcfg.bounce_ms else None
        wiring = {
            # name: (pin, event when pin goes low, event when pin goes high)
            "door": (gcfg.door_contact_pin, False, True),
            "rex": (gcfg.rex_pin, True, None),
            "tamper": (gcfg.tamper_pin, False, True),
            "fire": (gcfg.fire_pin, False, True),
        }
        try:
            for name, (pin, on_low, on_high) in wiring.items():
                if pin is None:
                    continue
                dev = _device(DigitalInputDevice, pin, factory, name, pull_up=True,
                              bounce_time=bounce)
                self._devices[name] = dev
                dev.when_activated = (lambda n=name, v=on_low: post(InputChanged(n, v)))
                if on_high is not None:
                    dev.when_deactivated = (lambda n=name, v=on_high: post(InputChanged(n, v)))
        except Exception:
            self.close()
            raise

    def door_open(self) -> bool:
        dev = self._devices.get("door")
        return False if dev is None else not dev.is_active

    def fire(self) -> bool:
        dev = self._devices.get("fire")
        return False if dev is None else not dev.is_active

    def tampered(self) -> bool:
        dev = self._devices.get("tamper")
        return False if dev is None else not dev.is_active

    # ---- simulation: drive the mock pins, so events take the real gpiozero path ----
    def _mock_pin(self, name: str):
        pin = {"door": self.gcfg.door_contact_pin, "rex": self.gcfg.rex_pin,
               "tamper": self.gcfg.tamper_pin, "fire": self.gcfg.fire_pin}[name]
        if pin is None:
            raise HardwareError(f"no {name} input is configured (gpio.{name}_pin)")
        if type(self.factory).__name__ != "MockFactory":
            raise HardwareError("simulated inputs need gpio.pin_factory = \"mock\"")
        return self.factory.pin(pin)

    def sim_set_idle(self) -> None:
        """A simulated door starts closed, its REX released and its enclosure shut."""
        for name, level in (("door", "low"), ("rex", "high"), ("tamper", "low"), ("fire", "low")):
            if name in self._devices:
                getattr(self._mock_pin(name), f"drive_{level}")()

    def sim_door(self, open_: bool) -> None:
        pin = self._mock_pin("door")
        pin.drive_high() if open_ else pin.drive_low()

    def sim_rex(self) -> None:
        pin = self._mock_pin("rex")
        pin.drive_low()
        pin.drive_high()

    def sim_tamper(self, active: bool) -> None:
        pin = self._mock_pin("tamper")
        pin.drive_high() if active else pin.drive_low()

    def sim_fire(self, active: bool) -> None:
        pin = self._mock_pin("fire")
        pin.drive_high() if active else pin.drive_low()

    def close(self) -> None:
        for dev in self._devices.values():
            dev.close()
        self._devices.clear()
