"""The warehouse side of totesys_etl (connection `warehouse_db`): land, model, check, export.

1. **Land**: a window's ingested Parquet streams from S3 (ranged reads, one row group at a time)
   through Arrow's CSV writer into `COPY staging.<table>_landed`, tagged with the window; a rerun
   of the window replaces its own rows in the same transaction. `staging.<table>` (a view) is the
   newest landed version per primary key.
2. **Model**: `include/sql/warehouse/dim_*.sql` then `fact_*.sql`, each group one transaction.
3. **Export**: the star rows a window wrote, streamed to Parquet in the processed bucket as the
   extract streams ToteSys rows.
"""

from __future__ import annotations

import io

from conveyor import paths
from conveyor.s3 import S3ObjectReader
from conveyor.totesys.windows import Window

SCHEMA_SQL = ("warehouse", "schema.sql")
DIMENSIONS = (
    "dim_date",
    "dim_staff",
    "dim_location",
    "dim_currency",
    "dim_design",
    "dim_counterparty",
    "dim_payment_type",
    "dim_transaction",
)
FACTS = ("fact_sales_order", "fact_purchase_order", "fact_payment")
STAR = DIMENSIONS + FACTS
# The key of each star table (facts: the source id and the version), for exports and checks.
STAR_KEYS = {
    "dim_date": ("date_id",),
    "dim_staff": ("staff_id",),
    "dim_location": ("location_id",),
    "dim_currency": ("currency_id",),
    "dim_design": ("design_id",),
    "dim_counterparty": ("counterparty_id",),
    "dim_payment_type": ("payment_type_id",),
    "dim_transaction": ("transaction_id",),
    "fact_sales_order": ("sales_order_id", "last_updated_date", "last_updated_time"),
    "fact_purchase_order": ("purchase_order_id", "last_updated_date", "last_updated_time"),
    "fact_payment": ("payment_id", "last_updated_date", "last_updated_time"),
}
ROW_BATCH = 16_384  # Parquet rows decoded and sent to COPY at a time (bigger batches: more memory, no faster)
READ_BUFFER = 8 * 1024 * 1024  # bytes per ranged GET


class LandingMismatch(RuntimeError):
    """COPY landed a different number of rows than the manifest says the window extracted."""


def model_files(group: tuple[str, ...]) -> list[str]:
    """The SQL files of a model group, relative to include/ (for SQLExecuteQueryOperator)."""
    return [f"sql/warehouse/{name}.sql" for name in group]


def create_schema(conn) -> None:
    """Create (or complete) every staging and star table; rerunnable."""
    conn.execute(paths.sql_path(*SCHEMA_SQL).read_text())
    conn.commit()


def load_currency_names(conn) -> int:
    """ISO 4217 code -> name into staging.iso_4217, from pycountry's maintained list."""
    import pycountry

    rows = sorted((c.alpha_3, c.name) for c in pycountry.currencies)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO staging.iso_4217 (currency_code, currency_name) VALUES (%s, %s) "
            "ON CONFLICT (currency_code) DO UPDATE SET currency_name = excluded.currency_name "
            "WHERE staging.iso_4217.currency_name IS DISTINCT FROM excluded.currency_name",
            rows,
        )
    conn.commit()
    return len(rows)


def _open(s3, bucket: str, key: str):
    """The extract file, opened once: (its columns in the file's order, the source `_chunks` reads).

    The columns come from the Parquet footer or the CSV header line, not from the manifest
    entry's `schema`: an XCom round trip through Postgres (jsonb, as on MWAA) reorders a dict's
    keys, and COPY takes values by position.
    """
    import csv

    import pyarrow.parquet as pq

    reader = io.BufferedReader(S3ObjectReader(s3, bucket, key), READ_BUFFER)
    if key.endswith(".csv"):  # output_format=csv: Arrow's CSV, its header line first
        return next(csv.reader([reader.readline().decode("utf-8")])), reader
    parquet = pq.ParquetFile(reader)
    return parquet.schema_arrow.names, parquet


def _chunks(source):
    """The opened extract file as CSV chunks for COPY, read from S3 a part at a time.

    Parquet is read one row group at a time (ranged GETs) and written by Arrow as CSV: NULL
    unquoted and empty, '' quoted (COPY tells them apart the same way); timestamps, decimals,
    dates and booleans in forms COPY reads. A CSV extract (past its header) passes through as it is.
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if not isinstance(source, pq.ParquetFile):
        while chunk := source.read(READ_BUFFER):
            yield chunk
        return
    options = pa_csv.WriteOptions(include_header=False)
    # One thread: Postgres, not decoding, is the slower side, and Arrow's thread pools cost memory.
    for batch in source.iter_batches(batch_size=ROW_BATCH, use_threads=False):
        buffer = io.BytesIO()
        pa_csv.write_csv(batch, buffer, write_options=options)
        yield buffer.getbuffer()


def land(conn, s3, bucket: str, entry: dict, window: Window) -> dict:
    """Land one table's extract of `window` (its manifest entry) in staging.<table>_landed.

    One transaction, one landing of a window at a time: the window's earlier rows go, the file's
    rows come, and the count must be the manifest's; a failure anywhere leaves the table as it was.
    """
    from psycopg import sql
    from psycopg.copy import LibpqWriter

    table = entry["table"]
    landed = sql.Identifier("staging", f"{table}_landed")
    rows = 0
    with conn.transaction():
        # Two runs may land the same window at once (a backfill runs beside the scheduled runs):
        # one at a time, or each would count only its own rows and both copies would stay.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"conveyor.land:{table}:{window.name}",))
        conn.execute("SELECT set_config('conveyor.window_name', %s, true)", (window.name,))
        replaced = conn.execute(
            sql.SQL("DELETE FROM {} WHERE window_name = %s").format(landed), (window.name,)
        ).rowcount
        if entry["key"]:
            names, source = _open(s3, bucket, entry["key"])
            columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(landed, columns)
            # psycopg's default writer queues up to 1024 blocks (128 MiB) when the server is the
            # slower side, as it is here: write through libpq directly so memory stays one batch.
            with conn.cursor() as cur, cur.copy(copy_sql, writer=LibpqWriter(cur)) as copy:
                for chunk in _chunks(source):
                    copy.write(chunk)
            rows = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE window_name = %s").format(landed), (window.name,)
            ).fetchone()[0]
        if rows != entry["rows"]:
            raise LandingMismatch(
                f"{table}: landed {rows} rows of window {window.name}, the manifest says {entry['rows']} "
                f"(s3://{bucket}/{entry['key']})"
            )
    return {"table": table, "rows": rows, "replaced": replaced}


def export_all(conn, s3, bucket: str, window: Window) -> list[dict]:
    """Every star table's rows `window` wrote, one Parquet object per table that has any."""
    return [{"table": table, **export(conn, s3, bucket, table, window)} for table in STAR]


