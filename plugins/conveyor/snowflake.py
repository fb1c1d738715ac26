"""Snowflake: the settings, the SQL in include/sql/snowflake/, and what a COPY INTO reports.

SQL lives in `.sql` files; Jinja fills in names only (the database, bucket names, the storage
integration, a merge's source). Statements run through the provider's SnowflakeHook on the
`snowflake_default` connection.

Settings: the Airflow Variable `conveyor_snowflake` (JSON, every key optional; Terraform writes it
on MWAA, with the storage integration's role and Snowpipe's topics):

    {"database": "CONVEYOR", "storage_integration": "CONVEYOR_S3",
     "storage_role_arn": "arn:aws:iam::...:role/<prefix>-snowflake-storage-integration",
     "loader_role": "CONVEYOR_LOADER", "task_warehouse": "CONVEYOR_WH", "task_schedule": "5 MINUTE",
     "topics": {"curated": "arn:aws:sns:...:<prefix>-curated-events", "stage": "arn:...:<prefix>-stage-events"}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from conveyor.config import ConfigError
from conveyor.paths import sql_path
from conveyor.resources import BUCKETS, EVENTS_PREFIX, SNOWFLAKE_CONN_ID, SNOWFLAKE_VARIABLE, ResourceNames

# What snowflake_setup applies, in order. The Snowpipe objects (file formats, pipes, streams,
# tasks) only when asked: they load and merge without Airflow.
SETUP_FILES = (
    "setup/010_database.sql",
    "setup/030_stages.sql",
    "setup/040_events_tables.sql",
    "setup/050_retail_tables.sql",
    "setup/060_totesys_tables.sql",
)
INTEGRATION_FILE = "setup/020_storage_integration.sql"
SNOWPIPE_FILES = (
    "snowpipe/110_file_formats.sql",
    "snowpipe/120_pipes.sql",
    "snowpipe/130_streams.sql",
    "snowpipe/140_tasks.sql",
)


@dataclass(frozen=True)
class SnowflakeSettings:
    database: str = "CONVEYOR"
    storage_integration: str = ""  # empty: stages without one (the local fake needs none)
    storage_role_arn: str = ""
    loader_role: str = "SYSADMIN"
    task_warehouse: str = "COMPUTE_WH"
    task_schedule: str = "5 MINUTE"
    topics: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None, origin: str = f"Variable {SNOWFLAKE_VARIABLE}") -> SnowflakeSettings:
        if not text:
            return cls()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{origin} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{origin} must be a JSON object, got {type(values).__name__}")
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(values) - known):
            raise ConfigError(f"{origin}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def template_variables(self, resource_names: ResourceNames, **extra) -> dict:
        """What the SQL templates may use."""
        return {
            "db": self.database,
            "buckets": {kind: resource_names.bucket(kind) for kind in BUCKETS},
            "storage_integration": self.storage_integration,
            "storage_role_arn": self.storage_role_arn,
            "loader_role": self.loader_role,
            "task_warehouse": self.task_warehouse,
            "task_schedule": self.task_schedule,
            "topics": self.topics,
            **extra,
        }


def settings_from_variable() -> SnowflakeSettings:
    """The `conveyor_snowflake` Variable's settings (call inside a task)."""
    from airflow.sdk import Variable

    return SnowflakeSettings.from_json(Variable.get(SNOWFLAKE_VARIABLE, default=None))


def render(name: str, variables: dict) -> str:
    """A `.sql` file of include/sql/snowflake with its template variables filled in (a missing one fails)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_path("snowflake"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sql_string"] = sql_string
    return env.get_template(name).render(**variables)


def sql_string(value) -> str:
    """A Snowflake string literal: single quotes doubled, backslashes (an escape in a
    single-quoted string) doubled."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def check_setup_settings(settings: SnowflakeSettings, *, integration: bool, snowpipe: bool) -> None:
    """Refuse, naming the keys to add to the Variable, settings that lack what the Params ask for:
    the storage integration needs its name and role ARN, the Snowpipe path the two SNS topics."""
    if integration and not (settings.storage_integration and settings.storage_role_arn):
        raise ConfigError(
            f"storage_integration needs storage_integration and storage_role_arn in the Variable "
            f"{SNOWFLAKE_VARIABLE} (Terraform writes both into it; the role is its output "
            "snowflake_storage_integration_role_arn)"
        )
    if snowpipe and not {"curated", "stage"} <= set(settings.topics):
        raise ConfigError(
            f"snowpipe needs the SNS topic ARNs in the Variable {SNOWFLAKE_VARIABLE}: "
            '"topics": {"curated": "<curated-events topic ARN>", "stage": "<stage-events topic ARN>"}'
        )


