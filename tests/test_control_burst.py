"""The control socket under load: a burst is queued, not refused; idle clients are
closed; threads stay bounded. Real daemon, real Unix socket, real clients."""

from __future__ import annotations

import os
import socket
import threading

from accessd.control import Client
from accessd.testing import DaemonProcess, write_sim_config


def _config(tmp_path, **api):
    cfg = write_sim_config(tmp_path / "door")
    extra = "".join(f"{k} = {v}\n" for k, v in api.items())
    cfg.write_text(cfg.read_text().replace("simulation = true\n", "simulation = true\n" + extra))
    return cfg


def test_two_hundred_clients_at_once_all_get_an_answer(tmp_path):
    d = DaemonProcess(_config(tmp_path)).wait_ready()
    sock = d.client().path
    start = threading.Barrier(200)
    results: list = []

    def one():
        start.wait()
        try:
            with Client(sock, timeout=30) as c:
                results.append(c.request({"op": "status"})["ok"])
        except Exception as exc:  # what the intercom would have seen
            results.append(f"{type(exc).__name__}: {exc}")
    threads = [threading.Thread(target=one) for _ in range(200)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        d.terminate()
    failures = [r for r in results if r is not True]
    assert len(results) == 200 and not failures, failures[:3]


def test_idle_clients_are_bounded_and_closed(tmp_path):
    d = DaemonProcess(_config(tmp_path, max_connections=8, idle_timeout_seconds=1)).wait_ready()
    path = str(d.client().path)
    tasks = lambda: len(os.listdir(f"/proc/{d.proc.pid}/task"))  # noqa: E731
    before = tasks()
    idle = []
    try:
        for _ in range(40):                       # connect and say nothing
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)                       # blocking: queued in the backlog if need be
            idle.append(s)
        assert tasks() <= before + 8              # not one thread per client
        with Client(path, timeout=30) as c:       # served once the idle ones are closed
            st = c.request({"op": "status"})
        assert st["ok"] and st["control"]["max_connections"] == 8
        assert 1 <= st["control"]["connections"] <= 8
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b""             # the daemon closed the silent client
    finally:
        for s in idle:
            s.close()
        d.terminate()
