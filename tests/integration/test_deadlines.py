"""Deadline alerts (conveyor.deadlines), at the library level: the callback Airflow queues on the
triggerer when a deadline passes, called with the context Airflow builds (the run as the REST API
shows it, the deadline), publishes on the notifications topic (moto, read back through the SQS
inbox subscribed to it) in the failure alert's shape; the deadlines each scheduled DAG declares.
The whole path under the real scheduler: tests/scheduler/test_deadlines_scheduler.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import read_messages

from conveyor import alerts, deadlines
from conveyor_local.provision import NOTIFICATIONS_INBOX

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"
DUE = datetime(2024, 3, 5, 20, 18, tzinfo=UTC)
PROMISE = "a run must be done within 15 min of its data interval's end"


def run_context(
    run_type="scheduled", queued_at="2024-03-05T20:00:04Z", state="running", end_date=None
) -> dict:
    """What Deadline.handle_miss hands the callback: DAGRunResponse in JSON mode, the deadline."""
    run_id = f"{run_type}__2024-03-05T19:57:00+00:00"
    return {
        "dag_run": {
            "dag_run_id": run_id,
            "dag_id": "totesys_etl",
            "logical_date": "2024-03-05T19:57:00Z",
            "queued_at": queued_at,
            "start_date": "2024-03-05T20:00:05Z",
            "end_date": end_date,
            "data_interval_start": "2024-03-05T19:57:00Z",
            "data_interval_end": "2024-03-05T20:00:00Z",
            "run_after": "2024-03-05T20:00:00Z",
            "run_type": run_type,
            "state": state,
            "conf": {},
        },
        "deadline": {"id": "0196a1b2-0000-7000-8000-000000000001", "deadline_time": DUE},
    }


def inbox(aws) -> list[tuple[str, dict, dict]]:
    envelopes = read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])
    return [(e["Subject"], json.loads(e["Message"]), e["MessageAttributes"]) for e in envelopes]


def test_a_missed_deadline_is_published_in_the_failure_alerts_shape(aws):
    inbox(aws)
    message_id = asyncio.run(deadlines.on_missed(promise=PROMISE, context=run_context()))

    [(subject, alert, attributes)] = inbox(aws)
    assert message_id
    assert subject == "[conveyor] LATE totesys_etl scheduled__2024-03-05T19:57:00+00:00"
    assert attributes["status"]["Value"] == "deadline_missed"
    assert attributes["dag_id"]["Value"] == "totesys_etl"
    failure = alerts.failure_message(
        {
            "ti": SimpleNamespace(
                dag_id="d", task_id="t", map_index=-1, run_id="r", try_number=1, max_tries=2, log_url="u"
            ),
            "exception": ValueError("x"),
        }
    )
    assert list(alert) == list(failure), "the same keys, in the same order, as a failure alert"
    assert alert["status"] == "deadline_missed" and alert["task_id"] is None
    assert alert["run_id"] == "scheduled__2024-03-05T19:57:00+00:00" and alert["run_type"] == "scheduled"
    assert alert["data_interval"] == ["2024-03-05T19:57:00Z", "2024-03-05T20:00:00Z"]
    assert f"still running at {DUE.isoformat()}" in alert["error"] and PROMISE in alert["error"]
    assert alert["log_url"].endswith("/dags/totesys_etl/runs/scheduled__2024-03-05T19%3A57%3A00%2B00%3A00")


def test_a_backfill_or_a_manual_run_of_a_past_interval_is_not_late_news(aws):
    inbox(aws)
    assert deadlines.publish_missed(run_context("backfill"), PROMISE) is None
    past = run_context("manual", queued_at="2024-03-07T09:00:00Z")  # queued two days after its deadline
    assert deadlines.publish_missed(past, PROMISE) is None
    assert inbox(aws) == []
    # A manual run queued before its deadline is late like a scheduled one.
    assert deadlines.publish_missed(run_context("manual", queued_at="2024-03-05T20:01:00Z"), PROMISE)
    assert [alert["run_type"] for _, alert, _ in inbox(aws)] == ["manual"]


def test_the_event_copy_deadline_alerts_only_while_its_queue_holds_messages(aws):
    inbox(aws)
    sqs = aws["session"].client("sqs")
    sqs.purge_queue(QueueUrl=aws["queues"]["raw-events"])  # provisioning's s3:TestEvent
    context = run_context()
    assert deadlines.publish_missed(context, PROMISE, queue_kind="raw-events") is None, "an empty queue"
    queue = aws["queues"]["raw-events"]
    # Not waiting for this run: a message in flight (the run's own, or a failing copy's between its
    # receives: the dead-letter alarm's), or a delayed one.
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    [taken] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=900)["Messages"]
    sqs.send_message(QueueUrl=queue, MessageBody="{}", DelaySeconds=900)
    assert deadlines.publish_missed(context, PROMISE, queue_kind="raw-events") is None, "in flight, delayed"
    assert inbox(aws) == []
    sqs.send_message(QueueUrl=queue, MessageBody="{}")  # visible: the run could have taken it
    assert deadlines.publish_missed(context, PROMISE, queue_kind="raw-events")
    [(_, alert, _)] = inbox(aws)
    assert alert["error"].endswith("; 1 message(s) on the queue")
    assert taken["ReceiptHandle"]


def test_a_run_marked_success_by_its_deadline_is_not_late(aws):
    """Marked success by hand (UI, REST): Airflow keeps the deadline, and its miss is handled."""
    inbox(aws)
    in_time = run_context(state="success", end_date="2024-03-05T20:10:00Z")
    assert deadlines.publish_missed(in_time, PROMISE) is None
    assert inbox(aws) == []
    after = run_context(state="success", end_date="2024-03-05T20:19:00Z")  # a minute past DUE
    assert deadlines.publish_missed(after, PROMISE)
    assert [alert["run_id"] for _, alert, _ in inbox(aws)] == [after["dag_run"]["dag_run_id"]]


def test_an_unreadable_queue_still_alerts_saying_so(aws):
    inbox(aws)
    aws["session"].client("sqs").delete_queue(QueueUrl=aws["queues"]["raw-events"])
    assert deadlines.publish_missed(run_context(), PROMISE, queue_kind="raw-events")
    [(_, alert, _)] = inbox(aws)
    assert "the queue's depth could not be read" in alert["error"]


# --- what each DAG declares ----------------------------------------------------------------------


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    return bag.get_dag(dag_id)


SCHEDULED = {
    # dag_id: (reference, interval added to it)
    "totesys_etl": ("DagRunLogicalDateDeadline", timedelta(minutes=3 + 15)),
    "nightly_file_ingestion": ("DagRunLogicalDateDeadline", timedelta(hours=24 + 2)),  # 20:00 + 1 day → 22:00
    "inbound_to_stage": ("DagRunLogicalDateDeadline", timedelta(minutes=5 + 15)),
    "snowflake_health": ("DagRunLogicalDateDeadline", timedelta(minutes=60 + 30)),
    "s3_event_copy": ("DagRunQueuedAtDeadline", timedelta(minutes=20)),
    "curated_to_snowflake": ("DagRunQueuedAtDeadline", timedelta(minutes=30)),
    "processed_to_snowflake": ("DagRunQueuedAtDeadline", timedelta(minutes=30)),
    "stage_to_snowflake": ("DagRunQueuedAtDeadline", timedelta(minutes=30)),
}


@pytest.mark.parametrize("dag_id", sorted(SCHEDULED))
def test_every_scheduled_dag_declares_its_deadline(dag_id):
    reference, interval = SCHEDULED[dag_id]
    dag = _dag(dag_id)
    [alert] = dag.deadline
    assert type(alert.reference).__name__ == reference
    assert alert.interval == interval
    assert alert.callback.path == "conveyor.deadlines.on_missed"
    assert (alert.callback.kwargs.get("queue_kind") == "raw-events") == (dag_id == "s3_event_copy")
    assert "deadline" in dag.doc_md.lower(), "the DAG's page says when a run is late"


def test_the_deadline_settings_come_from_airflow_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CONVEYOR__TOTESYS_ETL_DEADLINE_SECONDS", "45")
    monkeypatch.setenv("AIRFLOW__CONVEYOR__NIGHTLY_FILE_INGESTION_FINISH_BY", "06:30")
    assert deadlines.after_interval_end("totesys_etl", "*/3 * * * *").interval == timedelta(
        minutes=3, seconds=45
    )
    # 20:00's run covers the day to 20:00; done by 06:30 the next morning.
    nightly = deadlines.by_time_of_day("nightly_file_ingestion", "0 20 * * *")
    assert nightly.interval == timedelta(days=1, hours=10, minutes=30)
    monkeypatch.setenv("AIRFLOW__CONVEYOR__NIGHTLY_FILE_INGESTION_FINISH_BY", "late")
    with pytest.raises(ValueError, match="nightly_file_ingestion_finish_by must be HH:MM"):
        deadlines.by_time_of_day("nightly_file_ingestion", "0 20 * * *")
    # Irregular crons get their longest gap (a Friday 17:00 run to Monday 09:00).
    assert deadlines.longest_interval("0 9,17 * * 1-5") == timedelta(days=2, hours=16)


def test_airflow_dags_test_parses_the_dags_without_deadlines(monkeypatch):
    """`airflow dags test` (README, make demo) cannot end a successful run of a DAG with a
    deadline in Airflow 3.3.1: there the DAGs have none."""
    monkeypatch.setattr("sys.argv", ["airflow", "dags", "test", "totesys_etl", "2024-03-05"])
    assert deadlines.under_dags_test()
    assert _dag("totesys_etl").deadline is None
    monkeypatch.setattr("sys.argv", ["airflow", "scheduler"])
    assert _dag("totesys_etl").deadline


def test_unwatched_dags_have_no_deadline():
    for dag_id in ("retail_data_generator", "snowflake_setup"):  # schedule=None: run by people
        assert not _dag(dag_id).deadline
