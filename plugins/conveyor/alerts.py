"""Messages on the notifications SNS topic: a failure alert for every task that fails for good,
and `publish` for the run-level messages some pipelines build (a nightly summary, a dead-letter
alert, a schema change).

`FailureAlert` is the amazon provider's `SnsNotifier` with the message built from the failure's
context (DAG, task, run, data interval, error, try number, log URL) and the topic resolved at run
time; `conveyor.defaults.DEFAULT_ARGS` makes it every task's `on_failure_callback`, so it runs in
the worker where the exception is known, once the task has no retries left.
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
        alert = failure_message(context)
        where = alert["task_id"] + (f"[{alert['map_index']}]" if alert["map_index"] is not None else "")
        self.hook.publish_to_target(
            target_arn=notifications_topic_arn(self.aws_conn_id),
            message=json.dumps(alert, indent=2, ensure_ascii=False),
            subject=_subject(f"[conveyor] FAILED {alert['dag_id']}.{where} {alert['run_id']}"),
            message_attributes={"status": "failed", "dag_id": alert["dag_id"]},
        )


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
