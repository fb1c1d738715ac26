"""
### S3 event copy (raw → curated)

Replaces the S3 → SNS → SQS → Lambda copier. Runs continuously: waits on the raw-events SQS queue
for the ObjectCreated events of the raw bucket's `events/` prefix, copies the exact object
version each event names to the curated bucket under the same key (server-side, multipart for
large objects, metadata kept), then deletes the messages that are settled.

* **A bounded batch per run**: the run receives messages in waves of 10 until it has {budget};
  it copies everything it received and never releases a message unread (a release would cost it
  one of its {receives} receives). Each message is hidden on the queue for the full visibility
  timeout ({hold_minutes} min) before its copy starts; `copy_events` is stopped at {copy_minutes}
  minutes, so no message reappears while its copy runs. Once the queue looks empty, the run
  waits up to `conveyor.s3_event_copy_linger_seconds` (3 s) for more before it ends, so a
  stream of events is copied as it arrives, not after the next run starts.
* **Exact versions**: an event whose version was overwritten since is not copied (the newer
  version's own event copies it, so a late event never rolls curated back); a version that no
  longer exists (deleted, expired) is **recorded** in `_quarantine/` of the curated bucket
  (bucket, key, version, reason) and its message deleted. The run succeeds for the rest.
* Events arrive SNS-wrapped or raw; `s3:TestEvent` messages are deleted; a message that is not an
  S3 event is written with the reason to `_quarantine/` in the curated bucket (outside
  `events/`, so Snowpipe never sees it) and deleted.
* **A copy that fails** (AccessDenied, an archived object, ...) does not fail the run: its
  message comes back after the visibility timeout, and after {receives} receives the redrive
  policy moves it to the dead-letter queue while the other events keep flowing. On its last
  receive one alert (`[conveyor] s3_event_copy dead-letter ...` on the notifications topic)
  names its keys and errors; the CloudWatch alarm on the dead-letter queue fires too.
* **Systemic errors fail the run**: the queue unreachable or missing, SQS refusing deletes, the
  quarantine not writable, a queue without a redrive policy. A quiet hour skips the run; an
  error fails it, also in deferrable mode. After 3 failed runs in a row the DAG pauses itself
  (the failure alerts say why): fix the cause and unpause. Events wait on the queue for 14 days;
  a CloudWatch alarm fires when the oldest is 3 hours old.
* Emits the `curated` asset with the object count; skips the run when nothing was copied.
* **Params**: `replay_keys` copies the given raw-bucket keys (under `events/`, their current
  versions) now instead of waiting for events.
* The sensor is deferrable when `[operators] default_deferrable` is true (set on MWAA).
* **Deadline**: a run must be done within 20 min of being queued while the raw-events queue
  holds messages (`conveyor.s3_event_copy_deadline_seconds`); else a `deadline_missed` alert.
  A quiet queue is not late; a run never created (DAG paused) is the queue-age alarm's to catch.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.sqs import SqsHook
from airflow.sdk import Param, chain, dag, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSkipException

from conveyor import alerts, deadlines
from conveyor.assets import CURATED, curated_extra
from conveyor.defaults import CONTINUOUS_SINCE, DEFAULT_ARGS, Tag
from conveyor.events import copier
from conveyor.events.sensor import EventQueueSensor
from conveyor.keys import utc_date
from conveyor.resources import (
    AWS_CONN_ID,
    COPY_EVENTS_TIMEOUT_S,
    EVENTS_PREFIX,
    MAX_RECEIVE_COUNT,
    QUEUE_VISIBILITY_TIMEOUT_S,
    names_from_variable,
)

DAG_ID = "s3_event_copy"
# One run's batch; its limits are written once, in conveyor.events.copier.Budget.
BUDGET = copier.Budget()
# Once the queue looks empty, copy_events long-polls this long for more before the run ends: a
# stream of events is copied by the run that is going, not after the run's end and the next
# run's start (5-10 s locally), until the budget is reached.
LINGER_S = conf.getint("conveyor", "s3_event_copy_linger_seconds", fallback=3)


@dag(
    dag_id=DAG_ID,
    schedule="@continuous",
    deadline=deadlines.after_queued(DAG_ID, queue_kind="raw-events"),
    start_date=CONTINUOUS_SINCE,  # @continuous needs one to create a second run (see defaults)
    max_active_runs=1,
    catchup=False,
    # A systemic error (the queue unreachable, ...) fails every run; pause after three instead of
    # looping (alerts say why). A bad object never fails a run: its message goes to the DLQ.
    max_consecutive_failed_dag_runs=3,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.S3, Tag.SQS],
    doc_md=__doc__.format(
        budget=BUDGET,
        receives=MAX_RECEIVE_COUNT,
        hold_minutes=QUEUE_VISIBILITY_TIMEOUT_S // 60,
        copy_minutes=COPY_EVENTS_TIMEOUT_S // 60,
    ),
    params={
        "replay_keys": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Replay keys",
            description=f"Raw-bucket keys (under {EVENTS_PREFIX}) to copy to curated now, instead of waiting for events.",
        ),
    },
)
def s3_event_copy():
    @task
    def raw_events_queue_url() -> str:
        """The raw-events queue's URL, looked up by its name."""
        client = SqsHook(aws_conn_id=AWS_CONN_ID).get_conn()
        return client.get_queue_url(QueueName=names_from_variable().queue("raw-events"))["QueueUrl"]

    @task.branch
    def choose_source(params=None) -> str:
        """Replay the keys the Param names, or wait for events on the queue."""
        return "replay_keys" if params.get("replay_keys") else "wait_for_events"

    queue_url = raw_events_queue_url()
    wait_for_events = EventQueueSensor(
        task_id="wait_for_events",
        doc_md="Wait for the first S3 event on the raw-events queue (a quiet period skips the run).",
        sqs_queue=queue_url,
        # One long poll for one message wakes the run up (the sensor makes every one of
        # num_batches polls, each waiting out wait_time_seconds when the queue is empty);
        # copy_events receives the rest, only as many as its budget takes.
        max_messages=1,
        num_batches=1,
        wait_time_seconds=20,
        delete_message_on_reception=False,  # deleted by copy_events, only after the copy
        deferrable=conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval=5,
        timeout=timedelta(minutes=50).total_seconds(),  # a quiet period skips the run; errors fail it
    )

    # Stopped well before the batch's hold on the queue (the visibility timeout) runs out.
    @task(outlets=[CURATED], execution_timeout=timedelta(seconds=COPY_EVENTS_TIMEOUT_S))
    def copy_events(queue_url: str, messages: list | None, dag_run=None, outlet_events=None) -> dict:
        """Copy what a bounded batch of messages names to curated; settle each message."""
        names = names_from_variable()
        day = utc_date(dag_run.run_after)  # continuous and manual runs may have no data interval
        summary = copier.copy_and_settle(
            S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
            SqsHook(aws_conn_id=AWS_CONN_ID).get_conn(),
            queue_url,
            messages or [],
            names.bucket("curated"),
            day,
            budget=BUDGET,
            hold_seconds=QUEUE_VISIBILITY_TIMEOUT_S,
            wait_seconds=LINGER_S,
        )
        if summary["dead_letters"]:  # named once: on the last receive before the DLQ
            alert = copier.dead_letter_alert(summary, dag_id=DAG_ID, run_id=dag_run.run_id, day=day)
            alerts.publish(alert, alerts.notifications_topic_arn())
        problems = copier.problems(summary)
        if problems:
            raise RuntimeError(" ".join(problems))
        if not summary["copied"]:
            raise AirflowSkipException(f"nothing copied: {copier.outline(summary)}")
        # The keys go in the event only (curated_to_snowflake loads them); the XCom keeps counts.
        keys = summary.pop("copied_keys")
        outlet_events[CURATED].extra = curated_extra(keys, summary["copied"], summary["bytes"])
        return summary

    @task(outlets=[CURATED])
    def replay_keys(params=None, outlet_events=None) -> dict:
        """Copy the raw-bucket keys named in the `replay_keys` Param to curated."""
        names = names_from_variable()
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        result = copier.copy_keys(
            s3, names.bucket("raw"), params["replay_keys"], names.bucket("curated"), prefix=EVENTS_PREFIX
        )
        outlet_events[CURATED].extra = curated_extra(result["keys"], result["copied"], result["bytes"])
        return result

    chain(queue_url, choose_source(), [wait_for_events, replay_keys()])
    chain(wait_for_events, copy_events(queue_url, wait_for_events.output["messages"]))


s3_event_copy()
