"""s3_event_copy on moto: the real S3 -> SNS -> SQS chain through Airflow, settle-after-copy,
duplicates, exact versions (vanished, superseded), a persistent per-object error reaching the
dead-letter queue named once, poison messages; a backlog of large objects draining without
burning receives; the visibility promise (hold, bounded batches, deadlines, failed deletes) with
short visibility timeouts; and the wait for events in deferrable mode (errors, timeouts, quiet
periods, receive counts) against a moto server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import traceback
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote_plus

import pytest
from conftest import REGION, ROOT, read_messages, run_dag, task_states

from conveyor import sqs as sqs_helpers
from conveyor.events import copier
from conveyor.s3 import MiB

GiB = 1024 * MiB

pytestmark = pytest.mark.integration

DAG_ID = "s3_event_copy"
RAW, CURATED = "conveyor-local-raw", "conveyor-local-curated"
SOURCE = "conveyor-local-source"  # notifies no one: events for its objects are sent by hand


def queue_depth(sqs, url) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def wait_until_visible(sqs, url, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while queue_depth(sqs, url)[0] < count:
        assert time.monotonic() < deadline, f"fewer than {count} visible message(s) after {timeout:.0f}s"
        time.sleep(0.2)


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


def event_body(*keys: str, bucket: str = RAW, size: int = 1, version_id: str | None = None) -> str:
    """A raw (not SNS-wrapped) S3 event, as a bucket sends straight to SQS. With `version_id`, it
    names the version as AWS does for a versioned bucket (moto's own events leave it out)."""
    version = {"versionId": version_id} if version_id else {}
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": bucket},
                        "object": {"key": key.replace(" ", "+"), "size": size, **version},
                    },
                }
                for key in keys
            ]
        }
    )


def quarantined(s3, prefix: str = "_quarantine/") -> list[dict]:
    listed = s3.list_objects_v2(Bucket=CURATED, Prefix=prefix).get("Contents", [])
    return [json.loads(s3.get_object(Bucket=CURATED, Key=o["Key"])["Body"].read()) for o in listed]


def deliverable(queue_url: str) -> int:
    """Messages moto will still deliver. It counts those received maxReceiveCount times as visible
    until a receive moves them to the DLQ, so ApproximateNumberOfMessages cannot tell whether one
    more run would find anything (its wait would block for the sensor's 50 minutes)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[queue_url.rsplit("/", 1)[1]]
    limit = queue.redrive_policy["maxReceiveCount"]
    return sum(m.approximate_receive_count < limit for m in queue._messages)


def empty_queue(sqs, queue) -> None:
    """Drop what moto's setup sent (s3:TestEvent). PurgeQueue is allowed once a minute: delete instead."""
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


# --- through Airflow ----------------------------------------------------------------------------


def test_objects_put_into_raw_events_reach_curated_byte_identical_and_the_queue_empties(clients):
    s3, sqs, queue, _ = clients
    bodies = {
        "events/a b.json": b'{"x": 1}',
        "events/ünï/côdé+plus.json": '{"é": "ü"}'.encode(),
        "events/nested/deep/er/file.csv": b"a,b\n1,2\n",
    }
    for key, body in bodies.items():  # moto sends these through SNS to the queue, like AWS
        s3.put_object(
            Bucket=RAW, Key=key, Body=body, ContentType="application/json", Metadata={"origin": "t"}
        )

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    assert task_states(dag_run)["replay_keys"] == ["skipped"]
    assert curated(s3) == bodies
    head = s3.head_object(Bucket=CURATED, Key="events/a b.json")
    assert (head["ContentType"], head["Metadata"]) == ("application/json", {"origin": "t"})
    assert queue_depth(sqs, queue) == (0, 0)

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        [event] = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        # The keys copied, each once: what curated_to_snowflake loads by name (FILES).
        assert {**event.extra, "keys": sorted(event.extra["keys"])} == {
            "objects": 3,
            "bytes": sum(map(len, bodies.values())),
            "keys": sorted(bodies),
        }


def test_raw_events_several_records_and_duplicate_deliveries(clients):
    s3, sqs, queue, _ = clients
    for key in ("one.txt", "two words.txt", "three.txt"):
        s3.put_object(Bucket="conveyor-local-source", Key=key, Body=key.encode())
    empty_queue(sqs, queue)
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


