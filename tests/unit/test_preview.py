from __future__ import annotations

import pytest

from chalicelib.cli.main import main
from tests.conftest import FIXTURES, ROOT

ARGS = ["--campaigns", str(ROOT / "campaigns"), "--templates", str(ROOT / "templates")]


def test_preview_shows_each_step_in_the_customers_language(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "delivery-checkin", "--customer",
                 str(FIXTURES / "customer_es.json"), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "--- step checkin: sms" in out
    assert "Hola Lucía" in out and "[checkin.es.sms.j2: UCS-2" in out


def test_preview_email_and_locale_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(ROOT / "campaigns" / "care-tips.json"), "--customer",
                 str(FIXTURES / "customer_es.json"), "--locale", "en-US", *ARGS]) == 0
    out = capsys.readouterr().out
    assert "Subject: Getting the most from your Kettle" in out
    assert "--- step month-one: email" in out


def test_preview_refuses_a_missing_customer_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "delivery-checkin", "--customer", "/nonexistent.json", *ARGS]) == 1
    assert "cannot read customer" in capsys.readouterr().err
