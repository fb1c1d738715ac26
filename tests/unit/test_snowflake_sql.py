"""Every Snowflake `.sql` file renders (a missing name fails) and parses with sqlglot's Snowflake
dialect; what fakesnow cannot run (pipes, streams, tasks, the storage integration, named file
formats) is checked here by parsing and by the objects it names, since no test can run it.
"""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from conveyor import paths, snowflake
from conveyor.config import ConfigError
from conveyor.resources import ResourceNames
from conveyor.totesys.star import STAR

SQL_DIR = paths.sql_path("snowflake")
FILES = sorted(str(p.relative_to(SQL_DIR)) for p in SQL_DIR.rglob("*.sql"))
SETTINGS = snowflake.SnowflakeSettings(
    database="ANALYTICS",
    storage_integration="CONVEYOR_S3",
    storage_role_arn="arn:aws:iam::123456789012:role/conveyor-dev-snowflake-storage-integration",
    loader_role="CONVEYOR_LOADER",
    task_warehouse="CONVEYOR_WH",
    topics={
        "curated": "arn:aws:sns:eu-west-2:123456789012:conveyor-dev-curated-events",
        "stage": "arn:aws:sns:eu-west-2:123456789012:conveyor-dev-stage-events",
    },
)
TEMPLATE_VARIABLES = SETTINGS.template_variables(
    ResourceNames("conveyor-dev"),
    source="ANALYTICS.EVENTS.RAW_EVENTS_PENDING",
    window="20240305T195900Z-20240305T200200Z",
    partition="2024/03/05/2002",
    star_tables=STAR,
    since="2024-03-05 20:02:00.123456+00:00",
)


# A value bound at run time (`%(name)s`; the connector sends it as a quoted literal).
BOUND = re.compile(r"%\((\w+)\)s")


def statements(name: str) -> list[exp.Expr]:
    text = BOUND.sub(lambda m: f"'<{m.group(1)}>'", snowflake.render(name, TEMPLATE_VARIABLES))
    return [e for e in sqlglot.parse(text, read="snowflake") if e is not None]


def created(kind: str) -> set[str]:
    """Fully qualified names of the objects of `kind` (TABLE, VIEW, STAGE) the setup creates."""
    names = set()
    for name in [*snowflake.setup_files(), snowflake.INTEGRATION_FILE]:
        for statement in statements(name):
            if isinstance(statement, exp.Create) and statement.kind == kind:
                names.add(table_name(statement.this))
    return names


def command_text(statement: exp.Expr) -> str:
    """The text of a statement sqlglot keeps as an opaque Command, whitespace collapsed."""
    assert isinstance(statement, exp.Command), statement
    rest = statement.expression
    rest = rest.sql() if isinstance(rest, exp.Expr) else rest
    return re.sub(r"\s+", " ", f"{statement.this} {rest}").strip()


def table_name(statement: exp.Expr) -> str:
    """The first table a statement names, qualified, without its alias."""
    table = statement.find(exp.Table)
    return ".".join(
        part.name for part in (table.args.get("catalog"), table.args.get("db"), table.this) if part
    ).upper()


@pytest.mark.parametrize("name", FILES)
def test_every_file_renders_and_parses(name):
    parsed = statements(name)
    assert parsed, f"{name}: no statements"
    text = snowflake.render(name, TEMPLATE_VARIABLES)
    assert "{{" not in text and "{%" not in text
    if name.startswith(("setup/", "events/", "retail/", "totesys/")) and name != snowflake.INTEGRATION_FILE:
        # What the fake runs, sqlglot understands fully (no fallback to an opaque Command).
        assert not [s for s in parsed if isinstance(s, exp.Command)], name


def test_setup_applies_the_integration_alone_or_the_objects_with_snowpipe_when_asked():
    assert snowflake.setup_files(integration=True) == [snowflake.INTEGRATION_FILE]
    assert snowflake.setup_files() == list(snowflake.SETUP_FILES)
    assert snowflake.setup_files(snowpipe=True)[-4:] == list(snowflake.SNOWPIPE_FILES)


def test_a_missing_name_fails_instead_of_rendering_empty():
    with pytest.raises(Exception, match="source"):
        snowflake.render("events/merge_orders.sql", SETTINGS.template_variables(ResourceNames()))


def test_every_setup_object_is_rerunnable_and_qualified():
    for name in [*snowflake.setup_files(), snowflake.INTEGRATION_FILE]:
        for statement in statements(name):
            if isinstance(statement, exp.Create):
                assert statement.args.get("exists") or statement.args.get("replace"), statement.sql()[:80]
                if statement.kind in ("TABLE", "VIEW", "STAGE"):
                    assert statement.this.find(exp.Table).catalog == "ANALYTICS", statement.sql()[:80]


