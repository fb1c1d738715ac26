"""s3_event_copy under the real scheduler (`make airflow` on a stack of its own, driven through the
REST API, issue 16 item 6): an event whose object version was deleted before the copy is
recorded, its message deleted and its run succeeds, while the objects put beside it reach
curated. Before, the copy failed the run, the message came back every visibility timeout, and
three failed runs paused the DAG."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from conveyor_local.airflow_api import FINISHED

pytestmark = pytest.mark.scheduler

DAG_ID = "s3_event_copy"
PREFIX = "events/vanish/"


def aws_event(bucket: str, key: str, version_id: str, size: int) -> str:
    """An ObjectCreated event shaped as AWS sends it for a versioned bucket (moto's leave out
    `versionId`)."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                        "object": {"key": key, "size": size, "versionId": version_id},
                    },
                }
            ]
        }
    )


def test_an_event_for_a_deleted_version_is_recorded_and_the_objects_beside_it_reach_curated(airflow):
    api, s3, info = airflow.api, airflow.s3, airflow.info
    from conveyor_local.stack import ACCESS_KEY

    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY, region_name=info["region"]
    )
    sqs = session.client("sqs", endpoint_url=info["endpoint_url"])
    sns = session.client("sns", endpoint_url=info["endpoint_url"])
    raw, curated = airflow.bucket("raw"), airflow.bucket("curated")
    queue, dlq = info["queues"]["raw-events"], info["dead_letter_queues"]["raw-events"]
    finished_before = {r["dag_run_id"] for r in api.runs(DAG_ID) if r["state"] in FINISHED}

    # Deleted for good right after it was put, long before a copy could start: moto's own event
    # for it (no version) waits on the queue, and so does one naming the version, as AWS sends it.
    gone_key = f"{PREFIX}gone.json"
    gone = s3.put_object(Bucket=raw, Key=gone_key, Body=b"gone")
    s3.delete_object(Bucket=raw, Key=gone_key, VersionId=gone["VersionId"])
    sns.publish(TopicArn=info["topics"]["raw-events"], Message=aws_event(raw, gone_key, gone["VersionId"], 4))
    good = {f"{PREFIX}good-{n}.json": json.dumps({"n": n}).encode() for n in (1, 2)}
    for key, body in good.items():
        s3.put_object(Bucket=raw, Key=key, Body=body)

    def quarantined() -> list[dict]:
        records = []
        for key in airflow.keys("curated", "_quarantine/"):
            record = json.loads(s3.get_object(Bucket=curated, Key=key)["Body"].read())
            if any(o["key"] == gone_key for o in record.get("objects", [])):
                records.append(record)
        return records

    def in_queue() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    api.unpause(DAG_ID)
    try:
        deadline = time.monotonic() + 240
        while not (
            set(good) <= set(airflow.keys("curated", PREFIX)) and len(quarantined()) == 2 and in_queue() == 0
        ):
            assert time.monotonic() < deadline, (
                f"after 240 s: curated {airflow.keys('curated', PREFIX)}, {len(quarantined())} record(s), "
                f"{in_queue()} message(s) on the queue"
            )
            time.sleep(1)
        # Every run that took part has finished; the newest one may wait for the next event.
        deadline = time.monotonic() + 120
        while True:
            ours = [r for r in api.runs(DAG_ID) if r["dag_run_id"] not in finished_before]
            unfinished = sum(r["state"] not in FINISHED for r in ours)
            if unfinished < len(ours) and unfinished <= 1:
                break
            assert time.monotonic() < deadline, [(r["dag_run_id"], r["state"]) for r in ours]
            time.sleep(1)
    finally:
        api.pause(DAG_ID)

    assert [r for r in ours if r["state"] == "failed"] == [], [
        airflow.failure_detail(DAG_ID, r) for r in ours if r["state"] == "failed"
    ]
    assert any(r["state"] == "success" for r in ours)
    for key, body in good.items():
        assert s3.get_object(Bucket=curated, Key=key)["Body"].read() == body
    assert gone_key not in airflow.keys("curated", PREFIX)
    named = {(o["bucket"], o["key"], o["version_id"]) for r in quarantined() for o in r["objects"]}
    assert named == {(raw, gone_key, gone["VersionId"]), (raw, gone_key, None)}  # AWS's event, moto's
    assert all(r["reason"] == "the object version the event names no longer exists" for r in quarantined())
    assert in_queue() == 0
    assert (
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )
