"""Run summaries on the notifications SNS topic, and the error records they are built from.

A task that fails records why (`record_failure`) in an XCom before it raises; the run's notify
task, an ALL_DONE teardown, collects the successes and failures and publishes one message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor import resources

ERROR_XCOM_KEY = "error"
SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters


@contextmanager
def record_failure(ti, subject: str) -> Iterator[None]:
    """Push `{"subject", "error"}` to XCom `error` when the block raises, then re-raise."""
    try:
        yield
    except Exception as exc:
        ti.xcom_push(key=ERROR_XCOM_KEY, value={"subject": subject, "error": str(exc) or type(exc).__name__})
        raise


def as_list(pulled) -> list:
    """XCom pulls over mapped tasks return one value bare and several as a list: always a list."""
    if pulled is None:
        return []
    if isinstance(pulled, dict | str):
        return [pulled]
    return [value for value in pulled if value is not None]


def build_summary(
    *, dag_id: str, run_id: str, run_date: str, results: list[dict], failures: list[dict]
) -> dict:
    status = "failed" if failures else "succeeded"
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "date": run_date,
        "status": status,
        "datasets": sorted(results, key=lambda r: r["name"]),
        "failures": failures,
        "totals": {
            "objects": sum(r["objects"] for r in results),
            "bytes": sum(r["bytes"] for r in results),
        },
    }


def subject_for(summary: dict) -> str:
    subject = f"[conveyor] {summary['dag_id']} {summary['status']} for {summary['date']}"
    return subject.encode("ascii", "replace").decode()[:SUBJECT_LIMIT]


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


def publish(summary: dict, topic_arn: str, aws_conn_id: str = resources.AWS_CONN_ID) -> str:
    """Publish the summary as JSON; returns the SNS MessageId."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    return SnsHook(aws_conn_id=aws_conn_id).publish_to_target(
        target_arn=topic_arn,
        message=json.dumps(summary, indent=2, ensure_ascii=False),
        subject=subject_for(summary),
        message_attributes={"status": summary["status"], "dag_id": summary["dag_id"]},
    )
