"""s3_event_copy through Airflow on moto: the real S3 -> SNS -> SQS chain, settle-after-copy,
duplicates, partial failure, poison messages, the dead-letter queue, and the deferrable sensor."""

from __future__ import annotations

import hashlib
import json
import os

import boto3
import pytest
from conftest import REGION, run_dag, task_states

from conveyor import events
from conveyor.copying import MiB
from conveyor.local.provision import provision
from conveyor.local.stack import free_port

pytestmark = pytest.mark.integration

DAG_ID = "s3_event_copy"
RAW, CURATED = "conveyor-local-raw", "conveyor-local-curated"


def queue_depth(sqs, url) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def curated(s3) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=CURATED).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=CURATED, Key=o["Key"])["Body"].read() for o in listed}


@pytest.fixture
def clients(aws):
    session = aws["session"]
    return (
        session.client("s3"),
        session.client("sqs"),
        aws["queues"]["raw-events"],
        aws["dead_letter_queues"]["raw-events"],
    )


def event_body(*keys: str, bucket: str = RAW) -> str:
    """A raw (not SNS-wrapped) S3 event, as a bucket sends straight to SQS."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(" ", "+"), "size": 1}},
                }
                for key in keys
            ]
        }
    )


def test_objects_put_into_raw_reach_curated_byte_identical_and_the_queue_empties(clients):
    s3, sqs, queue, _ = clients
    bodies = {
        "a b.json": b'{"x": 1}',
        "ünï/côdé+plus.json": '{"é": "ü"}'.encode(),
        "nested/deep/er/file.csv": b"a,b\n1,2\n",
    }
    for key, body in bodies.items():  # moto sends these through SNS to the queue, like AWS
        s3.put_object(
            Bucket=RAW, Key=key, Body=body, ContentType="application/json", Metadata={"origin": "t"}
        )

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    assert task_states(dag_run)["replay_keys"] == ["skipped"]
    assert curated(s3) == bodies
    head = s3.head_object(Bucket=CURATED, Key="a b.json")
    assert (head["ContentType"], head["Metadata"]) == ("application/json", {"origin": "t"})
    assert queue_depth(sqs, queue) == (0, 0)

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        [event] = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        assert event.extra == {"objects": 3, "bytes": sum(map(len, bodies.values()))}


def test_raw_events_several_records_and_duplicate_deliveries(clients):
    s3, sqs, queue, _ = clients
    for key in ("one.txt", "two words.txt", "three.txt"):
        s3.put_object(Bucket="conveyor-local-source", Key=key, Body=key.encode())
    events.receive_available(sqs, queue, 100)  # drop the notifications moto sent for setup
    sqs.purge_queue(QueueUrl=queue)
    many = event_body("one.txt", "two words.txt", bucket="conveyor-local-source")
    sqs.send_message(QueueUrl=queue, MessageBody=many)
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("three.txt", bucket="conveyor-local-source"))
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("three.txt", bucket="conveyor-local-source"))

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    assert curated(s3) == {
        "one.txt": b"one.txt",
        "two words.txt": b"two words.txt",
        "three.txt": b"three.txt",
    }
    assert queue_depth(sqs, queue) == (0, 0), "both deliveries of the duplicate are deleted"
    summary = dag_run.get_task_instance("copy_events").xcom_pull(task_ids="copy_events")
    assert (summary["messages"], summary["deleted"], summary["copied"]) == (3, 3, 3)


def test_a_failed_copy_keeps_only_its_message(clients, no_retries):
    s3, sqs, queue, _ = clients
    s3.put_object(Bucket=RAW, Key="good-1.json", Body=b"1")
    s3.put_object(Bucket=RAW, Key="good-2.json", Body=b"2")
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("vanished.json"))  # object is not there
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "1"})

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "failed"
    assert task_states(dag_run)["copy_events"] == ["failed"]
    assert curated(s3) == {"good-1.json": b"1", "good-2.json": b"2"}
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2, AttributeNames=["All"])["Messages"]
    assert json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"] == "vanished.json"
    # Received by the run, then again here after the 1 s visibility timeout. A slow machine may let
    # copy_events receive it once more before the timeout, hence >= 2 rather than == 2.
    assert int(message["Attributes"]["ApproximateReceiveCount"]) >= 2, (
        "redelivered after the visibility timeout"
    )


def test_poison_message_is_quarantined_with_its_reason_and_deleted(clients):
    s3, sqs, queue, _ = clients
    s3.put_object(Bucket=RAW, Key="fine.json", Body=b"{}")
    sqs.send_message(QueueUrl=queue, MessageBody="this is not an S3 event")

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    copied = curated(s3)
    assert copied.pop("fine.json") == b"{}"
    [(key, body)] = copied.items()
    day = dag_run.run_after
    assert key.startswith(f"_quarantine/year={day:%Y}/month={day:%m}/day={day:%d}/")
    quarantined = json.loads(body)
    assert quarantined["body"] == "this is not an S3 event"
    assert quarantined["reason"].startswith("body is not valid JSON")
    assert queue_depth(sqs, queue) == (0, 0)


def test_message_that_keeps_failing_ends_in_the_dead_letter_queue(clients):
    """The redrive policy (maxReceiveCount 5), not our code, moves it: we only never delete it."""
    s3, sqs, queue, dlq = clients
    events.receive_available(sqs, queue, 100)
    sqs.purge_queue(QueueUrl=queue)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("never-there.json"))
    for _ in range(5):  # one delivery per run, as the DAG's sensor receives it
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        assert len(batch) == 1
        summary = events.copy_and_settle(s3, sqs, queue, batch, CURATED, day=None)
        assert summary["kept"] and not summary["deleted"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # the 6th receive redrives it
    [dead] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert "never-there.json" in dead["Body"]


def test_large_object_copies_multipart_byte_for_byte_with_metadata(clients):
    s3, sqs, queue, _ = clients
    body = os.urandom(11 * MiB)
    s3.put_object(
        Bucket=RAW, Key="big/blob.bin", Body=body, ContentType="application/x-blob", Metadata={"k": "v"}
    )
    messages = events.receive_available(sqs, queue, 100)
    summary = events.copy_and_settle(
        s3, sqs, queue, messages, CURATED, day=None, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB
    )
    assert summary["copied"] == 1 and not summary["failed"]
    copied = s3.get_object(Bucket=CURATED, Key="big/blob.bin")
    assert hashlib.sha256(copied["Body"].read()).digest() == hashlib.sha256(body).digest()
    assert (copied["ContentType"], copied["Metadata"]) == ("application/x-blob", {"k": "v"})
    assert copied["ETag"].strip('"').endswith("-3"), "copied with UploadPartCopy"


def test_manual_replay_copies_the_given_keys(clients):
    s3, sqs, queue, _ = clients
    s3.put_object(Bucket=RAW, Key="old/a.json", Body=b"a")
    s3.put_object(Bucket=RAW, Key="old/b c.json", Body=b"bc")
    events.receive_available(sqs, queue, 100)  # these events are consumed elsewhere
    dag_run = run_dag(DAG_ID, replay_keys=["old/a.json", "old/b c.json"])
    assert dag_run.state == "success"
    assert task_states(dag_run)["wait_for_events"] == ["skipped"]
    assert curated(s3) == {"old/a.json": b"a", "old/b c.json": b"bc"}


def test_replay_of_a_missing_key_fails_naming_it(clients, no_retries):
    s3, _, _, _ = clients
    s3.put_object(Bucket=RAW, Key="here.json", Body=b"1")
    dag_run = run_dag(DAG_ID, replay_keys=["here.json", "not-here.json"])
    assert dag_run.state == "failed"
    assert task_states(dag_run)["replay_keys"] == ["failed"]
    assert curated(s3) == {"here.json": b"1"}, "the keys that exist are still copied"
    with pytest.raises(RuntimeError, match=r"1 of 2 replay key\(s\) not copied: not-here.json: 404"):
        events.copy_keys(s3, RAW, ["here.json", "not-here.json"], CURATED)


def test_deferrable_sensor_against_a_moto_server(monkeypatch):
    """The deferrable path uses aiobotocore, which the in-process mock cannot intercept."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

        class AtEndpoint:
            region_name = REGION

            def client(self, name):
                return session.client(name, endpoint_url=endpoint)

        info = provision(AtEndpoint())
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": REGION}}),
        )
        s3, sqs = AtEndpoint().client("s3"), AtEndpoint().client("sqs")
        s3.put_object(Bucket=RAW, Key="deferred/x y.json", Body=b"deferred")

        from airflow.dag_processing.dagbag import DagBag
        from conftest import ROOT

        parsed = DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py")).get_dag(DAG_ID)
        assert parsed.get_task("wait_for_events").deferrable

        dag_run = run_dag(DAG_ID)
        assert dag_run.state == "success"
        assert s3.get_object(Bucket=CURATED, Key="deferred/x y.json")["Body"].read() == b"deferred"
        assert queue_depth(sqs, info["queues"]["raw-events"]) == (0, 0)
    finally:
        server.stop()
