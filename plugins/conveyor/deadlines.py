"""Deadline Alerts: when each scheduled DAG's run must be done, and the alert when it is not.

Airflow (3.1+) records a deadline for every run when the run is created (`DeadlineReference` +
an interval); the scheduler checks them, and one that passes before the run *succeeded* queues
`on_missed` on the triggerer (an `AsyncCallback`: it runs beside the deferrable sensors, whatever
the executor). `on_missed` publishes the alert in the failure alert's JSON shape
(`conveyor.alerts.deadline_message`, status `deadline_missed`) on the notifications topic, found
the way the failure alerts find it. A run that succeeds in time deletes its deadline; a run that
fails before its deadline gets its failure alert at once and this alert when the deadline passes.

The times are Airflow config, `[conveyor]` section (read at parse time, no I/O; a changed value
applies to runs created after the DAG is parsed again): `<dag_id>_deadline_seconds`, and
`<dag_id>_finish_by` (`HH:MM` UTC) for the nightly run. Defaults: ALLOWED_SECONDS and FINISH_BY
below; what each DAG promises: docs/runbook.md, "A missed deadline".

What a deadline cannot see: a run that was never created (the DAG paused, by hand or after three
failed runs; the scheduler down). The CloudWatch alarms cover those (the raw-events queue's oldest
message, MWAA's scheduler heartbeat).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime, timedelta

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
from airflow.sdk.configuration import conf

log = logging.getLogger(__name__)

# A cron's intervals are measured over this stretch of its fire times (a fixed start: no now()).
_CRON_SAMPLE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
_CRON_SAMPLE_FIRES = 500
_CRON_SAMPLE_SPAN = timedelta(days=8)


# Every deadline's default, one table: `[conveyor] <dag_id>_deadline_seconds` overrides these...
ALLOWED_SECONDS = {
    "totesys_etl": 15 * 60,  # after its interval's end (3 min by default)
    "inbound_to_stage": 15 * 60,  # after its interval's end (5 min by default)
    "snowflake_health": 30 * 60,  # after its interval's end (1 h)
    "s3_event_copy": 20 * 60,  # after it was queued, while the raw-events queue holds messages
    "curated_to_snowflake": 30 * 60,  # after it was queued
    "processed_to_snowflake": 30 * 60,  # after it was queued
    "stage_to_snowflake": 30 * 60,  # after it was queued
}
# ... and `[conveyor] <dag_id>_finish_by` (HH:MM UTC) these.
FINISH_BY = {"nightly_file_ingestion": "22:00"}


def allowed(dag_id: str) -> timedelta:
    """`[conveyor] <dag_id>_deadline_seconds`, else ALLOWED_SECONDS's."""
    seconds = conf.getint("conveyor", f"{dag_id}_deadline_seconds", fallback=ALLOWED_SECONDS[dag_id])
    if seconds <= 0:
        raise ValueError(f"[conveyor] {dag_id}_deadline_seconds must be > 0 seconds, got {seconds}")
    return timedelta(seconds=seconds)


def longest_interval(cron: str) -> timedelta:
    """The longest gap between two fire times of `cron` (UTC), over a week's fires."""
    from croniter import croniter

    fires = croniter(cron, _CRON_SAMPLE_FROM)
    previous, longest = fires.get_next(datetime), timedelta(0)
    for _ in range(_CRON_SAMPLE_FIRES):
        fire = fires.get_next(datetime)
        longest = max(longest, fire - previous)
        if fire - _CRON_SAMPLE_FROM > _CRON_SAMPLE_SPAN:
            break
        previous = fire
    return longest


