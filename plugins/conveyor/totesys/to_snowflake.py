"""processed_to_snowflake's work: which totesys_etl windows to load, and loading one.

A window loads in three steps, one window at a time:
0. (`widen_for_window`) the window's Parquet footers against the Snowflake columns: a number the
   star and staging columns cannot hold (a source column widened in Postgres, conveyor.totesys.drift)
   raises their precision first; a scale they cannot hold fails the window before any COPY;
1. `totesys/copy_window.sql`: each star table's staging table emptied, then COPY of the window's
   one Parquet file per table from the processed stage;
2. the rows copied per table checked against the rows the `processed` event says the window
   exported (a file rewritten or removed since fails the window, before any merge);
3. `totesys/merge/<table>.sql` for every star table (rendered from star.yml), then
   `totesys/clear_staging.sql`, in one transaction; each MERGE's counts reported by table name.
"""

from __future__ import annotations

import re

from conveyor import snowflake
from conveyor.config import ConfigError
from conveyor.keys import parse_window_stamp, window_partition
from conveyor.totesys.star import STAR

# A totesys_etl window's name (windows.Window.name): its start and end stamps, `-full` for a
# full snapshot.
WINDOW_NAME = re.compile(r"\d{8}T\d{6}Z-(?P<end>\d{8}T\d{6}Z)(?:-full)?")
# The same, for the trigger form's JSON Schema (anchored; no Python-only named group).
WINDOW_NAME_FORM = r"^\d{8}T\d{6}Z-\d{8}T\d{6}Z(-full)?$"
COPY_FILE = "totesys/copy_window.sql"
SCALE_STEP = "docs/runbook.md, 'processed_to_snowflake stopped on a wider number'"
CLEAR_STAGING_FILE = "totesys/clear_staging.sql"


def merge_file(table: str) -> str:
    """The MERGE of one star table, relative to include/sql/snowflake/."""
    return f"totesys/merge/{table}.sql"


def window_to_load(name, rows: dict | None = None) -> dict:
    """A window to load: its name, the partition its files are under (`YYYY/MM/DD/HHMM` of its
    end) and, when a `processed` event named it, the rows it exported per star table."""
    match = WINDOW_NAME.fullmatch(name) if isinstance(name, str) else None
    if not match:
        raise ConfigError(
            f"not a totesys_etl window name: {name!r} (expected <start>-<end>[-full], e.g. "
            "20240305T195900Z-20240305T200200Z)"
        )
    return {"name": name, "partition": window_partition(parse_window_stamp(match["end"])), "rows": rows}


def windows_to_load(events, param: str | None = None) -> list[dict]:
    """The windows a run loads: each `processed` event's (extra {"window", "rows"}; the newest
    event of a window gives its rows) and the `window` Param's, oldest end first."""
    found = {}
    for event in sorted(events, key=lambda e: e.timestamp):
        extra = event.extra or {}
        found[extra.get("window")] = window_to_load(extra.get("window"), extra.get("rows") or {})
    if param and param not in found:
        found[param] = window_to_load(param)
    return sorted(found.values(), key=lambda w: (WINDOW_NAME.fullmatch(w["name"])["end"], w["name"]))


def copied_rows(report: snowflake.CopyReport, window_name: str) -> dict[str, int]:
    """Rows COPY loaded per star table, from the window's files (`.../<table>-<window>.parquet`)."""
    return {
        table: sum(f["rows"] for f in report.loaded if f["file"].endswith(f"/{table}-{window_name}.parquet"))
        for table in STAR
    }


def copy_mismatch(window: dict, copied: dict[str, int]) -> str | None:
    """Why the copied rows are not what the window exported (None: they are, or no event said).

    `window["rows"]`: the `processed` event's rows per table (None for a window named by the Param
    alone: nothing to check against); a table it does not name exported no rows."""
    if window["rows"] is None:
        return None
    wrong = {t: (copied[t], window["rows"].get(t, 0)) for t in STAR if copied[t] != window["rows"].get(t, 0)}
    if not wrong:
        return None
    return (
        f"window {window['name']}: the processed files do not hold the rows totesys_etl exported "
        f"(table: (copied, exported)): {wrong}; nothing merged. Were the files rewritten or removed?"
    )


