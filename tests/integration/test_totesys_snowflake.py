"""The ToteSys star into Snowflake: real Parquet exports of real windows (ToteSys on Postgres ->
extract -> land -> model -> export, the library calls totesys_etl makes, into the moto server's
processed bucket), loaded by processed_to_snowflake (its `window` Param, as dag.test() runs it)
into the fake Snowflake, and compared with the Postgres warehouse row for row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from conftest import run_dag, task_states

from conveyor import paths, snowflake
from conveyor.config import ConfigError
from conveyor.resources import ResourceNames
from conveyor.totesys import extract, migrations, tables, to_snowflake, warehouse, windows
from conveyor.totesys.star import DIMENSIONS, FACTS, STAR
from conveyor_local import fake_snowflake, totesys_data

pytestmark = pytest.mark.integration

INGESTION, PROCESSED = ResourceNames().bucket("ingestion"), ResourceNames().bucket("processed")
T0 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)
STEP = timedelta(minutes=3)
# A full snapshot, then a delta: new orders and payments, department 1 renamed (its staff change
# in dim_staff), address 1 moved (dim_location, and its counterparties in dim_counterparty).
WINDOWS = [windows.Window(T0 - STEP, T0, full_snapshot=True), windows.Window(T0, T0 + STEP)]
SPECS = tables.parse_tables_config((paths.include_dir() / "config" / "totesys_tables.json").read_text())


def change(db, index: int) -> None:
    """The source's changes inside window `index` (naive UTC timestamps, as ToteSys stores them)."""
    start = WINDOWS[index].start.replace(tzinfo=None)
    if index == 0:
        totesys_data.populate(db, scale=0.5, seed=3, at=start)
        return
    totesys_data.simulate(db, seed=index, at=WINDOWS[index].start, span=STEP, new_orders=6, updates=2)
    stamp = start + timedelta(seconds=30)
    db.execute(
        "UPDATE department SET department_name = %s, last_updated = %s "
        "WHERE department_id = (SELECT department_id FROM staff WHERE staff_id = 1)",
        (f"Renamed {index}", stamp),
    )
    db.execute(
        "UPDATE address SET city = %s, last_updated = %s WHERE address_id = 1", (f"City {index}", stamp)
    )
    db.commit()


def build_window(source, warehouse_db, s3, window: windows.Window) -> None:
    """totesys_etl's work for one window: extract, land, model, export to the processed bucket."""
    entries = [
        extract.extract_table(source, s3, INGESTION, spec, tables.catalog_columns(source, spec), window)
        for spec in SPECS
    ]
    for entry in entries:
        warehouse.land(warehouse_db, s3, INGESTION, entry, window)
    for group in (DIMENSIONS, FACTS):
        for relative in paths.sql_files("warehouse", group):
            warehouse_db.execute(paths.sql_path(relative).read_text(), {"window": window.name})
        warehouse_db.commit()
    warehouse.export_all(warehouse_db, s3, PROCESSED, window)


@pytest.fixture
def snowflake_db(snowflake_conn):
    """The fake Snowflake with what snowflake_setup creates (test_snowflake.py runs the DAG
    itself); yields a query function."""
    conn = snowflake_conn()
    fake_snowflake.apply_setup(conn)
    cursor = conn.cursor()
    yield lambda sql: cursor.execute(sql).fetchall()
    conn.close()