def test_stages_point_at_the_buckets_through_the_integration():
    text = snowflake.render("setup/030_stages.sql", TEMPLATE_VARIABLES)
    for bucket in ("conveyor-dev-curated", "conveyor-dev-stage", "conveyor-dev-processed"):
        assert f"URL = 's3://{bucket}/" in text
    assert text.count("STORAGE_INTEGRATION = CONVEYOR_S3") == 3
    local = snowflake.render(
        "setup/030_stages.sql", snowflake.SnowflakeSettings().template_variables(ResourceNames())
    )
    assert "STORAGE_INTEGRATION" not in local  # the local fake reads S3 without one
    integration = snowflake.render("setup/020_storage_integration.sql", TEMPLATE_VARIABLES)
    locations = "('s3://conveyor-dev-curated/', 's3://conveyor-dev-stage/', 's3://conveyor-dev-processed/')"
    # Created once (its external id is in the trust policy); the ALTER keeps its locations current.
    assert integration.count(f"STORAGE_ALLOWED_LOCATIONS = {locations}") == 2
    assert "ALTER STORAGE INTEGRATION CONVEYOR_S3 SET" in integration
    assert "GRANT EXECUTE TASK ON ACCOUNT TO ROLE CONVEYOR_LOADER" in integration


def test_loads_copy_into_tables_the_setup_creates_from_its_stages():
    tables, stages = created("TABLE"), created("STAGE")
    for name in (
        "events/copy_raw_events.sql",
        "events/validate_raw_events.sql",
        "retail/copy_stage_files.sql",
    ):
        for copy in statements(name):
            assert isinstance(copy, exp.Copy)
            assert table_name(copy.this) in tables
            stage = re.search(r"@([\w.]+)", copy.sql(dialect="snowflake")).group(1).upper()
            assert stage in stages, stage


def test_merges_write_tables_the_setup_creates():
    tables, views = created("TABLE"), created("VIEW")
    assert "ANALYTICS.EVENTS.RAW_EVENTS_PENDING" in views
    for name in (
        "events/merge_orders.sql",
        "events/claim_order_rejects.sql",
        "retail/merge_users.sql",
        "retail/merge_transactions.sql",
    ):
        for statement in statements(name):
            assert isinstance(statement, (exp.Merge, exp.Delete, exp.Insert, exp.Update, exp.Select))
            written = statement.this if not isinstance(statement, exp.Select) else statement.find(exp.Table)
            assert table_name(written) in tables, statement.sql()[:80]
    order_merge = statements("events/merge_orders.sql")
    assert [type(s).__name__ for s in order_merge] == ["Insert", "Merge", "Merge", "Delete", "Merge"]
    assert len(order_merge) == len(snowflake.ORDER_MERGE_STATEMENTS)


def test_the_order_merge_types_every_field_with_try_casts():
    """A plain cast of a bad value raises on a real account (and the run fails on that row
    forever): every cast of the document in the order merge is a TRY_CAST to the column's type."""
    text = snowflake.render("events/merge_orders.sql", TEMPLATE_VARIABLES)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    plain = re.findall(r"(?<!TRY_)CAST\(|::(?!VARCHAR\b|TIMESTAMP_NTZ\b)\w+", body)
    assert plain == [], plain
    for field, cast in (
        ("r.V:order_id::VARCHAR", "NUMBER(38, 0)"),
        ("r.V:total::VARCHAR", "NUMBER(12, 2)"),
        ("r.V:ordered_at::VARCHAR", "TIMESTAMP_TZ"),
        ("i.VALUE:qty::VARCHAR", "NUMBER(9, 0)"),
        ("i.VALUE:price::VARCHAR", "NUMBER(12, 2)"),
    ):
        assert f"TRY_CAST({field} AS {cast})" in body, field
    # VARCHAR(n) columns: their length is checked before the row is merged.
    assert "LENGTH(r.V:customer.country::VARCHAR) > 2" in body and "LENGTH(r.V:currency::VARCHAR) > 3" in body


# --- what fakesnow cannot run: checked by parse and by what it names ------------------------------


