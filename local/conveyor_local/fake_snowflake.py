"""The local stand-in for Snowflake: fakesnow (Snowflake SQL on DuckDB) as a server, reading S3
from the moto server.

    python -m conveyor_local.fake_snowflake --port 8600 --s3-endpoint http://127.0.0.1:5000

One server process owns the database, so every Airflow process (scheduler, task processes, `dags
test`) sees the same tables and stages. The DAGs talk to it through the provider's SnowflakeHook
and operators, unchanged; the only local difference is the wire protocol (see `route_http`).

What fakesnow 0.11 cannot do and this module adds, for COPY INTO (everything else is fakesnow's
own): S3 through s3fs (DuckDB's httpfs extension would need a download), `@stage/path/` sub-paths,
`CREATE STAGE IF NOT EXISTS` on an existing stage, a MERGE that changes nothing reporting zeros, a
recursive listing of a prefix as Snowflake does, `PATTERN`, `FILE_FORMAT = (TYPE = JSON)`,
`$1`/`$n`/`METADATA$FILENAME`/`METADATA$FILE_LAST_MODIFIED`/`METADATA$FILE_ROW_NUMBER` in a COPY
transformation, `ON_ERROR = SKIP_FILE` (a bad file, or one with a value its column refuses, is
reported `LOAD_FAILED` and the others load), files loaded before (same name and ETag: a rewritten
file loads again) left out of the result as Snowflake leaves them, and `VALIDATION_MODE =
RETURN_ERRORS` (nothing loads; one row per error). Its COPY keeps fakesnow's `MATCH_BY_COLUMN_NAME`
for Parquet (columns by name, not position). Where fakesnow is kinder than Snowflake it is made
stricter: `VARCHAR(n)` lengths are enforced (`enforce_declared_types`). Streams, tasks, pipes,
storage integrations, named file formats and the monitoring functions (`SYSTEM$PIPE_STATUS`,
`TASK_HISTORY`, `COPY_HISTORY`, `SHOW STREAMS`) stay unsupported: fakesnow refuses them, and the
tests check that SQL by parsing it.

`COPY INTO ... FILES = ('a', 'b')` is fakesnow's own: each name is joined to the stage's URL and
read, none listed. A named file that does not exist is reported `LOAD_FAILED` ("file not
found") and the others load (Snowflake names a missing file in its error the same way); load
history applies to named files as to listed ones.

`cost_accounting()` records what each statement costs (the tests and the bench read it): the
rows each table scan returned after the filters DuckDB pushed into it (constant filters, and the
min/max of a join's other side), and for a COPY the files it listed or named. What it cannot
show is Snowflake's pruning itself: DuckDB reads every row group of a table this small, so the
returned rows stand for what Snowflake reads once its micro-partitions are pruned by the same
filters (a load-ordered RAW_EVENTS prunes by LOADED_AT as DuckDB filters by it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.abc
import importlib.util
import json
import os
import re
import sys
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# What COPY INTO returns per file (Snowflake's column names).
COPY_COLUMNS = (
    "file, status, rows_parsed, rows_loaded, error_limit, errors_seen, first_error, first_error_line, "
    "first_error_character, first_error_column_name"
)
VALIDATION_COLUMNS = "error, file, line, character, byte_offset, category, code"
# Stands for METADATA$FILE_LAST_MODIFIED in a COPY's transformation until each file's is known.
FILE_LAST_MODIFIED = "_conveyor_file_last_modified"

_patched = False
_S3_FILESYSTEM = None  # the s3fs filesystem DuckDB reads S3 through (register_s3)
_COSTS: list | None = None  # cost_accounting's record while one is open


@dataclasses.dataclass
class StatementCost:
    """One statement the fake ran: its kind (COPY, MERGE, SELECT...), its start, the rows each
    table's scans returned (after pushed-down filters), and for a COPY the files it listed or named."""

    kind: str
    text: str
    rows: dict = dataclasses.field(default_factory=dict)  # and "<files>": a COPY's files

    @property
    def files(self) -> int:
        return self.rows.get("<files>", 0)

    @property
    def rows_read(self) -> int:
        return sum(v for k, v in self.rows.items() if k != "<files>")