# --- wider numbers: the window's files against the Snowflake columns ------------------------------

_INTEGER_DIGITS = {"int8": 3, "int16": 5, "int32": 10, "int64": 19}
_DECIMAL = re.compile(r"decimal128\((\d+), (\d+)\)")
MAX_PRECISION = 38  # Snowflake's NUMBER


def window_files(s3, bucket: str, window: dict) -> dict[str, str]:
    """{star table: key} of the window's Parquet files (the export's keys, windows.data_key), for
    the tables that have one."""
    from conveyor.s3 import list_objects
    from conveyor.totesys.windows import file_key

    found = {}
    for table in STAR:
        key = file_key(table, window["name"], window["partition"], "parquet")
        if any(o.key == key for o in list_objects(s3, bucket, key)):
            found[table] = key
    return found


def file_numbers(s3, bucket: str, key: str) -> dict[str, tuple[int, int] | None]:
    """{COLUMN: (precision, scale)} of the numbers in a Parquet file's schema (its footer only);
    None for a text column (what an unconstrained Postgres numeric exports as)."""
    import io

    import pyarrow.parquet as pq

    from conveyor.s3 import S3ObjectReader

    schema = pq.ParquetFile(io.BufferedReader(S3ObjectReader(s3, bucket, key), 64 * 1024)).schema_arrow
    numbers = {}
    for field in schema:
        kind = str(field.type)
        if kind in _INTEGER_DIGITS:
            numbers[field.name.upper()] = (_INTEGER_DIGITS[kind], 0)
        elif match := _DECIMAL.fullmatch(kind):
            numbers[field.name.upper()] = (int(match[1]), int(match[2]))
        elif kind in ("string", "large_string"):
            numbers[field.name.upper()] = None
    return numbers


def number_widenings(
    needed: dict[str, dict[str, tuple[int, int] | None]], columns: dict[tuple[str, str], tuple[int, int]]
) -> tuple[list[tuple[str, str, int, int]], list[str]]:
    """What the Snowflake columns need to hold the files' numbers exactly.

    `needed`: {star table: {COLUMN: (precision, scale), or None for text}} of the files (text where
    Snowflake has a NUMBER: a Postgres star column widened to an unconstrained numeric, whose
    values no NUMBER(p, s) is sure to hold); `columns`: {(TABLE, COLUMN):
    (precision, scale)} of the NUMBER columns in Snowflake. Returns (the ALTERs: (TABLE, COLUMN,
    new precision, scale), for the star table and its staging table; the columns no ALTER can make
    hold them, each named with what it is and what it needs). Snowflake raises a NUMBER's precision
    in place (ALTER ... SET DATA TYPE) but never changes its scale; VARCHAR columns here are unsized
    (16 MB), so text never needs one."""
    alters, refused = [], []
    for table, numbers in needed.items():
        for target in (table.upper(), f"{table.upper()}_STAGING"):
            for column, held in sorted(numbers.items()):
                if (target, column) not in columns:
                    continue  # not a NUMBER here (or not a column): COPY says what it makes of it
                have_precision, have_scale = columns[(target, column)]
                if held is None:
                    refused.append(
                        f"{target}.{column} is NUMBER({have_precision}, {have_scale}); the window's file holds "
                        "numbers of any precision and scale (an unconstrained numeric in Postgres)"
                    )
                    continue
                precision, scale = held
                digits = max(precision - scale, have_precision - have_scale)
                if precision - scale <= have_precision - have_scale and scale <= have_scale:
                    continue
                if scale > have_scale or digits + have_scale > MAX_PRECISION:
                    why = (
                        "Snowflake cannot change a column's scale"
                        if scale > have_scale
                        else f"more than {MAX_PRECISION} digits"
                    )
                    refused.append(
                        f"{target}.{column} is NUMBER({have_precision}, {have_scale}); the window's file holds "
                        f"NUMBER({precision}, {scale}) values ({why})"
                    )
                    continue
                alters.append((target, column, digits + have_scale, have_scale))
    return alters, refused


