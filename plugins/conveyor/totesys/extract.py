"""The extract's stream: changed rows from Postgres to one Parquet (or CSV) object in S3.

Rows stream `COPY (SELECT ...) TO STDOUT` -> pyarrow's CSV reader (types from the catalog:
numeric as decimal, timestamps, dates, booleans, NULL distinct from '') -> Parquet row groups ->
an S3 multipart upload, so memory is bounded by batch and part sizes, not by the table.
"""

from __future__ import annotations

import io
from datetime import UTC

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg import sql

from conveyor.postgres import SourceUnavailable, statement_timed_out
from conveyor.s3 import PART_SIZE, S3MultipartWriter
from conveyor.totesys.tables import FORMATS, Column, TableSpec
from conveyor.totesys.windows import Window, data_key

MiB = 1024 * 1024
# Arrow's streaming CSV reader reads its input on a background thread up to ~32 blocks ahead of
# the batches taken from it (not configurable; ARROW-12090), so the block size bounds that memory:
# 32 x 4 MiB held 130+ MiB of CSV whenever Parquet and S3 ran slower than COPY. Small blocks, then
# batches gathered into row groups of about ROW_GROUP_BYTES of Arrow data. (A single row must fit
# in a block: 1 MiB is pyarrow's own default.)
CSV_BLOCK_SIZE = 1 * MiB
ROW_GROUP_BYTES = 4 * MiB


# --- types --------------------------------------------------------------------------------------


def arrow_type(column: Column) -> pa.DataType:
    t = column.pg_type
    if t == "integer":
        return pa.int32()
    if t == "smallint":
        return pa.int16()
    if t == "bigint":
        return pa.int64()
    if t == "numeric":
        if column.precision:
            return pa.decimal128(column.precision, column.scale or 0)
        return pa.string()  # unconstrained numeric: any precision; keep its exact text
    if t in ("real", "double precision"):
        return pa.float64()
    if t == "boolean":
        return pa.bool_()
    if t == "date":
        return pa.date32()
    if t == "timestamp without time zone":
        return pa.timestamp("us")
    if t == "timestamp with time zone":
        return pa.timestamp("us", tz="UTC")
    if t == "time without time zone":
        return pa.time64("us")
    return pa.string()  # text, varchar, char, uuid, json, ...: their exact text


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])


# --- streaming ----------------------------------------------------------------------------------


class _CopyReader(io.RawIOBase):
    """A readable file over psycopg's COPY TO STDOUT chunks (about one row each).

    Each read fills the caller's buffer with as many chunks as fit: handing pyarrow one row per
    call would cost a Python round trip per row.
    """

    def __init__(self, copy):
        self._chunks = iter(copy)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = len(buffer)
        filled = 0
        view = memoryview(buffer).cast("B")
        if self._pending:
            n = min(size, len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled = n
        for chunk in self._chunks:
            n = len(chunk)
            if filled + n <= size:
                view[filled : filled + n] = chunk
                filled += n
                if filled == size:
                    break
            else:
                room = size - filled
                view[filled:] = chunk[:room]
                self._pending = bytes(chunk[room:])
                filled = size
                break
        return filled


def select_statement(spec: TableSpec, columns: list[Column], window: Window | None) -> sql.Composed:
    """`SELECT <cols> FROM <table> [WHERE <cursor> >= start AND < end] ORDER BY <cursor>, <pk>`."""
    select = sql.SQL("SELECT {cols} FROM {table}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns), table=sql.Identifier(spec.name)
    )
    if window is not None:
        # Bounds as naive UTC: `timestamp` cursors hold UTC, and the session's TimeZone is UTC,
        # so a `timestamptz` cursor compares against the same instants.
        start, end = (w.astimezone(UTC).replace(tzinfo=None) for w in (window.start, window.end))
        select += sql.SQL(" WHERE {cur} >= {start} AND {cur} < {end}").format(
            cur=sql.Identifier(spec.cursor), start=sql.Literal(start), end=sql.Literal(end)
        )
    return select + sql.SQL(" ORDER BY {cur}, {pk}").format(
        cur=sql.Identifier(spec.cursor), pk=sql.Identifier(spec.primary_key)
    )


def _batches(stream, schema: pa.Schema):
    """Record batches decoded from COPY's CSV stream; none at all for an empty result."""
    buffered = io.BufferedReader(stream, buffer_size=1 * MiB)
    if not buffered.peek(1):
        return iter(())
    return pa_csv.open_csv(
        buffered,
        read_options=pa_csv.ReadOptions(column_names=schema.names, block_size=CSV_BLOCK_SIZE),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # COPY writes NULL unquoted, '' quoted
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        ),
    )


