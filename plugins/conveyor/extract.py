"""Incremental extract of changed rows from Postgres to Parquet (or CSV) in S3, streaming.

Which tables, their primary keys and cursor columns come from a JSON config (validated against
the live catalog; identifiers are quoted, never pasted). Each run extracts the rows whose cursor
is in its window: the run's data interval shifted back by a lag margin, half-open
`[start - lag, end - lag)`. Consecutive intervals tile time, so consecutive windows do too: a
row is extracted by exactly one run, even when many rows share the boundary timestamp, and a row
committed up to `lag` late is still picked up.

Rows stream `COPY (SELECT ...) TO STDOUT` -> pyarrow's CSV reader (types from the catalog) ->
Parquet row groups -> an S3 multipart upload, so memory does not grow with the table.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg import sql

from conveyor.ingestion import ConfigError, load_json

MiB = 1024 * 1024
PART_SIZE = 8 * MiB  # S3 multipart part (minimum 5 MiB)
CSV_BLOCK_SIZE = 4 * MiB  # rows decoded per Arrow batch / Parquet row group
FORMATS = ("parquet", "csv")


class SourceUnavailable(RuntimeError):
    """The database could not be reached or a statement timed out; a retry may succeed."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: str
    cursor: str
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    precision: int | None = None
    scale: int | None = None


# --- source connection ---------------------------------------------------------------------------


def connect(conn_id: str, statement_timeout: timedelta = timedelta(minutes=15)):
    """A psycopg connection for an Airflow connection id, UTC session, statements time-limited.

    A database that is down raises SourceUnavailable naming it (the task retries).
    """
    import psycopg
    from airflow.sdk import Connection

    c = Connection.get(conn_id)
    try:
        return psycopg.connect(
            host=c.host,
            port=c.port or 5432,
            user=c.login,
            password=c.password or None,
            dbname=c.schema,
            connect_timeout=10,
            application_name="conveyor-extract",
            options=f"-c statement_timeout={int(statement_timeout.total_seconds() * 1000)} -c timezone=UTC",
        )
    except psycopg.OperationalError as exc:
        raise SourceUnavailable(
            f"cannot connect to {conn_id!r} (host {c.host}, port {c.port or 5432}, database {c.schema}): "
            f"{str(exc).strip()}"
        ) from exc


# --- config ------------------------------------------------------------------------------------


def parse_tables_config(text: str, origin: str = "config") -> tuple[str, list[TableSpec]]:
    """(source name, table specs) from the JSON config; problems name the table and field."""
    document = load_json(text, origin)
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("tables"), list)
        or not document["tables"]
    ):
        raise ConfigError(f'{origin}: expected an object with a non-empty "tables" list')
    source = document.get("source", "source")
    specs, seen = [], set()
    for index, entry in enumerate(document["tables"]):
        label = (
            f"table #{index + 1}"
            if not isinstance(entry, dict)
            else f"table {entry.get('name', f'#{index + 1}')!r}"
        )
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: {label}: expected an object")
        unknown = sorted(set(entry) - {"name", "primary_key", "cursor", "columns"})
        if unknown:
            raise ConfigError(f"{origin}: {label}: unknown field(s) {', '.join(unknown)}")
        for field in ("name", "primary_key", "cursor"):
            if not isinstance(entry.get(field), str) or not entry[field]:
                raise ConfigError(f"{origin}: {label}: field {field!r} must be a non-empty string")
        columns = entry.get("columns")
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            raise ConfigError(f"{origin}: {label}: field 'columns' must be a list of column names")
        if entry["name"] in seen:
            raise ConfigError(f"{origin}: {label}: listed twice")
        seen.add(entry["name"])
        specs.append(
            TableSpec(
                entry["name"], entry["primary_key"], entry["cursor"], tuple(columns) if columns else None
            )
        )
    return source, specs


def catalog_columns(conn, spec: TableSpec, schema: str = "public") -> list[Column]:
    """The columns to extract, checked against the live catalog (in the configured order)."""
    rows = conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, spec.name),
    ).fetchall()
    if not rows:
        raise ConfigError(f"table {spec.name!r}: no such table in schema {schema!r}")
    live = {r[0]: Column(*r) for r in rows}
    for field, column in (("primary_key", spec.primary_key), ("cursor", spec.cursor)):
        if column not in live:
            raise ConfigError(
                f"table {spec.name!r}: field {field!r}: no column {column!r} (has {', '.join(live)})"
            )
    wanted = list(spec.columns) if spec.columns else list(live)
    missing = [c for c in wanted if c not in live]
    if missing:
        raise ConfigError(
            f"table {spec.name!r}: field 'columns': no column(s) {', '.join(map(repr, missing))}"
        )
    for required in (spec.primary_key, spec.cursor):
        if required not in wanted:
            raise ConfigError(f"table {spec.name!r}: field 'columns' must include {required!r}")
    if live[spec.cursor].pg_type not in (
        "timestamp without time zone",
        "timestamp with time zone",
        "date",
        "bigint",
        "integer",
    ):
        raise ConfigError(f"table {spec.name!r}: cursor {spec.cursor!r} has type {live[spec.cursor].pg_type}")
    return [live[c] for c in wanted]