@contextlib.contextmanager
def cost_accounting():
    """Record every statement the fake (served in this process) runs while open; yields the list
    of StatementCost it fills. One at a time."""
    global _COSTS
    if _COSTS is not None:
        raise RuntimeError("cost_accounting is already open")
    _COSTS = costs = []
    try:
        yield costs
    finally:
        _COSTS = None


def _scanned_rows(profile: dict) -> dict:
    """Rows returned by each table's scans in a DuckDB JSON profile, by table name."""
    rows: dict = {}
    stack = [profile]
    while stack:
        node = stack.pop()
        table = (node.get("extra_info") or {}).get("Table")
        if table and "SCAN" in str(node.get("operator_name") or node.get("operator_type") or ""):
            name = table.rsplit(".", 1)[-1].upper()
            rows[name] = rows.get(name, 0) + int(node.get("operator_cardinality") or 0)
        stack.extend(node.get("children") or [])
    return rows


class _ProfiledConnection:
    """A DuckDB connection that adds the rows each query's table scans returned to `rows`
    (fakesnow runs several queries for one statement: a MERGE's parts, a result's row)."""

    def __init__(self, conn, rows: dict):
        self._conn, self._rows = conn, rows

    def execute(self, *args, **kwargs):
        result = self._conn.execute(*args, **kwargs)
        try:
            scanned = _scanned_rows(json.loads(self._conn.get_profiling_information(format="json")))
        except Exception:  # a query without a profile (a PRAGMA, a SET)
            scanned = {}
        for table, count in scanned.items():
            if not table.startswith("_FS_"):  # the fake's own bookkeeping (the load history)
                self._rows[table] = self._rows.get(table, 0) + count
        return self if result is self._conn else result

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _account_costs() -> None:
    """Wrap fakesnow's statement execution to fill cost_accounting's record (a no-op when none
    is open): one StatementCost per statement a client sends."""
    from fakesnow.cursor import FakeSnowflakeCursor

    execute = FakeSnowflakeCursor.execute

    def execute_and_account(self, command, *args, **kwargs):
        if _COSTS is None:
            return execute(self, command, *args, **kwargs)
        text = re.sub(r"/\*.*?\*/|--[^\n]*", " ", str(command), flags=re.S).strip()
        cost = StatementCost((text.split(None, 1) or ["?"])[0].upper(), " ".join(text.split())[:120])
        raw = self._duck_conn
        raw.execute("PRAGMA enable_profiling = 'no_output'")
        self._duck_conn = _ProfiledConnection(raw, cost.rows)
        try:
            return execute(self, command, *args, **kwargs)
        finally:
            self._duck_conn = raw
            _COSTS.append(cost)

    FakeSnowflakeCursor.execute = execute_and_account


# --- the client side: the hook reaches the server over plain HTTP -------------------------------


def route_http(connector=None) -> None:
    """Make `snowflake.connector.connect` use http for a loopback host (the fake server).

    The provider's SnowflakeHook passes a connection's `extra.host`/`extra.port` through but has no
    `protocol` option, and the connector defaults to https. Only loopback hosts are affected, so a
    real account is reached exactly as before. Local-only: the local stack's
    airflow_local_settings.py (through `route_http_when_imported`) and the tests call it."""
    if connector is None:
        import snowflake.connector as connector

    connect = connector.connect
    if getattr(connect, "_conveyor_http", False):
        return

    def connect_http(*args, **kwargs):
        if kwargs.get("host") in LOOPBACK:
            kwargs.setdefault("protocol", "http")
            kwargs.setdefault("network_timeout", 30)
        return connect(*args, **kwargs)

    connect_http._conveyor_http = True
    connector.connect = connect_http


class _RouteWhenImported(importlib.abc.MetaPathFinder):
    """Applies `route_http` the moment a process imports snowflake.connector (2 s to import:
    most Airflow processes never do)."""

    def find_spec(self, name, path, target=None):
        if name != "snowflake.connector":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_route(module):
            exec_module(module)
            route_http(module)

        spec.loader.exec_module = exec_and_route
        return spec


