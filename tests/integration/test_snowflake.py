"""The Snowflake loads through Airflow, on a fake Snowflake (fakesnow's server, with the local
stack's COPY INTO additions: S3 from moto, JSON, stage paths, PATTERN, ON_ERROR = SKIP_FILE,
VALIDATION_MODE) reading a moto server: snowflake_setup, curated_to_snowflake and
stage_to_snowflake, as dag.test() runs them.

Not run here, because fakesnow cannot: streams, tasks, pipes, the storage integration and named
file formats (tests/unit/test_snowflake_sql.py parses them and checks what they name). Where a
test stands in for a stream it says so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import read_messages, run_dag, task_states
from snowflake.connector.errors import ProgrammingError

from conveyor import snowflake
from conveyor.resources import ResourceNames
from conveyor.retail import generator
from conveyor_local import fake_snowflake
from conveyor_local.provision import NOTIFICATIONS_INBOX

pytestmark = pytest.mark.integration

CURATED, STAGE = ResourceNames().bucket("curated"), ResourceNames().bucket("stage")


def order(order_id: int, total: str, items: list[tuple[str, int, str]], **extra) -> dict:
    return {
        "order_id": order_id,
        "customer": {"id": f"c-{order_id % 7}", "country": "GB"},
        "currency": "GBP",
        "total": total,
        "ordered_at": "2024-03-05T10:00:00+00:00",
        "items": [{"sku": s, "qty": q, "price": p} for s, q, p in items],
        **extra,
    }


def put_lines(s3, bucket: str, key: str, documents: list[dict]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body="\n".join(json.dumps(d) for d in documents).encode())


@pytest.fixture
def snowflake_db(snowflake_conn, moto_server, request):
    """The fake Snowflake with what snowflake_setup creates (through Airflow for the setup test,
    the same files applied directly for the others); yields (query, s3)."""
    conn = snowflake_conn()
    if request.node.get_closest_marker("setup_through_airflow"):
        run = run_dag("snowflake_setup")
        assert run.state == "success", task_states(run)
    else:
        fake_snowflake.apply_setup(conn)
    cursor = conn.cursor()

    def query(sql: str) -> list[tuple]:
        return cursor.execute(sql).fetchall()

    yield query, moto_server["session"].client("s3")
    conn.close()


@pytest.mark.setup_through_airflow
def test_setup_creates_every_object_and_is_rerunnable(snowflake_db):
    query, _ = snowflake_db
    tables = {
        (schema, name)
        for schema, name in query(
            "SELECT table_schema, table_name FROM CONVEYOR.information_schema.tables "
            "WHERE table_schema IN ('EVENTS', 'RETAIL')"
        )
    }
    assert {
        ("EVENTS", "RAW_EVENTS"),
        ("EVENTS", "ORDERS"),
        ("EVENTS", "ORDER_ITEMS"),
        ("EVENTS", "RAW_EVENTS_CHECK"),
        ("RETAIL", "USERS_RAW"),
        ("RETAIL", "TRANSACTIONS_RAW"),
        ("RETAIL", "USERS"),
        ("RETAIL", "TRANSACTIONS"),
    } <= tables
    views = set(query("SELECT table_schema, table_name FROM CONVEYOR.information_schema.views"))
    assert {
        ("EVENTS", "RAW_EVENTS_PENDING"),
        ("RETAIL", "USERS_RAW_PENDING"),
        ("RETAIL", "TRANSACTIONS_RAW_PENDING"),
    } <= views
    stages = {row[1] for row in query("SHOW STAGES IN DATABASE CONVEYOR")}
    assert {"CURATED_STAGE", "RETAIL_STAGE", "PROCESSED_STAGE"} <= stages
    again = run_dag("snowflake_setup")  # IF NOT EXISTS / OR REPLACE VIEW: a second run succeeds
    assert again.state == "success", task_states(again)


def test_curated_json_is_loaded_once_and_flattened_into_typed_tables(snowflake_db):
    query, s3 = snowflake_db
    put_lines(
        s3,
        CURATED,
        "events/orders/2024/03/05/batch 1.json",
        [order(1, "19.98", [("A-1", 2, "9.99")]), order(2, "5.00", [("B-2", 1, "2.50"), ("C-3", 1, "2.50")])],
    )
    s3.put_object(
        Bucket=CURATED, Key="events/orders/ünïcode/3.json", Body=json.dumps(order(3, "7", [])).encode()
    )
    s3.put_object(Bucket=CURATED, Key="events/clicks/1.json", Body=b'{"click": "home"}')  # not an order
    s3.put_object(Bucket=CURATED, Key="events/readme.txt", Body=b"not json, not loaded (PATTERN)")

    run = run_dag("curated_to_snowflake")
    assert run.state == "success", task_states(run)
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(4,)]
    assert query(
        "SELECT order_id, customer_id, country, currency, total, item_count FROM CONVEYOR.EVENTS.ORDERS ORDER BY 1"
    ) == [
        (1, "c-1", "GB", "GBP", Decimal("19.98"), 1),
        (2, "c-2", "GB", "GBP", Decimal("5.00"), 2),
        (3, "c-3", "GB", "GBP", Decimal("7.00"), 0),
    ]
    assert query(
        "SELECT order_id, line_number, sku, quantity, unit_price FROM CONVEYOR.EVENTS.ORDER_ITEMS ORDER BY 1, 2"
    ) == [
        (1, 1, "A-1", 2, Decimal("9.99")),
        (2, 1, "B-2", 1, Decimal("2.50")),
        (2, 2, "C-3", 1, Decimal("2.50")),
    ]
    [(ordered_at,)] = query("SELECT ordered_at FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 1")
    assert ordered_at.isoformat() == "2024-03-05T10:00:00+00:00"
    [(file_name,)] = query("SELECT file_name FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 3")
    assert file_name.endswith("events/orders/ünïcode/3.json")

    before = {t: query(f"SELECT * FROM CONVEYOR.EVENTS.{t} ORDER BY 1, 2") for t in ("ORDERS", "ORDER_ITEMS")}
    rerun = run_dag("curated_to_snowflake")  # a replay: every file was loaded before
    assert rerun.state == "success", task_states(rerun)
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(4,)]
    assert {t: query(f"SELECT * FROM CONVEYOR.EVENTS.{t} ORDER BY 1, 2") for t in before} == before


def test_a_newer_load_of_an_order_updates_it_and_older_ones_do_not(snowflake_db):
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/a.json", [order(7, "10.00", [("A", 1, "10.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    put_lines(s3, CURATED, "events/orders/b.json", [order(7, "12.00", [("A", 1, "10.00"), ("B", 1, "2.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT total, item_count FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 7") == [
        (Decimal("12.00"), 2)
    ]
    assert query(
        "SELECT line_number, sku FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 7 ORDER BY 1"
    ) == [
        (1, "A"),
        (2, "B"),
    ]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(2,)]
    # Sent again with one item: the second line is no longer part of the order.
    put_lines(s3, CURATED, "events/orders/c.json", [order(7, "10.00", [("A", 1, "10.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT total, item_count FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 7") == [
        (Decimal("10.00"), 1)
    ]
    assert query("SELECT line_number, sku FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 7") == [(1, "A")]


def test_a_malformed_file_is_skipped_named_and_the_rest_load(snowflake_db, no_retries):
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/good.json", [order(1, "1.00", [])])
    s3.put_object(Bucket=CURATED, Key="events/orders/broken.json", Body=b'{"order_id": 2, "total": \n{nope')

    run = run_dag("curated_to_snowflake")
    states = task_states(run)
    assert run.state == "failed"
    assert states["copy_raw_events"] == ["success"] and states["merge_orders"] == ["success"]
    assert states["check_loads"] == ["failed"]
    assert query("SELECT order_id FROM CONVEYOR.EVENTS.ORDERS") == [(1,)]
    report = run.get_task_instance("copy_raw_events").xcom_pull(task_ids="copy_raw_events")
    assert [f["file"].rsplit("/", 1)[-1] for f in report["failed"]] == ["broken.json"]
    assert "Malformed JSON" in report["failed"][0]["error"]
    message = snowflake.CopyReport(failed=report["failed"]).failure_message("curated")
    assert "broken.json" in message and "1 curated file(s) not loaded" in message

    # Fixed (rewritten), it loads; the good file is not loaded twice.
    put_lines(s3, CURATED, "events/orders/broken.json", [order(2, "2.00", [])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT order_id FROM CONVEYOR.EVENTS.ORDERS ORDER BY 1") == [(1,), (2,)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(2,)]


def test_a_bad_order_event_is_rejected_once_and_the_good_ones_flow(snowflake_db, no_retries, capsys):
    """One order event that does not type (on a real account a plain cast raises, so the merge
    failed on that row in every later run) goes to ORDER_REJECTS with its reason and document;
    the others are flattened, the run fails naming it, and the next run does not fail on it."""
    query, s3 = snowflake_db
    bad = [
        {"order_id": "abc", "ordered_at": "2024-03-05T10:00:00+00:00"},
        {"order_id": None, "ordered_at": "2024-03-05T10:00:00+00:00"},
        order(12, "1.00", [], customer={"id": "c", "country": "GBR"}),
        order(13, "1.00", [], currency="EURO"),
        order(14, "12345678901.00", []),
        order(15, "1.00", [("A", 1, "1.00"), ("B", "two", "1.00")]),
        order(16, "1.00", [], ordered_at="yesterday"),
        order(17.5, "1.00", []),
    ]
    good = [order(10, "10.00", [("A", 1, "10.00")]), order(11, "2.00", [("B", 2, "1.00")])]
    put_lines(s3, CURATED, "events/orders/mixed.json", [good[0], *bad, good[1], {"click": "home"}])

    run = run_dag("curated_to_snowflake")
    states = task_states(run)
    assert run.state == "failed", states
    assert states["copy_raw_events"] == ["success"] and states["merge_orders"] == ["success"]
    assert states["check_loads"] == ["failed"]
    assert query("SELECT order_id, total FROM CONVEYOR.EVENTS.ORDERS ORDER BY 1") == [
        (10, Decimal("10.00")),
        (11, Decimal("2.00")),
    ]
    assert query("SELECT order_id, line_number, sku FROM CONVEYOR.EVENTS.ORDER_ITEMS ORDER BY 1, 2") == [
        (10, 1, "A"),
        (11, 1, "B"),
    ]
    rejects = query(
        "SELECT file_row_number, reason, v:order_id::VARCHAR, reported_by FROM CONVEYOR.EVENTS.ORDER_REJECTS "
        "ORDER BY file_row_number"
    )
    assert [(row, reason) for row, reason, _, _ in rejects] == [
        (2, "order_id is null or not a whole number"),
        (3, "order_id is null or not a whole number"),
        (4, "customer.country is longer than 2 characters"),
        (5, "currency is longer than 3 characters"),
        (6, "total is not a NUMBER(12, 2)"),
        (7, "items[1]: qty is not a NUMBER(9, 0) or price not a NUMBER(12, 2)"),
        (8, "ordered_at is missing or not a timestamp"),
        (9, "order_id is null or not a whole number"),
    ]
    assert [order_id for _, _, order_id, _ in rejects] == ["abc", None, "12", "13", "14", "15", "16", "17.5"]
    assert {by for *_, by in rejects} == {f"curated_to_snowflake.check_loads {run.run_id} try 1"}
    [(file_name, document)] = query(
        "SELECT DISTINCT file_name, v::VARCHAR FROM CONVEYOR.EVENTS.ORDER_REJECTS WHERE file_row_number = 4"
    )
    assert file_name.endswith("events/orders/mixed.json") and json.loads(document) == bad[2]
    out = capsys.readouterr().out
    assert "8 order event(s) rejected" in out and "mixed.json row 4: customer.country is longer" in out

    # The next batch: the good events flow and the rejected ones are not reported again.
    put_lines(s3, CURATED, "events/orders/later.json", [order(18, "3.00", [])])
    rerun = run_dag("curated_to_snowflake")
    assert rerun.state == "success", task_states(rerun)
    assert query("SELECT order_id FROM CONVEYOR.EVENTS.ORDERS ORDER BY 1") == [(10,), (11,), (18,)]
    assert query("SELECT count(*), count(reported_by) FROM CONVEYOR.EVENTS.ORDER_REJECTS") == [(8, 8)]

    # The corrected event, sent again, is flattened.
    put_lines(s3, CURATED, "events/orders/fixed.json", [order(12, "1.00", [])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT country FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 12") == [("GB",)]


def test_the_pending_view_moves_past_rejected_rows_and_other_events(snowflake_db, no_retries):
    """The merge reads the raw rows loaded since what it last saw (less an hour), not since
    ORDERS' newest load: rows it rejected, and events that are not orders, are not read again by
    every later run. Three hours pass here by moving every load time back (the fake loads in
    seconds)."""
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/a.json", [order(1, "1.00", [])])
    assert run_dag("curated_to_snowflake").state == "success"
    put_lines(s3, CURATED, "events/clicks/b.json", [{"click": "home"}, {"order_id": "x", "ordered_at": "?"}])
    assert run_dag("curated_to_snowflake").state == "failed"  # the reject, named once
    for table, column in (
        ("RAW_EVENTS", "LOADED_AT"),
        ("ORDERS", "LOADED_AT"),
        ("ORDER_REJECTS", "LOADED_AT"),
        ("MERGE_WATERMARKS", "LOADED_UP_TO"),
    ):
        query(f"UPDATE CONVEYOR.EVENTS.{table} SET {column} = DATEADD(hour, -3, {column})")

    put_lines(s3, CURATED, "events/clicks/c.json", [{"click": "basket"}])
    assert run_dag("curated_to_snowflake").state == "success"
    pending = query("SELECT file_name FROM CONVEYOR.EVENTS.RAW_EVENTS_PENDING")
    assert pending == [(f"s3://{CURATED}/events/clicks/c.json",)]  # not a.json or b.json again
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.ORDER_REJECTS") == [(1,)]


def test_an_old_event_loaded_late_does_not_overwrite_a_newer_order(snowflake_db):
    """Newest is the producer's clock (ordered_at), then S3's (the file's last-modified time),
    never the load order: a replay or a DLQ redrive of an old event loads after the newer one."""
    query, s3 = snowflake_db
    newer = order(9, "20.00", [("A", 1, "10.00"), ("B", 1, "10.00")], ordered_at="2024-03-05T12:00:00+00:00")
    older = order(9, "5.00", [("C", 1, "5.00")], ordered_at="2024-03-05T10:00:00+00:00")
    put_lines(s3, CURATED, "events/orders/new.json", [newer])
    assert run_dag("curated_to_snowflake").state == "success"
    put_lines(s3, CURATED, "events/orders/replayed-old.json", [older])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT total, item_count, file_name FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 9") == [
        (Decimal("20.00"), 2, f"s3://{CURATED}/events/orders/new.json")
    ]
    assert query(
        "SELECT line_number, sku, unit_price FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 9 ORDER BY 1"
    ) == [(1, "A", Decimal("10.00")), (2, "B", Decimal("10.00"))]

    # In one COPY, file names and scan order do not decide: the later ordered_at does.
    put_lines(
        s3,
        CURATED,
        "events/orders/z.json",
        [order(4, "4.00", [("Z", 1, "4.00")], ordered_at="2024-03-01T00:00:00Z")],
    )
    put_lines(
        s3,
        CURATED,
        "events/orders/a.json",
        [order(4, "8.00", [("A", 2, "4.00")], ordered_at="2024-03-02T00:00:00Z")],
    )
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT total FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 4") == [(Decimal("8.00"),)]
    assert query("SELECT sku, quantity FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 4") == [("A", 2)]


def test_versions_with_the_same_ordered_at_go_by_the_files_last_modified_time(snowflake_db):
    """Two versions with one ordered_at: the file S3 last modified later wins, whatever its name."""
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/b.json", [order(5, "1.00", [("B", 1, "1.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    [(first,)] = query("SELECT file_last_modified FROM CONVEYOR.EVENTS.RAW_EVENTS")
    head = s3.head_object(Bucket=CURATED, Key="events/orders/b.json")
    assert first == head["LastModified"].astimezone(UTC).replace(tzinfo=None)
    put_lines(s3, CURATED, "events/orders/a.json", [order(5, "2.00", [("A", 1, "2.00")])])
    while s3.head_object(Bucket=CURATED, Key="events/orders/a.json")["LastModified"] <= head["LastModified"]:
        put_lines(
            s3, CURATED, "events/orders/a.json", [order(5, "2.00", [("A", 1, "2.00")])]
        )  # S3's clock: seconds
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT total, file_name FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 5") == [
        (Decimal("2.00"), f"s3://{CURATED}/events/orders/a.json")
    ]
    assert query("SELECT sku FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 5") == [("A",)]


def test_the_fake_refuses_what_snowflake_refuses_for_declared_types(snowflake_db):
    """DuckDB ignores VARCHAR(n); Snowflake raises "String ... is too long and would be truncated"
    on INSERT, UPDATE and MERGE, and a COPY fails the file. The fake now does the same (NUMBER(p, s)
    overflow DuckDB's DECIMAL already refused)."""
    query, s3 = snowflake_db
    orders = "CONVEYOR.EVENTS.ORDERS"
    columns = "(order_id, country, currency, total, item_count, file_name, loaded_at)"
    query(f"INSERT INTO {orders} {columns} VALUES (1, 'GB', 'GBP', 1.00, 1, 'f', CURRENT_TIMESTAMP())")
    refused = {
        "VARCHAR(2) on INSERT": f"INSERT INTO {orders} {columns} VALUES (2, 'GBR', 'GBP', 1, 1, 'f', CURRENT_TIMESTAMP())",
        "VARCHAR(3) on UPDATE": f"UPDATE {orders} SET currency = 'EURO' WHERE order_id = 1",
        "VARCHAR(2) on MERGE": (
            f"MERGE INTO {orders} AS t USING (SELECT 1 AS id, 'GBR' AS c) AS s ON t.order_id = s.id "
            "WHEN MATCHED THEN UPDATE SET country = s.c"
        ),
        "NUMBER(12, 2) on INSERT": f"INSERT INTO {orders} {columns} VALUES (3, 'GB', 'GBP', 12345678901.5, 1, 'f', CURRENT_TIMESTAMP())",
        "NUMBER(9, 0) on UPDATE": f"UPDATE {orders} SET item_count = 1234567890 WHERE order_id = 1",
    }
    for what, sql in refused.items():
        with pytest.raises(ProgrammingError) as raised:
            query(sql)
        assert raised.value.errno in (100074, 100035), (what, raised.value)
        if "VARCHAR" in what:
            assert "too long and would be truncated" in str(raised.value), what
    assert query(f"SELECT order_id, country, currency, total, item_count FROM {orders}") == [
        (1, "GB", "GBP", Decimal("1.00"), 1)
    ]
    # COPY (ON_ERROR = SKIP_FILE): a file with a value its column refuses fails; the others load.
    header = "transaction_id,user_id,product_id,product_name,category,quantity,unit_price,currency,payment_method,transaction_ts"
    row = "t{n},u1,p1,Pen,office,1,1.50,{currency},card,2024-03-05T10:00:00Z"
    s3.put_object(
        Bucket=STAGE,
        Key="transactions/ok.csv",
        Body=f"{header}\n{row.format(n=1, currency='GBP')}\n".encode(),
    )
    s3.put_object(
        Bucket=STAGE,
        Key="transactions/long.csv",
        Body=f"{header}\n{row.format(n=2, currency='EURO')}\n".encode(),
    )
    variables = snowflake.SnowflakeSettings().template_variables(ResourceNames())
    report = snowflake.CopyReport.copy(snowflake.hook(), "retail/copy_stage_files.sql", variables)
    assert [f["file"].rsplit("/", 1)[-1] for f in report.loaded] == ["ok.csv"]
    assert [f["file"].rsplit("/", 1)[-1] for f in report.failed] == ["long.csv"]
    assert "too long" in report.failed[0]["error"]


def test_validate_only_reports_what_would_fail_and_loads_nothing(snowflake_db, capsys):
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/good.json", [order(1, "1.00", [])])
    s3.put_object(Bucket=CURATED, Key="events/orders/broken.json", Body=b"{not json")
    run = run_dag("curated_to_snowflake", validate_only=True)
    assert task_states(run) == {
        "copy_raw_events": ["skipped"],
        "merge_orders": ["skipped"],
        "check_loads": ["skipped"],
    }
    assert "would fail:" in capsys.readouterr().out
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(0,)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS_CHECK") == [(0,)]


def test_retail_stage_files_csv_and_json_merge_into_the_targets_once(snowflake_db):
    query, s3 = snowflake_db
    for fmt, seed in (("csv", 1), ("json", 2)):
        for kind, body in generator.generate(5, 12, seed=seed, fmt=fmt).items():
            s3.put_object(Bucket=STAGE, Key=f"{kind}/20240305T2000Z-seed{seed}.{fmt}", Body=body)

    run = run_dag("stage_to_snowflake")
    assert run.state == "success", task_states(run)
    assert query("SELECT count(*) FROM CONVEYOR.RETAIL.USERS_RAW") == [(10,)]
    assert query("SELECT count(*), count(DISTINCT user_id) FROM CONVEYOR.RETAIL.USERS") == [(10, 10)]
    assert query("SELECT count(*) FROM CONVEYOR.RETAIL.TRANSACTIONS") == [(24,)]
    csv_users = generator.generate(5, 12, seed=1)["user"].decode().splitlines()[1:]
    first = csv_users[0].split(",")
    assert query(
        f"SELECT first_name, country, marketing_opt_in FROM CONVEYOR.RETAIL.USERS WHERE user_id = '{first[0]}'"
    ) == [(first[1], first[4], first[7] == "True")]
    json_sale = json.loads(
        generator.generate(5, 12, seed=2, fmt="json")["transactions"].decode().splitlines()[0]
    )
    assert query(
        "SELECT quantity, unit_price, currency FROM CONVEYOR.RETAIL.TRANSACTIONS "
        f"WHERE transaction_id = '{json_sale['transaction_id']}'"
    ) == [(json_sale["quantity"], Decimal(json_sale["unit_price"]), json_sale["currency"])]

    before = query("SELECT * FROM CONVEYOR.RETAIL.USERS ORDER BY user_id")
    assert run_dag("stage_to_snowflake").state == "success"
    assert query("SELECT count(*) FROM CONVEYOR.RETAIL.USERS_RAW") == [(10,)]
    assert query("SELECT * FROM CONVEYOR.RETAIL.USERS ORDER BY user_id") == before


def test_the_task_merge_and_the_airflow_merge_give_the_same_target(snowflake_db):
    """The Snowflake task's body is the same MERGE with the stream as its source. fakesnow has no
    streams: a table holding the raw rows stands in for the stream's delta here."""
    query, s3 = snowflake_db
    for kind, body in generator.generate(6, 20, seed=5).items():
        s3.put_object(Bucket=STAGE, Key=f"{kind}/f.csv", Body=body)
    assert run_dag("stage_to_snowflake").state == "success"
    airflow_target = query("SELECT * FROM CONVEYOR.RETAIL.TRANSACTIONS ORDER BY transaction_id")

    query(
        "CREATE TABLE CONVEYOR.RETAIL.TRANSACTIONS_RAW_STREAM AS SELECT * FROM CONVEYOR.RETAIL.TRANSACTIONS_RAW"
    )
    query("DELETE FROM CONVEYOR.RETAIL.TRANSACTIONS")
    variables = snowflake.SnowflakeSettings().template_variables(
        ResourceNames(), source="CONVEYOR.RETAIL.TRANSACTIONS_RAW_STREAM"
    )
    query(snowflake.render("retail/merge_transactions.sql", variables))
    assert query("SELECT * FROM CONVEYOR.RETAIL.TRANSACTIONS ORDER BY transaction_id") == airflow_target
    assert len(airflow_target) == 20


def test_the_order_task_merges_like_airflow_and_does_not_fail_on_bad_rows(snowflake_db, no_retries):
    """The Snowpipe path's task runs the same merge on the stream: a bad row is rejected, not a
    failed task (ten of those auto-suspend it, and its stream goes stale). fakesnow has no
    streams: a table holding the raw rows stands in for the stream's delta."""
    query, s3 = snowflake_db
    put_lines(
        s3,
        CURATED,
        "events/orders/x.json",
        [order(1, "1.00", [("A", 1, "1.00")]), order(2, "bad", []), order(3, "3.00", [("C", 3, "1.00")])],
    )
    assert run_dag("curated_to_snowflake").state == "failed"  # the reject, named
    airflow = {
        t: query(f"SELECT * FROM CONVEYOR.EVENTS.{t} ORDER BY 1, 2") for t in ("ORDERS", "ORDER_ITEMS")
    }

    query("CREATE TABLE CONVEYOR.EVENTS.RAW_EVENTS_STREAM AS SELECT * FROM CONVEYOR.EVENTS.RAW_EVENTS")
    for table in ("ORDERS", "ORDER_ITEMS", "ORDER_REJECTS", "MERGE_WATERMARKS"):
        query(f"DELETE FROM CONVEYOR.EVENTS.{table}")
    variables = snowflake.SnowflakeSettings().template_variables(
        ResourceNames(), source="CONVEYOR.EVENTS.RAW_EVENTS_STREAM"
    )
    merged = snowflake.merge_orders(snowflake.hook(), variables)
    assert merged["rejected"] == {"inserted": 1} and merged["orders"]["inserted"] == 2
    assert {t: query(f"SELECT * FROM CONVEYOR.EVENTS.{t} ORDER BY 1, 2") for t in airflow} == airflow
    assert query("SELECT reason, reported_by FROM CONVEYOR.EVENTS.ORDER_REJECTS") == [
        ("total is not a NUMBER(12, 2)", None)  # for snowflake_health to report
    ]


def put_newer(s3, key: str, documents: list[dict]) -> None:
    """Write `key` again, until S3's LastModified (seconds) is later than the version before."""
    before = s3.head_object(Bucket=CURATED, Key=key)["LastModified"]
    while True:
        put_lines(s3, CURATED, key, documents)
        if s3.head_object(Bucket=CURATED, Key=key)["LastModified"] > before:
            return


def test_copy_loads_a_rewritten_file_again_and_its_corrected_event_wins(snowflake_db):
    """The Airflow path's recovery for a wrong file: rewrite it in place. COPY's load metadata
    knows files by name and ETag, so the rewritten file is new to it; the corrected event (same
    ordered_at, a later S3 last-modified time) replaces the wrong one."""
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/x.json", [order(6, "1.00", [("A", 1, "1.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    put_newer(s3, "events/orders/x.json", [order(6, "6.00", [("A", 6, "1.00")])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(2,)]
    assert query("SELECT total FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 6") == [(Decimal("6.00"),)]
    assert query("SELECT quantity FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 6") == [(6,)]


def test_snowpipe_recovery_a_fixed_copy_under_a_new_name_replaces_the_wrong_event(snowflake_db, no_retries):
    """The Snowpipe path's recovery: a pipe's load history is per file name (14 days), so it
    skips a file rewritten in place; the fix goes under a new name, which the pipe loads.
    fakesnow has no pipes, so it cannot show the pipe skipping the rewritten name (Snowflake
    documents it); the curated COPY, the same statement as the pipe's (see
    tests/unit/test_snowflake_sql.py), loads here, and the task's merge runs on what it loaded."""
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/y.json", [order(7, "abc", []), order(8, "8.00", [])])
    assert run_dag("curated_to_snowflake").state == "failed"  # order 7 rejected, named
    put_lines(s3, CURATED, "events/orders/y.fixed-1.json", [order(7, "7.00", []), order(8, "8.00", [])])
    assert run_dag("curated_to_snowflake").state == "success"
    assert query("SELECT order_id, total, file_name FROM CONVEYOR.EVENTS.ORDERS ORDER BY 1") == [
        (7, Decimal("7.00"), f"s3://{CURATED}/events/orders/y.fixed-1.json"),
        (8, Decimal("8.00"), f"s3://{CURATED}/events/orders/y.fixed-1.json"),
    ]
    assert query("SELECT count(*), count(reported_by) FROM CONVEYOR.EVENTS.ORDER_REJECTS") == [(1, 1)]


def test_snowflake_health_publishes_one_alert_naming_what_is_wrong(snowflake_db, moto_server, monkeypatch):
    """snowflake_health through Airflow: the rejects claim runs on the fake Snowflake and the alert
    goes through SNS (moto) to the notifications inbox. fakesnow cannot run SHOW PIPES/TASKS/
    STREAMS, SYSTEM$PIPE_STATUS, TASK_HISTORY or COPY_HISTORY (it has no pipes, tasks or
    streams): only those statements are answered here, with rows in Snowflake's documented shapes
    (tests/unit/test_snowflake_health.py checks them one by one)."""
    query, s3 = snowflake_db
    aws = moto_server
    # The Snowpipe task's merge (no Airflow load reports anything) rejected an order event.
    put_lines(s3, CURATED, "events/orders/p.json", [order(1, "1.00", []), order(2, "n/a", [])])
    variables = snowflake.SnowflakeSettings().template_variables(ResourceNames())
    snowflake.CopyReport.copy(snowflake.hook(), "events/copy_raw_events.sql", variables)
    snowflake.merge_orders(snowflake.hook(), {**variables, "source": "CONVEYOR.EVENTS.RAW_EVENTS"})

    asked = []
    unhealthy = {
        "health/snowpipe_state.sql": [
            [{"name": "RAW_EVENTS_PIPE", "database_name": "CONVEYOR", "schema_name": "EVENTS"}],
            [
                {
                    "name": "MERGE_ORDERS",
                    "database_name": "CONVEYOR",
                    "schema_name": "EVENTS",
                    "state": "suspended",
                }
            ],
            [
                {
                    "name": "RAW_EVENTS_STREAM",
                    "database_name": "CONVEYOR",
                    "schema_name": "EVENTS",
                    "stale": "true",
                }
            ],
            [
                {
                    "NAME": "MERGE_ORDERS",
                    "DATABASE_NAME": "CONVEYOR",
                    "SCHEMA_NAME": "EVENTS",
                    "STATE": "FAILED_AND_AUTO_SUSPENDED",
                    "ERROR_MESSAGE": "Warehouse 'CONVEYOR_WH' cannot be used: insufficient privileges",
                }
            ],
            [
                {
                    "FILE_NAME": "events/orders/bad.json",
                    "STATUS": "Load failed",
                    "FIRST_ERROR_MESSAGE": "Error parsing JSON",
                    "PIPE_NAME": "RAW_EVENTS_PIPE",
                    "TARGET": "EVENTS.RAW_EVENTS",
                }
            ],
        ],
        "health/pipe_status.sql": [
            [{"PIPE_STATUS": json.dumps({"executionState": "PAUSED", "pendingFileCount": 0})}]
        ],
    }
    answers = dict(unhealthy)
    run_script = snowflake.run_script

    def answer_what_fakesnow_cannot_run(hook, sql, parameters=None):
        for name, rows in answers.items():
            if sql == snowflake.render(name, variables):
                asked.append((name, parameters))
                return rows
        return run_script(hook, sql, parameters)

    monkeypatch.setattr(snowflake, "run_script", answer_what_fakesnow_cannot_run)
    read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])  # an empty inbox

    end = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
    run = run_dag("snowflake_health", end)
    assert run.state == "success", task_states(run)
    assert asked[0] == (
        "health/snowpipe_state.sql",
        {"start": run.data_interval_start.isoformat(), "end": run.data_interval_end.isoformat()},
    )
    assert asked[1] == ("health/pipe_status.sql", {"pipe": "CONVEYOR.EVENTS.RAW_EVENTS_PIPE"})
    [envelope] = read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])
    assert (
        envelope["Subject"]
        == "[conveyor] UNHEALTHY Snowflake: 6 problem(s): pipe, pipe_load, rejected_rows, stream, task, task_run"
    )
    message = json.loads(envelope["Message"])
    assert [(p["kind"], p["name"]) for p in message["problems"]] == [
        ("pipe", "CONVEYOR.EVENTS.RAW_EVENTS_PIPE"),
        ("task", "CONVEYOR.EVENTS.MERGE_ORDERS"),
        ("stream", "CONVEYOR.EVENTS.RAW_EVENTS_STREAM"),
        ("task_run", "CONVEYOR.EVENTS.MERGE_ORDERS"),
        ("pipe_load", "events/orders/bad.json"),
        ("rejected_rows", f"s3://{CURATED}/events/orders/p.json row 2"),
    ]
    assert (
        "insufficient privileges" in message["summary"]
        and "total is not a NUMBER(12, 2)" in message["summary"]
    )
    assert message["run_id"] == run.run_id and envelope["MessageAttributes"]["status"]["Value"] == "unhealthy"
    assert query("SELECT reported_by FROM CONVEYOR.EVENTS.ORDER_REJECTS") == [
        (f"snowflake_health.check {run.run_id} try 1",)
    ]

    # The next hour, all is well: nothing is published, and the reject is not reported again.
    answers.update({"health/snowpipe_state.sql": [[], [], [], [], []]})
    healthy = run_dag("snowflake_health", end + timedelta(hours=1))
    assert healthy.state == "success", task_states(healthy)
    assert read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX]) == []


