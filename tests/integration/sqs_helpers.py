"""SQS helpers the integration tests share: read a stage's queues on moto and hand
their messages to a function the way its event source mapping does."""

from __future__ import annotations

from typing import Any

from chalicelib import aws, settings
from chalicelib.local.stack import LocalStack, sqs_lambda_event


def queue_url(what: str) -> str:
    return str(aws.queue_url(settings.resource_name(what)))


def queue_counts(what: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(what), AttributeNames=["All"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]))


def receive(what: str, visibility: int | None = None) -> list[dict[str, Any]]:
    """Up to 10 messages of a queue, with their attributes."""
    kwargs: dict[str, Any] = {"QueueUrl": queue_url(what), "MaxNumberOfMessages": 10,
                              "AttributeNames": ["All"], "MessageAttributeNames": ["All"]}
    if visibility is not None:
        kwargs["VisibilityTimeout"] = visibility
    got: list[dict[str, Any]] = aws.client("sqs").receive_message(**kwargs).get("Messages", [])
    return got


def invoke(stack: LocalStack, function: str, queue: str, messages: list[dict[str, Any]]) -> Any:
    """Run ``function`` on ``messages`` as its SQS event source mapping would."""
    return stack.client.lambda_.invoke(function,
                                       sqs_lambda_event(stack.queue_arn(queue), messages))
