import pytest
from gpiozero.pins.mock import MockFactory

from accessd.clock import FakeClock
from accessd.config import load_config
from accessd.storage.keys import load_key_file
from accessd.testing import DaemonProcess, write_sim_config

from .helpers import SiteLocation


@pytest.fixture
def sim_config(tmp_path):
    """Path of a complete simulated-door config with its key file."""
    return write_sim_config(tmp_path / "door")


@pytest.fixture
def cfg(sim_config):
    return load_config(sim_config)


@pytest.fixture
def keys(cfg):
    return load_key_file(cfg.storage.key_file)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def daemon(sim_config):
    d = DaemonProcess(sim_config).wait_ready()
    yield d
    d.terminate()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (each test takes its own database)."""
    from accessd.testing import Postgres
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def site_at(request, tmp_path):
    """A place for a site, once on each database."""
    if request.param == "sqlite":
        return SiteLocation(tmp_path / "site")
    return SiteLocation(tmp_path / "site", request.getfixturevalue("postgres").database())
