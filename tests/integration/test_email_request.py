"""What moto's SES v2 drops (the text part, headers, configuration set, tags) is
checked on the request as sent, with a botocore before-parameter-build hook."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from chalicelib import aws, clock
from chalicelib.local.stack import LocalStack
from tests.conftest import load_event


def test_email_request_carries_text_part_unsubscribe_headers_and_tags(
        slice_stack: LocalStack) -> None:
    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    ses = aws.client("sesv2")
    ses.meta.events.register("before-parameter-build.sesv2.SendEmail", capture)
    os.environ["SES_CONFIGURATION_SET"] = "aftercare-local"
    try:
        clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
        slice_stack.ingest([load_event("order_delivered")])
        slice_stack.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    finally:
        ses.meta.events.unregister("before-parameter-build.sesv2.SendEmail", capture)
        os.environ.pop("SES_CONFIGURATION_SET", None)
    (request,) = sent
    simple = request["Content"]["Simple"]
    assert "Kettle" in simple["Body"]["Text"]["Data"]
    assert "<p>" in simple["Body"]["Html"]["Data"]
    headers = {h["Name"]: h["Value"] for h in simple["Headers"]}
    assert headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/l/unsubscribe/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    tags = {t["Name"]: t["Value"] for t in request["EmailTags"]}
    assert tags["campaign"] == "tip" and tags["step"] == "week-one" and tags["message"]
    assert request["Destination"] == {"ToAddresses": ["ana@example.com"]}
    assert request["ConfigurationSetName"] == "aftercare-local"


def test_sesv2_client_never_retries_on_its_own() -> None:
    # A retried SendEmail after a 5xx could deliver twice: the sender decides instead.
    assert aws.client("sesv2").meta.config.retries["total_max_attempts"] == 1