def stream_to_s3(
    conn,
    s3,
    bucket: str,
    key: str,
    select: sql.Composable,
    columns: list[Column],
    *,
    table: str,
    fmt: str = "parquet",
    part_size: int = PART_SIZE,
) -> dict:
    """Stream `COPY (select) TO STDOUT` into one Parquet (or CSV) object at `key`.

    Returns rows and bytes. No rows writes no object (and removes one an earlier run of the same
    key left). A statement cancelled by the session's statement_timeout is SourceUnavailable.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    schema = arrow_schema(columns)
    copy_sql = sql.SQL("COPY ({select}) TO STDOUT WITH (FORMAT csv)").format(select=select)
    rows, writer, sink = 0, None, None
    pending, pending_bytes = [], 0  # batches of the next row group
    try:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for batch in _batches(_CopyReader(copy), schema):
                if not batch.num_rows:
                    continue
                if writer is None:
                    content_type = "application/vnd.apache.parquet" if fmt == "parquet" else "text/csv"
                    sink = S3MultipartWriter(s3, bucket, key, part_size=part_size, ContentType=content_type)
                    writer = (
                        pq.ParquetWriter(sink, schema, compression="zstd")
                        if fmt == "parquet"
                        else pa_csv.CSVWriter(sink, schema)
                    )
                pending.append(batch)
                pending_bytes += batch.nbytes
                rows += batch.num_rows
                if pending_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_batches(pending))
                    pending, pending_bytes = [], 0
        if writer is not None:
            if pending:
                writer.write_table(pa.Table.from_batches(pending))
            writer.close()
            sink.close()
        else:
            s3.delete_object(Bucket=bucket, Key=key)  # a stale file from an earlier run
    except BaseException as exc:
        if sink is not None:
            sink.abort()
        if statement_timed_out(exc):
            raise SourceUnavailable(
                f"extract of {table!r} was cancelled by statement_timeout: {exc}"
            ) from exc
        raise
    return {
        "rows": rows,
        "key": key if rows else None,
        "bytes": sink.bytes_written if sink else 0,
        "schema": {f.name: str(f.type) for f in schema},
        "columns": schema.names,  # their order (an XCom in jsonb reorders the schema's keys)
    }


def extract_table(
    conn,
    s3,
    bucket: str,
    spec: TableSpec,
    columns: list[Column],
    window: Window,
    *,
    fmt: str = "parquet",
    part_size: int = PART_SIZE,
) -> dict:
    """Stream the table's rows in `window` (all rows for a `full_snapshot` window) into one
    object; returns its manifest entry."""
    result = stream_to_s3(
        conn,
        s3,
        bucket,
        data_key(spec.name, window, fmt),
        select_statement(spec, columns, None if window.full_snapshot else window),
        columns,
        table=spec.name,
        fmt=fmt,
        part_size=part_size,
    )
    return {
        "table": spec.name,
        "primary_key": spec.primary_key,
        "cursor": spec.cursor,
        "window": [window.start.isoformat(), window.end.isoformat()],
        "full_snapshot": window.full_snapshot,
        **result,
    }


def star_key(table: str, window: Window) -> str:
    """`<star table>/YYYY/MM/DD/HHMM/<star table>-<window start>-<window end>.parquet` (processed)."""
    return data_key(table, window, "parquet")
