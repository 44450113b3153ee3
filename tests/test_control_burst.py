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


ATTACKER = r"""
import os, socket, sys, time
os.setgroups([]); os.setgid(65534); os.setuid(65534)
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    socks.append(s)
print("connected", flush=True)
closed = 0
for _ in range(60):                      # a byte every second, never a whole line
    if not socks:
        break
    for s in list(socks):
        try:
            s.send(b" ")
        except OSError:
            socks.remove(s)
            closed += 1
    time.sleep(1)
print("closed", closed, flush=True)
"""


def test_a_user_trickling_bytes_cannot_lock_the_intercom_out(tmp_path):
    """Another user (uid nobody, in the socket's group) opens as many connections as
    there are slots and sends one byte a second, never a whole request: its
    connections are closed at the request deadline (not kept alive by each byte),
    it holds at most a quarter of the slots meanwhile, and the intercom (another
    user) is answered at once, every time."""
    import subprocess
    import sys

    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root: the trickling client runs as another user")
    import shutil
    import tempfile
    cfg = _config(tmp_path, max_connections=8, idle_timeout_seconds=3,
                  group='"nogroup"')
    where = tempfile.mkdtemp(prefix="accessd-sock-")      # a place nobody can reach
    os.chmod(where, 0o755)
    cfg.write_text(cfg.read_text().replace('socket = "run/control.sock"',
                                           f'socket = "{where}/control.sock"'))
    d = DaemonProcess(cfg).wait_ready()
    sock = d.client().path
    attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, str(sock), "8"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert attacker.stdout.readline().strip() == "connected", attacker.stderr.read()
        for _ in range(5):
            with Client(sock, timeout=5) as c:      # the intercom: served, not queued
                assert c.request({"op": "status"})["ok"]
        out, err = attacker.communicate(timeout=60)
        assert out.split()[-1] == "8", out + err       # every trickling one was closed
    finally:
        if attacker.poll() is None:
            attacker.kill()
        d.terminate()
        shutil.rmtree(where, ignore_errors=True)
