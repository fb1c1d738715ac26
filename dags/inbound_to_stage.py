"""
### Retail inbound → stage and archive

Replaces the retail Lambda fan-out. Every 5 minutes, lists the files under `user/` and
`transactions/` in the inbound bucket with every version of each, copies every version to the
archive bucket and the newest to the stage bucket (same key), verifies the copies, and only then
deletes from inbound exactly the versions it copied. Emits the `stage` asset with the number of
files staged.

* **Archive**: one object per version that arrived,
  `<folder>/year=YYYY/month=MM/day=DD/[<dirs>/]<YYYYMMDDTHHMMSS>Z-<n>_<version id>_<file>`, dated
  by the version's arrival in inbound (S3's LastModified, UTC), never by the run: a folder lists a
  file's versions in arrival order (`n` orders versions stored in the same second). A file
  uploaded twice between runs keeps both versions; stage gets the newest.
* Nothing to move (no files, or only folder markers) **skips** the run: no asset event.
* A file re-uploaded while the run works on it is a new version: it stays in inbound and the
  next run moves it. A version whose copies are not verified stays too, and the run fails. A
  version another run (or an earlier try) already moved is checked in the archive, not redone.
* **Not backfillable**: a run moves what is in inbound *now*, whatever its interval, so Airflow
  refuses to create a backfill (`allowed_run_types`), and a backfill run fails saying so. To move
  files now, trigger a manual run (a logical date is not needed); to load a past day again, copy
  its archive partition to stage.
* The inbound bucket must be versioned (Terraform and `make services` make it so).
* Schedule without code (Airflow config, e.g. MWAA configuration options):
  `conveyor.inbound_to_stage_cron` (default `*/5 * * * *`).
* **Deadline**: a run must be done within 15 min of its interval's end
  (`conveyor.inbound_to_stage_deadline_seconds`); else a `deadline_missed` alert.
"""

from __future__ import annotations

import logging

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import CronDataIntervalTimetable, dag, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from conveyor import deadlines
from conveyor.assets import STAGE
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import AWS_CONN_ID, names_from_variable
from conveyor.retail import staging

DAG_ID = "inbound_to_stage"
# Airflow configuration is loaded at start-up: reading it here does no I/O.
CRON = conf.get("conveyor", "inbound_to_stage_cron", fallback="*/5 * * * *")
log = logging.getLogger(__name__)


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    deadline=deadlines.after_interval_end(DAG_ID, CRON),
    catchup=False,
    max_active_runs=1,
    # Every run moves what is in inbound now: a backfill of past intervals has nothing to do.
    allowed_run_types=["scheduled", "manual", "operator_triggered"],
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.RETAIL, Tag.S3],
    doc_md=__doc__,
)
def inbound_to_stage():
    @task
    def find_inbound_files(dag_run=None) -> list[dict]:
        """Every version of each inbound retail file; skips the run when there is none."""
        inbound = names_from_variable().bucket("inbound")
        try:
            staging.refuse_backfill(dag_run.run_type)
            files = staging.list_inbound(S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(), inbound)
        except (staging.NotBackfillable, staging.InboundNotVersioned) as exc:
            raise AirflowFailException(str(exc)) from exc
        if not files:
            raise AirflowSkipException(
                f"no files under {', '.join(staging.INBOUND_PREFIXES)} in s3://{inbound}"
            )
        return [f.to_dict() for f in files]

    @task(outlets=[STAGE])
    def stage_and_archive(files: list[dict], outlet_events=None) -> dict:
        """Copy the listed versions to archive and the newest to stage, verify, then delete them."""
        names = names_from_variable()
        inbound = names.bucket("inbound")
        result = staging.stage_and_archive(
            S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
            [staging.InboundFile.from_dict(inbound, f) for f in files],
            stage=names.bucket("stage"),
            archive=names.bucket("archive"),
        )
        log.info(
            "staged %d file(s); archived %d version(s); %d version(s) already moved by another run",
            result["moved"],
            result["archived"],
            len(result["already_moved"]),
        )
        if result["vanished"]:
            # Deleted from inbound by someone else before this run copied them: nothing to copy.
            log.warning(
                "gone from inbound before this run copied them (not archived): %s", result["vanished"]
            )
        if result["kept"]:
            shown = "; ".join(
                f"{k['key']} ({k['version_id']}): {', '.join(k['problems'])}" for k in result["kept"][:5]
            )
            raise RuntimeError(
                f"{len(result['kept'])} version(s) kept in inbound (copies not verified): {shown}"
            )
        outlet_events[STAGE].extra = {"files": result["moved"], "bytes": result["bytes"]}
        return result

    stage_and_archive(find_inbound_files())


inbound_to_stage()
