"""
### Curated events → Snowflake

Replaces the curated Snowpipe and its JSON flattening. Runs each time `s3_event_copy` updates the
`curated` asset, and once a day at 03:17 UTC (the sweep): `COPY INTO EVENTS.RAW_EVENTS` (one
VARIANT row per JSON document, with its file, the file's S3 last-modified time, its row and the
load time) from the curated stage, then a `MERGE` that flattens the order events loaded since the
last merge into `EVENTS.ORDERS` and `EVENTS.ORDER_ITEMS`.

* **Loads exactly the files the events name**: each `curated` asset event's extra lists the keys
  `s3_event_copy` copied; the COPY names them (`FILES = (...)`, 1,000 per COPY) and lists nothing,
  so its cost follows the run's files, not the files already in curated.
* **Events that queue while a run is going** reach the next run: it loads the files of every
  `curated` event since it was triggered, not only the first (Airflow 3.3 hands a run the events
  up to the first one queued for it, apache/airflow#56050).
* **Sweeps for the files no event named**: the daily run, a manual run, an event that names no
  keys (more than 1,000 copied) and the `sweep` Param list the whole prefix (`PATTERN`); the load
  metadata skips what was loaded, so only the missed files load.
* **The merge reads only what the loads since the last merge added** (RAW_EVENTS rows after its
  watermark), whatever those rows are: orders, rejects or other events are not read again.
* **Never double-loads**: Snowflake's load metadata skips every file this COPY loaded before
  (Snowpipe keeps its own, so use the curated pipe or this DAG, not both); the MERGE keeps the
  newest version of each order and changes nothing on a rerun.
* **A malformed file** (`ON_ERROR = SKIP_FILE`) loads nothing; the other files load and merge,
  then `check_loads` fails the run naming the file and its first error. The file stays in curated.
  A named file that no longer exists is named the same way.
* **An order event that does not type** (a null or non-numeric `order_id`, a `total` that is not
  a `NUMBER(12, 2)`, a country longer than 2 characters, no `ordered_at`, ...) goes to
  `EVENTS.ORDER_REJECTS` with its file, row, reason and raw document; the other events are
  flattened, then `check_loads` fails the run naming it. It is reported once: the next run does
  not fail on it again. Send the corrected event again (a new file) and it is flattened.
* **Newest wins by the producer's clock**: an order's versions are ordered by `ordered_at`, then
  the curated file's S3 last-modified time, name and row; an old event loaded late (a replay, a
  DLQ redrive) does not overwrite a newer order or its lines.
* **files** (Param): load (or validate) exactly these curated files (keys under `events/`, e.g.
  `events/2024/03/05/orders-1.json`; other keys are refused, named) instead of what the events name.
* **sweep** (Param): list the whole prefix even when the events name their files.
* **validate_only** (Param): `VALIDATION_MODE = RETURN_ERRORS` over the files the run names
  (`files`, or the events'), else over the whole stage (every file ever written: name files
  to keep it short); the run lists what would fail and loads and merges nothing.
* **merge_only** (Param): load nothing, merge the raw rows loaded since the last merge (by this
  DAG or the Snowpipe path's task), with an hour of overlap. On the Snowpipe path, the recovery
  after a stale stream: the rows the task never read are merged once (keep the DAG paused
  otherwise).
* Needs `snowflake_setup` once. SQL: `include/sql/snowflake/events/`.
* **Deadline**: a run must be done within 30 min of being queued
  (`conveyor.curated_to_snowflake_deadline_seconds`); else a `deadline_missed` alert.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from conveyor import deadlines, snowflake
from conveyor.assets import CURATED
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import names_from_variable

DAG_ID = "curated_to_snowflake"
# The daily sweep: a run no asset event triggered lists the prefix, for files no event named.
SWEEP_SCHEDULE = CronTriggerTimetable("17 3 * * *", timezone="UTC")


@dag(
    dag_id=DAG_ID,
    schedule=AssetOrTimeSchedule(timetable=SWEEP_SCHEDULE, assets=[CURATED]),
    deadline=deadlines.after_queued(DAG_ID),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.SNOWFLAKE, Tag.S3],
    doc_md=__doc__,
    params={
        "validate_only": Param(
            False, type="boolean", title="Only validate (VALIDATION_MODE = RETURN_ERRORS); load nothing"
        ),
        "files": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Load (or validate) exactly these curated files: keys under events/ (empty: what the events name)",
        ),
        "sweep": Param(
            False,
            type="boolean",
            title="List the whole events/ prefix (PATTERN), even if the events name files",
        ),
        "merge_only": Param(
            False,
            type="boolean",
            title="Load nothing; merge what RAW_EVENTS holds since the last merge (Snowpipe path: after a stale stream)",
        ),
    },
)
def curated_to_snowflake():
    @task(inlets=[CURATED])
    def copy_raw_events(params=None, triggering_asset_events=None, inlet_events=None, dag_run=None) -> dict:
        """COPY the files the run names (else a sweep) into RAW_EVENTS, or validate, or skip."""
        variables = snowflake.settings_from_variable().template_variables(names_from_variable())
        hook = snowflake.hook()
        # Read only if events triggered the run: those queued since it was (see run_files).
        queued = inlet_events[CURATED].after(dag_run.run_after.isoformat())
        files = snowflake.run_files(params, triggering_asset_events, queued)
        print(snowflake.describe_files(files))
        if params["validate_only"]:
            if files is not None and not files:
                raise AirflowSkipException("validate_only: the run names no .json file under events/")
            errors = snowflake.validation_errors(
                snowflake.run_script(
                    hook,
                    snowflake.render(
                        "events/validate_raw_events.sql", snowflake.load_variables(variables, files)
                    ),
                )
            )
            for error in errors:
                print(f"would fail: {error['file']} (line {error['line']}): {error['error']}")
            print(f"validation: {len(errors)} error(s); nothing loaded")
            raise AirflowSkipException(f"validate_only: {len(errors)} error(s) found, nothing loaded")
        if params["merge_only"]:
            print("merge_only: nothing loaded; merging what RAW_EVENTS holds since the last merge")
            return snowflake.CopyReport().to_dict()
        report = snowflake.CopyReport.copy(hook, "events/copy_raw_events.sql", variables, files)
        print(report.summary())
        return report.to_dict()

    @task
    def merge_orders(params=None) -> dict:
        """Flatten the order events loaded since the last merge into ORDERS and ORDER_ITEMS."""
        settings = snowflake.settings_from_variable()
        variables = settings.template_variables(names_from_variable())
        hook = snowflake.hook()
        if params["merge_only"]:  # the Snowpipe path's recovery: an hour of overlap
            source = f"{settings.database}.EVENTS.RAW_EVENTS_PENDING"
        else:
            since = snowflake.merged_up_to(hook, variables)
            print(f"merging the raw rows loaded after {since}")
            source = snowflake.raw_events_after(variables, since)
        merged = snowflake.merge_orders(hook, {**variables, "source": source})
        print(f"merged: {merged}")
        return merged

    @task
    def check_loads(report: dict, ti=None) -> None:
        """Fail the run naming each file that did not load and each order event rejected."""
        variables = snowflake.settings_from_variable().template_variables(names_from_variable())
        rejects = snowflake.claim_order_rejects(snowflake.hook(), variables, by=snowflake.reporter(ti))
        snowflake.fail_on_failed_files(report, "curated", rejects)

    report = copy_raw_events()
    report >> merge_orders() >> check_loads(report)


curated_to_snowflake()
