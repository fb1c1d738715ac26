"""processed_to_snowflake's work: which totesys_etl windows to load, and loading one.

A window loads in three steps, one window at a time:
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


def load_window(snowflake_hook, window: dict, variables: dict) -> dict:
    """COPY one window's files into staging, check them against its export, MERGE them into the
    star and empty staging. `variables`: the SQL templates' variables with the window's (window,
    partition). Returns {"window", "copied": {table: rows}, "merged": {table: {inserted, updated}}}.
    A mismatch fails without retrying (the files will not change) and merges nothing."""
    from airflow.sdk.exceptions import AirflowFailException

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
    return {"window": window["name"], "copied": copied, "merged": merged}
