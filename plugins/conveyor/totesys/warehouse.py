"""The warehouse side of totesys_etl (connection `warehouse_db`): land, model, export.

(Its schema comes from include/sql/warehouse/migrations/, applied by conveyor.totesys.migrations.)

1. **Land**: a window's ingested Parquet streams from S3 (ranged reads, one row group at a time)
   through Arrow's CSV writer into `COPY staging.<table>_landed`, tagged with the window. A window
   landed again replaces the versions it lands again and keeps the rest. `staging.<table>` (a
   view) is the newest landed version per primary key. A table the config adds gets its landing
   table from the extract's columns on first landing; the star models the tables it knows.
2. **Model**: `include/sql/warehouse/dim_*.sql` then `fact_*.sql`, each group one transaction.
3. **Export**: the star rows a window covers (`staging.<star table>_window`: built from what it
   landed, whoever modelled them first), streamed to Parquet in the processed bucket.
"""

from __future__ import annotations

import io
import logging
import re
from datetime import UTC

from conveyor.s3 import S3ObjectReader
from conveyor.totesys.star import STAR, STAR_KEYS, covered_rows
from conveyor.totesys.windows import Window

log = logging.getLogger(__name__)

ROW_BATCH = 16_384  # Parquet rows decoded and sent to COPY at a time (bigger batches: more memory, no faster)
READ_BUFFER = 8 * 1024 * 1024  # bytes per ranged GET


class LandingMismatch(RuntimeError):
    """COPY landed a different number of rows than the manifest says the window extracted."""


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


# Postgres types for the Arrow types the extract writes (extract.arrow_type), for a landing
# table made from an extract; anything else lands as text, as the extract wrote it.
_PG_TYPES = {
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "double": "double precision",
    "bool": "boolean",
    "date32[day]": "date",
    "timestamp[us]": "timestamp",
    "timestamp[us, tz=UTC]": "timestamptz",
    "time64[us]": "time",
}
_DECIMAL = re.compile(r"decimal128\((\d+), (\d+)\)")


def _pg_type(arrow_type: str) -> str:
    if match := _DECIMAL.fullmatch(arrow_type):
        return f"numeric({match[1]}, {match[2]})"
    return _PG_TYPES.get(arrow_type, "text")


def _create_landing_table(conn, entry: dict) -> bool:
    """Give a table the config added (one migrations/ does not know) its landing table and its
    newest-version view, from the extract's columns; True when it made them.

    The star models only the tables it knows; such a table lands beside them, ready for a model.
    """
    from psycopg import sql

    table = entry["table"]
    exists = "SELECT to_regclass(format('staging.%%I', %s::text))"
    if conn.execute(exists, (f"{table}_landed",)).fetchone()[0] is not None:
        return False
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"conveyor.land.create:{table}",))
    if conn.execute(exists, (f"{table}_landed",)).fetchone()[0] is not None:
        return False  # another landing made it while this one waited
    types = entry["schema"]
    names = entry.get("columns") or list(types)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {landed} ({columns}, window_name text NOT NULL "
            "DEFAULT current_setting('conveyor.window_name'))"
        ).format(
            landed=sql.Identifier("staging", f"{table}_landed"),
            columns=sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_pg_type(types[name])))
                for name in names
            ),
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX ON {} (window_name)").format(sql.Identifier("staging", f"{table}_landed"))
    )
    conn.execute(
        sql.SQL("CREATE INDEX ON {} ({}, {}, window_name)").format(
            sql.Identifier("staging", f"{table}_landed"),
            sql.Identifier(entry["primary_key"]),
            sql.Identifier(entry["cursor"]),
        )
    )
    conn.execute(newest_version_view(table, entry["primary_key"], entry["cursor"], names))
    log.warning(
        "table %r is new to the warehouse: created staging.%s_landed and staging.%s from its extract "
        "(%s); the star does not model it",
        table,
        table,
        table,
        ", ".join(f"{n} {_pg_type(types[n])}" for n in names),
    )
    return True


def newest_version_view(table: str, primary_key: str, cursor: str, columns: list[str]):
    """SQL: (re)create staging.<table>, the newest landed version of each key, with `columns`.

    The version of which no newer one was landed: a later cursor, then a later window name (a
    rerun of an old window never moves a row backwards), then the later physical row, so two
    copies of one version still give one row. A NULL cursor (a table the config adds may have
    one) counts as the newest, as DISTINCT ON's `ORDER BY cursor DESC` had it; a plain row
    comparison with a NULL is NULL, and every such version would be "newest". The star's
    landing tables are NOT NULL there, and migrations/004 writes theirs without the NULL cases.
    Written so (not as a DISTINCT ON) the planner
    inlines it and drives from the reading query's keys into the (key, cursor, window_name) index,
    so a window's model reads the history of the keys it landed only (migrations/004).
    """
    from psycopg import sql

    landed = sql.Identifier("staging", f"{table}_landed")
    return sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM {landed} AS l WHERE NOT EXISTS "
        "(SELECT FROM {landed} AS n WHERE n.{pk} = l.{pk} AND (n.{cursor} > l.{cursor} "
        "OR (n.{cursor} IS NULL AND l.{cursor} IS NOT NULL) OR (n.{cursor} IS NOT DISTINCT FROM l.{cursor} "
        "AND (n.window_name, n.ctid) > (l.window_name, l.ctid))))"
    ).format(
        view=sql.Identifier("staging", table),
        columns=sql.SQL(", ").join(sql.SQL("l.{}").format(sql.Identifier(c)) for c in columns),
        landed=landed,
        pk=sql.Identifier(primary_key),
        cursor=sql.Identifier(cursor),
    )


