"""Deadline alerts under the real scheduler (`make airflow`, driven through the REST API; issue 20
part 2), on `s3_event_copy`, whose deadline the session's Airflow sets to 2 min
(`conveyor.s3_event_copy_deadline_seconds`): a run that copies its event and succeeds in time
leaves no alert and no deadline; a run that cannot start its tasks (the default pool has no slot,
as when no worker is there) while an event waits on the queue, visible, misses its deadline, and
the scheduler, the triggerer and `conveyor.deadlines.on_missed` publish one `deadline_missed`
alert for it on the notifications topic, read back through the SQS inbox subscribed to it."""

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


def test_a_run_past_its_deadline_while_events_wait_alerts_and_a_run_done_in_time_is_quiet(airflow):
    api, info = airflow.api, airflow.info
    from conveyor_local.stack import ACCESS_KEY

    boto = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY, region_name=info["region"]
    )
    session = SimpleNamespace(client=lambda name: boto.client(name, endpoint_url=info["endpoint_url"]))
    queue, inbox = info["queues"]["raw-events"], info["queues"][NOTIFICATIONS_INBOX]
    before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
    read_messages(session, queue)  # what earlier modules left (SQS allows one purge a minute)
    read_messages(session, inbox)
    alerts: list[dict] = []

    def late_alerts() -> list[dict]:
        envelopes = read_messages(session, inbox)
        alerts.extend(json.loads(e["Message"]) for e in envelopes if "deadline_missed" in e["Message"])
        return [a for a in alerts if a["dag_id"] == DAG_ID and a["run_id"] not in before]

    # No task can start (the default pool has no slot: the "queued, no worker" case), while an
    # event waits on the queue, visible: the run that cannot take it misses its deadline.
    slots = api._send("GET", "/api/v2/pools/default_pool")["slots"]
    api._send("PATCH", "/api/v2/pools/default_pool?update_mask=slots", {"slots": 0})
    raw = airflow.bucket("raw")
    airflow.s3.put_object(Bucket=raw, Key="events/deadline/late.json", Body=b"{}")
    api.unpause(DAG_ID)
    try:
        first = wait_for(
            lambda: next((r for r in api.runs(DAG_ID) if r["dag_run_id"] not in before), None),
            timeout=120,
            what="a run of s3_event_copy",
        )
        [alert] = wait_for(late_alerts, timeout=EVENT_COPY_DEADLINE_S + 180, what="the deadline alert")
        api._send("PATCH", "/api/v2/pools/default_pool?update_mask=slots", {"slots": slots})
        # Its tasks start now: it copies the event, late.
        [first] = api.wait_for_runs(DAG_ID, lambda r: r["dag_run_id"] == first["dag_run_id"], timeout=300)
        assert first["state"] == "success", airflow.failure_detail(DAG_ID, first)
        # The next run (continuous) copies the next event and succeeds, within its deadline.
        airflow.s3.put_object(Bucket=raw, Key="events/deadline/in-time.json", Body=b"{}")
        ours = before | {first["dag_run_id"]}
        [second] = api.wait_for_runs(DAG_ID, lambda r: r["dag_run_id"] not in ours, timeout=300)
        assert second["state"] == "success", airflow.failure_detail(DAG_ID, second)
        took = datetime.fromisoformat(second["end_date"]) - datetime.fromisoformat(second["queued_at"])
        assert took.total_seconds() < EVENT_COPY_DEADLINE_S, f"the second run took {took}: not in time"
        assert airflow.keys("curated", "events/deadline/") == [
            "events/deadline/in-time.json",
            "events/deadline/late.json",
        ]
    finally:
        api._send("PATCH", "/api/v2/pools/default_pool?update_mask=slots", {"slots": slots})
        api.pause(DAG_ID)
        for run in api.runs(DAG_ID):
            if run["dag_run_id"] not in before and run["state"] not in FINISHED:
                stop_waiting(api, run["dag_run_id"])
        api.settle(DAG_ID)

    assert alert["run_id"] == first["dag_run_id"], "the run that could not take the event is late"
    assert alert["status"] == "deadline_missed" and alert["task_id"] is None
    assert alert["run_type"] == first["run_type"]
    assert "still running" in alert["error"] or "still queued" in alert["error"], alert["error"]
    assert f"within {EVENT_COPY_DEADLINE_S // 60} min of being queued" in alert["error"]
    assert alert["error"].endswith("1 message(s) on the queue")
    assert alert["log_url"].endswith(f"/dags/{DAG_ID}/runs/{quote(first['dag_run_id'])}")
    # As Airflow recorded it: the late run's deadline is marked missed; the run done in time has
    # none left (deleted on its success).
    [missed] = api.deadlines(DAG_ID, first["dag_run_id"])
    assert missed["missed"] is True
    assert api.deadlines(DAG_ID, second["dag_run_id"]) == []
    assert [a["run_id"] for a in late_alerts()] == [first["dag_run_id"]], "one alert, once"