def route_http_when_imported() -> None:
    if "snowflake.connector" in sys.modules:
        route_http(sys.modules["snowflake.connector"])
    elif not any(isinstance(f, _RouteWhenImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _RouteWhenImported())


def connection(port: int, database: str = "CONVEYOR") -> dict:
    """The `snowflake_default` connection (AIRFLOW_CONN_* JSON) for the fake server on `port`."""
    return {
        "conn_type": "snowflake",
        "login": "conveyor",
        "password": "local",  # the fake accepts anything; not a secret
        "schema": "PUBLIC",  # fakesnow's COPY wants a current schema even for qualified names
        "extra": {
            "account": "fakesnow",
            "warehouse": "LOCAL_WH",
            "database": database,
            "role": "SYSADMIN",
            "host": "127.0.0.1",
            "port": port,
            "insecure_mode": True,
        },
    }


def connect(port: int):
    """A DB-API connection to the fake on `port`, as `snowflake_default` reaches it (over http)."""
    import snowflake.connector

    conn = connection(port)
    return snowflake.connector.connect(
        user=conn["login"],
        password=conn["password"],
        schema=conn["schema"],
        protocol="http",
        network_timeout=30,
        **conn["extra"],
    )


def apply_setup(connection) -> None:
    """What `snowflake_setup` creates with its default Params (the same files, in order), through
    a DB-API connection to the fake: `make services` and the tests start from it."""
    from conveyor import snowflake as sql
    from conveyor.resources import ResourceNames

    variables = sql.SnowflakeSettings().template_variables(ResourceNames())
    for name in sql.setup_files():
        for cursor in connection.execute_string(sql.render(name, variables)):
            cursor.fetchall()


# --- the server side: COPY INTO over S3 ----------------------------------------------------------


def extend_fakesnow() -> None:
    """Teach fakesnow's COPY INTO what the pipelines' SQL uses, and make it enforce declared
    types as Snowflake does (see the module's docstring)."""
    global _patched
    if _patched:
        return
    enforce_declared_types()
    _account_costs()
    import fakesnow.copy_into as ci
    import fakesnow.cursor
    import fakesnow.transforms
    import snowflake.connector.errors
    from sqlglot import exp

    @dataclasses.dataclass
    class ReadJSON(ci.FileTypeHandler):
        strip_outer_array: bool = False

        def read_expression(self, url: str):
            fmt = "array" if self.strip_outer_array else "auto"
            return exp.func("read_json_objects", exp.Literal.string(url), self.make_eq("format", fmt))

    @dataclasses.dataclass
    class Extra:
        pattern: str | None = None
        on_error: str = "ABORT_STATEMENT"
        validation_mode: str | None = None
        json: ReadJSON | None = None

    def split_params(expr: exp.Copy) -> Extra:
        """Take out of the statement what fakesnow's own parser refuses."""
        extra, kept = Extra(), []
        for param in expr.args.get("params", []):
            name = param.this.name.upper()
            value = param.expression.name if param.expression is not None else None
            if name == "PATTERN":
                extra.pattern = value
            elif name == "ON_ERROR":
                extra.on_error = value.upper()
                if extra.on_error not in ("ABORT_STATEMENT", "SKIP_FILE"):
                    raise NotImplementedError(f"ON_ERROR = {value}: only ABORT_STATEMENT and SKIP_FILE")
            elif name == "VALIDATION_MODE":
                extra.validation_mode = value.upper()
                if extra.validation_mode != "RETURN_ERRORS":
                    raise NotImplementedError(f"VALIDATION_MODE = {value}: only RETURN_ERRORS")
            elif name == "FILE_FORMAT" and _format_type(param) == "JSON":
                props = {e.this.name.upper(): e.args["value"].name.upper() for e in param.expressions}
                extra.json = ReadJSON(strip_outer_array=props.get("STRIP_OUTER_ARRAY") == "TRUE")
            else:
                kept.append(param)
        expr.set("params", kept)
        return extra

    def list_files(source: str, duck_conn, pattern: str | None) -> list[str]:
        """Every file under the prefix, at any depth (fakesnow lists one level), PATTERN applied
        to the path after the bucket as Snowflake applies it to the path after the stage."""
        if "://" not in source or source.startswith("file:"):
            urls = ci._source_glob(source, duck_conn)
        else:
            found = [r[0] for r in duck_conn.execute(f"SELECT file FROM glob('{source}**')").fetchall()]
            urls = sorted(u for u in found if not any(o.startswith(u.rstrip("/") + "/") for o in found))
        if pattern:
            regex = re.compile(pattern)
            urls = [u for u in urls if regex.fullmatch(u) or regex.fullmatch(urlparse(u).path.lstrip("/"))]
        return urls

    def rewrite_select(select: exp.Select, is_json: bool) -> exp.Select:
        for param in list(select.find_all(exp.Parameter)):
            if is_json:
                param.replace(exp.column("json"))  # $1 (and $1:path) is the whole document
            elif not isinstance(param.parent and param.parent.args.get("expression"), exp.JSONPath):
                param.replace(exp.column(f"column{int(param.this.name) - 1}"))  # CSV: by position
        for column in list(select.find_all(exp.Column)):
            if column.name.upper() == "METADATA$FILENAME":
                column.replace(exp.column("filename"))
            elif column.name.upper() == "METADATA$START_SCAN_TIME":
                column.replace(exp.func("current_timestamp"))
            elif column.name.upper() == "METADATA$FILE_ROW_NUMBER":
                column.replace(exp.Window(this=exp.func("row_number")))  # 1-based, in file order
            elif column.name.upper() == "METADATA$FILE_LAST_MODIFIED":
                column.replace(exp.column(FILE_LAST_MODIFIED))  # filled in per file below
        return select if is_json else ci._strip_json_extract(select)

    def with_last_modified(columns: list, url: str) -> list:
        """METADATA$FILE_LAST_MODIFIED: the file's last-modified time as S3 reports it (UTC,
        TIMESTAMP_NTZ, as in Snowflake)."""
        stamp = exp.cast(exp.Literal.string(_last_modified(url).isoformat(sep=" ")), "TIMESTAMP")

        def fill(node):
            if isinstance(node, exp.Column) and node.name == FILE_LAST_MODIFIED:
                return stamp.copy()
            return node

        return [column.transform(fill) for column in columns]

    def inserts(expr: exp.Copy, cparams, urls: list[str], is_json: bool, parquet_info=None) -> list:
        target, from_ = expr.this, expr.args["files"][0]
        if isinstance(from_, exp.Subquery):
            columns = rewrite_select(from_.this, is_json).expressions
            read = _with_filename(cparams.file_format.read_expression, exp)
            return [
                exp.Insert(
                    this=target,
                    expression=exp.Select(expressions=with_last_modified(columns, u)).from_(
                        exp.Table(this=read(u))
                    ),
                )
                for u in urls
            ]
        made = ci._inserts(expr, cparams, urls, parquet_info)
        if is_json:  # COPY INTO t (v) FROM @stage: the document is the `json` column
            for insert in made:
                for column in insert.expression.find_all(exp.Column):
                    if column.name == "column0":
                        column.replace(exp.column("json"))
        return made

    def copy_into(duck_conn, current_database, current_schema, expr: exp.Copy, params=None) -> str:
        extra = split_params(expr)
        cparams = ci._params(expr, params)
        if extra.json:
            cparams = dataclasses.replace(cparams, file_format=extra.json)
        source = ci._from_source(expr)
        if source.startswith("@"):
            name, _, path = source[1:].partition("/")
            source = ci.stage_url_from_var(name, duck_conn, current_database, current_schema)
            source = source.rstrip("/") + "/" + path if path else source
        missing = []
        if cparams.files:  # read by name, nothing listed; a name that is not there is named
            urls = ci._source_urls(source, cparams.files)
            missing = [u for u in urls if _file_tag(u) is None]
            urls = [u for u in urls if u not in missing]
        else:
            urls = list_files(source, duck_conn, extra.pattern)
        if isinstance(duck_conn, _ProfiledConnection):  # cost_accounting: the files considered
            duck_conn._rows["<files>"] = len(urls) + len(missing)
        not_found = [f"Remote file '{u}' was not found." for u in missing]
        if not_found and not extra.validation_mode and extra.on_error != "SKIP_FILE":
            raise snowflake.connector.errors.ProgrammingError(
                msg=not_found[0], errno=100069, sqlstate="22000"
            )
        if not urls and not missing:
            return _nothing_processed(duck_conn)
        table = ci._extract_table(expr.this)
        schema = table.db or current_schema
        is_json = extra.json is not None
        parquet_info = None
        if isinstance(cparams.file_format, ci.ReadParquet) and cparams.match_by_column_name.value != "NONE":
            # MATCH_BY_COLUMN_NAME: fakesnow's own matching (its copy_into does this before _inserts)
            parquet_info = ci.ParquetLoadInfo(
                {url: ci._get_parquet_column_names(url, duck_conn) for url in urls},
                target_columns=ci._get_table_columns(table, duck_conn, current_database, schema),
            )
        statements = inserts(expr, cparams, urls, is_json, parquet_info) if urls else []
        duck_conn.execute(
            "ALTER TABLE _fs_information_schema._fs_load_history ADD COLUMN IF NOT EXISTS etag VARCHAR"
        )
        if extra.validation_mode:
            found = [
                (m, u, None, None, None, "parsing", "100069") for m, u in zip(not_found, missing, strict=True)
            ]
            return _validate(duck_conn, statements, urls, exp, found)

        # A named file that is not there (ON_ERROR = SKIP_FILE): named, the others load.
        rows = [(u, "LOAD_FAILED", 0, 0, 1, 1, m, None) for m, u in zip(not_found, missing, strict=True)]
        history = []
        now = datetime.datetime.now(datetime.UTC).isoformat()
        for statement, url in zip(statements, urls, strict=True):
            # As in Snowflake's load metadata: a file loaded before (same name, same ETag) is left
            # out of the result; rewritten (a new ETag), it loads again.
            tag = _file_tag(url)
            loaded_before = duck_conn.execute(
                "SELECT 1 FROM _fs_information_schema._fs_load_history "
                "WHERE file_name = ? AND table_name = ? AND etag IS NOT DISTINCT FROM ?",
                [url, table.name, tag],
            ).fetchone()
            if loaded_before and not cparams.force:
                continue
            # Read the file on a connection of its own first: an error inside the statement's
            # transaction would abort it (DuckDB has no savepoints), and SKIP_FILE goes on.
            if message := _read_error(duck_conn, statement):
                if extra.on_error != "SKIP_FILE":
                    raise snowflake.connector.errors.ProgrammingError(
                        msg=f"{message}\n  File '{url}'", errno=100069, sqlstate="22P02"
                    )
                rows.append((url, "LOAD_FAILED", 0, 0, 1, 1, message, _line(message)))
                continue
            (count,) = duck_conn.execute(statement.sql(dialect="duckdb"), params).fetchall()[0]
            rows.append((url, "LOADED", count, count, 1, 0, None, None))
            history.append((schema, url, table.name, now, "LOADED", count, count, tag))
        for record in history:
            duck_conn.execute(
                "INSERT INTO _fs_information_schema._fs_load_history (schema_name, file_name, table_name, "
                "last_load_time, status, row_count, row_parsed, error_count, error_limit, etag) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, ?)",
                list(record),
            )
        if not rows:
            return _nothing_processed(duck_conn)
        values = ", ".join("(" + ", ".join(_literal(v) for v in (*row, None, None)) + ")" for row in rows)
        sql = f"SELECT * FROM (VALUES {values}) AS t({COPY_COLUMNS})"
        duck_conn.execute(sql)
        return sql

    create_stage = fakesnow.transforms.create_stage

    def create_stage_if_not_exists(expression, current_database, current_schema):
        """CREATE STAGE IF NOT EXISTS on an existing stage succeeds, as in Snowflake."""
        transformed = create_stage(expression, current_database, current_schema)
        if transformed is not expression and expression.args.get("exists"):
            transformed.args.pop("create_stage_name", None)
        return transformed

    fakesnow.transforms.create_stage = create_stage_if_not_exists

    merge = importlib.import_module("fakesnow.transforms.merge")  # `.merge` is also a function

    def merge_counts(merge_expr):
        """A MERGE that touches no row reports 0s (DuckDB's COUNT_IF over no rows is NULL)."""
        counts = original_counts(merge_expr)
        for alias in counts.expressions:
            alias.set("this", exp.func("coalesce", alias.this, exp.Literal.number(0)))
        return counts

    original_counts = merge._counts
    merge._counts = merge_counts
    fakesnow.cursor.copy_into = copy_into
    _patched = True


def enforce_declared_types() -> None:
    """Make the fake refuse what Snowflake refuses for a column's declared type.

    DuckDB ignores `VARCHAR(n)`/`CHAR(n)` lengths: Snowflake raises "String '...' is too long and
    would be truncated" on an INSERT, UPDATE or MERGE (and a COPY reports the file failed). So a
    `CREATE TABLE` here gets `CHECK (LENGTH(col) <= n)` for each such column, and the check's
    failure is raised as Snowflake's error (100074). `NUMBER(p, s)` needs nothing: DuckDB's
    DECIMAL(p, s) already raises on overflow and rounds extra decimals, as Snowflake does. Only
    what `CREATE TABLE` declares is enforced (DuckDB cannot add a CHECK to an existing table, so
    a column added by `ALTER TABLE ... ADD COLUMN` with a length is not).
    """
    import duckdb
    import snowflake.connector.errors
    from fakesnow.cursor import FakeSnowflakeCursor
    from sqlglot import exp

    lengths = {
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.CHAR,
        exp.DataType.Type.NCHAR,
        exp.DataType.Type.NVARCHAR,
        exp.DataType.Type.TEXT,
    }
    transform, execute = FakeSnowflakeCursor._transform, FakeSnowflakeCursor._execute

    def transform_with_checks(self, expression, params):
        transformed = transform(self, expression, params)
        if isinstance(transformed, exp.Create) and isinstance(transformed.this, exp.Schema):
            for column in transformed.this.find_all(exp.ColumnDef):
                kind = column.args.get("kind")
                if kind is None or kind.this not in lengths or not kind.expressions:
                    continue
                length = int(kind.expressions[0].this.name)
                check = exp.LTE(
                    this=exp.func("length", exp.column(column.this.copy())),
                    expression=exp.Literal.number(length),
                )
                column.append("constraints", exp.ColumnConstraint(kind=exp.CheckColumnConstraint(this=check)))
        return transformed

    def execute_with_snowflake_errors(self, transformed, params=None):
        try:
            return execute(self, transformed, params)
        except duckdb.ConstraintException as exc:
            message = str(exc).splitlines()[0]
            if "CHECK constraint failed" not in message or "length(" not in message.lower():
                raise
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"String is too long and would be truncated ({message})", errno=100074, sqlstate="22000"
            ) from None

    FakeSnowflakeCursor._transform = transform_with_checks
    FakeSnowflakeCursor._execute = execute_with_snowflake_errors


