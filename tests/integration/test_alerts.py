"""Every DAG alerts on the notifications topic when a task fails for good: one task per DAG is
made to fail through Airflow (dag.test(), no retries) and the alert is read back through the
SQS queue subscribed to the topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from conftest import read_messages, run_dag, task_states

from conveyor_local.provision import NOTIFICATIONS_INBOX

pytestmark = pytest.mark.integration


def alerts(aws) -> list[tuple[str, dict]]:
    envelopes = read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])
    return [
        (e["Subject"], json.loads(e["Message"]))
        for e in envelopes
        if e["MessageAttributes"].get("status", {}).get("Value") == "failed" and "task_id" in e["Message"]
    ]


def break_nightly(aws, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NIGHTLY_FILE_INGESTION_CONFIG", "conveyor-local-source/cfg.json")


def break_event_copy(aws, monkeypatch):
    sqs = aws["session"].client("sqs")
    sqs.delete_queue(QueueUrl=aws["queues"]["raw-events"])


def break_generator(aws, monkeypatch):
    aws["session"].client("s3").delete_bucket(Bucket=aws["buckets"]["inbound"])


def break_inbound(aws, monkeypatch):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=aws["buckets"]["inbound"], Key="user/u.csv", Body=b"u")
    s3.delete_bucket(Bucket=aws["buckets"]["archive"])


def break_totesys(aws, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOTESYS_DB",
        json.dumps(
            {"conn_type": "postgres", "host": "/nonexistent", "port": 5999, "login": "x", "schema": "t"}
        ),
    )


INTERVAL_END = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)
CASES = {
    # dag_id: (how to break it, the task that fails, what its error says, an interval DAG?)
    "nightly_file_ingestion": (break_nightly, "load_datasets", "must hold s3://bucket/key", True),
    "s3_event_copy": (break_event_copy, "raw_events_queue_url", "NonExistentQueue", False),
    "retail_data_generator": (break_generator, "write_inbound_files", "NoSuchBucket", False),
    "inbound_to_stage": (break_inbound, "stage_and_archive", "kept in inbound", True),
    "totesys_etl": (break_totesys, "tables_to_extract", "cannot connect to 'totesys_db'", True),
}


@pytest.mark.parametrize("dag_id", sorted(CASES))
def test_a_failing_task_publishes_an_alert_with_what_where_and_why(aws, no_retries, monkeypatch, dag_id):
    breaks, task_id, error, has_interval = CASES[dag_id]
    alerts(aws)  # start from an empty inbox
    breaks(aws, monkeypatch)
    dag_run = run_dag(dag_id, INTERVAL_END)
    assert dag_run.state == "failed"
    assert task_states(dag_run)[task_id] == ["failed"]

    found = alerts(aws)
    assert [alert["task_id"] for _, alert in found] == [task_id], "one alert, for the task that failed"
    subject, alert = found[0]
    assert subject.startswith(f"[conveyor] FAILED {dag_id}.{task_id} ")
    assert alert["dag_id"] == dag_id and alert["run_id"] == dag_run.run_id
    assert alert["run_type"] == "manual", "the enum's value, as the UI shows it"
    [ti] = [t for t in dag_run.get_task_instances() if t.task_id == task_id]
    assert (alert["try_number"], alert["max_tries"]) == (ti.try_number, ti.max_tries) == (1, ti.max_tries)
    assert error in alert["error"]
    assert alert["log_url"].endswith(
        f"/dags/{dag_id}/runs/{quote(dag_run.run_id)}/tasks/{task_id}?try_number=1"
    )
    if has_interval:
        assert alert["data_interval"] == [
            dag_run.data_interval_start.isoformat(),
            dag_run.data_interval_end.isoformat(),
        ]
