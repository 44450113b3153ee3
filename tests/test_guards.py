from hypothesis import given, strategies as st

from accessd.core import guards as g

CFG = g.LockoutSettings(attempts=3, window=60, lockout=60, lockout_max=300)


def fail_n(s, n, start, step=1.0):
    locked = None
    for i in range(n):
        s, locked = g.pin_failed(s, start + i * step, CFG)
    return s, locked


def test_lockout_after_n_wrong_pins_within_the_window():
    s, locked = fail_n(g.Lockout(), 2, 0)
    assert locked is None and not s.active(2)
    s, locked = g.pin_failed(s, 2, CFG)
    assert locked == 60 and s.active(61) and not s.active(62)


def test_wrong_pins_spread_beyond_the_window_do_not_lock():
    s, locked = fail_n(g.Lockout(), 10, 0, step=31)
    assert locked is None


def test_back_off_doubles_and_is_capped_and_a_right_pin_resets():
    s = g.Lockout()
    seen = []
    t = 0.0
    for _ in range(5):
        s, locked = fail_n(s, 3, t)
        seen.append(locked)
        t = s.locked_until + 1
    assert seen == [60, 120, 240, 300, 300]
    s = g.pin_succeeded(s)
    s, locked = fail_n(s, 3, t)
    assert locked == 60


@given(st.lists(st.floats(0, 10_000), min_size=1, max_size=50))
def test_lockout_never_shorter_than_base_nor_longer_than_max(times):
    s = g.Lockout()
    for t in sorted(times):
        s, locked = g.pin_failed(s, t, CFG)
        if locked is not None:
            assert CFG.lockout <= locked <= CFG.lockout_max


def test_stranger_alert_counts_denials_in_the_window_once():
    cfg = g.StrangerSettings(attempts=3, window=10)
    times, alert = (), None
    alerts = []
    for t in (0, 1, 2, 3, 4, 30, 31, 50):
        times, alert = g.denial(times, t, cfg)
        alerts.append(alert)
    assert alerts == [None, None, 3, None, None, None, None, None]
