"""S3 event parsing (SNS-wrapped and raw, test events, key decoding, poison messages, versions,
receive counts), how much a run receives, and which object version a copy reads."""

from __future__ import annotations

import json

import pytest

from conveyor.events import copier, versions
from conveyor.events import parsing as events
from conveyor.events.parsing import ObjectCreated, PoisonMessage
from conveyor.events.versions import Outcome
from conveyor.s3 import S3Object

GiB = 1024**3


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


def test_the_version_an_event_names_is_kept_and_moto_s_events_name_none():
    versioned = record("a.json")
    versioned["s3"]["object"]["versionId"] = "3HL4kqtJvjVBH40Nrjfkd"
    [named, unnamed], _ = events.parse_body(s3_event(versioned, record("b.json")))
    assert (named.version_id, unnamed.version_id) == ("3HL4kqtJvjVBH40Nrjfkd", None)


def test_the_receive_count_comes_from_the_message_attributes():
    body = s3_event(record("a.json"))
    counted, uncounted = events.parse_messages(
        [
            {
                "MessageId": "1",
                "ReceiptHandle": "r1",
                "Body": body,
                "Attributes": {"ApproximateReceiveCount": "5"},
            },
            {"MessageId": "2", "ReceiptHandle": "r2", "Body": body},
        ]
    )
    assert (counted.receive_count, uncounted.receive_count) == (5, None)


# --- how much a run receives -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "taken_bytes", "wanted"),
    [
        (0, 0, 1),  # nothing yet: one, to learn the sizes
        (1, 5 * GiB, 3),  # 5 GiB each, 20 GiB budget: room for three more
        (4, 20 * GiB, 0),  # the byte budget is reached
        (1, 1, 10),  # small objects: a full receive
        (495, 495, 5),  # the message budget's last five
        (500, 500, 0),
        (2, 18 * GiB, 0),  # 9 GiB each: the next would not fit
        (1, 30 * GiB, 0),  # one message past the budget on its own (the wait's): nothing more
    ],
)
def test_receive_size_stops_at_the_budget(taken, taken_bytes, wanted):
    assert copier.receive_size(copier.Budget(messages=500, bytes=20 * GiB), taken, taken_bytes) == wanted


# --- which version a copy reads (moto) -----------------------------------------------------------


def test_plans_copy_the_current_version_supersede_older_ones_and_record_vanished_ones(aws):
    s3 = aws["session"].client("s3")
    bucket = aws["buckets"]["source"]  # versioned, as Terraform makes every bucket
    v1 = s3.put_object(Bucket=bucket, Key="k.json", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k.json", Body=b"22")["VersionId"]
    gone = s3.put_object(Bucket=bucket, Key="gone.json", Body=b"g")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="gone.json", VersionId=gone)
    deleted = s3.put_object(Bucket=bucket, Key="deleted.json", Body=b"d")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="deleted.json")  # a delete marker; the version stays

    objects = {
        "current": ObjectCreated(bucket, "k.json", 2, v2),
        "unnamed": ObjectCreated(bucket, "k.json", 2),
        "older": ObjectCreated(bucket, "k.json", 1, v1),
        "gone": ObjectCreated(bucket, "gone.json", 1, gone),
        "gone-unnamed": ObjectCreated(bucket, "gone.json", 1),
        "deleted": ObjectCreated(bucket, "deleted.json", 1, deleted),
    }
    plans = versions.plan_copies(s3, objects.values())
    outcome = {name: plans[o].outcome for name, o in objects.items()}
    assert outcome == {
        "current": Outcome.COPY,
        "unnamed": Outcome.COPY,
        "older": Outcome.SUPERSEDED,
        "gone": Outcome.COPY,  # no current version: the copy of the named one says it is gone
        "gone-unnamed": Outcome.VANISHED,
        "deleted": Outcome.COPY,
    }
    assert plans[objects["current"]].source == S3Object(bucket, "k.json", 2, v2)
    assert plans[objects["unnamed"]].source == S3Object(bucket, "k.json", 2, v2), "pinned to what HEAD saw"
    assert plans[objects["deleted"]].source == S3Object(bucket, "deleted.json", 1, deleted)
    assert plans[objects["older"]].detail == f"version {v2} was written since"


def test_s3_event_copy_states_its_limits_once():
    """The batch limits are written in one place, copier.Budget: the DAG takes them as they are,
    writes no figure of its own, and its docs (the UI's doc_md) state Budget's and resources'."""
    import re
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    from conveyor import resources

    path = Path(__file__).resolve().parents[2] / "dags" / "s3_event_copy.py"
    dag = DagBag(dag_folder=str(path)).get_dag("s3_event_copy")
    from s3_event_copy import BUDGET  # dags/ is on the tests' path

    assert copier.Budget() == BUDGET
    code = path.read_text().split('"""', 2)[2]  # below the docstring
    assert not re.search(r"\b(500|480|300)\b|GiB|Budget\(\w", code), (
        "s3_event_copy.py writes a limit of its own"
    )
    doc = dag.doc_md
    assert "{" not in doc, "a placeholder of the docstring was not filled in"
    assert f"until it has {copier.Budget()};" in doc
    assert str(copier.Budget()) == "500 messages, 20 GiB of named objects or 5 minutes"
    assert f"stopped at {resources.COPY_EVENTS_TIMEOUT_S // 60}" in doc
    assert f"visibility\n  timeout ({resources.QUEUE_VISIBILITY_TIMEOUT_S // 60} min)" in doc
    assert doc.count(f"{resources.MAX_RECEIVE_COUNT} receives") == 2
    # The receive and copy deadlines follow the task's timeout, not numbers of their own.
    assert copier.Budget().seconds == resources.COPY_EVENTS_TIMEOUT_S / 2
    assert copier.Budget().copy_seconds == resources.COPY_EVENTS_TIMEOUT_S * 0.8
