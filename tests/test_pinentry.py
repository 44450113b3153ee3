from accessd.core import pinentry as pe

CFG = pe.PinSettings(min_length=4, max_length=6, timeout_seconds=5)


def typed(keys, start=0.0, step=1.0):
    s, out, t = pe.PinEntry(), None, start
    for k in keys:
        s, out = pe.press(s, k, t, CFG)
        t += step
    return s, out


def test_hash_submits_the_digits():
    s, out = typed("1234#")
    assert out == pe.Outcome("submit", pin="1234") and s.digits == ""


def test_star_clears():
    s, out = typed("12*3456#")
    assert out.pin == "3456"


def test_inter_key_timeout_clears_half_typed_pin():
    s, _ = typed("12")
    assert s.deadline(CFG) == 1 + 5
    s2, timed_out = pe.expire(s, 6.0, CFG)
    assert timed_out and s2.digits == ""
    s3, out = pe.press(s, "3", 6.5, CFG)   # the old digits are gone
    assert s3.digits == "3"


def test_too_long_and_too_short_are_invalid():
    assert typed("1234567")[1].kind == "invalid"
    out = typed("12#")[1]
    assert out.kind == "invalid" and "too short" in out.reason


def test_bad_key_is_rejected_and_keeps_digits():
    s, out = typed("12")
    s2, out = pe.press(s, "A", 2, CFG)
    assert out.kind == "invalid" and "'A'" in out.reason and s2.digits == "12"


def test_empty_submit():
    assert typed("#")[1].kind == "invalid"