def test_an_event_whose_version_vanished_is_recorded_and_the_run_succeeds_for_the_rest(clients, no_retries):
    """Issue 16 item 6. One event's object was deleted for good before the copy (moto's own event,
    which names no version); another names, as AWS does, a version deleted for good while its key
    lives on. Both are recorded in curated's _quarantine/ and their messages deleted; the good
    objects beside them are copied and the run succeeds."""
    s3, sqs, queue, dlq = clients
    s3.put_object(Bucket=RAW, Key="events/good-1.json", Body=b"1")
    s3.put_object(Bucket=RAW, Key="events/good-2.json", Body=b"2")
    gone = s3.put_object(Bucket=RAW, Key="events/gone.json", Body=b"gone")
    s3.delete_object(Bucket=RAW, Key="events/gone.json", VersionId=gone["VersionId"])
    first = s3.put_object(Bucket=RAW, Key="events/rewritten.json", Body=b"v1")
    s3.put_object(Bucket=RAW, Key="events/rewritten.json", Body=b"v2")
    s3.delete_object(Bucket=RAW, Key="events/rewritten.json", VersionId=first["VersionId"])
    sqs.send_message(
        QueueUrl=queue, MessageBody=event_body("events/rewritten.json", version_id=first["VersionId"])
    )

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success", task_states(dag_run)
    copied = {k: v for k, v in curated(s3).items() if k.startswith("events/")}
    assert copied == {"events/good-1.json": b"1", "events/good-2.json": b"2", "events/rewritten.json": b"v2"}
    records = sorted(quarantined(s3), key=lambda r: r["objects"][0]["key"])
    assert [r["reason"] for r in records] == [copier.VANISHED_REASON] * 2
    [[gone_record], [rewritten_record]] = [r["objects"] for r in records]
    assert (gone_record["bucket"], gone_record["key"], gone_record["version_id"]) == (
        RAW,
        "events/gone.json",
        None,  # moto's events name no version
    )
    assert (rewritten_record["bucket"], rewritten_record["key"], rewritten_record["version_id"]) == (
        RAW,
        "events/rewritten.json",
        first["VersionId"],
    )
    assert "404" in gone_record["error"] and "404" in rewritten_record["error"]
    assert "events/rewritten.json" in records[1]["body"], "the event itself is kept to send it again"
    day = dag_run.run_after
    prefix = f"_quarantine/year={day:%Y}/month={day:%m}/day={day:%d}/"
    assert all(k.startswith(prefix) for k in curated(s3) if not k.startswith("events/"))
    assert queue_depth(sqs, queue) == (0, 0) and queue_depth(sqs, dlq) == (0, 0)


def test_the_exact_version_an_event_names_is_copied_even_after_its_key_was_deleted(clients):
    """The raw bucket is versioned: an object deleted after its event (a delete marker) is still
    there as the version the event names, and that version is what reaches curated."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    first = s3.put_object(Bucket=SOURCE, Key="v/kept.json", Body=b"as announced")
    s3.delete_object(Bucket=SOURCE, Key="v/kept.json")  # a delete marker on top
    sqs.send_message(
        QueueUrl=queue, MessageBody=event_body("v/kept.json", bucket=SOURCE, version_id=first["VersionId"])
    )
    messages = sqs_helpers.receive_available(sqs, queue, 10)
    summary = copier.copy_and_settle(s3, sqs, queue, messages, CURATED, date(2024, 3, 5), hold_seconds=60)
    assert (summary["copied"], summary["deleted"], summary["failed"]) == (1, 1, [])
    assert curated(s3) == {"v/kept.json": b"as announced"}
    assert queue_depth(sqs, queue) == (0, 0)


def test_a_late_event_for_an_overwritten_version_never_rolls_curated_back(clients):
    """v2 was copied; then v1's event arrives (late, or redriven from the DLQ). Copying exactly v1
    would put the older content back: it is superseded, not copied, and its message deleted."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    v1 = s3.put_object(Bucket=SOURCE, Key="v/order.json", Body=b"v1")
    v2 = s3.put_object(Bucket=SOURCE, Key="v/order.json", Body=b"v2")
    day = date(2024, 3, 5)
    for version in (v2, v1):  # in this order, in one wave and then in runs of their own
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=event_body("v/order.json", bucket=SOURCE, version_id=version["VersionId"]),
        )
    both = copier.copy_and_settle(s3, sqs, queue, [], CURATED, day, hold_seconds=60)
    assert (both["messages"], both["copied"], both["deleted"]) == (2, 1, 2)
    assert curated(s3) == {"v/order.json": b"v2"}
    sqs.send_message(
        QueueUrl=queue, MessageBody=event_body("v/order.json", bucket=SOURCE, version_id=v1["VersionId"])
    )
    late = copier.copy_and_settle(s3, sqs, queue, [], CURATED, day, hold_seconds=60)
    assert (late["copied"], late["deleted"]) == (0, 1)
    assert late["superseded"] == [
        {
            "bucket": SOURCE,
            "key": "v/order.json",
            "version_id": v1["VersionId"],
            "reason": f"version {v2['VersionId']} was written since",
        }
    ]
    assert curated(s3) == {"v/order.json": b"v2"}
    assert queue_depth(sqs, queue) == (0, 0)