# --- windows and keys ---------------------------------------------------------------------------


def extract_window(start: datetime, end: datetime, lag: timedelta) -> tuple[datetime, datetime]:
    """The half-open cursor window `[start - lag, end - lag)` of a data interval, in UTC."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("data interval bounds must be timezone-aware")
    if end <= start:
        raise ValueError(f"empty data interval [{start}, {end})")
    return (start - lag).astimezone(UTC), (end - lag).astimezone(UTC)


def data_key(table: str, window_end: datetime, fmt: str) -> str:
    """`<table>/YYYY/MM/DD/HHMM/<table>-<window end>.<fmt>`; a rerun of a window rewrites it."""
    end = window_end.astimezone(UTC)
    return f"{table}/{end:%Y/%m/%d/%H%M}/{table}-{end:%Y%m%dT%H%M%S}Z.{fmt}"


def manifest_key(window_end: datetime) -> str:
    end = window_end.astimezone(UTC)
    return f"_manifests/{end:%Y/%m/%d/%H%M}/manifest-{end:%Y%m%dT%H%M%S}Z.json"


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


class S3MultipartWriter(io.RawIOBase):
    """A writable file that uploads `part_size` parts as it goes; `close()` completes the upload,
    `abort()` discards it. Memory: one part."""

    def __init__(self, s3, bucket: str, key: str, content_type: str, part_size: int = PART_SIZE):
        self._s3, self._bucket, self._key, self._part_size = s3, bucket, key, part_size
        self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)[
            "UploadId"
        ]
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._position = 0
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) >= self._part_size:
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self.bytes_written += len(body)

    def close(self) -> None:
        if self.closed:
            return
        if self._buffer or not self._parts:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        super().close()

    def abort(self) -> None:
        if not self.closed:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            super().close()


def select_statement(
    spec: TableSpec, columns: list[Column], window: tuple[datetime, datetime] | None
) -> sql.Composed:
    """`COPY (SELECT <cols> FROM <table> [WHERE <cursor> >= start AND < end] ORDER BY <cursor>, <pk>) TO STDOUT`."""
    select = sql.SQL("SELECT {cols} FROM {table}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in columns), table=sql.Identifier(spec.name)
    )
    if window is not None:
        # Cursor columns are naive UTC timestamps in ToteSys: compare in UTC.
        start, end = (w.astimezone(UTC).replace(tzinfo=None) for w in window)
        select += sql.SQL(" WHERE {cur} >= {start} AND {cur} < {end}").format(
            cur=sql.Identifier(spec.cursor), start=sql.Literal(start), end=sql.Literal(end)
        )
    select += sql.SQL(" ORDER BY {cur}, {pk}").format(
        cur=sql.Identifier(spec.cursor), pk=sql.Identifier(spec.primary_key)
    )
    return sql.SQL("COPY ({select}) TO STDOUT WITH (FORMAT csv)").format(select=select)


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


def extract_table(
    conn,
    s3,
    bucket: str,
    spec: TableSpec,
    columns: list[Column],
    window: tuple[datetime, datetime],
    *,
    full_snapshot: bool = False,
    fmt: str = "parquet",
    part_size: int = PART_SIZE,
) -> dict:
    """Stream the table's rows in `window` (or all rows) into one object; returns its manifest entry.

    An empty delta writes no object (and removes one left by an earlier run of the same window).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    schema = arrow_schema(columns)
    key = data_key(spec.name, window[1], fmt)
    rows, writer, sink = 0, None, None
    try:
        with (
            conn.cursor() as cur,
            cur.copy(select_statement(spec, columns, None if full_snapshot else window)) as copy,
        ):
            for batch in _batches(_CopyReader(copy), schema):
                if not batch.num_rows:
                    continue
                if writer is None:
                    content_type = "application/vnd.apache.parquet" if fmt == "parquet" else "text/csv"
                    sink = S3MultipartWriter(s3, bucket, key, content_type, part_size)
                    writer = (
                        pq.ParquetWriter(sink, schema, compression="zstd")
                        if fmt == "parquet"
                        else pa_csv.CSVWriter(sink, schema)
                    )
                writer.write(batch)
                rows += batch.num_rows
        if writer is not None:
            writer.close()
            sink.close()
        else:
            s3.delete_object(Bucket=bucket, Key=key)  # a stale file from an earlier run of this window
    except BaseException as exc:
        if sink is not None:
            sink.abort()
        if type(exc).__name__ == "QueryCanceled":
            raise SourceUnavailable(
                f"extract of {spec.name!r} was cancelled by statement_timeout: {exc}"
            ) from exc
        raise
    return {
        "table": spec.name,
        "window": [window[0].isoformat(), window[1].isoformat()],
        "full_snapshot": full_snapshot,
        "rows": rows,
        "key": key if rows else None,
        "bytes": sink.bytes_written if sink else 0,
        "schema": {f.name: str(f.type) for f in schema},
    }
