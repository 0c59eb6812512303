"""infra/template.yaml creates the tables the PynamoDB models expect, and the IAM
policies name only this stage's resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.decode import decode

from chalicelib.store.models import ALL_MODELS
from tests.conftest import ROOT


def _template() -> dict[str, Any]:
    template, matches = decode(str(ROOT / "infra" / "template.yaml"))
    assert not matches, matches
    return dict(template)


def _tables() -> dict[str, dict[str, Any]]:
    out = {}
    for resource in _template()["Resources"].values():
        if resource["Type"] == "AWS::DynamoDB::Table":
            props = resource["Properties"]
            name = props["TableName"]["Fn::Sub"].replace("aftercare-${Stage}-", "")
            out[name] = props
    return out


def _keys(key_schema: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(k["AttributeName"], k["KeyType"]) for k in key_schema}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_table_matches_model(model: Any) -> None:
    table = model.Meta.table_name.rsplit("-", 1)[-1]
    props = _tables()[table]
    schema = model._get_schema()
    assert _keys(props["KeySchema"]) == _keys(schema["key_schema"])
    indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
    model_indexes = {i["index_name"]: i for i in schema.get("global_secondary_indexes", [])}
    assert set(indexes) == set(model_indexes)
    for name, index in model_indexes.items():
        assert _keys(indexes[name]["KeySchema"]) == _keys(index["key_schema"]), name
        assert indexes[name]["Projection"]["ProjectionType"] == \
            index["projection"]["ProjectionType"], name
    defined = {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]}
    assert defined == {(a["AttributeName"], a["AttributeType"])
                       for a in schema["attribute_definitions"]}


def test_events_table_has_ttl() -> None:
    assert _tables()["events"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize("name", ["policy-{}.json", "policy-api-{}.json"])
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_policies_are_least_privilege(stage: str, name: str) -> None:
    policy = json.loads((ROOT / ".chalice" / name.format(stage)).read_text())
    for statement in policy["Statement"]:
        actions = statement["Action"]
        assert "*" not in actions and not any(a.endswith(":*") for a in actions)
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        assert all(r != "*" for r in resources)
        if statement["Sid"] in ("Tables", "Queues", "Secrets"):
            assert all(f"aftercare-{stage}-" in r or f"aftercare/{stage}/" in r
                       for r in resources), statement
        if statement["Sid"] == "Logs":  # the API function is aftercare-<stage>, no suffix
            assert all(r.split("/aws/lambda/", 1)[1] in (
                f"aftercare-{stage}", f"aftercare-{stage}:*", f"aftercare-{stage}-*")
                for r in resources), statement


def test_a_stuck_send_is_only_swept_after_any_sender_could_have_finished() -> None:
    from chalicelib.pipeline.send import SENDING_TIMEOUT

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    timeouts = [config.get("lambda_timeout", 60)] + [
        s.get("lambda_timeout", 0) for s in config["stages"].values()]
    assert SENDING_TIMEOUT.total_seconds() > 2 * max(timeouts)


def test_topics_use_a_key_their_aws_publishers_may_use() -> None:
    """SES (event publishing) and CloudWatch (alarm actions) cannot publish to a topic
    encrypted with the AWS managed alias/aws/sns: its key policy cannot grant them."""
    resources = _template()["Resources"]
    topics = {name: r["Properties"] for name, r in resources.items()
              if r["Type"] == "AWS::SNS::Topic"}
    assert set(topics) == {"SesEventsTopic", "AlarmTopic"}
    for name, props in topics.items():
        key = props["KmsMasterKeyId"]
        assert isinstance(key, dict) and "Ref" in key, f"{name}: {key!r}"
        key_resource = resources[key["Ref"]]
        assert key_resource["Type"] == "AWS::KMS::Key"
        assert key_resource["Properties"]["EnableKeyRotation"] is True
    key_policy = resources["TopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    publishers = [s for s in key_policy if s.get("Principal", {}).get("Service")]
    assert len(publishers) == 1
    assert set(publishers[0]["Principal"]["Service"]) == {
        "ses.amazonaws.com", "cloudwatch.amazonaws.com"}
    assert set(publishers[0]["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert "aws:SourceAccount" in publishers[0]["Condition"]["StringEquals"]
    topic_policy = resources["SesEventsTopicPolicy"]["Properties"]
    assert topic_policy["Topics"] == [{"Ref": "SesEventsTopic"}]
    (statement,) = topic_policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"


def test_ses_events_reach_the_function_through_a_queue_with_a_dlq() -> None:
    """The topic delivers raw to the queue app.py reads (retries, then a DLQ), and only
    the topic may send to it."""
    import app

    resources = _template()["Resources"]
    queue = resources["SesEventsQueue"]["Properties"]
    assert queue["QueueName"] == {"Fn::Sub": "aftercare-${Stage}-ses-events"}
    assert app.SES_EVENTS_QUEUE.endswith("-ses-events")
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["SesEventsDeadLetterQueue", "Arn"]}
    subscription = resources["SesEventsSubscription"]["Properties"]
    assert subscription["TopicArn"] == {"Ref": "SesEventsTopic"}
    assert (subscription["Protocol"], subscription["RawMessageDelivery"]) == ("sqs", True)
    (statement,) = resources["SesEventsQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "SesEventsTopic"}}}


def test_the_configuration_set_suppresses_bounced_and_complaining_addresses() -> None:
    props = _template()["Resources"]["SesConfigurationSet"]["Properties"]
    assert set(props["SuppressionOptions"]["SuppressedReasons"]) == {"BOUNCE", "COMPLAINT"}