def mark_loaded(
    table: str, files: dict[str, str], schema: str = "EVENTS", database: str = "CONVEYOR"
) -> None:
    """Record `files` ({url: ETag}) in the load history of `table`, as if a COPY had loaded them
    (the tests and the bench build a long history this way: a COPY per file takes a second on the
    fake). Only for the server in this process."""
    import fakesnow.server

    duck_conn = fakesnow.server.shared_fs.duck_conn.cursor()
    history = f"{database}._fs_information_schema._fs_load_history"
    duck_conn.execute(f"ALTER TABLE {history} ADD COLUMN IF NOT EXISTS etag VARCHAR")
    now = datetime.datetime.now(datetime.UTC).isoformat()
    duck_conn.executemany(
        f"INSERT INTO {history} (schema_name, file_name, table_name, "
        "last_load_time, status, row_count, row_parsed, error_count, error_limit, etag) "
        "VALUES (?, ?, ?, ?, 'LOADED', 1, 1, 0, 1, ?)",
        [[schema, url, table.upper(), now, etag] for url, etag in files.items()],
    )


def _nothing_processed(duck_conn) -> str:
    sql = "SELECT 'Copy executed with 0 files processed.' AS status"
    duck_conn.execute(sql)
    return sql


def _format_type(param) -> str | None:
    for e in param.expressions:
        if e.this.name.upper() == "TYPE":
            return e.args["value"].name.upper()
    return None


