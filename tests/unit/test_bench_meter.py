"""The benchmark's DynamoDB meter, checked against moto so its figures can be trusted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from bench._ddb_meter import DdbMeter, attach, item_size, update_size, value_size, write_units

TABLE = "meter-test"


class Thing(Model):
    class Meta:
        table_name = TABLE
        region = "us-east-1"

    pk = UnicodeAttribute(hash_key=True)
    sk = NumberAttribute(range_key=True)
    body = UnicodeAttribute(null=True)
    hits = NumberAttribute(null=True)


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        Thing.create_table(billing_mode="PAY_PER_REQUEST", wait=False)
        yield boto3.client("dynamodb", region_name="us-east-1")


def _put(client: Any, pk: str, sk: int, body: str = "x") -> None:
    client.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"N": str(sk)},
                                           "body": {"S": body}})


def test_one_put_item_is_one_request_and_one_unit(ddb: Any) -> None:
    with DdbMeter() as meter:
        _put(ddb, "a", 1)
    assert meter.requests == {"PutItem": 1}
    assert meter.write_units == 1 and meter.items_written == 1
    assert meter.writes_by_table == {TABLE: 1}


def test_nothing_is_counted_outside_the_meter_or_for_other_services(ddb: Any) -> None:
    _put(ddb, "a", 1)
    sqs = boto3.client("sqs", region_name="us-east-1")
    with DdbMeter() as meter:
        sqs.create_queue(QueueName="q")
    _put(ddb, "a", 2)
    assert meter.total_requests == 0


def test_sees_pynamodb_get_query_and_transactions(ddb: Any) -> None:
    with DdbMeter() as meter:
        Thing("a", 1, body="x").save()
        Thing.get("a", 1)
        list(Thing.query("a"))
        with TransactWrite(connection=Thing._get_connection().connection) as tw:
            tw.save(Thing("b", 1))
            tw.update(Thing("a", 1), actions=[Thing.hits.add(1)])
    assert meter.requests == {"PutItem": 1, "GetItem": 1, "Query": 1, "TransactWriteItems": 1}
    assert meter.items_read == 2  # the GetItem's item and the Query's one scanned
    assert meter.write_units == 1 + 2 + 2  # a put; two small items in a transaction


def test_query_scanned_count_is_summed_over_pages_and_filters(ddb: Any) -> None:
    for sk in range(5):
        _put(ddb, "a", sk, body="keep" if sk % 2 else "drop")
    _put(ddb, "b", 0)
    with DdbMeter() as meter:
        kwargs: dict[str, Any] = {
            "TableName": TABLE, "KeyConditionExpression": "pk = :a",
            "FilterExpression": "body = :k", "Limit": 2,
            "ExpressionAttributeValues": {":a": {"S": "a"}, ":k": {"S": "keep"}}}
        pages = 0
        while True:
            page = ddb.query(**kwargs)
            pages += 1
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert meter.requests["Query"] == pages >= 3
    assert meter.items_read == 5  # every item of partition "a" was read...
    assert meter.items_returned == 2  # ...two passed the filter


def test_batch_get_counts_items_returned(ddb: Any) -> None:
    _put(ddb, "a", 1)
    _put(ddb, "a", 2)
    keys = [{"pk": {"S": "a"}, "sk": {"N": str(sk)}} for sk in (1, 2, 3)]
    with DdbMeter() as meter:
        ddb.batch_get_item(RequestItems={TABLE: {"Keys": keys}})
    assert meter.requests == {"BatchGetItem": 1} and meter.items_read == 2


def test_write_units_follow_item_size(ddb: Any) -> None:
    with DdbMeter() as meter:
        _put(ddb, "a", 1, body="x" * 1500)  # ~1.5 KB: 2 units
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": {
            "pk": {"S": "a"}, "sk": {"N": "2"}, "body": {"S": "x" * 1500}}}}])
        ddb.batch_write_item(RequestItems={TABLE: [
            {"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"N": str(i)}}}}
            for i in range(3)]})
    assert meter.requests == {"PutItem": 1, "TransactWriteItems": 1, "BatchWriteItem": 1}
    assert meter.write_units == 2 + 4 + 3
    assert meter.items_written == 5


def test_updates_are_sized_by_the_sizer_when_given(ddb: Any) -> None:
    _put(ddb, "a", 1, body="x" * 3000)
    asked: list[tuple[str, Any]] = []

    def sizer(table: str, key: Any) -> int:
        asked.append((table, key))
        return 3000

    update = {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
              "UpdateExpression": "ADD #c :one", "ExpressionAttributeNames": {"#c": "hits"},
              "ExpressionAttributeValues": {":one": {"N": "1"}}}
    with DdbMeter() as lower, DdbMeter(item_sizer=sizer) as sized:
        ddb.update_item(**update)
    assert lower.write_units == 1  # key + "hits" + 1: a lower bound
    assert sized.write_units == 3  # the stored item's ~3 KB
    assert asked == [(TABLE, update["Key"])]


def test_a_client_hooked_twice_counts_once(ddb: Any) -> None:
    attach(ddb)
    attach(ddb)
    with DdbMeter() as meter:
        _put(ddb, "a", 1)
    assert meter.total_requests == 1 and meter.write_units == 1


def test_failed_conditional_writes_are_still_charged(ddb: Any) -> None:
    _put(ddb, "a", 1)
    with DdbMeter() as meter, pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}},
                     ConditionExpression="attribute_not_exists(pk)")
    assert meter.requests == {"PutItem": 1} and meter.write_units == 1


@pytest.mark.parametrize(("value", "size"), [
    ({"S": "héllo"}, 6),
    ({"N": "123"}, 3),  # 1 byte per two significant digits, + 1
    ({"N": "-0.0012500"}, 3),  # leading and trailing zeros trimmed
    ({"BOOL": True}, 1),
    ({"NULL": True}, 1),
    ({"B": "AAEC"}, 3),  # base64 of 3 bytes
    ({"SS": ["ab", "c"]}, 3),
    ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (2 + 1) + (2 + 1)),
    ({"M": {"k": {"S": "ab"}}}, 3 + 1 + 2 + 1),
])
def test_value_sizes_follow_the_developer_guide(value: dict[str, Any], size: int) -> None:
    assert value_size(value) == size


def test_item_and_update_sizes() -> None:
    assert item_size({"name": {"S": "abc"}, "n": {"N": "7"}}) == 4 + 3 + 1 + 2
    assert write_units(1024) == 1 and write_units(1025) == 2
    assert write_units(10, transactional=True) == 2
    request = {"Key": {"pk": {"S": "k"}}, "UpdateExpression": "SET #s = :v",
               "ConditionExpression": "#t = :w",
               "ExpressionAttributeNames": {"#s": "status", "#t": "token"},
               "ExpressionAttributeValues": {":v": {"S": "done"}, ":w": {"S": "zzzz"}}}
    assert update_size(request) == (2 + 1) + 6 + 4  # condition-only names and values not counted
