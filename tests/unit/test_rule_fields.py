"""A rule that reads a customer field no profile has is a warning at validation."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from bench.simulate_bench import _campaigns
from chalicelib.cli.main import main
from chalicelib.journeys.profile import PROFILE_FIELDS
from chalicelib.journeys.simulate import simulate
from chalicelib.local.generator import generate
from chalicelib.rules import unknown_fields

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"customer": PROFILE_FIELDS}


@pytest.mark.parametrize(("rule", "expected"), [
    ({">": [{"var": "customer.order_cnt"}, 1]},
     ["$['>'][0].var: 'var' reads 'customer.order_cnt', a field no customer has: it is "
      "null for everyone (did you mean 'customer.order_count'?)"]),
    ({"var": ["customer.vip", False]},
     ["$.var[0]: 'var' reads 'customer.vip', a field no customer has: it is null for "
      "everyone (custom data goes under 'customer.attributes')"]),
    ({"val": ["customer", "total_spnt"]},
     ["$.val[1]: 'val' reads 'customer.total_spnt', a field no customer has: it is null "
      "for everyone (did you mean 'customer.total_spent'?)"]),
    # Fine: known fields, custom attributes, event data, item scopes, computed paths.
    ({"and": [{"var": "customer.attributes.anything"}, {"var": "customer.consent.sms"},
              {"var": "event.data.whatever"}, {"var": "customer"},
              {"some": [{"var": "customer.products"}, {"==": [{"var": "sku"}, "x"]}]},
              {"var": {"cat": ["customer.", "x"]}}]}, []),
])
def test_unknown_customer_fields(rule: Any, expected: list[str]) -> None:
    assert [str(e) for e in unknown_fields(rule, FIELDS)] == expected


def test_profile_fields_are_every_key_a_profile_gets() -> None:
    events = generate(customers=60, days=200, seed=5)
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, _campaigns())
    keys = {k for profile in sim.profiles.values() for k in profile}
    assert keys <= PROFILE_FIELDS, keys - PROFILE_FIELDS
    assert len(keys) >= 15  # the log fills most of them


def test_validate_warns_but_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads((ROOT / "campaigns" / "delivery-checkin.json").read_text())
    data["audience"] = {">=": [{"var": "customer.order_cnt"}, 1]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    code = main(["validate", str(tmp_path), "--templates", str(ROOT / "templates")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{tmp_path / 'c.json'}: $.audience['>='][0].var: warning: 'var' reads " \
        "'customer.order_cnt'" in out
    assert "ok: 1 campaign(s) valid" in out


def test_docs_list_every_profile_field() -> None:
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    section = text[text.index("`customer` is the stored profile"):]
    section = section[:section.index("validation warns")]
    assert {f for f in PROFILE_FIELDS if f"`{f}`" not in section} == set()