def _with_filename(read, exp):
    """read_csv/read_json_objects/read_parquet(url, ...) with filename = true, for METADATA$FILENAME."""

    def wrapped(url: str):
        call = read(url)
        call.append(
            "expressions", exp.EQ(this=exp.Literal(this="filename", is_string=False), expression=exp.true())
        )
        return call

    return wrapped


def _read_error(duck_conn, statement) -> str | None:
    """The first line of the error a COPY's file raises, or None when it loads: read it, then
    insert it in a transaction rolled back (a value the target's declared type refuses fails the
    file, as in Snowflake)."""
    import duckdb

    probe = duck_conn.cursor()
    try:
        probe.execute(f"SELECT count(*) FROM ({statement.expression.sql(dialect='duckdb')})").fetchall()
        probe.begin()
        try:
            probe.execute(statement.sql(dialect="duckdb")).fetchall()
        finally:
            probe.rollback()
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.IOException) as exc:
        return str(exc).splitlines()[0]
    except duckdb.ConstraintException as exc:
        message = str(exc).splitlines()[0]
        too_long = "length(" in message.lower()
        return f"String is too long and would be truncated ({message})" if too_long else message
    finally:
        probe.close()
    return None


def _validate(duck_conn, statements, urls, exp, errors=()) -> str:
    """VALIDATION_MODE = RETURN_ERRORS: read every file, load nothing, one row per failing file
    (after `errors`, the named files that are not there)."""
    errors = list(errors)
    for statement, url in zip(statements, urls, strict=True):
        if message := _read_error(duck_conn, statement):
            errors.append((message, url, _line(message), None, None, "parsing", "100069"))
    if not errors:
        sql = f"SELECT * FROM (VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL)) AS t({VALIDATION_COLUMNS}) WHERE false"
    else:
        values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in errors)
        sql = f"SELECT * FROM (VALUES {values}) AS t({VALIDATION_COLUMNS})"
    duck_conn.execute(sql)
    return sql


