"""
### ToteSys ETL — extract stage

Incrementally extracts changed rows from the ToteSys Postgres database (connection `totesys_db`)
to the ingestion bucket, one mapped task per table. Replaces the old 3-minute polling Lambda.

* **Window**: each run extracts the rows whose cursor column (`last_updated`) is in
  `[data_interval_start - lag, data_interval_end - lag)`. Consecutive runs tile time with no gap
  and no overlap, so every row is extracted exactly once, even with many rows on a boundary
  timestamp; `lag` (default 60 s) leaves time for transactions that commit late.
* **Output**: `<table>/YYYY/MM/DD/HHMM/<table>-<window end>.parquet` (Parquet, or CSV by Param)
  and a run manifest `_manifests/…/manifest-<window end>.json` (tables, windows, rows, schema,
  keys). An empty delta writes no file but is in the manifest. Reruns rewrite the same keys.
  Emits the `ingestion` asset.
* **Config**: tables, primary keys and cursor columns come from
  `include/config/totesys_tables.json` (or the Variable `totesys_tables_config`, `s3://…`),
  checked against the live catalog. Schedule and lag are Airflow config options
  `conveyor.totesys_cron` (default `*/3 * * * *`) and `conveyor.totesys_lag_seconds`.
* **Params**: `full_snapshot` extracts every row instead of the delta; `output_format`.
"""

from __future__ import annotations

import json
from datetime import timedelta

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import CronDataIntervalTimetable, Param, Variable, dag, get_current_context, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from conveyor import extract, ingestion, paths
from conveyor.assets import INGESTION
from conveyor.defaults import DEFAULT_ARGS, START_DATE, Tag
from conveyor.resources import AWS_CONN_ID, TOTESYS_CONFIG_VARIABLE, TOTESYS_CONN_ID, names_from_variable

DAG_ID = "totesys_etl"
DEFAULT_CONFIG = "config/totesys_tables.json"
# Airflow configuration is loaded at start-up: reading it here does no I/O.
CRON = conf.get("conveyor", "totesys_cron", fallback="*/3 * * * *")
LAG = timedelta(seconds=conf.getint("conveyor", "totesys_lag_seconds", fallback=60))
STATEMENT_TIMEOUT = timedelta(
    seconds=conf.getint("conveyor", "totesys_statement_timeout_seconds", fallback=900)
)


def _tables_config(s3) -> tuple[str, list[extract.TableSpec]]:
    location = Variable.get(TOTESYS_CONFIG_VARIABLE, default=None) or str(
        paths.include_dir() / DEFAULT_CONFIG
    )
    return extract.parse_tables_config(ingestion.read_config_text(location, s3), origin=location)


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # windows are extracted in order
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.TOTESYS, Tag.POSTGRES, Tag.S3],
    doc_md=__doc__,
    params={
        "full_snapshot": Param(
            False,
            type="boolean",
            title="Full snapshot",
            description="Extract every row instead of the window's changes.",
        ),
        "output_format": Param("parquet", type="string", enum=list(extract.FORMATS), title="Output format"),
    },
)
def totesys_etl():
    @task
    def tables_to_extract() -> list[dict]:
        """Read the table config and check every table and column against the live catalog."""
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        try:
            _, specs = _tables_config(s3)
            with extract.connect(TOTESYS_CONN_ID, STATEMENT_TIMEOUT) as conn:
                for spec in specs:
                    extract.catalog_columns(conn, spec)
        except ingestion.ConfigError as exc:
            raise AirflowFailException(str(exc)) from exc  # retrying cannot fix the config
        return [
            {"name": s.name, "primary_key": s.primary_key, "cursor": s.cursor, "columns": s.columns}
            for s in specs
        ]

    @task(map_index_template="{{ table_name }}", retry_exponential_backoff=True)
    def extract_table(table: dict, params=None, data_interval_start=None, data_interval_end=None) -> dict:
        """Stream one table's changed rows to the ingestion bucket."""
        get_current_context()["table_name"] = table["name"]
        spec = extract.TableSpec(
            table["name"],
            table["primary_key"],
            table["cursor"],
            tuple(table["columns"]) if table["columns"] else None,
        )
        window = extract.extract_window(data_interval_start, data_interval_end, LAG)
        with extract.connect(TOTESYS_CONN_ID, STATEMENT_TIMEOUT) as conn:
            return extract.extract_table(
                conn,
                S3Hook(aws_conn_id=AWS_CONN_ID).get_conn(),
                names_from_variable().bucket("ingestion"),
                spec,
                extract.catalog_columns(conn, spec),
                window,
                full_snapshot=params["full_snapshot"],
                fmt=params["output_format"],
            )

    @task(outlets=[INGESTION])
    def write_manifest(
        results: list[dict],
        dag_run=None,
        data_interval_start=None,
        data_interval_end=None,
        outlet_events=None,
    ) -> dict:
        """One manifest per run: what each table's extract produced."""
        window = extract.extract_window(data_interval_start, data_interval_end, LAG)
        manifest = {
            "dag_id": DAG_ID,
            "run_id": dag_run.run_id,
            "data_interval": [data_interval_start.isoformat(), data_interval_end.isoformat()],
            "window": [window[0].isoformat(), window[1].isoformat()],
            "lag_seconds": LAG.total_seconds(),
            "tables": sorted(results, key=lambda r: r["table"]),
        }
        bucket = names_from_variable().bucket("ingestion")
        key = extract.manifest_key(window[1])
        S3Hook(aws_conn_id=AWS_CONN_ID).get_conn().put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        rows = sum(r["rows"] for r in results)
        outlet_events[INGESTION].extra = {"manifest": f"s3://{bucket}/{key}", "rows": rows}
        return {"manifest": key, "rows": {r["table"]: r["rows"] for r in results}}

    write_manifest(extract_table.expand(table=tables_to_extract()))


totesys_etl()