def setup_files(integration: bool = False, snowpipe: bool = False) -> list[str]:
    """What snowflake_setup applies: the integration file alone (an admin's one-off), or the
    objects the loads need, with the Snowpipe path's when asked."""
    if integration:
        return [INTEGRATION_FILE]
    return [*SETUP_FILES, *(SNOWPIPE_FILES if snowpipe else ())]


def split(sql: str) -> list[str]:
    """A script's statements, in order, split as `SnowflakeHook.run` splits one."""
    from io import StringIO

    from snowflake.connector.util_text import split_statements

    return [statement for statement, _ in split_statements(StringIO(sql)) if statement]


def statements(files: list[str], variables: dict) -> list[str]:
    """Each file rendered and split: its statements, in order (what `snowflake_setup` hands its
    `SQLExecuteQueryOperator`, so the UI shows each one)."""
    return [statement for name in files for statement in split(render(name, variables))]


def hook(conn_id: str = SNOWFLAKE_CONN_ID):
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    return SnowflakeHook(snowflake_conn_id=conn_id)


def run_script(snowflake_hook, sql: str, parameters: dict | None = None) -> list[list[dict]]:
    """Run every statement of `sql` in order, in one transaction (the hook commits at the end),
    with `parameters` bound (`%(name)s`); the rows each returned, as dicts."""
    from airflow.providers.common.sql.hooks.handlers import fetch_all_handler

    results = snowflake_hook.run(
        sql, parameters=parameters, handler=fetch_all_handler, return_last=False, return_dictionaries=True
    )
    return [list(rows or []) for rows in (results or [])]


def run_scripts(snowflake_hook, scripts: dict[str, str]) -> dict[str, list[list[dict]]]:
    """Run several scripts' statements in order, in one transaction (as `run_script`); the rows
    each statement returned, by script name (never by position across scripts)."""
    from airflow.providers.common.sql.hooks.handlers import fetch_all_handler

    owned = [(name, statement) for name, sql in scripts.items() for statement in split(sql)]
    owners = [name for name, _ in owned]
    results = snowflake_hook.run(
        [statement for _, statement in owned],
        handler=fetch_all_handler,
        return_last=False,
        return_dictionaries=True,
    )
    by_name = {name: [] for name in scripts}
    for name, rows in zip(owners, results or [], strict=True):
        by_name[name].append(list(rows or []))
    return by_name


def merge_counts(rows: list[dict]) -> dict:
    """A MERGE's result row ({"number of rows inserted": n, "number of rows updated": m}) as
    {"inserted": n, "updated": m}."""
    row = rows[0] if rows else {}
    return {k.lower().removeprefix("number of rows "): int(v or 0) for k, v in row.items()}


# --- which curated files a load names ----------------------------------------------------------

MAX_COPY_FILES = 1000  # Snowflake's limit for one COPY's FILES list
CURATED_SUFFIX = ".json"  # what the sweep's PATTERN loads


def stage_files(keys) -> list[str]:
    """Curated bucket keys as the curated stage (`s3://<curated>/events/`) names them, each once:
    the path under `events/`, only the `.json` files the sweep's PATTERN would load."""
    names = (key.removeprefix(EVENTS_PREFIX) for key in keys if key.startswith(EVENTS_PREFIX))
    return list(dict.fromkeys(n for n in names if n.endswith(CURATED_SUFFIX)))


def files_from_events(events) -> list[str] | None:
    """The curated files the triggering `curated` asset events name (their extra's `keys`), or
    None when a load must sweep instead: no event (a manual or the daily run), or an event that
    names none (it copied more than `conveyor.assets.MAX_EVENT_KEYS`, or its producer predates
    `keys`)."""
    events = list(events)
    if not events:
        return None
    keys = []
    for event in events:
        extra = getattr(event, "extra", None) or {}
        if not isinstance(extra.get("keys"), list):
            return None
        keys += extra["keys"]
    return stage_files(keys)


