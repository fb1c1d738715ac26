"""
### ToteSys star → Snowflake

Moves the star schema `totesys_etl` builds in the Postgres warehouse into Snowflake's `TOTESYS`
schema, window by window. Runs each time `totesys_etl` updates the `processed` asset. For each
window of the triggering events (and the `window` Param), `COPY INTO` one staging table per star
table from the window's Parquet files in the processed stage
(`<table>/YYYY/MM/DD/HHMM/<table>-<window>.parquet`, `MATCH_BY_COLUMN_NAME`), then a `MERGE` into
the star tables with the rules of the Postgres model (one `MERGE` per table, rendered from the
star's declaration, `include/sql/warehouse/star.yml`), then the staging rows go.

* **Idempotent by window**: dimensions are upserted by key and the newest window wins (a late,
  older window changes nothing); `DIM_DATE` and the facts are inserted only when their key is
  new. A rerun changes nothing; windows loaded in any order give the same tables.
* **Retry-safe**: a window empties staging before its COPY (`FORCE = TRUE` re-reads its files),
  and one window loads at a time.
* **Checked**: each table's COPY must load the rows the `processed` event says the window
  exported; otherwise the window fails before its merge, naming the tables.
* **Wider numbers** (a source column widened in Postgres, `totesys_etl`'s `check_drift`): before
  the COPY, the window's Parquet footers are read and every star and staging `NUMBER` column
  that cannot hold their numbers exactly gains precision (`ALTER ... SET DATA TYPE`). Snowflake
  cannot change a column's scale: a number with more decimals fails the window before any COPY,
  naming the column (runbook: "processed_to_snowflake stopped on a wider number"). Never rounded.
* **window** (Param): load one window by name (e.g. `20240305T195900Z-20240305T200200Z`) again;
  its files must still be in the processed bucket. A window without files loads nothing.
* COPY runs through the hook, not `CopyFromExternalStageToSnowflakeOperator`: the windows are
  known only at run time, each needs COPY x 11 → check → MERGE on the same staging tables in
  one task, and the operator returns no per-file row counts to check.
* Needs `snowflake_setup` once. SQL: `include/sql/snowflake/totesys/` (`copy_window.sql`,
  `merge/<table>.sql`, `clear_staging.sql`); the work: `conveyor.totesys.to_snowflake`.
* **Deadline**: a run must be done within 30 min of being queued
  (`conveyor.processed_to_snowflake_deadline_seconds`); else a `deadline_missed` alert.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from conveyor import deadlines, snowflake
from conveyor.assets import PROCESSED
from conveyor.config import ConfigError
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import AWS_CONN_ID, names_from_variable
from conveyor.totesys import to_snowflake

DAG_ID = "processed_to_snowflake"


@dag(
    dag_id=DAG_ID,
    schedule=[PROCESSED],
    deadline=deadlines.after_queued(DAG_ID),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.SNOWFLAKE, Tag.TOTESYS],
    doc_md=__doc__,
    params={
        "window": Param(
            None,
            type=["null", "string"],
            pattern=to_snowflake.WINDOW_NAME_FORM,
            title="Window to load (a manual rerun)",
            description="A totesys_etl window name, e.g. 20240305T195900Z-20240305T200200Z.",
        ),
    },
)
def processed_to_snowflake():
    @task
    def windows_to_load(triggering_asset_events=None, params=None) -> list[dict]:
        """The windows of the triggering processed events and the window Param, oldest first."""
        events = triggering_asset_events.get(PROCESSED, []) if triggering_asset_events else []
        try:
            windows = to_snowflake.windows_to_load(events, params["window"])
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc  # retrying cannot fix a name
        print(f"windows to load: {[w['name'] for w in windows] or 'none'}")
        return windows

    @task(map_index_template="{{ window_name }}", max_active_tis_per_dagrun=1)
    def load_window(window: dict) -> dict:
        """COPY one window's files into staging, check the rows, MERGE them into the star."""
        name = get_current_context()["window_name"] = window["name"]
        variables = snowflake.settings_from_variable().template_variables(
            names_from_variable(), window=name, partition=window["partition"]
        )
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()  # the files' footers: numbers to widen for
        return to_snowflake.load_window(snowflake.hook(), window, variables, s3=s3)

    load_window.expand(window=windows_to_load())


processed_to_snowflake()