def widen_for_window(snowflake_hook, s3, bucket: str, window: dict, database: str) -> list[str]:
    """Before a window's COPY: the star and staging NUMBER columns widened to hold its files'
    numbers exactly (ALTER ... SET DATA TYPE, a higher precision); the ALTERs made. A number whose
    scale grew fails the window before anything is copied (AirflowFailException: a retry cannot
    change it), naming each column and the manual step; nothing is ever rounded."""
    from airflow.sdk.exceptions import AirflowFailException

    needed = {table: file_numbers(s3, bucket, key) for table, key in window_files(s3, bucket, window).items()}
    if not any(needed.values()):
        return []
    [rows] = snowflake.run_script(
        snowflake_hook,
        f"SELECT TABLE_NAME, COLUMN_NAME, NUMERIC_PRECISION, NUMERIC_SCALE FROM {database}.INFORMATION_SCHEMA.COLUMNS "
        "WHERE TABLE_SCHEMA = 'TOTESYS' AND DATA_TYPE = 'NUMBER'",
    )
    columns = {
        (r["TABLE_NAME"], r["COLUMN_NAME"]): (r["NUMERIC_PRECISION"], r["NUMERIC_SCALE"]) for r in rows
    }
    alters, refused = number_widenings(needed, columns)
    if refused:
        raise AirflowFailException(
            f"window {window['name']}: {len(refused)} Snowflake column(s) cannot hold the window's numbers "
            f"exactly; nothing copied or merged:\n  " + "\n  ".join(refused) + f"\n(what to do: {SCALE_STEP})"
        )
    statements = [
        f"ALTER TABLE {database}.TOTESYS.{table} ALTER COLUMN {column} SET DATA TYPE NUMBER({precision}, {scale})"
        for table, column, precision, scale in alters
    ]
    for statement in statements:  # DDL: Snowflake commits each one
        snowflake.run_script(snowflake_hook, statement)
        print(f"widened: {statement}")
    return statements


def load_window(snowflake_hook, window: dict, variables: dict, *, s3) -> dict:
    """COPY one window's files into staging, check them against its export, MERGE them into the
    star and empty staging; first, the Snowflake columns widened to hold the files' numbers
    (`widen_for_window`, reading the files' footers from the processed bucket through `s3`).
    `variables`: the SQL templates' variables with the window's (window, partition). Returns
    {"window", "widened": [ALTERs], "copied": {table: rows}, "merged": {table: {inserted, updated}}}.
    A mismatch fails without retrying (the files will not change) and merges nothing."""
    from airflow.sdk.exceptions import AirflowFailException

    widened = widen_for_window(snowflake_hook, s3, variables["buckets"]["processed"], window, variables["db"])
    variables = {**variables, "star_tables": STAR}
    report = snowflake.CopyReport.copy(snowflake_hook, COPY_FILE, variables)
    copied = copied_rows(report, window["name"])
    print(f"copied {len(report.loaded)} file(s), {report.rows} row(s): {copied}")
    if problem := copy_mismatch(window, copied):
        raise AirflowFailException(problem)
    scripts = {table: snowflake.render(merge_file(table), variables) for table in STAR}
    scripts[CLEAR_STAGING_FILE] = snowflake.render(CLEAR_STAGING_FILE, variables)
    results = snowflake.run_scripts(snowflake_hook, scripts)
    if odd := {merge_file(t): len(results[t]) for t in STAR if len(results[t]) != 1}:
        raise RuntimeError(
            f"each MERGE file must hold one statement (file: statements): {odd}; run `make star`"
        )
    merged = {table: snowflake.merge_counts(results[table][0]) for table in STAR}
    print(f"merged: {merged}")
    return {"window": window["name"], "widened": widened, "copied": copied, "merged": merged}
