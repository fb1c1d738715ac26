"""Messages on the notifications SNS topic: a failure alert for every task that fails for good,
a deadline alert for every run that misses its deadline, and `publish` for the run-level messages
some pipelines build (a nightly summary, a dead-letter alert, a schema change).

`FailureAlert` is the amazon provider's `SnsNotifier` with the message built from the failure's
context (DAG, task, run, data interval, error, try number, log URL) and the topic resolved at run
time; `conveyor.defaults.DEFAULT_ARGS` makes it every task's `on_failure_callback`, so it runs in
the worker where the exception is known, once the task has no retries left.

A missed deadline (`conveyor.deadlines`) is published by `publish_alert` with the same keys, built
by `deadline_message` from the run Airflow hands the deadline's callback: `status` is
`deadline_missed` and the task's keys are null (a run, not a task, is late).
"""

from __future__ import annotations

import json

from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

from conveyor import resources

SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters
ERROR_LIMIT = 4000  # characters of the error kept in an alert


def notifications_topic_arn(aws_conn_id: str = resources.AWS_CONN_ID) -> str:
    """The Variable `conveyor_notifications_topic_arn`, else `<prefix>-notifications` in this account."""
    from airflow.providers.amazon.aws.hooks.sts import StsHook
    from airflow.sdk import Variable

    arn = Variable.get(resources.NOTIFICATIONS_TOPIC_VARIABLE, default=None)
    if arn:
        return arn
    sts = StsHook(aws_conn_id=aws_conn_id)
    account = sts.get_conn().get_caller_identity()["Account"]
    return resources.names_from_variable().topic_arn("notifications", sts.conn_region_name, account)


def _subject(text: str) -> str:
    return text.encode("ascii", "replace").decode()[:SUBJECT_LIMIT]


# --- failure alerts ------------------------------------------------------------------------------


def failure_message(context) -> dict:
    """What failed, where and why, from an on_failure_callback's context."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    error = context.get("exception") or context.get("reason") or "unknown (see the task log)"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    map_index = getattr(ti, "map_index", -1)
    return {
        "status": "failed",
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "map_index": map_index if map_index is not None and map_index >= 0 else None,
        "run_id": ti.run_id,
        "run_type": _run_type(dag_run),
        "data_interval": [start.isoformat(), end.isoformat()] if start and end else None,
        "try_number": ti.try_number,
        "max_tries": getattr(ti, "max_tries", None),
        "error": text[:ERROR_LIMIT],
        "log_url": ti.log_url,
    }


def _run_type(dag_run) -> str | None:
    """`manual`, `scheduled`, `backfill`...: the enum's value (str() of it gives `DagRunType.MANUAL`)."""
    run_type = getattr(dag_run, "run_type", None)
    return getattr(run_type, "value", run_type) or None


class FailureAlert(SnsNotifier):
    """Publish a task's failure on the notifications topic (a task's `on_failure_callback`)."""

    def __init__(self, aws_conn_id: str = resources.AWS_CONN_ID):
        # The topic and the message are worked out from the context when the task fails.
        super().__init__(aws_conn_id=aws_conn_id, target_arn="", message="")

    def notify(self, context) -> None:
        publish_alert(failure_message(context), self.hook)


def alert_subject(alert: dict) -> str:
    """`[conveyor] FAILED <dag>.<task>[<map index>] <run>` or `[conveyor] LATE <dag> <run>`."""
    if alert["status"] == DEADLINE_MISSED:
        return _subject(f"[conveyor] LATE {alert['dag_id']} {alert['run_id']}")
    where = alert["task_id"] + (f"[{alert['map_index']}]" if alert["map_index"] is not None else "")
    return _subject(f"[conveyor] FAILED {alert['dag_id']}.{where} {alert['run_id']}")


def publish_alert(alert: dict, hook=None, aws_conn_id: str = resources.AWS_CONN_ID) -> str:
    """Publish a failure or deadline alert on the notifications topic; returns the SNS MessageId."""
    if hook is None:
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        hook = SnsHook(aws_conn_id=aws_conn_id)
    response = hook.publish_to_target(
        target_arn=notifications_topic_arn(hook.aws_conn_id),
        message=json.dumps(alert, indent=2, ensure_ascii=False),
        subject=alert_subject(alert),
        message_attributes={"status": alert["status"], "dag_id": alert["dag_id"]},
    )
    return response["MessageId"]


# --- deadline alerts (conveyor.deadlines) --------------------------------------------------------

DEADLINE_MISSED = "deadline_missed"


def deadline_message(context: dict, promise: str) -> dict:
    """A missed deadline in the failure alert's shape, from a deadline callback's `context`.

    Airflow gives the callback `{"dag_run": <the run as the REST API shows it>, "deadline":
    {"id", "deadline_time"}}`, read when the deadline passed; `promise` says what was due.
    """
    run, deadline = context["dag_run"], context["deadline"]
    start, end = run.get("data_interval_start"), run.get("data_interval_end")
    due = _iso(deadline["deadline_time"])
    return {
        "status": DEADLINE_MISSED,
        "dag_id": run["dag_id"],
        "task_id": None,
        "map_index": None,
        "run_id": run["dag_run_id"],
        "run_type": run.get("run_type"),
        "data_interval": [_iso(start), _iso(end)] if start and end else None,
        "try_number": None,
        "max_tries": None,
        "error": f"deadline missed: the run was still {run.get('state')} at {due}; {promise}"[:ERROR_LIMIT],
        "log_url": _run_url(run["dag_id"], run["dag_run_id"]),
    }


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI (`[api] base_url`), as a task's log_url is built."""
    from urllib.parse import quote

    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{dag_id}/runs/{quote(run_id)}"


# --- run messages (nightly_file_ingestion's summary: conveyor.nightly.summary; totesys_etl's
# schema changes: conveyor.totesys.drift_notices) -------------------------------------------------


def subject_for(summary: dict) -> str:
    """`[conveyor] <dag_id> <status> for <date, else run id>` (a message has those keys)."""
    # A run without a logical date has no date: its run id says which run it was.
    return _subject(
        f"[conveyor] {summary['dag_id']} {summary['status']} for {summary['date'] or summary['run_id']}"
    )


def publish(
    summary: dict, topic_arn: str, aws_conn_id: str = resources.AWS_CONN_ID, subject: str | None = None
) -> str:
    """Publish a run's message as JSON (subject: `subject_for`'s unless given); returns the SNS
    MessageId."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    response = SnsHook(aws_conn_id=aws_conn_id).publish_to_target(
        target_arn=topic_arn,
        message=json.dumps(summary, indent=2, ensure_ascii=False),
        subject=_subject(subject) if subject else subject_for(summary),
        message_attributes={"status": summary["status"], "dag_id": summary["dag_id"]},
    )
    return response["MessageId"]  # publish_to_target returns SNS's whole response
