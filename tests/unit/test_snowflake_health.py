"""snowflake_health's checks on the rows Snowflake returns.

fakesnow cannot run `SYSTEM$PIPE_STATUS`, `TASK_HISTORY`, `COPY_HISTORY` or `SHOW PIPES/TASKS/
STREAMS` (it has no pipes, tasks or streams), so it cannot show a stopped pipe, a suspended task or
a stale stream. The checks are tested here on rows in the shapes Snowflake documents for them
(column names and values from the reference pages of SYSTEM$PIPE_STATUS, TASK_HISTORY,
COPY_HISTORY, SHOW TASKS and SHOW STREAMS), and the SQL that fetches them is parsed (sqlglot,
Snowflake dialect). tests/integration/test_snowflake.py runs the DAG through Airflow with these
rows standing in for those statements and everything else real (the fake Snowflake, SNS in moto).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import sqlglot
from sqlglot import exp

from conveyor import snowflake
from conveyor import snowflake_health as health
from conveyor.resources import ResourceNames

AT = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
NAMES = snowflake.SnowflakeSettings(
    database="ANALYTICS", task_warehouse="CONVEYOR_WH", loader_role="LOADER"
).template_variables(ResourceNames("conveyor-dev"))

# SYSTEM$PIPE_STATUS's JSON (documented fields).
PIPE_RUNNING = {
    "executionState": "RUNNING",
    "pendingFileCount": 0,
    "lastIngestedTimestamp": "2024-03-05T11:58:01.120Z",
    "lastIngestedFilePath": "orders/2024/03/05/batch-1.json",
    "notificationChannelName": "arn:aws:sqs:eu-west-2:123456789012:sf-snowpipe-AIDA-x",
    "numOutstandingMessagesOnChannel": 0,
    "lastReceivedMessageTimestamp": "2024-03-05T11:58:00.532Z",
    "lastForwardedMessageTimestamp": "2024-03-05T11:58:00.611Z",
}
# SHOW TASKS / SHOW STREAMS rows (lower-case column names, as Snowflake returns them).
TASK = {
    "created_on": AT - timedelta(days=3),
    "name": "MERGE_ORDERS",
    "database_name": "ANALYTICS",
    "schema_name": "EVENTS",
    "owner": "LOADER",
    "warehouse": "CONVEYOR_WH",
    "schedule": "5 MINUTE",
    "state": "started",
    "condition": "SYSTEM$STREAM_HAS_DATA('ANALYTICS.EVENTS.RAW_EVENTS_STREAM')",
}
STREAM = {
    "created_on": AT - timedelta(days=3),
    "name": "RAW_EVENTS_STREAM",
    "database_name": "ANALYTICS",
    "schema_name": "EVENTS",
    "owner": "LOADER",
    "table_name": "ANALYTICS.EVENTS.RAW_EVENTS",
    "source_type": "Table",
    "base_tables": "ANALYTICS.EVENTS.RAW_EVENTS",
    "type": "DELTA",
    "stale": "false",
    "mode": "APPEND_ONLY",
    "stale_after": AT + timedelta(days=14),
    "invalid_reason": "N/A",
}


def test_a_running_pipe_a_started_task_and_a_fresh_stream_are_healthy():
    gathered = {
        "pipes": {"ANALYTICS.EVENTS.RAW_EVENTS_PIPE": json.dumps(PIPE_RUNNING)},
        "tasks": [TASK],
        "streams": [{**STREAM, "invalid_reason": None}],
        "task_runs": [],
        "loads": [],
    }
    assert health.problems(gathered, [], AT) == []


def test_a_pipe_that_does_not_load_is_named_with_its_state_error_and_backlog():
    stopped = {**PIPE_RUNNING, "executionState": "STOPPED_STAGE_DROPPED"}
    [problem] = health.pipe_problems("ANALYTICS.EVENTS.RAW_EVENTS_PIPE", json.dumps(stopped), AT)
    assert problem.kind == "pipe" and "STOPPED_STAGE_DROPPED" in problem.detail
    stalled = {
        **PIPE_RUNNING,
        "executionState": "STALLED_STAGE_PERMISSION_ERROR",
        "error": "Access Denied (Status Code: 403)",
        "pendingFileCount": 12,
        "oldestPendingFilePath": "orders/2024/03/05/batch-0.json",
        "oldestFileTimestamp": "2024-03-05T09:00:00.000Z",
    }
    details = [p.detail for p in health.pipe_problems("P", json.dumps(stalled), AT)]
    assert len(details) == 3
    assert "STALLED_STAGE_PERMISSION_ERROR" in details[0] and "Access Denied" in details[1]
    assert "12 file(s) pending" in details[2] and "batch-0.json" in details[2]
    # Files queued a minute ago are a queue, not a problem.
    queued = {**PIPE_RUNNING, "pendingFileCount": 3, "oldestFileTimestamp": "2024-03-05T11:59:00.000Z"}
    assert health.pipe_problems("P", queued, AT) == []


def test_a_suspended_task_and_its_failed_runs_are_named_with_the_last_error():
    suspended = {**TASK, "state": "suspended", "last_suspended_reason": "SUSPENDED_DUE_TO_ERRORS"}
    [problem] = health.task_problems([TASK, suspended])
    assert problem.name == "ANALYTICS.EVENTS.MERGE_ORDERS" and "SUSPENDED_DUE_TO_ERRORS" in problem.detail
    assert "RESUME" in problem.detail

    # TASK_HISTORY(ERROR_ONLY => TRUE) rows, ordered by SCHEDULED_TIME as the statement orders them.
    run = {
        "NAME": "MERGE_ORDERS",
        "DATABASE_NAME": "ANALYTICS",
        "SCHEMA_NAME": "EVENTS",
        "ERROR_CODE": "100038",
    }
    runs = [
        {**run, "STATE": "FAILED", "SCHEDULED_TIME": AT - timedelta(minutes=50), "ERROR_MESSAGE": "first"},
        {**run, "STATE": "FAILED", "SCHEDULED_TIME": AT - timedelta(minutes=10), "ERROR_MESSAGE": "x"},
        {
            **run,
            "STATE": "FAILED_AND_AUTO_SUSPENDED",
            "SCHEDULED_TIME": AT - timedelta(minutes=5),
            "ERROR_MESSAGE": "Numeric value 'abc' is not recognized",
        },
        {**run, "NAME": "MERGE_USERS", "SCHEMA_NAME": "RETAIL", "STATE": "CANCELLED", "SCHEDULED_TIME": AT},
    ]
    orders, users = health.task_run_problems(runs)
    assert orders.name == "ANALYTICS.EVENTS.MERGE_ORDERS"
    assert orders.detail.startswith("3 run(s) FAILED/FAILED_AND_AUTO_SUSPENDED")
    assert "Numeric value 'abc' is not recognized" in orders.detail
    assert users.name == "ANALYTICS.RETAIL.MERGE_USERS" and "CANCELLED" in users.detail


def test_each_file_a_pipe_did_not_load_is_named_with_its_first_error():
    # COPY_HISTORY rows (the statement keeps the pipes' loads that did not load).
    rows = [
        {
            "FILE_NAME": "orders/2024/03/05/bad.json",
            "STATUS": "Load failed",
            "FIRST_ERROR_MESSAGE": "Error parsing JSON: incomplete object value",
            "FIRST_ERROR_LINE_NUMBER": 3,
            "ERROR_COUNT": 1,
            "PIPE_NAME": "RAW_EVENTS_PIPE",
            "LAST_LOAD_TIME": AT - timedelta(minutes=20),
            "TARGET": "EVENTS.RAW_EVENTS",
        }
    ]
    [problem] = health.load_problems(rows)
    assert problem.kind == "pipe_load" and problem.name == "orders/2024/03/05/bad.json"
    assert "Load failed by RAW_EVENTS_PIPE into EVENTS.RAW_EVENTS" in problem.detail
    assert "incomplete object value (line 3)" in problem.detail and "new name" in problem.detail


def test_a_stale_stream_and_one_about_to_go_stale_are_named():
    stale = {**STREAM, "stale": "true", "stale_after": AT - timedelta(days=1)}
    soon = {
        **STREAM,
        "name": "USERS_RAW_STREAM",
        "schema_name": "RETAIL",
        "stale_after": AT + timedelta(days=1),
    }
    fresh = {**STREAM, "name": "TRANSACTIONS_RAW_STREAM", "invalid_reason": "N/A"}
    found = health.stream_problems([stale, soon, {**fresh, "invalid_reason": None}], AT)
    assert [p.name for p in found] == [
        "ANALYTICS.EVENTS.RAW_EVENTS_STREAM",
        "ANALYTICS.RETAIL.USERS_RAW_STREAM",
    ]
    assert found[0].detail.startswith("stale: recreate it")
    assert found[1].detail.startswith(f"goes stale at {(AT + timedelta(days=1)).isoformat()}")
    # "N/A" is how SHOW STREAMS says a stream is valid; another reason is a problem.
    assert health.stream_problems([fresh], AT) == []
    [invalid] = health.stream_problems([{**fresh, "invalid_reason": "Base table dropped"}], AT)
    assert invalid.detail == "invalid: Base table dropped"


def test_the_alert_names_every_problem_and_fits_sns():
    rejects = [{"file": "s3://c/events/x.json", "row": 4, "reason": "total is not a NUMBER(12, 2)"}]
    found = health.problems(
        {
            "pipes": {"P": {"executionState": "PAUSED"}},
            "tasks": [],
            "streams": [],
            "task_runs": [],
            "loads": [],
        },
        rejects,
        AT,
    )
    assert [p.kind for p in found] == ["pipe", "rejected_rows"]
    message = health.alert(
        found, dag_id="snowflake_health", run_id="r1", interval=(AT - timedelta(hours=1), AT)
    )
    assert message["status"] == "unhealthy" and message["problem_count"] == 2
    assert "s3://c/events/x.json row 4: total is not a NUMBER(12, 2)" in message["summary"]
    assert "pipe P: executionState PAUSED" in message["summary"]
    subject = health.subject(message)
    assert subject == "[conveyor] UNHEALTHY Snowflake: 2 problem(s): pipe, rejected_rows"
    many = [health.Problem("pipe_load", f"f{i}", "Load failed") for i in range(500)]
    big = health.alert(many, dag_id="d", run_id="r", interval=(AT, AT))
    assert big["problem_count"] == 500 and len(big["problems"]) == health.LISTED
    assert big["summary"].endswith("(and 480 more)") and len(health.subject(big)) <= 100


def test_the_health_sql_parses_and_reads_what_the_setup_creates():
    text = re.sub(r"%\((\w+)\)s", r"'<\1>'", snowflake.render("health/snowpipe_state.sql", NAMES))
    statements = [s for s in sqlglot.parse(text, read="snowflake") if s is not None]
    assert [type(s).__name__ for s in statements] == ["Command", "Command", "Command", "Select", "Union"]
    shows = [re.sub(r"\s+", " ", f"{s.this} {s.expression}").split("*/")[-1].strip() for s in statements[:3]]
    assert shows == [
        "SHOW PIPES IN DATABASE ANALYTICS",
        "SHOW TASKS IN DATABASE ANALYTICS",
        "SHOW STREAMS IN DATABASE ANALYTICS",
    ]
    task_history, copy_history = statements[3], statements[4]
    history_args = {k.this.name: k.expression.sql() for k in task_history.find_all(exp.Kwarg)}
    assert history_args["ERROR_ONLY"] == "TRUE" and "'<start>'" in history_args["SCHEDULED_TIME_RANGE_START"]
    targets = {k.expression.name for k in copy_history.find_all(exp.Kwarg) if k.this.name == "TABLE_NAME"}
    assert targets == {
        "ANALYTICS.EVENTS.RAW_EVENTS",
        "ANALYTICS.RETAIL.USERS_RAW",
        "ANALYTICS.RETAIL.TRANSACTIONS_RAW",
    }
    assert copy_history.sql(dialect="snowflake").count("NOT PIPE_NAME IS NULL") == 3  # the pipes' loads only
    status = sqlglot.parse_one(
        re.sub(r"%\((\w+)\)s", r"'<\1>'", snowflake.render("health/pipe_status.sql", NAMES)), read="snowflake"
    )
    assert isinstance(status, exp.Select) and "SYSTEM$PIPE_STATUS('<pipe>')" in status.sql(
        dialect="snowflake"
    )


def test_the_loader_role_may_use_the_task_warehouse():
    """A task runs on its warehouse as its owner, the loader role: without USAGE every run fails."""
    integration = snowflake.render(
        "setup/020_storage_integration.sql", {**NAMES, "storage_integration": "S3I"}
    )
    assert "GRANT USAGE ON WAREHOUSE CONVEYOR_WH TO ROLE LOADER;" in integration
    assert "WAREHOUSE = CONVEYOR_WH" in snowflake.render("snowpipe/140_tasks.sql", {**NAMES, "topics": {}})
