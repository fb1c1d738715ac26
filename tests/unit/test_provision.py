"""The local stack's AWS side (conveyor.local.provision) matches resources.py, as Terraform does."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from conveyor import resources
from conveyor.local.provision import provision
from conveyor.resources import Names


def _subscribe_probe_queue(session, topic_arn: str) -> str:
    sqs, sns = session.client("sqs"), session.client("sns")
    url = sqs.create_queue(QueueName="probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def _object_keys(session, queue_url: str) -> list[str]:
    sqs = session.client("sqs")
    keys = []
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        event = json.loads(json.loads(message["Body"])["Message"])
        keys += [unquote_plus(r["s3"]["object"]["key"]) for r in event.get("Records", [])]
    return sorted(keys)


def test_every_name_in_resources_is_created(aws):
    names = Names()
    assert set(aws["buckets"]) == set(resources.BUCKETS)
    assert aws["buckets"] == {kind: names.bucket(kind) for kind in resources.BUCKETS}
    assert {kind: arn.rsplit(":", 1)[1] for kind, arn in aws["topics"].items()} == {
        kind: names.topic(kind) for kind in resources.TOPICS
    }


def test_stage_events_carry_only_the_retail_folders(aws):
    """stage -> stage-events for user/ and transactions/ only (the retail Snowpipes' folders)."""
    session = aws["session"]
    queue = _subscribe_probe_queue(session, aws["topics"]["stage-events"])
    s3 = session.client("s3")
    stage = aws["buckets"]["stage"]
    for key in ("user/users-1.csv", "transactions/t 1.csv", "elsewhere/x.csv", "userx/y.csv"):
        s3.put_object(Bucket=stage, Key=key, Body=b"a,b\n")
    assert _object_keys(session, queue) == ["transactions/t 1.csv", "user/users-1.csv"]


def test_provisioning_twice_changes_nothing(aws):
    again = provision(aws["session"])
    assert {k: again[k] for k in ("buckets", "topics", "queues")} == {
        k: aws[k] for k in ("buckets", "topics", "queues")
    }
    config = aws["session"].client("s3").get_bucket_notification_configuration(Bucket=aws["buckets"]["stage"])
    assert len(config["TopicConfigurations"]) == 2
