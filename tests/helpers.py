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


class SiteLocation:
    """Where a test's site lives: a directory (SQLite), or a PostgreSQL database with
    the keys in the directory. `args` are accessctl's options for it."""

    def __init__(self, directory, url=None):
        self.dir, self.url = directory, url

    @property
    def args(self) -> list[str]:
        if self.url:
            return ["--site", self.url, "--site-dir", str(self.dir)]
        return ["--site", str(self.dir)]

    def init(self, site_id: str = "riverside"):
        from accessd.site.db import SiteDB
        return SiteDB.init(self.dir, site_id, self.url)

    def open(self):
        from accessd.site.db import SiteDB
        return SiteDB.open(self.dir, self.url)


def setup_site(site_dir, *args) -> str:
    """A setup step before the test proper: accessctl --site DIR ... in this process
    (CliRunner, no process start-up); it must succeed. Returns what it printed."""
    from click.testing import CliRunner

    from accessd.cli import accessctl
    r = CliRunner().invoke(accessctl.main, ["--site", str(site_dir), *args])
    assert r.exit_code == 0, r.output
    return r.stdout