def test_merge_only_merges_the_rows_no_merge_read_and_loads_nothing(snowflake_db):
    """The Snowpipe path's recovery after a stale stream: the raw rows the task never merged (loaded
    by the pipe; a COPY stands in for it here) are merged once by a merge_only run, which loads
    nothing (the pipe's files are not the Airflow COPY's to load)."""
    query, s3 = snowflake_db
    put_lines(s3, CURATED, "events/orders/piped.json", [order(1, "1.00", [("A", 1, "1.00")])])
    variables = snowflake.SnowflakeSettings().template_variables(ResourceNames())
    snowflake.CopyReport.copy(snowflake.hook(), "events/copy_raw_events.sql", variables)  # the pipe's load
    put_lines(s3, CURATED, "events/orders/not-yet-piped.json", [order(2, "2.00", [])])

    run = run_dag("curated_to_snowflake", merge_only=True)
    assert run.state == "success", task_states(run)
    assert query("SELECT file_name FROM CONVEYOR.EVENTS.RAW_EVENTS") == [
        (f"s3://{CURATED}/events/orders/piped.json",)
    ]
    assert query("SELECT order_id FROM CONVEYOR.EVENTS.ORDERS") == [(1,)]
    assert query("SELECT sku FROM CONVEYOR.EVENTS.ORDER_ITEMS") == [("A",)]