@pytest.fixture
def star(pg_database, warehouse_dsn, moto_server, snowflake_db):
    """Three windows built in Postgres and exported as Parquet; nothing loaded into Snowflake yet.

    Yields (query Snowflake, the Postgres warehouse's star rows after the three windows)."""
    s3 = moto_server["session"].client("s3")
    with psycopg.connect(pg_database) as source, psycopg.connect(warehouse_dsn) as warehouse_db:
        totesys_data.create_schema(source)
        migrations.migrate(warehouse_db)
        warehouse.load_currency_names(warehouse_db)
        for index, window in enumerate(WINDOWS):
            change(source, index)
            build_window(source, warehouse_db, s3, window)
        postgres_star = {
            table: sorted(warehouse_db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in STAR
        }
    return snowflake_db, postgres_star


def snowflake_star(query) -> dict[str, list[tuple]]:
    return {
        table: sorted(query(f"SELECT * FROM CONVEYOR.TOTESYS.{table.upper()}"), key=repr) for table in STAR
    }


def load(*indexes: int) -> None:
    for index in indexes:
        run = run_dag("processed_to_snowflake", window=WINDOWS[index].name)
        assert run.state == "success", task_states(run)


def test_windows_load_the_postgres_star_row_for_row_and_a_rerun_changes_nothing(star):
    query, postgres_star = star
    load(0)
    after_first = snowflake_star(query)
    assert after_first["dim_staff"] and after_first["fact_sales_order"] and after_first["dim_date"]
    load(1)
    loaded = snowflake_star(query)
    assert loaded == postgres_star
    assert loaded != after_first  # the delta changed rows: a renamed department, new orders
    assert "Renamed 1" in {row[3] for row in loaded["dim_staff"]}
    for table in STAR:  # staging is emptied after each window's merge
        assert query(f"SELECT count(*) FROM CONVEYOR.TOTESYS.{table.upper()}_STAGING") == [(0,)]

    run = run_dag("processed_to_snowflake", window=WINDOWS[0].name)  # a rerun of an older window
    assert run.state == "success", task_states(run)
    assert snowflake_star(query) == postgres_star
    result = run.get_task_instance("load_window", map_index=0).xcom_pull(
        task_ids="load_window", map_indexes=0
    )
    assert result["copied"]["fact_sales_order"] > 0, "the rerun read the window's files again"
    assert all(not any(counts.values()) for counts in result["merged"].values()), result["merged"]

    empty = windows.Window(T0 + 10 * STEP, T0 + 11 * STEP)  # no files: loads nothing, succeeds
    run = run_dag("processed_to_snowflake", window=empty.name)
    assert run.state == "success", task_states(run)
    result = run.get_task_instance("load_window", map_index=0).xcom_pull(
        task_ids="load_window", map_indexes=0
    )
    assert not any(result["copied"].values()) and snowflake_star(query) == postgres_star

    run = run_dag("processed_to_snowflake")  # no event, no Param: nothing to load
    assert run.state == "success", task_states(run)
    assert task_states(run)["load_window"] == ["skipped"]


def test_merge_counts_are_reported_by_table_name_whatever_order_the_tables_load_in(star, monkeypatch):
    """Each MERGE's counts are reported under its own table's name: with the tables loaded in the
    reverse of star.yml's order (as a reordered declaration would), a first load into empty
    tables still reports, for every table, the rows copied into it as the rows it inserted. (The
    old merge_star.sql was zipped with the table list by position: a reordered statement
    mislabelled every count after it.)"""
    monkeypatch.setattr(to_snowflake, "STAR", tuple(reversed(STAR)))
    run = run_dag("processed_to_snowflake", window=WINDOWS[0].name)
    assert run.state == "success", task_states(run)
    result = run.get_task_instance("load_window", map_index=0).xcom_pull(
        task_ids="load_window", map_indexes=0
    )
    assert len(set(result["copied"].values())) > 3, result["copied"]  # the counts tell tables apart
    assert {table: counts["inserted"] for table, counts in result["merged"].items()} == result["copied"]
    assert list(result["merged"]) == list(reversed(STAR))


def test_a_window_whose_files_do_not_hold_what_it_exported_fails_naming_the_tables_and_merges_nothing(
    star, moto_server
):
    """The processed event's row counts against what COPY loaded: a mismatch (files rewritten or
    removed since the export) fails the window without a retry, before any merge."""
    query, _ = star
    window = to_snowflake.window_to_load(WINDOWS[0].name, rows={"dim_staff": 1, "fact_payment": 10**6})
    variables = snowflake.SnowflakeSettings().template_variables(
        ResourceNames(), window=window["name"], partition=window["partition"]
    )
    with pytest.raises(AirflowFailException) as failed:
        to_snowflake.load_window(snowflake.hook(), window, variables, s3=moto_server["session"].client("s3"))
    message = str(failed.value)
    assert (
        f"window {WINDOWS[0].name}: the processed files do not hold the rows totesys_etl exported" in message
    )
    copied = {t: query(f"SELECT count(*) FROM CONVEYOR.TOTESYS.{t.upper()}_STAGING")[0][0] for t in STAR}
    assert f"'dim_staff': ({copied['dim_staff']}, 1)" in message
    assert f"'fact_payment': ({copied['fact_payment']}, 1000000)" in message
    assert f"'dim_date': ({copied['dim_date']}, 0)" in message  # a table the event does not name: 0 rows
    assert all(not query(f"SELECT * FROM CONVEYOR.TOTESYS.{t.upper()}") for t in STAR), "nothing merged"


def test_the_copy_check_passes_when_the_counts_agree_and_when_no_event_gave_counts():
    copied = dict.fromkeys(STAR, 0) | {"dim_staff": 3}
    assert to_snowflake.copy_mismatch({"name": "w", "rows": {"dim_staff": 3}}, copied) is None
    assert to_snowflake.copy_mismatch({"name": "w", "rows": None}, copied) is None  # the Param alone
    assert "'dim_staff': (3, 2)" in to_snowflake.copy_mismatch(
        {"name": "w", "rows": {"dim_staff": 2}}, copied
    )


def test_windows_out_of_order_give_the_same_tables(star):
    query, postgres_star = star
    load(1, 0)  # the older window's versions of the renamed and moved rows must not win
    assert snowflake_star(query) == postgres_star


def test_a_repair_of_an_old_interval_after_a_later_cascade_reaches_snowflake(
    star, pg_database, warehouse_dsn, moto_server
):
    """A staff row committed late (its last_updated inside the first interval, after the second
    window's department rename reached both warehouses) is picked up by a repair run of the old
    interval. Postgres takes it (the newest source versions); Snowflake must too, though the
    repair's window ends before the cascade's: both order dimension rows by source version."""
    query, _ = star
    load(0, 1)
    repair = windows.Window(T0 - STEP, T0)  # the first interval again, as a delta
    late = (repair.start + timedelta(seconds=10)).replace(tzinfo=None)
    s3 = moto_server["session"].client("s3")
    with psycopg.connect(pg_database) as source, psycopg.connect(warehouse_dsn) as warehouse_db:
        source.execute(
            "UPDATE staff SET email_address = 'late@example.com', last_updated = %s WHERE staff_id = 1",
            (late,),
        )
        source.commit()
        build_window(source, warehouse_db, s3, repair)
        postgres_star = {
            table: sorted(warehouse_db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in STAR
        }
    [staff_1] = [row for row in postgres_star["dim_staff"] if row[0] == 1]
    assert staff_1[3:6] == ("Renamed 1", staff_1[4], "late@example.com")  # the cascade and the late row
    run = run_dag("processed_to_snowflake", window=repair.name)
    assert run.state == "success", task_states(run)
    assert snowflake_star(query) == postgres_star
    load(0, 1)  # reloads of the older exports change nothing
    assert snowflake_star(query) == postgres_star


def event(window: str, rows: dict, minute: int) -> SimpleNamespace:
    return SimpleNamespace(extra={"window": window, "files": len(rows), "rows": rows}, timestamp=minute)


def test_the_windows_come_from_the_events_and_the_param_oldest_first():
    w0, w1, w2 = (windows.Window(T0 + i * STEP, T0 + (i + 1) * STEP).name for i in range(3))
    events = [event(w2, {"dim_staff": 2}, 3), event(w1, {"dim_staff": 1}, 1), event(w1, {"dim_staff": 5}, 2)]
    found = to_snowflake.windows_to_load(events, w0)
    assert [w["name"] for w in found] == [w0, w1, w2]
    assert [w["rows"] for w in found] == [None, {"dim_staff": 5}, {"dim_staff": 2}]  # newest event's counts
    assert found[2]["partition"] == "2024/03/05/2009"
    assert to_snowflake.windows_to_load([], None) == []
    with pytest.raises(ConfigError, match="not a totesys_etl window name: '2024-03-05'"):
        to_snowflake.windows_to_load([], "2024-03-05")
    with pytest.raises(ConfigError, match="None"):
        to_snowflake.windows_to_load([SimpleNamespace(extra={}, timestamp=0)])


# --- a source column widened in Postgres (conveyor.totesys.drift), loaded into Snowflake ----------

WIDENED = windows.Window(T0 + STEP, T0 + 2 * STEP)


def widen_in_postgres(pg_database, warehouse_dsn, moto_server, *ddl, order: dict) -> dict:
    """The source's sales_order retyped by `ddl` (after the warehouse accepted its schema), order 1
    updated to `order`'s values inside WIDENED, check_drift's reconcile (the landing and star
    columns widen), then WIDENED built and exported. Returns the Postgres star's rows."""
    from conveyor.totesys import drift

    s3 = moto_server["session"].client("s3")
    with psycopg.connect(pg_database) as source, psycopg.connect(warehouse_dsn) as warehouse_db:

        def check(window: windows.Window) -> list[dict]:
            live = [drift.source_schema(source, spec) for spec in SPECS]
            decided = drift.reconcile(warehouse_db, SPECS, live, window.name, window.end)
            warehouse_db.commit()
            return decided

        assert check(WINDOWS[1]) == [], "the schema as the warehouse holds it, accepted"
        for statement in ddl:
            source.execute(statement)
        assignments = ", ".join(f"{column} = %s" for column in order)
        stamp = (WIDENED.start + timedelta(seconds=30)).replace(tzinfo=None)
        source.execute(
            f"UPDATE sales_order SET {assignments}, last_updated = %s WHERE sales_order_id = 1",
            (*order.values(), stamp),
        )
        source.commit()
        assert {d["action"] for d in check(WIDENED)} == {"carry"}
        build_window(source, warehouse_db, s3, WIDENED)
        return {
            table: sorted(warehouse_db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in STAR
        }


def number_type(query, table: str, column: str) -> tuple:
    return query(
        "SELECT NUMERIC_PRECISION, NUMERIC_SCALE FROM CONVEYOR.INFORMATION_SCHEMA.COLUMNS "
        f"WHERE TABLE_SCHEMA = 'TOTESYS' AND TABLE_NAME = '{table}' AND COLUMN_NAME = '{column}'"
    )[0]


def test_a_number_widened_in_postgres_gains_precision_in_snowflake_and_arrives_exactly(
    star, pg_database, warehouse_dsn, moto_server
):
    """unit_price numeric(10,2) → numeric(14,2) with 123456789.12 (9 integer digits), and
    units_sold integer → bigint with 3_000_000_001: before the COPY, FACT_SALES_ORDER and its
    staging table's UNIT_PRICE become NUMBER(14, 2) (Snowflake raises a precision in place);
    UNITS_SOLD is an INTEGER (NUMBER(38, 0)) and holds a bigint already. Both warehouses then hold
    the same rows, the values exact. On the code before this change, the window's COPY failed
    (out of range for NUMBER(10, 2)).

    What the fake cannot show: it accepts a scale change Snowflake refuses (the code never asks
    for one), it stores INTEGER as a 64-bit integer (Snowflake: 38 digits), and DuckDB ignores
    VARCHAR(n) lengths (the star's VARCHARs are unsized, so no text widening is needed or tested)."""
    query, _ = star
    load(0, 1)
    postgres_star = widen_in_postgres(
        pg_database,
        warehouse_dsn,
        moto_server,
        "ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(14,2)",
        "ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint",
        order={"unit_price": Decimal("123456789.12"), "units_sold": 3_000_000_001},
    )
    run = run_dag("processed_to_snowflake", window=WIDENED.name)
    assert run.state == "success", task_states(run)
    result = run.get_task_instance("load_window", map_index=0).xcom_pull(
        task_ids="load_window", map_indexes=0
    )
    assert result["widened"] == [
        "ALTER TABLE CONVEYOR.TOTESYS.FACT_SALES_ORDER ALTER COLUMN UNIT_PRICE SET DATA TYPE NUMBER(14, 2)",
        "ALTER TABLE CONVEYOR.TOTESYS.FACT_SALES_ORDER_STAGING ALTER COLUMN UNIT_PRICE SET DATA TYPE NUMBER(14, 2)",
    ]
    assert number_type(query, "FACT_SALES_ORDER", "UNIT_PRICE") == (14, 2)
    assert (Decimal("123456789.12"), 3_000_000_001) in {
        (row[9], row[8]) for row in snowflake_star(query)["fact_sales_order"]
    }
    assert snowflake_star(query) == postgres_star
    again = run_dag("processed_to_snowflake", window=WIDENED.name)  # a rerun: nothing more to widen
    assert again.state == "success", task_states(again)
    assert (
        again.get_task_instance("load_window", map_index=0).xcom_pull(task_ids="load_window", map_indexes=0)[
            "widened"
        ]
        == []
    )


def test_a_number_whose_scale_grew_fails_the_window_naming_the_column_and_is_never_rounded(
    star, pg_database, warehouse_dsn, moto_server
):
    """unit_price numeric(10,2) → numeric(12,3) with 5.555: Snowflake cannot change a NUMBER's
    scale, so the window fails before any COPY, naming both columns and the runbook's manual step;
    the star and staging tables are as they were. On the code before this change, the window
    loaded with 5.555 rounded into NUMBER(10, 2) (the fake rounds as Snowflake does)."""
    query, _ = star
    load(0, 1)
    before = snowflake_star(query)
    widen_in_postgres(
        pg_database,
        warehouse_dsn,
        moto_server,
        "ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(12,3)",
        order={"unit_price": Decimal("5.555")},
    )
    run = run_dag("processed_to_snowflake", window=WIDENED.name)
    assert run.state == "failed"
    [ti] = [t for t in run.get_task_instances() if t.task_id == "load_window"]
    assert (ti.state, ti.try_number) == ("failed", 1), "not retried: the files will not change"
    assert snowflake_star(query) == before, "nothing merged, nothing rounded"
    assert all(query(f"SELECT count(*) FROM CONVEYOR.TOTESYS.{t.upper()}_STAGING") == [(0,)] for t in STAR)
    assert number_type(query, "FACT_SALES_ORDER", "UNIT_PRICE") == (10, 2)
    window = to_snowflake.window_to_load(WIDENED.name)
    with pytest.raises(AirflowFailException) as failed:
        to_snowflake.widen_for_window(
            snowflake.hook(), moto_server["session"].client("s3"), PROCESSED, window, "CONVEYOR"
        )
    message = str(failed.value)
    assert (
        "FACT_SALES_ORDER.UNIT_PRICE is NUMBER(10, 2); the window's file holds NUMBER(12, 3) values"
        in message
    )
    assert "FACT_SALES_ORDER_STAGING.UNIT_PRICE is NUMBER(10, 2)" in message
    assert "'processed_to_snowflake stopped on a wider number'" in message


def test_the_widenings_a_window_needs_raise_precision_and_refuse_a_scale_change():
    columns = {
        ("FACT_PAYMENT", "PAYMENT_AMOUNT"): (14, 2),
        ("FACT_PAYMENT_STAGING", "PAYMENT_AMOUNT"): (14, 2),
    }
    columns |= {("FACT_PAYMENT", "PAYMENT_ID"): (38, 0)}
    held = {"fact_payment": {"PAYMENT_AMOUNT": (12, 2), "PAYMENT_ID": (19, 0)}}
    assert to_snowflake.number_widenings(held, columns) == ([], [])
    wider = {"fact_payment": {"PAYMENT_AMOUNT": (20, 2)}}
    assert to_snowflake.number_widenings(wider, columns) == (
        [("FACT_PAYMENT", "PAYMENT_AMOUNT", 20, 2), ("FACT_PAYMENT_STAGING", "PAYMENT_AMOUNT", 20, 2)],
        [],
    )
    more_digits_and_decimals = {"fact_payment": {"PAYMENT_AMOUNT": (16, 3)}}
    alters, refused = to_snowflake.number_widenings(more_digits_and_decimals, columns)
    assert alters == [] and len(refused) == 2 and "cannot change a column's scale" in refused[0]
    too_wide = {"fact_payment": {"PAYMENT_AMOUNT": (38, 0)}}  # 38 integer digits + 2 decimals > 38
    alters, refused = to_snowflake.number_widenings(too_wide, columns)
    assert alters == [] and len(refused) == 2 and "more than 38 digits" in refused[0]
    unconstrained = {"fact_payment": {"PAYMENT_AMOUNT": None}}  # Postgres numeric: exported as text
    alters, refused = to_snowflake.number_widenings(unconstrained, columns)
    assert alters == [] and "numbers of any precision and scale" in refused[0]
    text = {"fact_payment": {"ITEM_CODE": None}}  # a VARCHAR in Snowflake: nothing to do
    assert to_snowflake.number_widenings(text, columns) == ([], [])
