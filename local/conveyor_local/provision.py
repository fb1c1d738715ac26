"""Create, in moto (server or in-process mock), the AWS resources Terraform creates in AWS.

Idempotent: running it again on a provisioned stack changes nothing. Used by `make services` and
by the tests, so both exercise the same buckets, topics, queues, policies and notifications.
"""

from __future__ import annotations

import contextlib
import json

from conveyor import resources
from conveyor.resources import ResourceNames

# A local-only queue subscribed to the notifications topic, so the demo and the tests can read
# the run summaries that people get by e-mail in AWS.
NOTIFICATIONS_INBOX = "notifications-inbox"


def _create_bucket(s3, bucket: str, region: str) -> None:
    """A versioned bucket, as Terraform's storage module makes every bucket."""
    kwargs = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(**kwargs)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _create_queue(sqs, name: str, attributes: dict) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    if attributes:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _subscribe(sns, sqs, topic_arn: str, queue_url: str, queue_arn: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    existing = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Endpoint"] == queue_arn for s in existing):
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)


def provision(session, names: ResourceNames | None = None) -> dict:
    """Create every resource for `names` with a boto3 session; returns what `describe` prints."""
    names = names or ResourceNames()
    region = session.region_name or resources.DEFAULT_REGION
    s3, sns, sqs = session.client("s3"), session.client("sns"), session.client("sqs")

    buckets = {}
    for kind in resources.BUCKETS:
        buckets[kind] = names.bucket(kind)
        _create_bucket(s3, buckets[kind], region)

    topics = {kind: sns.create_topic(Name=names.topic(kind))["TopicArn"] for kind in resources.TOPICS}

    queues, dead_letter_queues = {}, {}
    for kind, topic_kind in resources.QUEUES.items():
        dlq_url, dlq_arn = _create_queue(
            sqs, names.dead_letter_queue(kind), {"MessageRetentionPeriod": str(resources.QUEUE_RETENTION_S)}
        )
        url, arn = _create_queue(
            sqs,
            names.queue(kind),
            {
                "VisibilityTimeout": str(resources.QUEUE_VISIBILITY_TIMEOUT_S),
                "MessageRetentionPeriod": str(resources.QUEUE_RETENTION_S),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(resources.MAX_RECEIVE_COUNT)}
                ),
            },
        )
        _subscribe(sns, sqs, topics[topic_kind], url, arn)
        queues[kind], dead_letter_queues[kind] = url, dlq_url

    inbox_url, inbox_arn = _create_queue(sqs, f"{names.prefix}-{NOTIFICATIONS_INBOX}", {})
    _subscribe(sns, sqs, topics["notifications"], inbox_url, inbox_arn)
    queues[NOTIFICATIONS_INBOX] = inbox_url

    # Bucket notifications (resources.BUCKET_NOTIFICATIONS), scoped by prefix: raw events/ ->
    # raw-events (s3_event_copy), curated events/ -> curated-events and stage user/, transactions/
    # -> stage-events (Snowpipe auto-ingest). Topic policies let only the one bucket publish.
    for bucket_kind, (topic_kind, prefixes) in resources.BUCKET_NOTIFICATIONS.items():
        topic_arn = topics[topic_kind]
        sns.set_topic_attributes(
            TopicArn=topic_arn,
            AttributeName="Policy",
            AttributeValue=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "s3.amazonaws.com"},
                            "Action": "SNS:Publish",
                            "Resource": topic_arn,
                            "Condition": {
                                "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{buckets[bucket_kind]}"}
                            },
                        }
                    ],
                }
            ),
        )
        configurations = []
        for prefix in prefixes:
            configuration = {"TopicArn": topic_arn, "Events": ["s3:ObjectCreated:*"]}
            if prefix:
                configuration["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
            configurations.append(configuration)
        s3.put_bucket_notification_configuration(
            Bucket=buckets[bucket_kind],
            NotificationConfiguration={"TopicConfigurations": configurations},
        )

    return {
        "region": region,
        "prefix": names.prefix,
        "buckets": buckets,
        "topics": topics,
        "queues": queues,
        "dead_letter_queues": dead_letter_queues,
    }


def delete_bucket(s3, bucket: str) -> None:
    """Delete a (versioned) bucket, every version and delete marker first (tests make a bucket
    unreachable with it)."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=bucket)
