"""
### Retail inbound → stage and archive

Replaces the retail Lambda fan-out. Every 5 minutes (an interval timetable, so it can be
backfilled), waits for files under `user/` or `transactions/` in the inbound bucket, copies each
to the stage bucket (same key) and to the archive bucket
(`<folder>/year=YYYY/month=MM/day=DD/<file>`, the UTC date of the interval's end), verifies both
copies, and only then deletes it from inbound. A file whose copies are not both verified stays
in inbound for the next run. Emits the `stage` asset.

* When nothing arrives before the sensor's timeout, the run is **skipped**, not failed.
* Configure without code (Airflow config, e.g. MWAA configuration options):
  `conveyor.inbound_to_stage_cron` (default `*/5 * * * *`) and
  `conveyor.inbound_to_stage_wait_seconds` (default 240).
* The sensor is deferrable when `[operators] default_deferrable` is true (set on MWAA).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import CronDataIntervalTimetable, chain, dag, task
from airflow.sdk.configuration import conf

from conveyor import staging
from conveyor.assets import STAGE
from conveyor.defaults import DEFAULT_ARGS, START_DATE, Tag
from conveyor.ingestion import transfer_date
from conveyor.resources import AWS_CONN_ID, DEFAULT_PREFIX, PREFIX_VARIABLE, names_from_variable

DAG_ID = "inbound_to_stage"
# Airflow configuration is loaded at start-up: reading it here does no I/O.
CRON = conf.get("conveyor", "inbound_to_stage_cron", fallback="*/5 * * * *")
WAIT_SECONDS = conf.getint("conveyor", "inbound_to_stage_wait_seconds", fallback=240)
INBOUND_BUCKET = f"{{{{ var.value.get('{PREFIX_VARIABLE}', '{DEFAULT_PREFIX}') }}}}-inbound"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.RETAIL, Tag.S3],
    doc_md=__doc__,
)
def inbound_to_stage():
    wait_for_inbound_files = S3KeySensor(
        task_id="wait_for_inbound_files",
        bucket_name=INBOUND_BUCKET,
        bucket_key="*",
        wildcard_match=True,
        check_fn=staging.has_inbound_files,
        aws_conn_id=AWS_CONN_ID,
        poke_interval=min(15, WAIT_SECONDS),
        timeout=WAIT_SECONDS,
        soft_fail=True,  # nothing arrived: skip the run
        mode="reschedule",
        deferrable=conf.getboolean("operators", "default_deferrable", fallback=False),
    )

    @task(outlets=[STAGE])
    def stage_and_archive(data_interval_end=None, outlet_events=None) -> dict:
        """Copy inbound files to stage and archive, verify both, then delete them from inbound."""
        names = names_from_variable()
        result = staging.stage_and_archive(
            S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
            inbound=names.bucket("inbound"),
            stage=names.bucket("stage"),
            archive=names.bucket("archive"),
            day=transfer_date(data_interval_end),
        )
        if result["kept"]:
            shown = "; ".join(f"{k['key']}: {', '.join(k['problems'])}" for k in result["kept"][:5])
            raise RuntimeError(
                f"{len(result['kept'])} inbound file(s) kept in inbound (copies not both verified): {shown}"
            )
        outlet_events[STAGE].extra = {"files": result["moved"], "bytes": result["bytes"]}
        return result

    chain(wait_for_inbound_files, stage_and_archive())


inbound_to_stage()
