"""
### Retail stage → Snowflake

Replaces the retail Snowpipes and the Snowflake task that merged their delta. Runs each time
`inbound_to_stage` updates the `stage` asset: `COPY INTO` the raw tables `RETAIL.USERS_RAW` and
`RETAIL.TRANSACTIONS_RAW` from the stage bucket's `user/` and `transactions/` files (CSV with a
header or JSON lines), then the same `MERGE` as the Snowflake tasks' bodies into `RETAIL.USERS`
and `RETAIL.TRANSACTIONS`, so the targets are the same whichever path loads them.

* **Never double-loads**: the load metadata skips files loaded before (Snowpipe keeps its own, so
  use the retail pipes or this DAG, not both);
  the MERGE keeps the newest load of each user and transaction and changes nothing on a rerun.
* **A malformed file** (`ON_ERROR = SKIP_FILE`) loads nothing; the rest load and merge, then
  `check_loads` fails the run naming it. The file stays in the stage bucket.
* **merge_only** (Param): load nothing, merge the raw rows newer than each target. On the
  Snowpipe path, the recovery after a stale stream (keep the DAG paused otherwise).
* Needs `snowflake_setup` once. SQL: `include/sql/snowflake/retail/`.
* **Deadline**: a run must be done within 30 min of being queued
  (`conveyor.stage_to_snowflake_deadline_seconds`); else a `deadline_missed` alert.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from conveyor import deadlines, snowflake
from conveyor.assets import STAGE
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import names_from_variable

DAG_ID = "stage_to_snowflake"


@dag(
    dag_id=DAG_ID,
    schedule=[STAGE],
    deadline=deadlines.after_queued(DAG_ID),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.SNOWFLAKE, Tag.RETAIL],
    doc_md=__doc__,
    params={
        "merge_only": Param(
            False,
            type="boolean",
            title="Load nothing; merge the raw rows newer than each target (Snowpipe path: after a stale stream)",
        ),
    },
)
def stage_to_snowflake():
    @task
    def copy_stage_files(params=None) -> dict:
        """COPY new stage files into the raw retail tables (nothing for merge_only)."""
        if params["merge_only"]:
            print("merge_only: nothing loaded; merging the raw rows newer than each target")
            return snowflake.CopyReport().to_dict()
        variables = snowflake.settings_from_variable().template_variables(names_from_variable())
        report = snowflake.CopyReport.copy(snowflake.hook(), "retail/copy_stage_files.sql", variables)
        print(report.summary())
        return report.to_dict()

    @task
    def merge_targets() -> dict:
        """MERGE the raw rows newer than each target into RETAIL.USERS and RETAIL.TRANSACTIONS."""
        settings = snowflake.settings_from_variable()
        hook, merged = snowflake.hook(), {}
        for target in ("users", "transactions"):
            source = f"{settings.database}.RETAIL.{target.upper()}_RAW_PENDING"
            variables = settings.template_variables(names_from_variable(), source=source)
            [rows] = snowflake.run_script(hook, snowflake.render(f"retail/merge_{target}.sql", variables))
            merged[target] = snowflake.merge_counts(rows)
        print(f"merged: {merged}")
        return merged

    @task
    def check_loads(report: dict) -> None:
        """Fail the run naming each stage file that did not load."""
        snowflake.fail_on_failed_files(report, "retail stage")

    report = copy_stage_files()
    report >> merge_targets() >> check_loads(report)


stage_to_snowflake()