def run_files(params: dict, triggering_asset_events=None, queued_events=()) -> list[str] | None:
    """What a curated_to_snowflake run loads: the `files` Param's (curated keys under `events/`),
    else nothing named (None: a sweep) when the `sweep` Param asks, else the triggering events'
    and the `queued_events`' (read only for a run events triggered).

    `queued_events`: the `curated` events since the run's `run_after`. Airflow 3.3 gives a run
    only the events up to the first one queued for it (apache/airflow#56050): events that queue
    while the previous run is still going (`max_active_runs=1`) would reach no run, and their
    files would wait for the daily sweep. The load metadata skips a file two runs both name."""
    if params.get("files"):
        names = stage_files(params["files"])
        if refused := [k for k in params["files"] if k.removeprefix(EVENTS_PREFIX) not in names]:
            raise ConfigError(
                f"files: {len(refused)} key(s) not a {CURATED_SUFFIX} file under {EVENTS_PREFIX} (only those "
                f"are loaded): {'; '.join(refused[:10])}"
            )
        return names
    if params.get("sweep"):
        return None
    events = [e for found in (triggering_asset_events or {}).values() for e in found]
    if not events:
        return None  # a manual or the daily run: sweep
    return files_from_events([*events, *queued_events])


def describe_files(files: list[str] | None) -> str:
    """One log line: what the run's COPY reads."""
    if files is None:
        return "sweep: listing the whole curated stage (PATTERN); the load metadata skips what was loaded"
    shown = ", ".join(files[:5]) + (f" (and {len(files) - 5} more)" if len(files) > 5 else "")
    batches = len(file_batches(files))
    return f"loading the {len(files)} named file(s) in {batches} COPY statement(s): {shown}"


def file_batches(names: list[str], size: int = MAX_COPY_FILES) -> list[list[str]]:
    """`names` in batches of at most `size` (one COPY each)."""
    return [names[i : i + size] for i in range(0, len(names), size)]


def load_variables(variables: dict, files: list[str] | None) -> dict:
    """The COPY templates' variables: `file_batches` when the load names its files (an empty list
    loads nothing), none for a sweep."""
    return variables if files is None else {**variables, "file_batches": file_batches(files)}


# --- COPY INTO's report -------------------------------------------------------------------------


@dataclass
class CopyReport:
    """What COPY INTO statements said, file by file."""

    loaded: list[dict] = field(default_factory=list)  # {file, rows}
    failed: list[dict] = field(default_factory=list)  # {file, error}
    # Files loaded before are not reported: COPY leaves them out of its result.

    @classmethod
    def from_results(cls, results: list[list[dict]]) -> CopyReport:
        report = cls()
        for rows in results:
            for row in rows:
                row = {k.lower(): v for k, v in row.items()}
                status = str(row.get("status", "")).upper()
                if "file" not in row:  # "Copy executed with 0 files processed."
                    continue
                if status in ("LOADED", "PARTIALLY_LOADED"):
                    report.loaded.append({"file": row["file"], "rows": int(row.get("rows_loaded") or 0)})
                elif status != "LOAD_SKIPPED":
                    report.failed.append(
                        {"file": row["file"], "error": str(row.get("first_error") or status)}
                    )
        return report

    @property
    def rows(self) -> int:
        return sum(f["rows"] for f in self.loaded)

    def to_dict(self) -> dict:
        """For XCom: counts and the failures only (a first load may list thousands of files)."""
        return {"files": len(self.loaded), "rows": self.rows, "failed": self.failed}

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} new file(s), {self.rows} row(s); {len(self.failed)} failed "
            "(files loaded before are skipped and not listed)"
        )

    @classmethod
    def copy(cls, snowflake_hook, name: str, variables: dict, files: list[str] | None = None) -> CopyReport:
        """Run the COPY statements of a `.sql` file; what they loaded and what failed, per file.
        `files`: the stage's files to load (a COPY per 1,000), None to sweep (see `load_variables`)."""
        if files is not None and not files:
            return cls()
        return cls.from_results(run_script(snowflake_hook, render(name, load_variables(variables, files))))

    def failure_message(self, what: str) -> str | None:
        """A message naming every file that did not load, or None when all did."""
        if not self.failed:
            return None
        shown = "; ".join(f"{f['file']}: {f['error']}" for f in self.failed[:10])
        more = f" (and {len(self.failed) - 10} more)" if len(self.failed) > 10 else ""
        return (
            f"{len(self.failed)} {what} file(s) not loaded (ON_ERROR = SKIP_FILE; the rest loaded "
            f"and merged; fix or remove each file, then rerun): {shown}{more}"
        )


