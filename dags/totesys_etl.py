"""### ToteSys ETL

One window of changed ToteSys rows (`totesys_db`) a run, via the ingestion bucket into the Postgres star
(`warehouse_db`), checked, exported to processed: **extract** (`check_drift` first) → **land** → **model** →
**gate** → **export**; done 15 min after its interval, else a deadline alert. `docs/pipelines/totesys_etl.md`.
"""

from datetime import timedelta

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator, SQLTableCheckOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TaskGroup, chain, dag, get_current_context, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from conveyor import deadlines, intervals, paths, postgres
from conveyor.assets import INGESTION, PROCESSED, WAREHOUSE
from conveyor.config import ConfigError
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import AWS_CONN_ID, TOTESYS_CONN_ID, WAREHOUSE_CONN_ID
from conveyor.resources import names_from_variable as resource_names
from conveyor.totesys import drift, gate, migrations, star, tables, warehouse, windows

DAG_ID = "totesys_etl"
# Airflow config is loaded at start-up (no I/O here). TIMEOUT: every source and warehouse statement's.
CRON = conf.get("conveyor", "totesys_cron", fallback="*/3 * * * *")
LAG = timedelta(seconds=conf.getint("conveyor", "totesys_lag_seconds", fallback=60))
TIMEOUT = timedelta(seconds=conf.getint("conveyor", "totesys_statement_timeout_seconds", fallback=900))
FULL_SNAPSHOT = "Extract every row instead of the window's changes."
WAREHOUSE_SQL = {"conn_id": WAREHOUSE_CONN_ID, "hook_params": postgres.hook_params(TIMEOUT)}
MODEL_SQL = {**WAREHOUSE_SQL, "split_statements": False, "return_last": False}  # a group, one transaction


