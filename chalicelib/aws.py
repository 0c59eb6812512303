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
    config = (Config(retries={"total_max_attempts": 1}) if service in NO_SDK_RETRY
              else Config(retries={"mode": "standard"}))
    return boto3.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]


def secret_json(name: str) -> dict[str, Any]:
    """A JSON secret from Secrets Manager (cached for SECRET_MAX_AGE seconds)."""
    value = _secrets_provider().get(name, max_age=SECRET_MAX_AGE)
    data = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(data, dict):
        raise ValueError(f"secret {name} must hold a JSON object")
    return data


@cache
def _secrets_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))


@cache
def queue_url(name: str) -> str:
    url: str = client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
    return url


def reset() -> None:
    """Forget clients and cached secrets (tests, the local stack)."""
    client.cache_clear()
    queue_url.cache_clear()
    _secrets_provider.cache_clear()
