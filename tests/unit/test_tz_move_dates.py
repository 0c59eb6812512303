"""A yearly date's step whose time in the new zone has passed when the customer
moves is due at the move, not late (docs/campaigns.md, "A customer whose timezone
changes"): ``expire_after`` counts from the move, as for an idle spell's steps."""

from __future__ import annotations

from chalicelib.clock import iso
from tests.unit.test_tz_move_idle import NY, TOKYO, campaigns, ev, mail, moved, results, sent

BIRTHDAY = {"id": "bday", "name": "bday", "trigger": {"date": "customer.birthday"},
            "steps": [mail("greeting", at="10:00", expire_after="PT1H")]}


def test_a_birthday_whose_new_time_has_passed_is_sent_at_the_move() -> None:
    cs = campaigns(BIRTHDAY)
    known = ev("b", "customer.updated", "2026-04-01T14:00:00Z", "c1", tz=NY)
    known["customer"]["birthday"] = "1990-05-20"
    # On the day, at 14:00 JST (05:00Z): 10:00 JST (01:00Z) has passed, 10:00 EDT
    # (14:00Z) had not.
    events = [known, ev("m", "customer.updated", "2026-05-20T05:00:00Z", "c1", tz=TOKYO)]
    first, move = results(cs, *events)
    assert iso(first.planned[0].due_at) == "2026-05-20T14:00:00Z"
    # From local midnight in Tokyo (15:00Z the day before), due at the move.
    assert moved(move) == [("greeting", "2026-05-19T15:00:00Z", "2026-05-20T05:00:00Z")]
    # (Before: due at 01:00Z, decided at the move as expired, "4h late".)
    assert sent(cs, events) == [("c1", "greeting", "2026-05-20T05:00:00Z", "sent")]