def fail_on_failed_files(report: dict, what: str, rejects: list[dict] = ()) -> None:
    """A DAG's last step: fail, without retrying (the files will not change), naming every file a
    COPY skipped (`report`: `CopyReport.to_dict()`) and every rejected row (`rejects`:
    `claim_order_rejects`), after the good ones were merged."""
    from airflow.sdk.exceptions import AirflowFailException

    messages = [CopyReport(failed=report["failed"]).failure_message(what), rejects_message(rejects)]
    if messages := [m for m in messages if m]:
        raise AirflowFailException("\n".join(messages))


# --- order events that do not type -------------------------------------------------------------

# What merge_orders.sql runs, in order: what each statement did.
ORDER_MERGE_STATEMENTS = ("rejected", "orders", "order_items", "lines_removed", "watermark")


def merged_up_to(snowflake_hook, variables: dict):
    """The newest LOADED_AT the order merge has seen (merge_since.sql): the next merge reads after
    it. Before the first merge, where earlier versions of the merge stopped."""
    [[row]] = run_script(snowflake_hook, render("events/merge_since.sql", variables))
    if (since := next(iter(row.values()))) is not None:
        return since
    first = {**variables, "before_first_watermark": True}
    [[row]] = run_script(snowflake_hook, render("events/merge_since.sql", first))
    return next(iter(row.values()))


def raw_events_after(variables: dict, since) -> str:
    """The Airflow merge's source: RAW_EVENTS' rows loaded after `since`, bound as a constant.
    (A datetime is written to the microsecond, rounded down: a row of the same microsecond as the
    watermark is read again, which the MERGE makes harmless, and none is skipped.)"""
    text = since.isoformat(sep=" ") if hasattr(since, "isoformat") else str(since)
    return render("events/raw_events_after.sql", {**variables, "since": text}).strip()


def merge_orders(snowflake_hook, variables: dict) -> dict:
    """Flatten the pending order events (`variables["source"]`); the count of each statement's rows
    ({"rejected": {"inserted": n}, "orders": {"inserted", "updated"}, ...})."""
    results = run_script(snowflake_hook, render("events/merge_orders.sql", variables))
    return {what: merge_counts(rows) for what, rows in zip(ORDER_MERGE_STATEMENTS, results, strict=True)}


def reporter(ti) -> str:
    """Who reports rejected rows: this try of this task (a cleared task, a new try, reports only
    rows nobody reported yet)."""
    return f"{ti.dag_id}.{ti.task_id} {ti.run_id} try {ti.try_number}"


def claim_order_rejects(snowflake_hook, variables: dict, by: str) -> list[dict]:
    """The order events the merges rejected that nobody reported yet, now claimed by `by`, as
    {file, row, reason} (oldest load first). Each is returned to one reporter, once."""
    results = run_script(
        snowflake_hook, render("events/claim_order_rejects.sql", variables), {"reporter": by}
    )
    return [
        {"file": row["FILE_NAME"], "row": row["FILE_ROW_NUMBER"], "reason": row["REASON"]}
        for row in (results[-1] if results else [])
    ]


def rejects_message(rejects: list[dict], table: str = "EVENTS.ORDER_REJECTS") -> str | None:
    """A message naming every rejected order event (the first ten, and how many more)."""
    if not rejects:
        return None
    shown = "; ".join(
        f"{r['file']}" + (f" row {r['row']}" if r.get("row") is not None else "") + f": {r['reason']}"
        for r in rejects[:10]
    )
    more = f" (and {len(rejects) - 10} more)" if len(rejects) > 10 else ""
    return (
        f"{len(rejects)} order event(s) rejected, not flattened (each is kept with its reason and raw "
        f"document in {table}; the other events were merged; reported once): {shown}{more}"
    )


def validation_errors(results: list[list[dict]]) -> list[dict]:
    """VALIDATION_MODE = RETURN_ERRORS rows, as {file, line, error}."""
    errors = []
    for rows in results:
        for row in rows:
            row = {k.lower(): v for k, v in row.items()}
            errors.append({"file": row.get("file"), "line": row.get("line"), "error": row.get("error")})
    return errors
