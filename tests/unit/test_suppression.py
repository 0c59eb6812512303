"""The suppression list's pure parts: keys and the send-time rule."""

from __future__ import annotations

import pytest

from chalicelib.store.suppression import Entry, address_key, blocks, normalise, opt_outs

KEY = b"k" * 32
ENTRY = Entry("sms:ab", "sms", "2026-03-01T15:00:00Z", "sms:STOP")


def test_keys_are_keyed_hashes_per_channel() -> None:
    phone = "+14155550123"
    k = address_key("sms", phone, KEY)
    assert k.startswith("sms:") and len(k) == 4 + 64 and phone[1:] not in k
    assert k == address_key("sms", f" {phone} ", KEY)
    assert k != address_key("sms", phone, b"x" * 32)  # not guessable without the key
    mixed, lower = "Ana@Example.COM", "ana@example.com"
    assert address_key("email", mixed, KEY) == address_key("email", lower, KEY)
    assert address_key("email", phone, KEY) != address_key("sms", phone, KEY)
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        normalise("fax", phone)


@pytest.mark.parametrize(("consent", "blocked"), [
    (None, True),
    ({"granted": True, "at": "2026-03-02T00:00:00Z", "explicit": False}, True),  # plain true
    ({"granted": True, "at": "2026-03-01T14:00:00Z", "explicit": True}, True),  # older
    ({"granted": True, "at": "2026-03-02T00:00:00Z", "explicit": True}, False),  # newer
    ({"granted": False, "at": "2026-03-02T00:00:00Z", "explicit": True}, True),
])
def test_only_a_newer_explicit_opt_in_outranks_an_entry(consent: dict | None,
                                                        blocked: bool) -> None:
    reason = blocks(ENTRY, consent)
    assert (reason is not None) is blocked
    if blocked:
        assert reason == "address on the suppression list (sms:STOP, 2026-03-01)"
    assert blocks(None, consent) is None


def test_erasure_keeps_the_opt_outs_whose_address_is_known() -> None:
    profile = {"phone": "+14155550123", "email": None, "consent": {
        "sms": {"granted": False, "at": "2026-03-01T15:00:00Z", "source": "sms:STOP"},
        "email": {"granted": False, "at": "2026-03-01T15:00:00Z", "source": "x"}}}
    assert opt_outs(profile) == [("sms", "+14155550123", "2026-03-01T15:00:00Z", "sms:STOP")]
    assert opt_outs({"phone": "+1", "consent": {"sms": {"granted": True}}}) == []