def test_a_persistent_error_on_one_object_reaches_the_dlq_named_once_while_the_rest_flows(
    aws, clients, no_retries, monkeypatch
):
    """Issue 16 item 6. An object S3 refuses to copy (archived to Glacier: a real, persistent
    per-object error in moto, as AccessDenied on one key is in AWS) fails no run: every run
    succeeds and copies the good objects put beside it; the bad message comes back once per run,
    one alert names its key and error on its 5th (last) receive, and the redrive policy moves it
    to the dead-letter queue. (Before: every run failed, and three failures paused the DAG.)"""
    s3, sqs, queue, dlq = clients
    inbox = aws["queues"]["notifications-inbox"]
    # The run holds its messages for the queue's visibility timeout: 5 s here (longer than a
    # run's copy_events), so the kept message comes back once per run within the test.
    monkeypatch.setattr("conveyor.resources.QUEUE_VISIBILITY_TIMEOUT_S", 5)
    s3.put_object(Bucket=RAW, Key="events/archived.json", Body=b"cold", StorageClass="GLACIER")
    read_messages(aws["session"], inbox)
    runs, good = [], {}
    for attempt in range(1, 6):
        if attempt > 1:
            wait_until_visible(sqs, queue, 1)  # the kept message is back after the hold
        good[f"events/good-{attempt}.json"] = str(attempt).encode()
        s3.put_object(Bucket=RAW, Key=f"events/good-{attempt}.json", Body=good[f"events/good-{attempt}.json"])
        runs.append(run_dag(DAG_ID))
        assert runs[-1].state == "success", task_states(runs[-1])
        assert {k: v for k, v in curated(s3).items() if k.startswith("events/good")} == good
        summary = runs[-1].get_task_instance("copy_events").xcom_pull(task_ids="copy_events")
        [failure] = summary["failed"]
        assert failure["key"] == "events/archived.json" and "ObjectNotInActiveTier" in failure["error"]
        assert len(summary["dead_letters"]) == (1 if attempt == 5 else 0)
    assert "events/archived.json" not in curated(s3)

    alerts = read_messages(aws["session"], inbox)
    assert [json.loads(a["Message"])["status"] for a in alerts] == ["dead-letter"], (
        "named once, no failure alert"
    )
    alert = json.loads(alerts[0]["Message"])
    assert alerts[0]["Subject"].startswith("[conveyor] s3_event_copy dead-letter for ")
    assert alert["dead_letter_queue"] == "conveyor-local-raw-events-dlq"
    [event] = alert["events"]
    assert event["receive_count"] == 5
    [named] = event["objects"]
    assert named["key"] == "events/archived.json" and "ObjectNotInActiveTier" in named["error"]

    wait_until_visible(sqs, queue, 1)  # the next receive moves it to the DLQ (the redrive policy)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    [dead] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert "events%2Farchived.json" in dead["Body"]  # the event as S3 sent it (key URL-encoded)