def export(conn, s3, bucket: str, table: str, window: Window) -> dict:
    """The star rows `window` wrote, as Parquet at `<table>/YYYY/MM/DD/HHMM/<table>-<window>.parquet`."""
    from psycopg import sql

    from conveyor.totesys import extract
    from conveyor.totesys.tables import table_columns

    keys = STAR_KEYS[table]
    columns = [c for c in table_columns(conn, table) if c.name != "window_name"]
    select = sql.SQL("SELECT {cols} FROM {table} WHERE window_name = {window} ORDER BY {keys}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        table=sql.Identifier(table),
        window=sql.Literal(window.name),
        keys=sql.SQL(", ").join(sql.Identifier(k) for k in keys),
    )
    return extract.stream_to_s3(
        conn, s3, bucket, extract.star_key(table, window), select, columns, table=table
    )


def star_counts(conn) -> dict[str, int]:
    """Rows per star table."""
    from psycopg import sql

    return {
        table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        for table in STAR
    }


# --- the gate -------------------------------------------------------------------------------------

# The dimension row each fact column must find (dates: dim_date).
FACT_REFERENCES = {
    "fact_sales_order": {
        "sales_staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "design_id": ("dim_design", "design_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "agreed_payment_date": ("dim_date", "date_id"),
        "agreed_delivery_date": ("dim_date", "date_id"),
    },
    "fact_purchase_order": {
        "staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "agreed_payment_date": ("dim_date", "date_id"),
        "agreed_delivery_date": ("dim_date", "date_id"),
    },
    "fact_payment": {
        "transaction_id": ("dim_transaction", "transaction_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "payment_type_id": ("dim_payment_type", "payment_type_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "payment_date": ("dim_date", "date_id"),
    },
}


def column_checks(fact: str, window_sql: str) -> dict:
    """SQLColumnCheckOperator arguments: no null source id or reference in the window's rows of
    a fact table."""
    columns = (STAR_KEYS[fact][0], *FACT_REFERENCES[fact])
    return {
        "table": fact,
        "column_mapping": {column: {"null_check": {"equal_to": 0}} for column in columns},
        "partition_clause": f"window_name = {window_sql}",
    }


def dimension_checks() -> dict:
    """SQLTableCheckOperator arguments: no null and no duplicate key in any dimension.

    The checked "table" is a one-row subquery of counts, one pair per dimension."""
    counts = []
    for dim in DIMENSIONS:
        [key] = STAR_KEYS[dim]
        counts.append(f"(SELECT count(*) FILTER (WHERE {key} IS NULL) FROM {dim}) AS {dim}_null_keys")
        counts.append(f"(SELECT count({key}) - count(DISTINCT {key}) FROM {dim}) AS {dim}_duplicate_keys")
    checks = {}
    for dim in DIMENSIONS:
        checks[f"{dim}_keys_not_null"] = {"check_statement": f"{dim}_null_keys = 0"}
        checks[f"{dim}_keys_unique"] = {"check_statement": f"{dim}_duplicate_keys = 0"}
    return {"table": f"(SELECT {', '.join(counts)}) AS dimension_keys", "checks": checks}


def fact_checks(fact: str, window_sql: str) -> dict:
    """SQLTableCheckOperator arguments for the window's rows of a fact table: every row finds each
    of its dimension rows, and there is one row per version.

    The checked "table" is a one-row subquery of counts, so a window with no rows in this fact
    table checks (and passes) too instead of leaving the operator nothing to read.
    """
    references = FACT_REFERENCES[fact]
    keys = ", ".join(STAR_KEYS[fact])
    counts = [
        f"count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM {dim} AS d WHERE d.{key} = f.{column})) AS missing_{column}"
        for column, (dim, key) in references.items()
    ]
    counts.append(f"count(*) - count(DISTINCT ({keys})) AS duplicate_versions")
    source = (
        f"(SELECT {', '.join(counts)} FROM {fact} AS f WHERE f.window_name = {window_sql}) AS window_rows"
    )
    checks = {
        f"{column}_in_{dim}": {"check_statement": f"missing_{column} = 0"}
        for column, (dim, _) in references.items()
    }
    checks["one_row_per_version"] = {"check_statement": "duplicate_versions = 0"}
    return {"table": source, "checks": checks}
