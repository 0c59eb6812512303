"""Date and idle audiences asked as of the occurrence, on the pipeline side.

tests/e2e/test_simulate_semantics_audit3.py holds ``aftercare simulate`` to the docs
for these cases; here the same logs also go through the real handlers on the local
stack (ingest, tick, send, DynamoDB), which must decide the same step rows: the
audience asked again when a step is decided (``skipped``, ``audience rule false``),
a spell planned at a later event once the customer joins the audience, and the
occurrence's clock (an 18th birthday east of UTC, an idle day across spring DST).
"""

from __future__ import annotations

from pathlib import Path

from chalicelib.journeys.engine import Row
from chalicelib.local.stack import LocalStack
from tests.e2e.test_simulate_semantics_audit import campaign, ev
from tests.e2e.test_simulate_semantics_audit2 import bday
from tests.integration.test_decision_core_gaps import both, push

GOLD = {"==": [{"var": "customer.attributes.tier"}, "gold"]}
MISS_YOU = [{"id": "miss-you", "at": "10:30", "channel": "email", "template": "win_back"}]


def test_date_and_idle_audiences_are_asked_as_of_the_occurrence(stack: LocalStack,
                                                                tmp_path: Path) -> None:
    push(stack, tmp_path, [
        bday("bd", audience=GOLD),
        bday("adult", audience={">=": [{"years_since": [{"var": "customer.birthday"}]}, 18]}),
        campaign("wb", {"idle": "P30D"}, MISS_YOU, audience=GOLD),
        campaign("wb120", {"idle": "P120D"}, MISS_YOU,
                 audience={">=": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]}),
    ])
    rows = both(stack, [
        # Gold when the birthday is learnt, silver before it: not greeted.
        ev("d1", "customer.updated", "2026-04-01T14:00:00Z", "down", birthday="1990-05-20",
           attributes={"tier": "gold"}),
        ev("d2", "customer.updated", "2026-04-15T14:00:00Z", "down",
           attributes={"tier": "silver"}),
        # Silver at the order, gold before the idle day (1 May): the win-back is sent.
        ev("u1", "order.placed", "2026-04-01T14:00:00Z", "up", order="o1",
           attributes={"tier": "silver"}),
        ev("u2", "customer.updated", "2026-04-15T14:00:00Z", "up",
           attributes={"tier": "gold"}),
        # 18 on 10 June in Tokyo (00:00 JST is 15:00Z on 9 June).
        ev("t1", "customer.updated", "2026-03-01T14:00:00Z", "tokyo", tz="Asia/Tokyo",
           birthday="2008-06-10"),
        # Idle 120 calendar days across spring DST: from 09:00 EDT on 5 May.
        ev("n1", "order.placed", "2026-01-05T14:00:00Z", "ny", order="o1"),
    ], "2026-07-01T00:00:00Z")
    mine = {(r.customer, r.campaign): r for r in rows
            if (r.customer, r.campaign) in {("down", "bd"), ("up", "wb"), ("tokyo", "adult"),
                                            ("ny", "wb120")}}
    assert mine == {
        ("down", "bd"): Row("down", "bd", "greeting", "2026-05-20T14:00:00Z", "skipped",
                            "audience rule false", "sms"),
        ("up", "wb"): Row("up", "wb", "miss-you", "2026-05-01T14:30:00Z", "sent", "",
                          "email", "win_back"),
        ("tokyo", "adult"): Row("tokyo", "adult", "greeting", "2026-06-10T01:00:00Z", "sent",
                                "", "sms", "birthday"),
        ("ny", "wb120"): Row("ny", "wb120", "miss-you", "2026-05-05T14:30:00Z", "sent", "",
                             "email", "win_back"),
    }
