from accessd.core import decide as d
from accessd.core.credentials import CredentialRecord

NOW = 1_790_000_000.0


def rec(**kw):
    base = dict(credential_id="c1", kind="nfc", holder="h", assurance="low", status="active",
                valid_from=None, valid_until=None)
    return CredentialRecord(**{**base, **kw})


def test_active_credential_is_granted():
    dec = d.decide(rec(), "normal", NOW)
    assert dec.granted and dec.reason == d.GRANTED and dec.credential_id == "c1"


def test_unknown_denied():
    dec = d.decide(None, "normal", NOW)
    assert not dec.granted and dec.reason == d.UNKNOWN
    assert d.decide(None, "normal", NOW, "pin").reason == d.WRONG_PIN


def test_status_reasons():
    assert d.decide(rec(status="suspended"), "normal", NOW).reason == d.SUSPENDED
    assert d.decide(rec(status="lost"), "normal", NOW).reason == d.LOST


def test_validity_window_edges():
    r = rec(valid_from=NOW, valid_until=NOW + 60)
    assert d.decide(r, "normal", NOW - 1).reason.startswith(d.NOT_YET)
    assert d.decide(r, "normal", NOW).granted
    assert d.decide(r, "normal", NOW + 59.9).granted
    assert d.decide(r, "normal", NOW + 60).reason.startswith(d.EXPIRED)


def test_lockdown_denies_known_credentials():
    dec = d.decide(rec(), "lockdown", NOW)
    assert not dec.granted and dec.reason == d.LOCKDOWN


def test_lockdown_lets_staff_in():
    staff = rec(role="staff")
    dec = d.decide(staff, "lockdown", NOW)
    assert dec.granted and dec.reason == "granted: staff during lockdown"
    assert d.decide(staff, "normal", NOW).reason == d.GRANTED
