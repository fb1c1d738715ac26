"""S3 event parsing: SNS-wrapped and raw, test events, key decoding, poison messages."""

from __future__ import annotations

import json

import pytest

from conveyor.events import parsing as events
from conveyor.events.parsing import ObjectCreated, PoisonMessage


def record(
    key: str, bucket: str = "conveyor-local-raw", name: str = "ObjectCreated:Put", size: int = 3
) -> dict:
    """An S3 event record shaped as AWS sends it (key URL-encoded)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-2",
        "eventName": name,
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": key,
                "size": size,
                "eTag": "0cc175b9c0f1b6a831c399e269772661",
                "sequencer": "0A1",
            },
        },
    }


def s3_event(*records) -> str:
    return json.dumps({"Records": list(records)})


def sns_wrapped(inner: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:eu-west-2:123456789012:conveyor-local-raw-events",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
        }
    )


@pytest.mark.parametrize("wrap", [lambda b: b, sns_wrapped], ids=["raw", "sns-wrapped"])
def test_object_created_records_are_parsed(wrap):
    body = wrap(s3_event(record("dir%2Fmy+file+%C3%BC.json"), record("plain.csv", size=10)))
    objects, test_event = events.parse_body(body)
    assert not test_event
    assert objects == [
        ObjectCreated("conveyor-local-raw", "dir/my file ü.json", 3),
        ObjectCreated("conveyor-local-raw", "plain.csv", 10),
    ]


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("a+b.txt", "a b.txt"),
        ("a%2Bb.txt", "a+b.txt"),
        ("nested%2Fdeep%2Ffile.json", "nested/deep/file.json"),
        ("%E6%97%A5%E6%9C%AC%2F%C3%A9t%C3%A9.csv", "日本/été.csv"),
        ("100%25.txt", "100%.txt"),
    ],
)
def test_keys_are_url_decoded(encoded, decoded):
    [obj], _ = events.parse_body(s3_event(record(encoded)))
    assert obj.key == decoded


def test_test_event_has_no_work():
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "conveyor-local-raw"})
    assert events.parse_body(body) == ([], True)
    assert events.parse_body(sns_wrapped(body)) == ([], True)


def test_only_object_created_records_are_kept():
    body = s3_event(
        record("keep.json"),
        record("gone.json", name="ObjectRemoved:Delete"),
        record("c.json", name="ObjectCreated:CompleteMultipartUpload"),
    )
    objects, _ = events.parse_body(body)
    assert [o.key for o in objects] == ["keep.json", "c.json"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "body is not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"hello": "world"}), "not an S3 event: no Records list"),
        (
            json.dumps({"Type": "Notification", "Message": "{oops"}),
            "SNS envelope's Message is not valid JSON",
        ),
        (
            s3_event({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}),
            "record 0: malformed S3 record",
        ),
        (s3_event({**record("a"), "eventSource": "aws:sqs"}), "record 0: eventSource is 'aws:sqs'"),
    ],
    ids=["not-json", "array", "no-records", "bad-sns-message", "no-s3-block", "wrong-source"],
)
def test_poison_messages_say_why(body, reason):
    with pytest.raises(PoisonMessage, match=reason.replace("(", r"\(")):
        events.parse_body(body)


def test_parse_messages_never_raises_and_keeps_the_reason():
    parsed = events.parse_messages(
        [
            {"MessageId": "1", "ReceiptHandle": "r1", "Body": s3_event(record("a.json"))},
            {"MessageId": "2", "ReceiptHandle": "r2", "Body": "garbage"},
        ]
    )
    assert [p.objects[0].key for p in parsed[:1]] == ["a.json"]
    assert parsed[1].poison.startswith("body is not valid JSON")
    assert parsed[1].body == "garbage"
