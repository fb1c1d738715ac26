"""Deadline alerts under the real scheduler (`make airflow`, driven through the REST API; issue 20
part 2), on `s3_event_copy`, whose deadline the session's Airflow sets to 2 min
(`conveyor.s3_event_copy_deadline_seconds`): a run that copies its event and succeeds in time
leaves no alert and no deadline; the next run, waiting while a message sits on the queue (one the
test holds: in flight, not receivable), misses its deadline, and the scheduler, the
triggerer and `conveyor.deadlines.on_missed` publish one `deadline_missed` alert for it on the
notifications topic, read back through the SQS inbox subscribed to it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import quote

import boto3
import pytest
from conftest import EVENT_COPY_DEADLINE_S, read_messages

from conveyor_local.airflow_api import FINISHED
from conveyor_local.provision import NOTIFICATIONS_INBOX

pytestmark = pytest.mark.scheduler

DAG_ID = "s3_event_copy"


def wait_for(condition, timeout: float, what: str, poll: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(poll)


def stop_waiting(api, run_id: str) -> None:
    """Mark a run waiting on the queue success, and wait until its sensor's process is killed (the
    worker's next heartbeat learns the state): a sensor left long-polling would take, and hide for
    the visibility timeout, an event the next test module puts."""
    tasks = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
    api.set_run_state(DAG_ID, run_id, "success")
    if tasks.get("wait_for_events") != "running":
        return
    wait_for(
        lambda: "Task killed" in api.task_log(DAG_ID, run_id, "wait_for_events"),
        timeout=120,
        what=f"{run_id}'s wait_for_events killed",
    )


def test_a_run_done_in_time_is_quiet_and_a_run_past_its_deadline_while_messages_wait_alerts(airflow):
    api, info = airflow.api, airflow.info
    from conveyor_local.stack import ACCESS_KEY

    boto = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY, region_name=info["region"]
    )
    session = SimpleNamespace(client=lambda name: boto.client(name, endpoint_url=info["endpoint_url"]))
    sqs = session.client("sqs")
    queue, inbox = info["queues"]["raw-events"], info["queues"][NOTIFICATIONS_INBOX]
    before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
    read_messages(session, queue)  # what earlier modules left (SQS allows one purge a minute)
    read_messages(session, inbox)

    # A message this test receives and holds (hidden for the visibility timeout): the queue is
    # not empty, and no run can take it.
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"waiting": True}))
    [held] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=5)["Messages"]
    airflow.s3.put_object(Bucket=airflow.bucket("raw"), Key="events/deadline/in-time.json", Body=b"{}")
    alerts: list[dict] = []

    def late_alerts() -> list[dict]:
        envelopes = read_messages(session, inbox)
        alerts.extend(json.loads(e["Message"]) for e in envelopes if "deadline_missed" in e["Message"])
        return [a for a in alerts if a["dag_id"] == DAG_ID and a["run_id"] not in before]

    api.unpause(DAG_ID)
    try:
        # The first run copies the event and succeeds, within its deadline.
        [first] = api.wait_for_runs(DAG_ID, lambda r: r["dag_run_id"] not in before, timeout=300)
        assert first["state"] == "success", airflow.failure_detail(DAG_ID, first)
        took = datetime.fromisoformat(first["end_date"]) - datetime.fromisoformat(first["queued_at"])
        assert took.total_seconds() < EVENT_COPY_DEADLINE_S, f"the first run took {took}: not in time"
        assert airflow.keys("curated", "events/deadline/") == ["events/deadline/in-time.json"]
        # The next run (continuous) waits on the queue past its deadline.
        ours = before | {first["dag_run_id"]}
        second = wait_for(
            lambda: next((r for r in api.runs(DAG_ID) if r["dag_run_id"] not in ours), None),
            timeout=120,
            what="the next continuous run",
        )
        [alert] = wait_for(late_alerts, timeout=EVENT_COPY_DEADLINE_S + 180, what="the deadline alert")
    finally:
        api.pause(DAG_ID)
        for run in api.runs(DAG_ID):
            if run["dag_run_id"] not in before and run["state"] not in FINISHED:
                stop_waiting(api, run["dag_run_id"])
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=held["ReceiptHandle"])
        api.settle(DAG_ID)

    assert alert["run_id"] == second["dag_run_id"], "the waiting run is late, the one done in time is not"
    assert alert["status"] == "deadline_missed" and alert["task_id"] is None
    assert alert["run_type"] == second["run_type"]
    assert "still running" in alert["error"]
    assert f"within {EVENT_COPY_DEADLINE_S // 60} min of being queued" in alert["error"]
    assert alert["error"].endswith("1 message(s) on the queue")
    assert alert["log_url"].endswith(f"/dags/{DAG_ID}/runs/{quote(second['dag_run_id'])}")
    # As Airflow recorded it: the run done in time has no deadline left (deleted on its success,
    # long before the later one passed); the late run's is marked missed.
    assert api.deadlines(DAG_ID, first["dag_run_id"]) == []
    [missed] = api.deadlines(DAG_ID, second["dag_run_id"])
    assert missed["missed"] is True
    assert [a["run_id"] for a in late_alerts()] == [second["dag_run_id"]], "one alert, once"