def test_pipes_load_the_same_tables_from_the_same_stages_on_terraforms_topics():
    tables, stages = created("TABLE"), created("STAGE")
    formats = {table_name(s.this) for s in statements("snowpipe/110_file_formats.sql")}
    pipes = statements("snowpipe/120_pipes.sql")
    assert len(pipes) == 5
    for pipe in pipes:
        text = command_text(pipe)
        assert re.match(r"CREATE PIPE IF NOT EXISTS ANALYTICS\.\w+\.\w+_PIPE AUTO_INGEST = TRUE", text)
        topic = re.search(r"AWS_SNS_TOPIC = '([^']+)'", text).group(1)
        assert topic in SETTINGS.topics.values()
        copy = sqlglot.parse_one(text.split(" AS ", 1)[1].strip(), read="snowflake")
        assert isinstance(copy, exp.Copy)
        assert table_name(copy.this) in tables
        assert re.search(r"@([\w.]+)", copy.sql(dialect="snowflake")).group(1).upper() in stages
        assert re.search(r"FORMAT_NAME = '([\w.]+)'", text).group(1) in formats


def test_streams_watch_raw_tables_and_tasks_merge_them_with_the_airflow_merge():
    tables = created("TABLE")
    streams = {}
    for stream in statements("snowpipe/130_streams.sql"):
        match = re.match(
            r"CREATE STREAM IF NOT EXISTS ([\w.]+) ON TABLE ([\w.]+) APPEND_ONLY = TRUE", command_text(stream)
        )
        assert match, command_text(stream)
        assert match.group(2) in tables
        streams[match.group(1)] = match.group(2)
    assert set(streams.values()) == {
        "ANALYTICS.EVENTS.RAW_EVENTS",
        "ANALYTICS.RETAIL.USERS_RAW",
        "ANALYTICS.RETAIL.TRANSACTIONS_RAW",
    }

    tasks = snowflake.render("snowpipe/140_tasks.sql", TEMPLATE_VARIABLES)
    for merge_file, stream in (
        ("events/merge_orders.sql", "ANALYTICS.EVENTS.RAW_EVENTS_STREAM"),
        ("retail/merge_users.sql", "ANALYTICS.RETAIL.USERS_RAW_STREAM"),
        ("retail/merge_transactions.sql", "ANALYTICS.RETAIL.TRANSACTIONS_RAW_STREAM"),
    ):
        assert f"SYSTEM$STREAM_HAS_DATA('{stream}')" in tasks
        body = snowflake.render(merge_file, {**TEMPLATE_VARIABLES, "source": stream})
        # The task runs exactly the Airflow merge file, every statement, reading the stream.
        assert " ".join(body.split()) in " ".join(tasks.split()), merge_file
    order_task = tasks.split("CREATE OR REPLACE TASK")[1]
    assert "BEGIN TRANSACTION;" in order_task and "COMMIT;" in order_task  # one transaction on the stream
    assert "DELETE FROM ANALYTICS.EVENTS.ORDER_ITEMS AS i" in order_task  # the order task's stale lines too
    parsed = statements("snowpipe/140_tasks.sql")
    tasks = (
        "ANALYTICS.EVENTS.MERGE_ORDERS",
        "ANALYTICS.RETAIL.MERGE_USERS",
        "ANALYTICS.RETAIL.MERGE_TRANSACTIONS",
    )
    assert [command_text(s).split()[0:5] for s in parsed] == [
        ["CREATE", "OR", "REPLACE", "TASK", task] for task in tasks
    ] + [["ALTER", "TASK", task, "RESUME"] for task in tasks]


def test_settings_reject_unknown_keys_and_bad_json():
    assert snowflake.SnowflakeSettings.from_json(None).database == "CONVEYOR"
    assert snowflake.SnowflakeSettings.from_json('{"database": "X"}').database == "X"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['databse'\]"):
        snowflake.SnowflakeSettings.from_json('{"databse": "X"}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        snowflake.SnowflakeSettings.from_json("{database: X}")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        snowflake.SnowflakeSettings.from_json('["X"]')


def test_copy_report_sorts_files_and_names_the_failures():
    results = [
        [
            {"file": "s3://b/events/a.json", "status": "LOADED", "rows_loaded": 3},
            {"file": "s3://b/events/b.json", "status": "LOAD_SKIPPED", "rows_loaded": 0},
            {"file": "s3://b/events/c.json", "status": "LOAD_FAILED", "first_error": "Malformed JSON"},
        ],
        [{"status": "Copy executed with 0 files processed."}],
    ]
    report = snowflake.CopyReport.from_results(results)
    assert (report.rows, len(report.loaded), len(report.failed)) == (3, 1, 1)
    assert report.to_dict() == {"files": 1, "rows": 3, "failed": report.failed}
    message = report.failure_message("curated")
    assert message.startswith("1 curated file(s) not loaded") and "c.json: Malformed JSON" in message
    assert snowflake.CopyReport.from_results(results[:1][:0]).failure_message("x") is None
    assert snowflake.merge_counts([{"number of rows inserted": 2, "number of rows updated": None}]) == {
        "inserted": 2,
        "updated": 0,
    }