def s3():
    return S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    deadline=deadlines.after_interval_end(DAG_ID, CRON),
    catchup=False,  # a scheduled run after a pause extracts the gap itself (see the window)
    max_active_runs=1,  # windows are extracted in order
    default_args=DEFAULT_ARGS,
    template_searchpath=[str(paths.sql_path())],  # the model SQL: warehouse/<table>.sql
    tags=[Tag.CONVEYOR, Tag.TOTESYS, Tag.POSTGRES, Tag.S3],
    doc_md=__doc__,
    params={
        "full_snapshot": Param(False, type="boolean", title="Full snapshot", description=FULL_SNAPSHOT),
        "output_format": Param("parquet", type="string", enum=list(tables.FORMATS), title="Output format"),
    },
)
def totesys_etl():
    @task
    def plan_window(dag_run=None, params=None) -> dict:
        """The run's cursor window (its interval less the lag; a scheduled run's from the watermark)."""
        start, end = intervals.require_data_interval(dag_run)  # a run without an interval fails here
        kind, mark = dag_run.run_type, None
        if kind == windows.SCHEDULED:
            mark = windows.read_watermark(s3(), resource_names().bucket("ingestion"), DAG_ID)
        snapshot = params["full_snapshot"]
        return windows.plan(start, end, LAG, run_type=kind, watermark=mark, full_snapshot=snapshot).to_dict()

    @task
    def tables_to_extract() -> list[dict]:
        """The table config, checked against the live catalog and what the star is built from."""
        try:
            text, origin = tables.config_text(s3())
            with postgres.connect(TOTESYS_CONN_ID, TIMEOUT) as conn:
                specs = tables.checked_specs(conn, text, origin)
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc  # retrying cannot fix the config
        return [s.to_dict() for s in specs]

    @task
    def check_drift(specs: list[dict], window: dict, dag_run=None) -> list[dict]:
        """Each table's live schema against the warehouse's: changes carried by policy, or the run stops."""
        return drift.check(TOTESYS_CONN_ID, WAREHOUSE_CONN_ID, TIMEOUT, specs, window["name"], dag_run)

    @task(map_index_template="{{ table_name }}")
    def extract_table(table: dict, window: dict, params=None, dag_run=None) -> dict:
        """Stream one table's changed rows to the ingestion bucket."""
        from conveyor.totesys import extract  # pyarrow: imported when the task runs, not at parse

        get_current_context()["table_name"] = table["name"]
        spec, bucket = tables.TableSpec.from_dict(table), resource_names().bucket("ingestion")
        run_window, fmt = windows.Window.from_dict(window), params["output_format"]
        with postgres.connect(TOTESYS_CONN_ID, TIMEOUT) as conn:  # one transaction, the table's DDL held off
            drift.hold(conn, WAREHOUSE_CONN_ID, TIMEOUT, table, window["name"], dag_run)
            columns = tables.catalog_columns(conn, spec)
            return extract.extract_table(conn, s3(), bucket, spec, columns, run_window, fmt=fmt)

    @task(outlets=[INGESTION])
    def write_manifest(results: list[dict], window: dict, dag_run=None, outlet_events=None) -> dict:
        """One manifest per run: what each table's extract produced."""
        bucket = resource_names().bucket("ingestion")
        key, manifest = windows.write_manifest(
            s3(), bucket, windows.Window.from_dict(window), results, dag_run=dag_run, lag=LAG
        )
        rows = {t["table"]: t["rows"] for t in manifest["tables"]}
        outlet_events[INGESTION].extra = {"manifest": f"s3://{bucket}/{key}", "rows": sum(rows.values())}
        return {"manifest": key, "window": manifest["window"], "rows": rows}

    @task
    def prepare_warehouse() -> dict:
        """Apply the migrations the warehouse lacks, refresh currency names, check session settings."""
        try:
            return migrations.prepare_warehouse(WAREHOUSE_CONN_ID, TIMEOUT)
        except postgres.SessionSettingsLost as exc:
            raise AirflowFailException(str(exc)) from exc  # the connection must change: no retries

    @task(map_index_template="{{ table_name }}")
    def land_table(entry: dict, window: dict) -> dict:
        """COPY one table's extract into staging, replacing the versions it lands again."""
        get_current_context()["table_name"] = entry["table"]
        with postgres.connect(WAREHOUSE_CONN_ID, TIMEOUT) as conn:
            bucket = resource_names().bucket("ingestion")
            return warehouse.land(conn, s3(), bucket, entry, windows.Window.from_dict(window))

    @task
    def plan_checks(window_name: str) -> list[dict]:
        """The gate's checks, one set per star table, over the rows this window covers."""
        return gate.window_checks(window_name)

    @task
    def export_star(window: dict) -> list[dict]:
        """The star rows this window covers, as Parquet in the processed bucket (one file a table)."""
        with postgres.connect(WAREHOUSE_CONN_ID, TIMEOUT) as conn:
            bucket = resource_names().bucket("processed")
            return warehouse.export_all(conn, s3(), bucket, windows.Window.from_dict(window))

    @task(outlets=[WAREHOUSE, PROCESSED])
    def declare_warehouse(exports: list[dict], window: dict, outlet_events=None) -> dict:
        """Row counts per star table on the warehouse asset; the exported files on processed."""
        with postgres.connect(WAREHOUSE_CONN_ID, TIMEOUT) as conn:
            counts = warehouse.star_counts(conn)
        exported = {e["table"]: e["rows"] for e in exports if e["key"]}
        outlet_events[WAREHOUSE].extra = {"window": window["name"], "rows": counts}
        outlet_events[PROCESSED].extra = {"window": window["name"], "files": len(exported), "rows": exported}
        return {"rows": counts, "exported": len(exported)}

    @task
    def advance_watermark(window: dict, dag_run=None) -> str | None:
        """A scheduled run that reached the warehouse moves the watermark to its window's end."""
        if dag_run.run_type != windows.SCHEDULED:
            print(f"a {dag_run.run_type} run leaves the watermark alone")
            return None
        run_window, bucket = windows.Window.from_dict(window), resource_names().bucket("ingestion")
        return windows.advance_watermark(s3(), bucket, DAG_ID, run_window, dag_run.run_id).isoformat()

    # Task groups for the graph; ids stay unprefixed (the runbook, alerts and tests name them).
    with TaskGroup("extract", prefix_group_id=False, tooltip="changed rows → ingestion bucket + manifest"):
        window = plan_window()
        specs = check_drift(tables_to_extract(), window)
        results = extract_table.partial(window=window).expand(table=specs)
        manifest = write_manifest(results, window)
    with TaskGroup("land", prefix_group_id=False, tooltip="migrations; the window's files → staging"):
        prepared = prepare_warehouse()
        landed = land_table.partial(window=window).expand(entry=results)
    with TaskGroup("model", prefix_group_id=False, tooltip="staging → star schema, in SQL"):
        model_dimensions = SQLExecuteQueryOperator(
            task_id="model_dimensions",
            doc_md="Build the star's dimensions from staging (warehouse/dim_*.sql), in one transaction.",
            sql=paths.sql_files("warehouse", star.DIMENSIONS),
            parameters={"window": window["name"]},
            **MODEL_SQL,
        )
        model_facts = SQLExecuteQueryOperator(
            task_id="model_facts",
            doc_md="Build the star's facts from staging (warehouse/fact_*.sql), in one transaction.",
            sql=paths.sql_files("warehouse", star.FACTS),
            parameters={"window": window["name"]},
            **MODEL_SQL,
        )
    with TaskGroup("gate", prefix_group_id=False, tooltip="one check per star table (conveyor.totesys.gate)"):
        checks = plan_checks(window["name"])
        check_tables = SQLTableCheckOperator.partial(
            task_id="check_tables",
            doc_md="Check one star table against staging over the rows the window covers.",
            map_index_template="{{ task.table.rsplit(' AS ', 1)[-1] }}",
            **WAREHOUSE_SQL,
        ).expand_kwargs(checks)
    with TaskGroup("export", prefix_group_id=False, tooltip="star rows → processed; assets; watermark"):
        exports = export_star(window)
        declared = declare_warehouse(exports, window)
        watermark = advance_watermark(window)

    # fmt: off
    chain(
        [window, specs], results, manifest,  # extract
        prepared, landed,                    # land
        model_dimensions, model_facts,       # model
        checks, check_tables,                # gate
        exports, declared, watermark,        # export
    )
    # fmt: on


totesys_etl()
