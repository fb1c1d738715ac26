"""The local stack's AWS side (conveyor_local.provision), read back from moto: what exists, and
which keys notify which topic."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from conveyor_local.provision import provision


def _subscribe_probe_queue(session, topic_arn: str, name: str) -> str:
    sqs, sns = session.client("sqs"), session.client("sns")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def _object_keys(session, queue_url: str) -> list[str]:
    """Keys of the ObjectCreated records that reached the queue (test events left out)."""
    sqs = session.client("sqs")
    keys = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            event = json.loads(json.loads(message["Body"])["Message"])
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in event.get("Records", [])]
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(keys)


def test_buckets_topics_and_queues_exist_as_terraform_creates_them(aws):
    session = aws["session"]
    s3, sns, sqs = session.client("s3"), session.client("sns"), session.client("sqs")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert buckets == {
        f"conveyor-local-{kind}"
        for kind in (
            "source",
            "raw",
            "curated",
            "inbound",
            "stage",
            "archive",
            "ingestion",
            "processed",
            "code",
        )
    }
    for bucket in buckets:  # Terraform's storage module versions every bucket
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]}
    assert topics == {
        "conveyor-local-notifications",
        "conveyor-local-raw-events",
        "conveyor-local-curated-events",
        "conveyor-local-stage-events",
    }
    queue = aws["queues"]["raw-events"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "900"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":conveyor-local-raw-events-dlq")
    assert int(redrive["maxReceiveCount"]) == 5


def test_events_go_only_where_they_are_meant_to(aws):
    """raw: only events/ feeds the copier (not the nightly landing/ zone); curated: only events/
    reaches Snowpipe's topic (not _quarantine/); stage: only the retail folders."""
    session = aws["session"]
    s3 = session.client("s3")
    probes = {
        kind: _subscribe_probe_queue(session, aws["topics"][kind], f"probe-{kind}")
        for kind in ("raw-events", "curated-events", "stage-events")
    }
    puts = {
        "raw": [
            "landing/movies/year=2024/month=03/day=05/movies.csv",
            "events/orders/a b.json",
            "other.json",
        ],
        "curated": ["_quarantine/year=2024/month=03/day=05/m-1.json", "events/orders/a b.json", "eventsx/y"],
        "stage": ["user/users-1.csv", "transactions/t 1.csv", "elsewhere/x.csv", "userx/y.csv"],
    }
    for kind, keys in puts.items():
        for key in keys:
            s3.put_object(Bucket=aws["buckets"][kind], Key=key, Body=b"{}")
    assert _object_keys(session, probes["raw-events"]) == ["events/orders/a b.json"]
    assert _object_keys(session, probes["curated-events"]) == ["events/orders/a b.json"]
    assert _object_keys(session, probes["stage-events"]) == ["transactions/t 1.csv", "user/users-1.csv"]


def test_provisioning_twice_changes_nothing(aws):
    again = provision(aws["session"])
    assert {k: again[k] for k in ("buckets", "topics", "queues")} == {
        k: aws[k] for k in ("buckets", "topics", "queues")
    }
    s3 = aws["session"].client("s3")
    for bucket, prefixes in (
        ("stage", ["transactions/", "user/"]),
        ("raw", ["events/"]),
        ("curated", ["events/"]),
    ):
        configured = s3.get_bucket_notification_configuration(Bucket=aws["buckets"][bucket])[
            "TopicConfigurations"
        ]
        assert sorted(r["Value"] for c in configured for r in c["Filter"]["Key"]["FilterRules"]) == prefixes
