"""SIGKILL the daemon at random moments while taps stream in (scripts/crashtest N runs more)."""

import random

import pytest

from accessd.testing import crash_round

from .test_daemon import enrol


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_under_load_loses_no_acknowledged_event(sim_config, seed):
    enrol(sim_config, "nfc", "04A1B2C3")
    rng = random.Random(seed)
    for _ in range(2):
        report = crash_round(sim_config, ["04A1B2C3", "04FFFFFF"], rng)
        assert report["acked"] >= report["kill_after"]
        assert report["ok"], report
