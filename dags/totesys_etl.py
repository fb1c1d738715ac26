"""
### ToteSys ETL

One run moves one window of changed rows from the ToteSys Postgres database (connection
`totesys_db`) into the Postgres warehouse (connection `warehouse_db`). Replaces the old polling
Lambda, transform Lambda, loader and Step Functions.

* **Window**: a run extracts the rows whose cursor column (`last_updated`) is in
  `[data_interval_start - lag, data_interval_end - lag)`. Consecutive runs tile time with no gap
  and no overlap, so every row is extracted once, even with many rows on a boundary timestamp;
  `lag` (default 60 s) leaves time for transactions that commit late (one open longer than
  `lag` is missed).
* **No gaps after pauses**: a *scheduled* run starts where the last successful scheduled run's
  window ended (the watermark moves only once the window is in the warehouse), so intervals
  skipped while the DAG was paused, failing or MWAA was updating are taken by the next scheduled
  run. A backfill or manual run takes exactly its interval. The first scheduled run (no
  watermark yet) takes a full snapshot, so unpausing a new deployment is all it takes.
* **Extract** (one task per table): `<table>/YYYY/MM/DD/HHMM/<table>-<window start>-<window end>.parquet`
  in the ingestion bucket (Parquet, or CSV by Param) and a run manifest
  `_manifests/…/manifest-<window start>-<window end>.json`. Emits the `ingestion` asset.
* **Land** (one task per table): the window's file streams from S3 into `COPY
  staging.<table>_landed`; a rerun replaces the versions it lands again and keeps those the
  source no longer has; the count must match the manifest. `staging.<table>` is the newest
  version per primary key.
* **Prepare**: the warehouse migrations it lacks (`include/sql/warehouse/migrations/`, each once,
  recorded in `staging.schema_migrations`); on most runs none, so no DDL and no locks.
* **Model**: `include/sql/warehouse/dim_*.sql` (type 1, with cascades, each row with its source
  version), then `fact_*.sql` (one row per version of an order or payment), one transaction each.
* **Gate**: `check_tables`, one per star table, over every row the window covers (what it landed,
  whoever modelled it first): each landed version has its fact row and each fact row its
  dimension rows; each dimension row holds what the newest landed source rows say (compared
  whole); counts match staging. A failing check fails the run, naming the check.
* **Export**: the star rows the window covers, as Parquet in the processed bucket at
  `<star table>/YYYY/MM/DD/HHMM/<table>-<window start>-<window end>.parquet`. A scheduled run
  that failed after its model leaves nothing stranded: the next one widens over its window and
  checks and exports those rows. Emits `warehouse` (row counts per star table) and `processed`.
* **Config**: tables, primary keys and timestamp cursor columns from
  `include/config/totesys_tables.json`, or the Variable `totesys_tables_config` (`s3://bucket/key`
  or the JSON itself), checked against the live catalog and against what the star is built from
  before anything is extracted (a missing table, another key or cursor, or a missing column fails
  the run, naming them). An added table is extracted and landed (its staging table made from its
  columns); the star models the tables it knows. Schedule, lag and statement timeout
  are Airflow config options `conveyor.totesys_cron` (default `*/3 * * * *`),
  `conveyor.totesys_lag_seconds` (60) and `conveyor.totesys_statement_timeout_seconds` (900; every
  source and warehouse session, the model and check operators' included).
* **Params**: `full_snapshot` extracts every row instead of the delta; `output_format`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator, SQLTableCheckOperator
from airflow.sdk import CronDataIntervalTimetable, Param, Variable, chain, dag, get_current_context, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from conveyor import config, intervals, paths, postgres
from conveyor.assets import INGESTION, PROCESSED, WAREHOUSE
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import (
    AWS_CONN_ID,
    TOTESYS_CONFIG_VARIABLE,
    TOTESYS_CONN_ID,
    WAREHOUSE_CONN_ID,
    names_from_variable,
)
from conveyor.totesys import gate, migrations, star, tables, warehouse, windows

DAG_ID = "totesys_etl"
DEFAULT_CONFIG = "config/totesys_tables.json"
# Airflow configuration is loaded at start-up: reading it here does no I/O.
CRON = conf.get("conveyor", "totesys_cron", fallback="*/3 * * * *")
LAG = timedelta(seconds=conf.getint("conveyor", "totesys_lag_seconds", fallback=60))
STATEMENT_TIMEOUT = timedelta(
    seconds=conf.getint("conveyor", "totesys_statement_timeout_seconds", fallback=900)
)
log = logging.getLogger(__name__)
# The run's window, for the SQL the operators run (a bind parameter, or a literal in the checks:
# window names are digits, T, Z, dashes and "full").
WINDOW_NAME = "{{ ti.xcom_pull(task_ids='plan_window')['name'] }}"
WINDOW_SQL = f"'{WINDOW_NAME}'"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    catchup=False,  # a scheduled run after a pause extracts the gap itself (see the window)
    max_active_runs=1,  # windows are extracted in order
    default_args=DEFAULT_ARGS,
    template_searchpath=[str(paths.include_dir())],  # the warehouse SQL: sql/warehouse/*.sql
    tags=[Tag.CONVEYOR, Tag.TOTESYS, Tag.POSTGRES, Tag.S3],
    doc_md=__doc__,
    params={
        "full_snapshot": Param(
            False,
            type="boolean",
            title="Full snapshot",
            description="Extract every row instead of the window's changes.",
        ),
        "output_format": Param("parquet", type="string", enum=list(tables.FORMATS), title="Output format"),
    },
)
def totesys_etl():
    @task
    def plan_window(dag_run=None, params=None) -> dict:
        """The run's cursor window: its interval less the lag; scheduled runs from the watermark.

        The first scheduled run of a deployment (no watermark yet) takes a full snapshot: the
        warehouse needs every dimension row before its first facts. A run triggered without a
        logical date has no interval: it fails at once, saying what to pass."""
        data_interval_start, data_interval_end = intervals.require_data_interval(dag_run)
        watermark = None
        full_snapshot = params["full_snapshot"]
        if dag_run.run_type == windows.SCHEDULED:
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            watermark = windows.read_watermark(s3, names_from_variable().bucket("ingestion"), DAG_ID)
            if watermark is None and not full_snapshot:
                log.info("the first scheduled run (no watermark yet): taking a full snapshot")
                full_snapshot = True
        window = windows.run_window(
            data_interval_start, data_interval_end, LAG, run_type=dag_run.run_type, watermark=watermark
        )
        if window.widened_from:
            log.info(
                "scheduled run starts at the watermark %s (its own window: %s)",
                window.start,
                window.widened_from,
            )
        return dataclasses.replace(window, full_snapshot=full_snapshot).to_dict()

    @task
    def tables_to_extract() -> list[dict]:
        """Read the table config; check it against the live catalog and what the star is built from."""
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        try:
            text, origin = config.config_text(
                s3,
                default=paths.include_dir() / DEFAULT_CONFIG,
                variable_name=TOTESYS_CONFIG_VARIABLE,
                variable=Variable.get(TOTESYS_CONFIG_VARIABLE, default=None),
            )
            specs = tables.parse_tables_config(text, origin=origin)
            with postgres.connect(TOTESYS_CONN_ID, STATEMENT_TIMEOUT) as conn:
                columns = {spec.name: [c.name for c in tables.catalog_columns(conn, spec)] for spec in specs}
            if problems := star.check_model_sources(specs, columns):
                raise config.ConfigError(f"{origin}: {'; '.join(problems)}")
        except config.ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc  # retrying cannot fix the config
        for extra in sorted(set(columns) - set(star.MODEL_SOURCES)):
            log.info("table %r is extracted and landed; the star does not model it", extra)
        return [s.to_dict() for s in specs]

    @task(map_index_template="{{ table_name }}")
    def extract_table(table: dict, window: dict, params=None) -> dict:
        """Stream one table's changed rows to the ingestion bucket."""
        from conveyor.totesys import extract  # pyarrow: imported when the task runs, not at parse

        get_current_context()["table_name"] = table["name"]
        spec = tables.TableSpec.from_dict(table)
        with postgres.connect(TOTESYS_CONN_ID, STATEMENT_TIMEOUT) as conn:
            return extract.extract_table(
                conn,
                S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
                names_from_variable().bucket("ingestion"),
                spec,
                tables.catalog_columns(conn, spec),
                windows.Window.from_dict(window),
                fmt=params["output_format"],
            )

    @task(outlets=[INGESTION])
    def write_manifest(
        results: list[dict],
        window: dict,
        dag_run=None,
        data_interval_start=None,
        data_interval_end=None,
        outlet_events=None,
    ) -> dict:
        """One manifest per run: what each table's extract produced."""
        # Read the mapped results once, by index: each pass re-reads them from XCom, and iterating
        # asks for one past the end, which the API server logs as an error.
        results = [results[i] for i in range(len(results))]
        run_window = windows.Window.from_dict(window)
        manifest = {
            "dag_id": DAG_ID,
            "run_id": dag_run.run_id,
            "run_type": dag_run.run_type,
            "data_interval": [data_interval_start.isoformat(), data_interval_end.isoformat()],
            "window": [run_window.start.isoformat(), run_window.end.isoformat()],
            "lag_seconds": LAG.total_seconds(),
            "tables": sorted(results, key=lambda r: r["table"]),
        }
        bucket = names_from_variable().bucket("ingestion")
        key = windows.manifest_key(run_window)
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        rows = sum(r["rows"] for r in results)
        outlet_events[INGESTION].extra = {"manifest": f"s3://{bucket}/{key}", "rows": rows}
        return {
            "manifest": key,
            "window": manifest["window"],
            "rows": {r["table"]: r["rows"] for r in results},
        }

    @task
    def prepare_warehouse() -> dict:
        """Apply the warehouse migrations it lacks (none, on most runs); refresh the ISO 4217 names;
        check the operators' sessions keep the statement timeout."""
        try:
            timeout = postgres.check_operator_sessions(WAREHOUSE_CONN_ID, STATEMENT_TIMEOUT)
        except postgres.SessionSettingsLost as exc:
            raise AirflowFailException(str(exc)) from exc  # the connection must change: no retries
        with postgres.connect(WAREHOUSE_CONN_ID, STATEMENT_TIMEOUT) as conn:
            return {
                "migrations": migrations.migrate(conn),
                "currency_names": warehouse.load_currency_names(conn),
                "operator_statement_timeout": timeout,
            }

    @task(map_index_template="{{ table_name }}")
    def land_table(entry: dict, window: dict) -> dict:
        """Stream one table's extract of the window into staging (COPY); a landing again replaces its versions."""
        get_current_context()["table_name"] = entry["table"]
        with postgres.connect(WAREHOUSE_CONN_ID, STATEMENT_TIMEOUT) as conn:
            return warehouse.land(
                conn,
                S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
                names_from_variable().bucket("ingestion"),
                entry,
                windows.Window.from_dict(window),
            )

    # The star schema, built inside the warehouse: dimensions, then facts, one transaction each.
    model_dimensions, model_facts = (
        SQLExecuteQueryOperator(
            task_id=task_id,
            conn_id=WAREHOUSE_CONN_ID,
            hook_params=postgres.hook_params(STATEMENT_TIMEOUT),
            sql=warehouse.model_files(group),
            parameters={"window": WINDOW_NAME},
            split_statements=False,
            return_last=False,
        )
        for task_id, group in (("model_dimensions", star.DIMENSIONS), ("model_facts", star.FACTS))
    )
    # The gate, one check per star table over the rows the window covers (see conveyor.totesys.gate):
    # each landed version has its fact row and its dimension rows; each dimension row holds what
    # the newest landed source rows say. (Landing already refused any count unlike the manifest's.)
    check_tables = SQLTableCheckOperator.partial(
        task_id="check_tables",
        conn_id=WAREHOUSE_CONN_ID,
        hook_params=postgres.hook_params(STATEMENT_TIMEOUT),
        map_index_template="{{ task.table.rsplit(' AS ', 1)[-1] }}",
    ).expand_kwargs(gate.all_checks(WINDOW_SQL))

    @task
    def export_star(window: dict) -> list[dict]:
        """The star rows this window covers, as Parquet in the processed bucket (one file a table)."""
        with postgres.connect(WAREHOUSE_CONN_ID, STATEMENT_TIMEOUT) as conn:
            return warehouse.export_all(
                conn,
                S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
                names_from_variable().bucket("processed"),
                windows.Window.from_dict(window),
            )

    @task(outlets=[WAREHOUSE, PROCESSED])
    def declare_warehouse(exports: list[dict], window: dict, dag_run=None, outlet_events=None) -> dict:
        """Row counts per star table on the warehouse asset; then, for a scheduled run, the
        watermark moves to this window's end (only a run that reached the warehouse moves it)."""
        with postgres.connect(WAREHOUSE_CONN_ID, STATEMENT_TIMEOUT) as conn:
            counts = warehouse.star_counts(conn)
        exports = [e for e in exports if e["key"]]
        outlet_events[WAREHOUSE].extra = {"window": window["name"], "rows": counts}
        outlet_events[PROCESSED].extra = {
            "window": window["name"],
            "files": len(exports),
            "rows": {e["table"]: e["rows"] for e in exports},
        }
        if dag_run.run_type == windows.SCHEDULED:
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            bucket = names_from_variable().bucket("ingestion")
            windows.advance_watermark(s3, bucket, DAG_ID, windows.Window.from_dict(window), dag_run.run_id)
        return {"rows": counts, "exported": len(exports)}

    window = plan_window()
    results = extract_table.partial(window=window).expand(table=tables_to_extract())
    manifest = write_manifest(results, window)
    landed = land_table.partial(window=window).expand(entry=results)
    exports = export_star(window)
    chain(
        manifest,
        prepare_warehouse(),
        landed,
        model_dimensions,
        model_facts,
        check_tables,
        exports,
    )
    declare_warehouse(exports, window)


totesys_etl()