def _human(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes >= 60 and minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min" if span.total_seconds() % 60 == 0 else f"{int(span.total_seconds())} s"


def under_dags_test() -> bool:
    """Whether this process is `airflow dags test`. Its `dag.test()` cannot end a successful run
    of a DAG with a deadline in Airflow 3.3.1 (`DagRun.update_state` looks the DAG's alerts up by
    id, and the DAG `dag.test()` builds holds them unsaved: a StatementError); nor does it check
    deadlines (no scheduler loop). So it parses the DAGs without them."""
    return sys.argv[1:3] == ["dags", "test"]


def _alert(reference, interval: timedelta, promise: str, **kwargs) -> DeadlineAlert | None:
    if under_dags_test():
        return None
    return DeadlineAlert(
        reference=reference,
        interval=interval,
        callback=AsyncCallback(on_missed, kwargs={"promise": promise, **kwargs}),
        name=promise,
    )


def after_interval_end(dag_id: str, cron: str) -> DeadlineAlert | None:
    """Done within the allowed time of the run's data interval's end (an interval timetable:
    the logical date is the interval's start, so the deadline is start + interval + allowed)."""
    span = allowed(dag_id)
    promise = f"a run must be done within {_human(span)} of its data interval's end"
    return _alert(DeadlineReference.DAGRUN_LOGICAL_DATE, longest_interval(cron) + span, promise)


def by_time_of_day(dag_id: str, cron: str) -> DeadlineAlert | None:
    """Done by `[conveyor] <dag_id>_finish_by` (`HH:MM` UTC) after its interval ends (a daily cron)."""
    finish_by = conf.get("conveyor", f"{dag_id}_finish_by", fallback=FINISH_BY[dag_id])
    try:
        hour, minute = (int(part) for part in finish_by.split(":"))
        due = timedelta(hours=hour, minutes=minute)
    except ValueError as exc:
        raise ValueError(f"[conveyor] {dag_id}_finish_by must be HH:MM (UTC), got {finish_by!r}") from exc
    from croniter import croniter

    fire = croniter(cron, _CRON_SAMPLE_FROM).get_next(datetime)
    after_end = (due - timedelta(hours=fire.hour, minutes=fire.minute)) % timedelta(days=1)
    if not after_end:
        raise ValueError(f"[conveyor] {dag_id}_finish_by {finish_by} is when the run starts ({cron})")
    promise = f"a run must be done by {finish_by} UTC, {_human(after_end)} after its data interval's end"
    return _alert(DeadlineReference.DAGRUN_LOGICAL_DATE, longest_interval(cron) + after_end, promise)


def after_queued(dag_id: str, queue_kind: str | None = None) -> DeadlineAlert | None:
    """Done within the allowed time of being queued (runs without a data interval: asset-
    triggered, continuous). With `queue_kind`, only while that SQS queue holds messages."""
    span = allowed(dag_id)
    promise = f"a run must be done within {_human(span)} of being queued"
    if queue_kind:
        promise += f" while the {queue_kind} queue holds messages"
        return _alert(DeadlineReference.DAGRUN_QUEUED_AT, span, promise, queue_kind=queue_kind)
    return _alert(DeadlineReference.DAGRUN_QUEUED_AT, span, promise)


# --- the callback (runs on the triggerer) --------------------------------------------------------


async def on_missed(promise: str, context: dict, queue_kind: str | None = None) -> str | None:
    """A deadline passed: publish the alert (blocking SDK and boto calls run in a thread, from
    which the triggerer serves connections and Variables). Returns the SNS MessageId, or None."""
    return await asyncio.to_thread(publish_missed, context, promise, queue_kind)


def publish_missed(context: dict, promise: str, queue_kind: str | None = None) -> str | None:
    """Publish the deadline alert for `context`'s run unless it is not late news (see `not_late`)."""
    run = context["dag_run"]
    reason = not_late(run, context["deadline"]["deadline_time"])
    if reason is None and queue_kind:
        try:
            depth = queue_depth(queue_kind)
        except Exception as exc:  # an unreadable queue is news too: alert, saying so
            log.exception("the %s queue's depth could not be read", queue_kind)
            promise, depth = f"{promise}; the queue's depth could not be read ({exc})", None
        if depth == 0:
            reason = f"the {queue_kind} queue is empty: nothing is waiting for this run"
        elif depth:
            promise = f"{promise}; {depth} message(s) on the queue"
    if reason:
        log.info("deadline of %s %s passed; no alert: %s", run["dag_id"], run["dag_run_id"], reason)
        return None
    from conveyor import alerts  # the amazon provider: imported in this thread, not the triggerer's loop

    return alerts.publish_alert(alerts.deadline_message(context, promise))


def not_late(run: dict, deadline_time) -> str | None:
    """Why a missed deadline is no news, or None: a backfill, or a manual run queued after its
    deadline (an old interval run again), was late before it started; a run that succeeded by its
    deadline was in time (marked success by hand: Airflow deletes a deadline only when the
    scheduler ends the run itself, so the miss is still handled)."""
    run_type = run.get("run_type")
    if run_type == "backfill":
        return "a backfill run catches up on past intervals"
    due = _as_datetime(deadline_time)
    queued = _as_datetime(run.get("queued_at"))
    if run_type == "manual" and queued is not None and queued >= due:
        return "a manual run queued after its deadline (a past interval run again)"
    ended = _as_datetime(run.get("end_date"))
    if run.get("state") == "success" and ended is not None and ended <= due:
        return f"the run succeeded at {ended.isoformat()}, by its deadline"
    return None


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def queue_depth(queue_kind: str) -> int:
    """Messages waiting on the queue that the run could have taken (SQS's approximate count of
    visible ones). Not the ones in flight: the run itself may have just received one, and an
    event whose copy fails is hidden between its receives (its dead letter has its own alarm);
    nor delayed ones."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    from conveyor.resources import AWS_CONN_ID, names_from_variable

    sqs = SqsHook(aws_conn_id=AWS_CONN_ID).get_conn()
    url = sqs.get_queue_url(QueueName=names_from_variable().queue(queue_kind))["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))
