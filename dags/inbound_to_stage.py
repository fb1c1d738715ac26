"""
### Retail inbound → stage and archive

Replaces the retail Lambda fan-out. Every 5 minutes (an interval timetable, so it can be
backfilled), lists the files under `user/` and `transactions/` in the inbound bucket, copies
each to the stage bucket (same key) and to the archive bucket
(`<folder>/year=YYYY/month=MM/day=DD/<file>`, the UTC date of the interval's end), verifies both
copies, and only then deletes from inbound exactly the version it copied. Emits the `stage`
asset with the number of files moved.

* Nothing to move (no files, or only folder markers) **skips** the run: no asset event.
* A file re-uploaded while the run works on it is a new version: it stays in inbound and the
  next run moves it. A file whose copies are not both verified stays too, and the run fails.
* The inbound bucket must be versioned (Terraform and `make services` make it so).
* Schedule without code (Airflow config, e.g. MWAA configuration options):
  `conveyor.inbound_to_stage_cron` (default `*/5 * * * *`).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import CronDataIntervalTimetable, dag, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from conveyor.assets import STAGE
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.keys import utc_date
from conveyor.resources import AWS_CONN_ID, names_from_variable
from conveyor.retail import staging

DAG_ID = "inbound_to_stage"
# Airflow configuration is loaded at start-up: reading it here does no I/O.
CRON = conf.get("conveyor", "inbound_to_stage_cron", fallback="*/5 * * * *")


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.RETAIL, Tag.S3],
    doc_md=__doc__,
)
def inbound_to_stage():
    @task
    def find_inbound_files() -> list[dict]:
        """The current version of each inbound retail file; skips the run when there is none."""
        inbound = names_from_variable().bucket("inbound")
        try:
            files = staging.list_inbound(S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(), inbound)
        except staging.InboundNotVersioned as exc:
            raise AirflowFailException(str(exc)) from exc
        if not files:
            raise AirflowSkipException(
                f"no files under {', '.join(staging.INBOUND_PREFIXES)} in s3://{inbound}"
            )
        return [f.to_dict() for f in files]

    @task(outlets=[STAGE])
    def stage_and_archive(files: list[dict], data_interval_end=None, outlet_events=None) -> dict:
        """Copy the listed versions to stage and archive, verify both, then delete them from inbound."""
        names = names_from_variable()
        inbound = names.bucket("inbound")
        result = staging.stage_and_archive(
            S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
            [staging.InboundFile.from_dict(inbound, f) for f in files],
            stage=names.bucket("stage"),
            archive=names.bucket("archive"),
            day=utc_date(data_interval_end),
        )
        if result["kept"]:
            shown = "; ".join(f"{k['key']}: {', '.join(k['problems'])}" for k in result["kept"][:5])
            raise RuntimeError(
                f"{len(result['kept'])} inbound file(s) kept in inbound (copies not both verified): {shown}"
            )
        outlet_events[STAGE].extra = {"files": result["moved"], "bytes": result["bytes"]}
        return result

    stage_and_archive(find_inbound_files())


inbound_to_stage()