def _line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _last_modified(url: str) -> datetime.datetime:
    """A staged file's last-modified time, naive UTC (S3's LastModified; a local file's mtime)."""
    if url.startswith("s3://") and _S3_FILESYSTEM is not None:
        modified = _S3_FILESYSTEM.info(url)["LastModified"]
    else:
        path = urlparse(url).path if url.startswith("file:") else url
        modified = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC)
    return modified.astimezone(datetime.UTC).replace(tzinfo=None)


def _file_tag(url: str) -> str | None:
    """What tells a file's versions apart, as the load metadata keeps it: S3's ETag (a local
    file's mtime and size); None when the file does not exist."""
    if url.startswith("s3://") and _S3_FILESYSTEM is not None:
        try:
            return str(_S3_FILESYSTEM.info(url)["ETag"])
        except FileNotFoundError:
            return None
    path = urlparse(url).path if url.startswith("file:") else url
    if not os.path.exists(path):
        return None
    stat = os.stat(path)
    return f"{stat.st_mtime_ns}-{stat.st_size}"


def register_s3(duck_conn, endpoint_url: str, key: str, secret: str, region: str) -> None:
    """Let DuckDB read s3:// through s3fs at the moto endpoint."""
    import s3fs

    global _S3_FILESYSTEM

    # No caches: a file put after a listing must be seen, whole, by the next COPY.
    filesystem = s3fs.S3FileSystem(
        key=key,
        secret=secret,
        endpoint_url=endpoint_url,
        client_kwargs={"region_name": region},
        use_listings_cache=False,
        skip_instance_cache=True,
        default_cache_type="none",
    )
    for name in duck_conn.list_filesystems():
        if name in filesystem.protocol or name == "s3":
            duck_conn.unregister_filesystem(name)
    duck_conn.register_filesystem(filesystem)
    _S3_FILESYSTEM = filesystem