def land(conn, s3, bucket: str, entry: dict, window: Window) -> dict:
    """Land one table's extract of `window` (its manifest entry) in staging.<table>_landed.

    One transaction, one landing of a window at a time; the count must be the manifest's, and a
    failure anywhere leaves the table as it was. A window landed again (a cleared run, a retry)
    replaces the versions it lands again and keeps the ones its new extract no longer has: a row
    updated since exists in the source only in its newer version, and the version it replaced
    was real, may be modelled already, and is the only landed copy until a later window lands
    the newer one.
    """
    from psycopg import sql

    table = entry["table"]
    landed = sql.Identifier("staging", f"{table}_landed")
    rows = replaced = 0
    with conn.transaction():
        _create_landing_table(conn, entry)
        # Two runs may land the same window at once (a backfill runs beside the scheduled runs):
        # one at a time, or each would count only its own rows and both copies would stay.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"conveyor.land:{table}:{window.name}",))
        conn.execute("SELECT set_config('conveyor.window_name', %s, true)", (window.name,))
        _record_window(conn, window)
        again = conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE window_name = %s)").format(landed), (window.name,)
        ).fetchone()[0]
        if entry["key"] and not again:  # the window's first landing: straight into the table
            rows = _copy(conn, s3, bucket, entry["key"], landed)
        elif entry["key"]:  # landed before: the file into a scratch table, then its versions replace
            scratch = sql.Identifier(f"landing_{table}")
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    scratch, landed
                )
            )
            rows = _copy(conn, s3, bucket, entry["key"], scratch)
            replaced = conn.execute(
                sql.SQL(
                    "DELETE FROM {landed} AS l USING {scratch} AS n WHERE l.window_name = %s "
                    "AND l.{pk} = n.{pk} AND l.{cursor} = n.{cursor}"
                ).format(
                    landed=landed,
                    scratch=scratch,
                    pk=sql.Identifier(entry["primary_key"]),
                    cursor=sql.Identifier(entry["cursor"]),
                ),
                (window.name,),
            ).rowcount
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(landed, scratch))
        if rows != entry["rows"]:
            raise LandingMismatch(
                f"{table}: landed {rows} rows of window {window.name}, the manifest says {entry['rows']} "
                f"(s3://{bucket}/{entry['key']})"
            )
    return {"table": table, "rows": rows, "replaced": replaced}


def _copy(conn, s3, bucket: str, key: str, target) -> int:
    """COPY the extract file at `key` into `target` (an identifier); returns the rows copied."""
    from psycopg import sql
    from psycopg.copy import LibpqWriter

    names, source = _open(s3, bucket, key)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(target, columns)
    # psycopg's default writer queues up to 1024 blocks (128 MiB) when the server is the slower
    # side, as it is here: write through libpq directly so memory stays one batch.
    with conn.cursor() as cur:
        with cur.copy(copy_sql, writer=LibpqWriter(cur)) as copy:
            for chunk in _chunks(source):
                copy.write(chunk)
        return cur.rowcount


def _record_window(conn, window: Window) -> None:
    """The window's cursor bounds in staging.windows: the fact versions it covers (migrations/002)."""
    start, end = (bound.astimezone(UTC).replace(tzinfo=None) for bound in (window.start, window.end))
    conn.execute(
        "INSERT INTO staging.windows (window_name, window_start, window_end, full_snapshot) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (window_name) DO NOTHING",
        (window.name, start, end, window.full_snapshot),
    )


def export_all(conn, s3, bucket: str, window: Window) -> list[dict]:
    """Every star table's rows `window` covers, one Parquet object per table that has any."""
    return [{"table": table, **export(conn, s3, bucket, table, window)} for table in STAR]


def export(conn, s3, bucket: str, table: str, window: Window) -> dict:
    """The star rows `window` covers, as Parquet at `<table>/YYYY/MM/DD/HHMM/<table>-<window>.parquet`.

    What it covers, not what it last wrote: a scheduled run that failed after modelling leaves
    its rows to the next scheduled run, whose widened window lands the same versions again.
    """
    from psycopg import sql

    from conveyor.totesys import extract
    from conveyor.totesys.tables import table_columns

    columns = [c for c in table_columns(conn, table) if c.name != "window_name"]
    select = sql.SQL("SELECT {cols} FROM ({rows}) AS covered ORDER BY {keys}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        rows=sql.SQL(covered_rows(table, sql.Literal(window.name).as_string(conn))),
        keys=sql.SQL(", ").join(sql.Identifier(k) for k in STAR_KEYS[table]),
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
