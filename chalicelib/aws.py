"""Lazily created AWS clients and cached secrets.

Clients are made on first use (importing boto3 costs ~160 ms of cold start) and
kept for the Lambda's lifetime. Secrets come from Secrets Manager through
Powertools' parameters utility, which caches them for ``max_age`` seconds.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

SECRET_MAX_AGE = 300
NO_SDK_RETRY = frozenset({"sesv2"})


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get(f"AFTERCARE_{service.upper()}_ENDPOINT") or None
    # A provider call must never be repeated by the SDK: a retried 5xx could send
    # twice. The sender decides what to retry, knowing what the failure means.
    retries = {"total_max_attempts": 1} if service in NO_SDK_RETRY else {"mode": "standard"}
    return boto3.client(service, endpoint_url=endpoint, config=Config(retries=retries))


def secret_json(name: str) -> dict[str, Any]:
    """A JSON secret from Secrets Manager (cached for SECRET_MAX_AGE seconds)."""
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(
        name, max_age=SECRET_MAX_AGE, boto3_client=client("secretsmanager")
    )
    data = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(data, dict):
        raise ValueError(f"secret {name} must hold a JSON object")
    return data


@cache
def queue_url(name: str) -> str:
    url: str = client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
    return url


def reset() -> None:
    """Forget clients and cached secrets (tests, the local stack)."""
    client.cache_clear()
    queue_url.cache_clear()
    try:
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
    except ImportError:  # pragma: no cover
        pass