def reset(s3_endpoint: str, key: str, secret: str, region: str) -> None:
    """Give the server (in this process) a new, empty database reading S3 at `s3_endpoint`."""
    import fakesnow.server
    from fakesnow.instance import FakeSnow

    fakesnow.server.shared_fs = FakeSnow()
    register_s3(fakesnow.server.shared_fs.duck_conn, s3_endpoint, key, secret, region)


def serve_in_thread(port: int):
    """Start the server in a thread of this process (tests); returns a function that stops it."""
    import threading
    import time

    import fakesnow.server
    import uvicorn

    extend_fakesnow()
    server = uvicorn.Server(
        uvicorn.Config(fakesnow.server.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="fake snowflake", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake Snowflake server did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


def serve(port: int, s3_endpoint: str, key: str, secret: str, region: str) -> None:
    """Run the fake Snowflake server in the foreground (until killed)."""
    import fakesnow.server
    import uvicorn

    extend_fakesnow()
    register_s3(fakesnow.server.shared_fs.duck_conn, s3_endpoint, key, secret, region)
    uvicorn.run(fakesnow.server.app, host="127.0.0.1", port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_local.fake_snowflake", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--aws-key", default="conveyor-local")
    parser.add_argument("--region", default="eu-west-2")
    args = parser.parse_args(argv)
    serve(args.port, args.s3_endpoint, args.aws_key, args.aws_key, args.region)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
