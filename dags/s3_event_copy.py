"""
### S3 event copy (raw → curated)

Replaces the S3 → SNS → SQS → Lambda copier. Runs continuously: waits on the raw-events SQS queue
(`SqsSensor`, messages left on the queue), copies each object named by an `ObjectCreated` event
from the raw bucket to the curated bucket under the same key (server-side, multipart for large
objects, metadata kept), then deletes exactly the messages whose copies all succeeded.

* Events arrive SNS-wrapped or raw; `s3:TestEvent` messages are deleted; a message that is not an
  S3 event is written with the reason to `_quarantine/` in the curated bucket and deleted.
* A message whose copy failed stays on the queue: SQS delivers it again after the visibility
  timeout, and after `maxReceiveCount` receives the redrive policy moves it to the dead-letter
  queue. Duplicates and reordering are harmless (copies are keyed by object key).
* Emits the `curated` asset with the object count; skips the run when nothing was copied.
* **Params**: `replay_keys` copies the given raw-bucket keys now instead of waiting for events.
* The sensor is deferrable when `[operators] default_deferrable` is true (set on MWAA).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.sqs import SqsHook
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.sdk import Param, chain, dag, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSkipException

from conveyor import events
from conveyor.assets import CURATED
from conveyor.defaults import DEFAULT_ARGS, START_DATE, Tag
from conveyor.ingestion import transfer_date
from conveyor.resources import AWS_CONN_ID, COPY_EVENTS_TIMEOUT_S, names_from_variable

DAG_ID = "s3_event_copy"
# Per run; must finish well inside the queue's visibility timeout (15 min, see resources.py).
MAX_MESSAGES_PER_RUN = 500


@dag(
    dag_id=DAG_ID,
    schedule="@continuous",
    max_active_runs=1,
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.S3, Tag.SQS],
    doc_md=__doc__,
    params={
        "replay_keys": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Replay keys",
            description="Raw-bucket keys to copy to curated now, instead of waiting for events.",
        ),
    },
)
def s3_event_copy():
    @task
    def raw_events_queue_url() -> str:
        names = names_from_variable()
        sqs = SqsHook(aws_conn_id=AWS_CONN_ID).get_conn()
        return sqs.get_queue_url(QueueName=names.queue("raw-events"))["QueueUrl"]

    @task.branch
    def choose_source(params=None) -> str:
        return "replay_keys" if params.get("replay_keys") else "wait_for_events"

    queue_url = raw_events_queue_url()
    wait_for_events = SqsSensor(
        task_id="wait_for_events",
        sqs_queue=queue_url,
        # One long poll wakes the run up (the sensor makes every one of num_batches polls, each
        # waiting out wait_time_seconds when the queue is empty); copy_events drains the rest.
        max_messages=10,
        num_batches=1,
        wait_time_seconds=20,
        delete_message_on_reception=False,  # deleted by copy_events, only after the copy
        deferrable=conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval=5,
        timeout=timedelta(minutes=50).total_seconds(),
        soft_fail=True,  # a quiet hour skips the run; @continuous starts the next one
    )

    # Bounded below the queue's visibility timeout, so a message never reappears mid-copy.
    @task(outlets=[CURATED], execution_timeout=timedelta(seconds=COPY_EVENTS_TIMEOUT_S))
    def copy_events(queue_url: str, ti=None, dag_run=None, outlet_events=None) -> dict:
        """Copy what the messages name to curated; delete the messages that are done."""
        names = names_from_variable()
        sqs = SqsHook(aws_conn_id=AWS_CONN_ID).get_conn()
        messages = ti.xcom_pull(task_ids="wait_for_events", key="messages") or []
        messages += events.receive_available(sqs, queue_url, MAX_MESSAGES_PER_RUN - len(messages))
        summary = events.copy_and_settle(
            S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
            sqs,
            queue_url,
            messages,
            names.bucket("curated"),
            # Continuous and manual runs may have no data interval; every run has run_after.
            transfer_date(dag_run.run_after),
        )
        if summary["failed"]:
            shown = "; ".join(f"{f['key']}: {f['error']}" for f in summary["failed"][:5])
            raise RuntimeError(
                f"{len(summary['failed'])} object(s) failed to copy; their messages stay on the queue "
                f"({len(summary['kept'])}) and will be delivered again: {shown}"
            )
        if not summary["copied"]:
            raise AirflowSkipException(f"nothing to copy: {summary}")
        outlet_events[CURATED].extra = {"objects": summary["copied"], "bytes": summary["bytes"]}
        return summary

    @task(outlets=[CURATED])
    def replay_keys(params=None, outlet_events=None) -> dict:
        """Copy the raw-bucket keys named in the `replay_keys` Param to curated."""
        names = names_from_variable()
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        result = events.copy_keys(s3, names.bucket("raw"), params["replay_keys"], names.bucket("curated"))
        outlet_events[CURATED].extra = {"objects": result["copied"], "bytes": result["bytes"]}
        return result

    chain(queue_url, choose_source(), [wait_for_events, replay_keys()])
    chain(wait_for_events, copy_events(queue_url))


s3_event_copy()
