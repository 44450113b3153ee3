"""Small helpers shared by tests."""

import threading
import time


def wait_until(condition, timeout=5.0, what="condition"):
    """Wait for another thread to reach a state (polls; never a fixed sleep for a timer)."""
    deadline = time.monotonic() + timeout
    poll = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        poll.wait(0.002)