def test_access_denied_on_one_key_keeps_only_its_message_and_fails_nothing(aws, clients):
    """AccessDenied on one key, from moto's IAM simulation (a policy that denies reading one
    prefix): that message stays for the redrive policy, the other is copied and deleted, and
    nothing says the run should fail."""
    import boto3
    from moto.core.authorization import enable_iam_authentication

    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    s3.put_object(Bucket=SOURCE, Key="secret/denied.json", Body=b"d")
    s3.put_object(Bucket=SOURCE, Key="open/fine.json", Body=b"f")
    for key in ("secret/denied.json", "open/fine.json"):
        sqs.send_message(QueueUrl=queue, MessageBody=event_body(key, bucket=SOURCE))
    iam = aws["session"].client("iam")
    iam.create_user(UserName="copier")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{SOURCE}/secret/*"},
        ],
    }
    iam.put_user_policy(UserName="copier", PolicyName="copier", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="copier")["AccessKey"]
    as_copier = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )
    with enable_iam_authentication():
        summary = copier.copy_and_settle(
            as_copier.client("s3"), as_copier.client("sqs"), queue, [], CURATED, None, hold_seconds=60
        )
    assert curated(s3) == {"open/fine.json": b"f"}
    [failed] = summary["failed"]
    assert failed["key"] == "secret/denied.json" and "AccessDenied" in failed["error"]
    assert (summary["copied"], summary["deleted"], len(summary["kept"])) == (1, 1, 1)
    assert copier.problems(summary) == []
    assert queue_depth(sqs, queue) == (0, 1), "the denied message waits, hidden, for its next receive"


def test_a_backlog_of_ten_budgets_of_large_objects_drains_with_nothing_in_the_dead_letter_queue(
    clients, no_retries, record_property
):
    """Issue 16 item 7. 40 events of 5 GiB each wait: 10 times a run's 20 GiB budget. The DAG runs
    again and again, as @continuous would, until the queue has nothing left to deliver. Every
    event reaches curated and none reaches the DLQ (maxReceiveCount 5, as provisioned). (Before:
    each run took 4 and released the other 36, each release costing a receive: 20 in the DLQ.)

    The events state the sizes (the budget counts what events state); the objects themselves are
    one byte, so moto copies them at once."""
    s3, sqs, queue, dlq = clients
    empty_queue(sqs, queue)
    keys = [f"backlog/{i:02d}.bin" for i in range(40)]
    for key in keys:
        s3.put_object(Bucket=SOURCE, Key=key, Body=b"x")
        sqs.send_message(QueueUrl=queue, MessageBody=event_body(key, bucket=SOURCE, size=5 * GiB))
    runs = 0
    while deliverable(queue) and runs < 40:
        dag_run = run_dag(DAG_ID)
        runs += 1
        assert dag_run.state == "success", task_states(dag_run)
    # moto moves a message to the DLQ at the receive after its last one: make that receive.
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []) == []
    dead = sum(queue_depth(sqs, dlq))
    record_property("backlog_runs", runs)
    record_property("backlog_dead_letters", dead)
    print(f"backlog of 40 x 5 GiB (10 budgets): {runs} runs, {dead} message(s) in the DLQ")
    assert dead == 0
    assert sorted(curated(s3)) == keys
    assert queue_depth(sqs, queue) == (0, 0)
    assert runs == 10, "each run takes exactly its budget: 4 x 5 GiB"


def test_poison_message_is_quarantined_outside_events_and_notifies_no_one(aws, clients):
    """The quarantine is in curated but outside events/: nothing reaches Snowpipe's topic."""
    s3, sqs, queue, _ = clients
    session = aws["session"]
    probe = sqs.create_queue(QueueName="probe-curated-events")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    session.client("sns").subscribe(
        TopicArn=aws["topics"]["curated-events"], Protocol="sqs", Endpoint=probe_arn
    )
    empty_queue(sqs, probe)
    s3.put_object(Bucket=RAW, Key="events/fine.json", Body=b"{}")
    sqs.send_message(QueueUrl=queue, MessageBody="this is not an S3 event")

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    copied = curated(s3)
    assert copied.pop("events/fine.json") == b"{}"
    [(key, body)] = copied.items()
    day = dag_run.run_after
    assert key.startswith(f"_quarantine/year={day:%Y}/month={day:%m}/day={day:%d}/")
    quarantined = json.loads(body)
    assert quarantined["body"] == "this is not an S3 event"
    assert quarantined["reason"].startswith("body is not valid JSON")
    assert queue_depth(sqs, queue) == (0, 0)
    notified = [
        json.loads(json.loads(m["Body"])["Message"])
        for m in sqs.receive_message(QueueUrl=probe, MaxNumberOfMessages=10).get("Messages", [])
    ]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for n in notified for r in n.get("Records", [])]
    assert keys == ["events/fine.json"], "the quarantined message produced no event downstream"


def test_manual_replay_copies_the_given_keys(clients):
    s3, sqs, queue, _ = clients
    s3.put_object(Bucket=RAW, Key="events/old/a.json", Body=b"a")
    s3.put_object(Bucket=RAW, Key="events/old/b c.json", Body=b"bc")
    empty_queue(sqs, queue)  # these events are consumed elsewhere
    dag_run = run_dag(DAG_ID, replay_keys=["events/old/a.json", "events/old/b c.json"])
    assert dag_run.state == "success"
    assert task_states(dag_run)["wait_for_events"] == ["skipped"]
    assert curated(s3) == {"events/old/a.json": b"a", "events/old/b c.json": b"bc"}

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:  # the replayed keys, for curated_to_snowflake to load by name
        [event] = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        assert event.extra == {"objects": 2, "bytes": 3, "keys": ["events/old/a.json", "events/old/b c.json"]}


def test_replay_of_a_missing_key_or_one_outside_events_fails_naming_it(clients, no_retries):
    s3, _, _, _ = clients
    s3.put_object(Bucket=RAW, Key="events/here.json", Body=b"1")
    s3.put_object(Bucket=RAW, Key="landing/x.json", Body=b"2")
    dag_run = run_dag(DAG_ID, replay_keys=["events/here.json", "events/not-here.json", "landing/x.json"])
    assert dag_run.state == "failed"
    assert task_states(dag_run)["replay_keys"] == ["failed"]
    assert curated(s3) == {"events/here.json": b"1"}, "the keys that exist are still copied"
    with pytest.raises(RuntimeError) as raised:
        copier.copy_keys(s3, RAW, ["events/not-here.json", "landing/x.json"], CURATED, prefix="events/")
    assert (
        "2 of 2 replay key(s) not copied: events/not-here.json: 404; landing/x.json: not under events/"
        in str(raised.value)
    )


def test_a_persistent_error_fails_every_run_and_the_third_failure_pauses_the_dag(clients, no_retries):
    """@continuous starts run after failing run; max_consecutive_failed_dag_runs stops the loop.

    The runs go through dag.test(); the pause is the check the scheduler makes when a run fails
    (dag.test() makes it before the failing run's state reaches the database, so it is called
    here as the scheduler calls it, once the three failures are recorded)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:  # earlier tests' runs would count too; unpause as a user does
        session.query(DagRun).filter(DagRun.dag_id == DAG_ID).delete()
    _, sqs, queue, _ = clients
    sqs.delete_queue(QueueUrl=queue)  # every run now fails: the queue is gone
    runs = []
    for attempt in range(3):
        # Distinct logical dates: dag.test() replaces a run with the same one (None included).
        runs.append(run_dag(DAG_ID, datetime(2024, 3, 5, tzinfo=UTC) + timedelta(minutes=attempt)))
    assert [r.state for r in runs] == ["failed"] * 3, "an error fails the run; it is never skipped"
    assert task_states(runs[-1])["raw_events_queue_url"] == ["failed"]

    from airflow.dag_processing.dagbag import DagBag

    limit = (
        DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py")).get_dag(DAG_ID).max_consecutive_failed_dag_runs
    )
    assert limit == 3
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == DAG_ID).update({"is_paused": False})
        last = session.query(DagRun).filter(DagRun.run_id == runs[-1].run_id).one()
        last._check_last_n_dagruns_failed(DAG_ID, limit, session)
    with create_session() as session:
        assert session.get(DagModel, DAG_ID).is_paused, "three failed runs in a row pause the DAG"


# --- the copier: batches, visibility, deadline, deletes (short visibility timeouts) ------------


def test_message_that_keeps_failing_ends_in_the_dead_letter_queue(clients):
    """The redrive policy (maxReceiveCount 5), not our code, moves it: we only never delete it, and
    name it on its last receive. No run fails for it (no problems)."""
    s3, sqs, queue, dlq = clients
    empty_queue(sqs, queue)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    s3.put_object(Bucket=SOURCE, Key="cold.json", Body=b"c", StorageClass="GLACIER")
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("cold.json", bucket=SOURCE))
    for receive in range(1, 6):  # one delivery per run, as the DAG's sensor receives it
        batch = sqs_helpers.receive(sqs, queue, 10)
        assert len(batch) == 1 and batch[0]["Attributes"]["ApproximateReceiveCount"] == str(receive)
        summary = copier.copy_and_settle(
            s3, sqs, queue, batch, CURATED, None, budget=copier.Budget(messages=1), hold_seconds=0
        )
        assert summary["kept"] and not summary["deleted"] and copier.problems(summary) == []
        assert [d["receive_count"] for d in summary["dead_letters"]] == ([5] if receive == 5 else [])
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # the 6th receive redrives it
    [dead] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert "cold.json" in dead["Body"]


def test_without_a_redrive_policy_a_failed_copy_fails_the_run(clients):
    """No dead-letter queue to go to: the message would come back until it expires, so the run
    fails and says so (a systemic error: the queue is not set up as Terraform sets it up)."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": ""})
    s3.put_object(Bucket=SOURCE, Key="cold.json", Body=b"c", StorageClass="GLACIER")
    s3.put_object(Bucket=SOURCE, Key="fine.json", Body=b"f")
    sqs.send_message(QueueUrl=queue, MessageBody=event_body("cold.json", "fine.json", bucket=SOURCE))
    summary = copier.copy_and_settle(s3, sqs, queue, [], CURATED, None, hold_seconds=60)
    assert curated(s3) == {"fine.json": b"f"}
    [problem] = copier.problems(summary)
    assert problem.startswith("1 object(s) failed to copy and the queue has no redrive policy")
    assert "cold.json: ObjectNotInActiveTierError" in problem


def _slow_copies(s3, seconds: float) -> None:
    s3.meta.events.register("before-parameter-build.s3.CopyObject", lambda **_: time.sleep(seconds))


def test_the_batch_is_hidden_for_the_whole_copy_even_past_the_queue_visibility_timeout(clients):
    """Visibility timeout 2 s, a copy of 4 s: without the hold a second consumer would receive
    the message mid-copy and copy it again."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "2"})
    s3.put_object(Bucket=RAW, Key="events/slow.json", Body=b"slow")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    _slow_copies(s3, 4)
    seen_elsewhere = []

    def second_consumer():
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            seen_elsewhere.extend(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []))

    other = threading.Thread(target=second_consumer)
    other.start()
    summary = copier.copy_and_settle(s3, sqs, queue, messages, CURATED, day=None, hold_seconds=30)
    other.join()
    assert summary["copied"] == 1 and summary["deleted"] == 1
    assert seen_elsewhere == [], "the message reappeared while its copy was running"
    assert queue_depth(sqs, queue) == (0, 0)


def test_a_run_receives_only_what_its_budget_takes_and_releases_nothing(clients):
    """Bounded by messages and by the bytes the events state: the rest is never received, so it
    has used none of its receives when the next run takes it."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    for i in range(6):  # events sent by hand, stating 4 MiB each
        s3.put_object(Bucket=SOURCE, Key=f"b/{i}.bin", Body=b"x")
        sqs.send_message(QueueUrl=queue, MessageBody=event_body(f"b/{i}.bin", bucket=SOURCE, size=4 * MiB))

    by_count = copier.copy_and_settle(
        s3, sqs, queue, [], CURATED, None, budget=copier.Budget(messages=2), hold_seconds=60
    )
    assert (by_count["messages"], by_count["copied"], by_count["deleted"], by_count["released"]) == (
        2,
        2,
        2,
        0,
    )
    by_bytes = copier.copy_and_settle(
        s3, sqs, queue, [], CURATED, None, budget=copier.Budget(bytes=9 * MiB), hold_seconds=60
    )
    assert (by_bytes["messages"], by_bytes["deleted"], by_bytes["released"]) == (2, 2, 0), "4 MiB each, 9 MiB"
    rest = sqs_helpers.receive(sqs, queue, 10)
    assert len(rest) == 2
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in rest] == ["1", "1"], "never received before"


def _eight_events_waiting(s3, sqs, queue) -> None:
    """An empty queue, then eight small objects in the source bucket and their events on it."""
    empty_queue(sqs, queue)
    for i in range(8):
        s3.put_object(Bucket=SOURCE, Key=f"t/{i}.json", Body=b"x")
        sqs.send_message(QueueUrl=queue, MessageBody=event_body(f"t/{i}.json", bucket=SOURCE))


def test_receiving_stops_at_the_time_budget_and_what_was_received_is_copied(clients):
    """The time budget stops the receiving, not the copying: the wave in hand is copied in full
    (past the budget), and what waits on the queue is left unreceived for the next run."""
    s3, sqs, queue, _ = clients
    _eight_events_waiting(s3, sqs, queue)
    messages = sqs_helpers.receive(sqs, queue, 3)
    _slow_copies(s3, 0.3)
    summary = copier.copy_and_settle(
        s3,
        sqs,
        queue,
        messages,
        CURATED,
        None,
        budget=copier.Budget(seconds=0.5),
        hold_seconds=60,
        max_concurrency=1,
    )
    assert (summary["messages"], summary["copied"], summary["deleted"], summary["released"]) == (3, 3, 3, 0)
    rest = sqs_helpers.receive_available(sqs, queue, 100)
    assert len(rest) == 5 and {m["Attributes"]["ApproximateReceiveCount"] for m in rest} == {"1"}


def test_copies_not_started_by_the_copy_deadline_are_released_for_the_next_run_not_failed(clients):
    """Only a wave that overran the run (copy_seconds, well before execution_timeout) leaves
    received messages untried: released at once, not failed, not waiting out the hold."""
    s3, sqs, queue, _ = clients
    _eight_events_waiting(s3, sqs, queue)
    messages = sqs_helpers.receive_available(sqs, queue, 100)
    _slow_copies(s3, 0.3)
    summary = copier.copy_and_settle(
        s3,
        sqs,
        queue,
        messages,
        CURATED,
        None,
        budget=copier.Budget(seconds=0.5, copy_seconds=0.5),
        hold_seconds=60,
        max_concurrency=1,
    )
    assert 1 <= summary["copied"] < 8
    assert summary["deleted"] == summary["copied"] and summary["released"] == 8 - summary["copied"]
    assert not summary["failed"] and copier.problems(summary) == []
    assert len(sqs_helpers.receive_available(sqs, queue, 100)) == 8 - summary["copied"]


def test_a_message_deleted_elsewhere_after_receipt_is_not_copied(clients):
    """Its receipt handle no longer holds the message: the hold fails and the run leaves it alone."""
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    s3.put_object(Bucket=RAW, Key="events/gone.json", Body=b"g")
    s3.put_object(Bucket=RAW, Key="events/kept.json", Body=b"k")
    messages = sqs_helpers.receive_available(sqs, queue, 10)
    assert len(messages) == 2
    gone = next(m for m in messages if "gone.json" in m["Body"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=gone["ReceiptHandle"])
    summary = copier.copy_and_settle(s3, sqs, queue, messages, CURATED, None, hold_seconds=60)
    assert curated(s3) == {"events/kept.json": b"k"}
    assert len(summary["not_held"]) == 1 and gone["MessageId"] in summary["not_held"][0]


def test_a_delete_that_sqs_refuses_is_reported_and_fails_the_task(clients):
    s3, sqs, queue, _ = clients
    empty_queue(sqs, queue)
    s3.put_object(Bucket=RAW, Key="events/d.json", Body=b"d")
    messages = sqs_helpers.receive_available(sqs, queue, 10)

    def stale_handle(params, **_):  # as if the handle had gone stale between receipt and delete
        params["Entries"][0]["ReceiptHandle"] = "stale-" + params["Entries"][0]["ReceiptHandle"][:20]

    sqs.meta.events.register("provide-client-params.sqs.DeleteMessageBatch", stale_handle)
    summary = copier.copy_and_settle(s3, sqs, queue, messages, CURATED, None, hold_seconds=60)
    assert summary["copied"] == 1 and summary["deleted"] == 0
    [failure] = summary["not_deleted"]
    assert messages[0]["MessageId"] in failure and "ReceiptHandleIsInvalid" in failure
    [problem] = copier.problems(summary)
    assert problem.startswith("1 message(s) were processed but SQS did not delete them")


def test_large_object_copies_multipart_byte_for_byte_with_metadata(clients):
    s3, sqs, queue, _ = clients
    body = os.urandom(11 * MiB)
    s3.put_object(
        Bucket=RAW,
        Key="events/big/blob.bin",
        Body=body,
        ContentType="application/x-blob",
        Metadata={"k": "v"},
    )
    messages = sqs_helpers.receive_available(sqs, queue, 100)
    summary = copier.copy_and_settle(
        s3,
        sqs,
        queue,
        messages,
        CURATED,
        None,
        hold_seconds=60,
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    assert summary["copied"] == 1 and not summary["failed"]
    copied = s3.get_object(Bucket=CURATED, Key="events/big/blob.bin")
    assert hashlib.sha256(copied["Body"].read()).digest() == hashlib.sha256(body).digest()
    assert (copied["ContentType"], copied["Metadata"]) == ("application/x-blob", {"k": "v"})
    assert copied["ETag"].strip('"').endswith("-3"), "copied with UploadPartCopy"


# --- the wait in deferrable mode, against a moto server ---------------------------------------


class _TI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def _wait_deferred(sensor, seconds: float):
    """Run a deferrable sensor as Airflow does: execute() defers; the trigger runs (the
    triggerer's job) until its first event or the deferral timeout; the worker then resumes the
    task with the event, or with `__fail__` and the reason the scheduler/triggerer would give."""
    from airflow.models.trigger import TriggerFailureReason
    from airflow.sdk.exceptions import TaskDeferred

    context = {"ti": _TI()}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger

    async def first_event():
        return await anext(trigger.run())

    try:
        event = asyncio.run(asyncio.wait_for(first_event(), seconds))
        method, kwargs = deferred.value.method_name, {"event": event.payload}
    except TimeoutError:
        method, kwargs = "__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    except Exception:
        method, kwargs = (
            "__fail__",
            {"error": TriggerFailureReason.TRIGGER_FAILURE, "traceback": traceback.format_exc()},
        )
    return sensor.resume_execution(method, kwargs, context), context["ti"]


def _sensor(cls=None, **kwargs):
    from conveyor.events.sensor import EventQueueSensor

    cls = cls or EventQueueSensor
    options = {
        "task_id": "wait_for_events",
        "max_messages": 10,
        "num_batches": 1,
        "wait_time_seconds": 1,
        "delete_message_on_reception": False,
        "deferrable": True,
        "poke_interval": 1,
        "timeout": 3,
        **kwargs,
    }
    return cls(**options)


def test_deferred_wait_hands_the_messages_over(moto_server):
    s3 = moto_server["session"].client("s3")
    s3.put_object(Bucket=RAW, Key="events/x.json", Body=b"x")
    queue = moto_server["queues"]["raw-events"]
    _, ti = _wait_deferred(_sensor(sqs_queue=queue), seconds=30)
    records = [
        r
        for m in ti.pushed["messages"]
        for r in json.loads(json.loads(m["Body"])["Message"]).get("Records", [])
    ]
    assert [unquote_plus(r["s3"]["object"]["key"]) for r in records] == ["events/x.json"]
    # Each message says how often it was received: the copy knows its last receive before the DLQ.
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in ti.pushed["messages"]} == {"1"}


def test_poke_mode_wait_hands_the_messages_over_with_their_receive_counts(moto_server):
    s3 = moto_server["session"].client("s3")
    s3.put_object(Bucket=RAW, Key="events/y.json", Body=b"y")
    ti = _TI()
    _sensor(sqs_queue=moto_server["queues"]["raw-events"], deferrable=False, max_messages=10).execute(
        {"ti": ti}
    )
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in ti.pushed["messages"]} == {"1"}


def test_deferred_wait_fails_on_a_trigger_error_where_soft_fail_would_skip(moto_server):
    """A queue that does not exist (as AccessDenied or a KMS key would): the run fails."""
    from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferralError

    missing = moto_server["queues"]["raw-events"].replace("raw-events", "no-such-queue")
    with pytest.raises(TaskDeferralError, match=r"TRIGGER_FAILURE|Trigger failure"):
        _wait_deferred(_sensor(sqs_queue=missing), seconds=30)
    # What the DAG had before: the provider's soft_fail turns the same error into a silent skip.
    with pytest.raises(AirflowSkipException):
        _wait_deferred(_sensor(SqsSensor, sqs_queue=missing, soft_fail=True), seconds=30)


def test_deferred_wait_skips_after_a_quiet_period(moto_server):
    from airflow.sdk.exceptions import AirflowSkipException

    sqs = moto_server["session"].client("sqs")
    queue = moto_server["queues"]["raw-events"]
    empty_queue(sqs, queue)
    with pytest.raises(AirflowSkipException, match="no message on the queue within 3s"):
        _wait_deferred(_sensor(sqs_queue=queue), seconds=3)


def test_poke_mode_wait_skips_after_a_quiet_period_and_fails_on_an_error(moto_server):
    from airflow.sdk.exceptions import AirflowSkipException

    sqs = moto_server["session"].client("sqs")
    queue = moto_server["queues"]["raw-events"]
    empty_queue(sqs, queue)
    with pytest.raises(AirflowSkipException, match="no message on the queue"):
        _sensor(sqs_queue=queue, deferrable=False, timeout=2).execute({"ti": _TI()})
    missing = queue.replace("raw-events", "no-such-queue")
    with pytest.raises(Exception, match=r"NonExistentQueue|does not exist"):
        _sensor(sqs_queue=missing, deferrable=False, timeout=2).execute({"ti": _TI()})


def test_the_dag_runs_deferred_end_to_end_against_a_moto_server(moto_server, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    s3, sqs = moto_server["session"].client("s3"), moto_server["session"].client("sqs")
    s3.put_object(Bucket=RAW, Key="events/deferred/x y.json", Body=b"deferred")
    parsed = DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py")).get_dag(DAG_ID)
    assert parsed.get_task("wait_for_events").deferrable

    dag_run = run_dag(DAG_ID)
    assert dag_run.state == "success"
    assert s3.get_object(Bucket=CURATED, Key="events/deferred/x y.json")["Body"].read() == b"deferred"
    assert queue_depth(sqs, moto_server["queues"]["raw-events"]) == (0, 0)
