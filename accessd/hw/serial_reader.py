"""What the readers on a serial port share (pyserial): opening the port (any
pyserial port or URL), a read loop that wakes for `stopping`, and `port = "sim"`:
a pseudo-terminal that the simulation writes the device's real bytes into."""

from __future__ import annotations

import os
import tty

import serial

from .readers import Reader


class SerialReader(Reader):
    READ_TIMEOUT = 0.5  # how often serve() looks at `stopping` when the line is quiet

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._ser = None
        self._sim_master: int | None = None
        self._sim_slave: int | None = None
        self.port = self.options["port"]
        if self.port == "sim":
            self._sim_master, self._sim_slave = os.openpty()
            tty.setraw(self._sim_slave)
            self.port = os.ttyname(self._sim_slave)

    def open(self) -> None:
        self._ser = serial.serial_for_url(self.port, baudrate=self.options["baudrate"],
                                          timeout=self.READ_TIMEOUT)

    def serve(self) -> None:
        ser = self._ser
        while not self.stopping.is_set():
            data = ser.read(ser.in_waiting or 1)
            if data:
                self.received(data)

    def received(self, data: bytes) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        ser = self._ser
        if ser is not None and hasattr(ser, "cancel_read"):
            try:
                ser.cancel_read()
            except Exception:
                pass  # closing anyway

    def close(self) -> None:
        if self._ser is not None:
            self._ser.close()
            self._ser = None

    def stop(self, timeout: float = 3.0) -> None:
        super().stop(timeout)
        for fd in (self._sim_master, self._sim_slave):
            if fd is not None:
                os.close(fd)
        self._sim_master = self._sim_slave = None

    def _sim_write(self, data: bytes) -> None:
        if self._sim_master is None:
            raise ValueError(f"reader {self.name} is not simulated (port = \"sim\")")
        os.write(self._sim_master, data)
