"""The ToteSys warehouse on real Postgres: hand-written ToteSys rows go through the extract (to
moto S3), the landing (COPY into staging) and the model SQL in include/sql/warehouse/, window by
window, and every star table is compared with the rows it must hold."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg
import pytest

from conveyor import paths
from conveyor.totesys import extract, gate, migrations, star, tables, warehouse, windows
from conveyor_local import totesys_data

pytestmark = pytest.mark.integration

INGESTION, PROCESSED = "conveyor-local-ingestion", "conveyor-local-processed"
T0 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)
WINDOWS = [windows.Window(T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1)) for i in range(3)]
SPECS = tables.parse_tables_config((paths.include_dir() / "config" / "totesys_tables.json").read_text())


def at(window: int, minute: int = 1) -> datetime:
    """A naive UTC timestamp inside window `window` (0-based)."""
    return (WINDOWS[window].start + timedelta(minutes=minute)).replace(tzinfo=None)


# --- the source rows ------------------------------------------------------------------------------


def window_0(db) -> None:
    """The first window: everything is new."""
    t = at(0)
    db.execute(
        "INSERT INTO address VALUES (1, '1 Long Lane', NULL, NULL, 'Kraków', '30-001', 'PL', '+48 12 000', %s, %s),"
        " (2, '2 Short St', 'Unit 5', 'Île-de-France', 'Paris', '75001', 'FR', '+33 1 000', %s, %s)",
        (t, t, t, t),
    )
    db.execute(
        "INSERT INTO department VALUES (1, 'Sales', 'Manchester', NULL, %s, %s), (2, 'Purchasing', NULL, 'Ann', %s, %s)",
        (t, t, t, t),
    )
    db.execute(
        "INSERT INTO staff VALUES (1, 'Zoë', 'O''Connell', 1, 'zoe@t.com', %s, %s),"
        " (2, 'Łukasz', 'Dąbrowski', 1, 'lukasz@t.com', %s, %s), (3, 'Ngozi', 'Okafor', 2, 'ngozi@t.com', %s, %s)",
        (t,) * 6,
    )
    db.execute("INSERT INTO currency VALUES (1, 'GBP', %s, %s), (2, 'EUR', %s, %s)", (t,) * 4)
    db.execute("INSERT INTO design VALUES (1, 'Granite', '/designs', 'granite-1.json', %s, %s)", (t, t))
    db.execute(
        "INSERT INTO counterparty VALUES (1, 'Müller & Co', 1, NULL, 'Amélie', %s, %s),"
        " (2, 'Patel Ltd', 2, 'Priya', 'Jose', %s, %s)",
        (t,) * 4,
    )
    db.execute(
        "INSERT INTO payment_type VALUES (1, 'SALES_RECEIPT', %s, %s), (3, 'PURCHASE_PAYMENT', %s, %s)",
        (t,) * 4,
    )
    db.execute(
        "INSERT INTO sales_order VALUES (1, 1, 1, 1, 100, 2.50, 1, '2024-03-20', '2024-04-01', 2, %s, %s)",
        (at(0, 5), at(0, 5)),
    )
    db.execute(
        "INSERT INTO purchase_order VALUES (1, 3, 2, 'ITEM-0001', 7, 12.00, 2, '2024-03-22', '2024-04-02', 1, %s, %s)",
        (t, t),
    )
    db.execute(
        "INSERT INTO transaction VALUES (1, 'SALE', 1, NULL, %s, %s), (2, 'PURCHASE', NULL, 1, %s, %s)",
        (t,) * 4,
    )
    db.execute(
        "INSERT INTO payment VALUES (1, 1, 1, 250.00, 1, 1, false, '2024-04-01', 11111111, 22222222, %s, %s)",
        (t, t),
    )


def window_1(db) -> None:
    """A department renamed, an address moved, a sales order updated."""
    t = at(1)
    db.execute(
        "UPDATE department SET department_name = 'Sales & Marketing', last_updated = %s WHERE department_id = 1",
        (t,),
    )
    db.execute(
        "UPDATE address SET city = 'Łódź', postal_code = '90-001', last_updated = %s WHERE address_id = 1",
        (t,),
    )
    db.execute(
        "UPDATE sales_order SET units_sold = 120, last_updated = %s WHERE sales_order_id = 1", (at(1, 30),)
    )


def window_2(db) -> None:
    """A new order and its payment."""
    t = at(2)
    db.execute(
        "INSERT INTO sales_order VALUES (2, 1, 2, 2, 5, 19.99, 2, '2024-03-25', '2024-04-05', 1, %s, %s)",
        (t, t),
    )
    db.execute("INSERT INTO transaction VALUES (3, 'SALE', 2, NULL, %s, %s)", (t, t))
    db.execute(
        "INSERT INTO payment VALUES (2, 3, 2, 99.95, 2, 1, true, '2024-04-05', 33333333, 44444444, %s, %s)",
        (t, t),
    )


CHANGES = [window_0, window_1, window_2]


# --- the pipeline, window by window ----------------------------------------------------------------


class Pipeline:
    """ToteSys (source) -> extract -> S3 -> land -> model, the way totesys_etl runs a window."""

    def __init__(self, source_dsn: str, warehouse_dsn: str, s3):
        self.source_dsn, self.warehouse_dsn, self.s3 = source_dsn, warehouse_dsn, s3
        with psycopg.connect(warehouse_dsn) as conn:
            migrations.migrate(conn)
            warehouse.load_currency_names(conn)

    def extract(self, window: windows.Window) -> list[dict]:
        with psycopg.connect(self.source_dsn) as conn:
            return [
                extract.extract_table(
                    conn, self.s3, INGESTION, spec, tables.catalog_columns(conn, spec), window
                )
                for spec in SPECS
            ]

    def land(self, window: windows.Window, entries: list[dict]) -> None:
        with psycopg.connect(self.warehouse_dsn) as conn:
            for entry in entries:
                warehouse.land(conn, self.s3, INGESTION, entry, window)

    def model(self, window: windows.Window) -> None:
        """The model SQL files as model_dimensions and model_facts run them: a transaction each."""
        with psycopg.connect(self.warehouse_dsn) as conn:
            for group in (star.DIMENSIONS, star.FACTS):
                for relative in paths.sql_files("warehouse", group):
                    conn.execute(paths.sql_path(relative).read_text(), {"window": window.name})
                conn.commit()

    def run(self, index: int) -> None:
        self.run_window(WINDOWS[index])

    def run_window(self, window: windows.Window) -> None:
        self.land(window, self.extract(window))
        self.model(window)

    def rows(self, table: str, columns: str | None = None, order: str = "1") -> list[tuple]:
        """A table's rows; by default every column but a dimension's source_version (checked apart)."""
        with psycopg.connect(self.warehouse_dsn) as conn:
            if columns is None:
                schema, _, name = table.rpartition(".")
                columns = ", ".join(
                    c.name
                    for c in tables.table_columns(conn, name, schema or "public")
                    if c.name != "source_version"
                )
            return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()

    def star(self) -> dict[str, list[tuple]]:
        """Every star table's rows without surrogate keys and window names (which depend on the
        order the windows ran in), sorted."""
        with psycopg.connect(self.warehouse_dsn) as conn:
            out = {}
            for table in star.STAR:
                names = [
                    c.name
                    for c in tables.table_columns(conn, table)
                    if c.name != "window_name" and not c.name.endswith("_record_id")
                ]
                out[table] = sorted(
                    conn.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall(), key=repr
                )
            return out


@pytest.fixture
def source(pg_database):
    with psycopg.connect(pg_database) as conn:
        totesys_data.create_schema(conn)
    return pg_database


def make_changes(source_dsn: str, upto: int) -> None:
    with psycopg.connect(source_dsn) as conn:
        for change in CHANGES[: upto + 1]:
            change(conn)
        conn.commit()


@pytest.fixture
def pipeline(source, warehouse_dsn, aws):
    return Pipeline(source, warehouse_dsn, aws["session"].client("s3"))


@pytest.fixture
def three_windows(pipeline):
    """All three windows extracted to S3 (the source changed as it went), none landed yet."""
    extracted = []
    for index in range(3):
        make_changes(pipeline.source_dsn, index) if index == 0 else None
        with psycopg.connect(pipeline.source_dsn) as conn:
            if index:
                CHANGES[index](conn)
                conn.commit()
        extracted.append(pipeline.extract(WINDOWS[index]))
    return extracted


def run_in_order(pipeline, extracted, order) -> None:
    for index in order:
        pipeline.land(WINDOWS[index], extracted[index])
        pipeline.model(WINDOWS[index])


# --- each table, from hand-written rows -------------------------------------------------------------


def test_every_dimension_and_fact_holds_the_rows_the_source_says(pipeline, three_windows):
    run_in_order(pipeline, three_windows, [0, 1, 2])
    w = [window.name for window in WINDOWS]

    assert pipeline.rows("dim_staff") == [
        (1, "Zoë", "O'Connell", "Sales & Marketing", "Manchester", "zoe@t.com", w[1]),  # the rename cascades
        (2, "Łukasz", "Dąbrowski", "Sales & Marketing", "Manchester", "lukasz@t.com", w[1]),
        (3, "Ngozi", "Okafor", "Purchasing", None, "ngozi@t.com", w[0]),
    ]
    assert pipeline.rows("dim_location") == [
        (1, "1 Long Lane", None, None, "Łódź", "90-001", "PL", "+48 12 000", w[1]),
        (2, "2 Short St", "Unit 5", "Île-de-France", "Paris", "75001", "FR", "+33 1 000", w[0]),
    ]
    assert pipeline.rows("dim_counterparty") == [
        (1, "Müller & Co", "1 Long Lane", None, None, "Łódź", "90-001", "PL", "+48 12 000", w[1]),  # moved
        (2, "Patel Ltd", "2 Short St", "Unit 5", "Île-de-France", "Paris", "75001", "FR", "+33 1 000", w[0]),
    ]
    assert pipeline.rows("dim_currency") == [(1, "GBP", "Pound Sterling", w[0]), (2, "EUR", "Euro", w[0])]
    assert pipeline.rows("dim_design") == [(1, "Granite", "/designs", "granite-1.json", w[0])]
    assert pipeline.rows("dim_payment_type") == [(1, "SALES_RECEIPT", w[0]), (3, "PURCHASE_PAYMENT", w[0])]
    assert pipeline.rows("dim_transaction") == [
        (1, "SALE", 1, None, w[0]),
        (2, "PURCHASE", None, 1, w[0]),
        (3, "SALE", 2, None, w[2]),
    ]
    first, update, second = at(0, 5), at(1, 30), at(2)
    assert pipeline.rows("fact_sales_order", order="sales_record_id") == [
        # sales_record_id, sales_order_id, created date/time, last updated date/time, staff, counterparty,
        # units, price, currency, design, agreed payment, agreed delivery, delivery location, window
        (1, 1, first.date(), first.time(), first.date(), first.time(), 1, 1, 100, Decimal("2.50"), 1, 1,
         date(2024, 4, 1), date(2024, 3, 20), 2, w[0]),
        # the same order, updated in the next window: a second row, the first one kept
        (2, 1, first.date(), first.time(), update.date(), update.time(), 1, 1, 120, Decimal("2.50"), 1, 1,
         date(2024, 4, 1), date(2024, 3, 20), 2, w[1]),
        (3, 2, second.date(), second.time(), second.date(), second.time(), 2, 2, 5, Decimal("19.99"), 2, 1,
         date(2024, 4, 5), date(2024, 3, 25), 1, w[2]),
    ]  # fmt: skip
    t0 = at(0)
    assert pipeline.rows("fact_purchase_order") == [
        (1, 1, t0.date(), t0.time(), t0.date(), t0.time(), 3, 2, "ITEM-0001", 7, Decimal("12.00"), 2,
         date(2024, 3, 22), date(2024, 4, 2), 1, w[0]),
    ]  # fmt: skip
    assert pipeline.rows("fact_payment") == [
        (1, 1, t0.date(), t0.time(), t0.date(), t0.time(), 1, 1, Decimal("250.00"), 1, 1, False, date(2024, 4, 1), w[0]),
        (2, 2, second.date(), second.time(), second.date(), second.time(), 3, 2, Decimal("99.95"), 2, 1, True,
         date(2024, 4, 5), w[2]),
    ]  # fmt: skip
    dates = [row[0] for row in pipeline.rows("dim_date")]
    assert dates == sorted(
        {first.date(), update.date(), second.date(), date(2024, 3, 20), date(2024, 4, 1), date(2024, 3, 22),
         date(2024, 4, 2), date(2024, 3, 25), date(2024, 4, 5)}
    )  # fmt: skip
    assert pipeline.rows("dim_date", order="1 LIMIT 1")[0][:8] == (
        date(2024, 3, 5), 2024, 3, 5, 2, "Tuesday", "March", 1
    )  # fmt: skip
    # The staging mirror holds the current version of every order.
    assert pipeline.rows("staging.sales_order", "sales_order_id, units_sold, last_updated") == [
        (1, 120, update),
        (2, 5, second),
    ]


def test_rerunning_a_window_changes_nothing(pipeline, three_windows):
    run_in_order(pipeline, three_windows, [0, 1, 2])
    before = {table: pipeline.rows(table) for table in star.STAR}
    landed_before = pipeline.rows("staging.sales_order_landed", order="1, 12")
    run_in_order(pipeline, three_windows, [1])  # land and model window 1 again
    assert {table: pipeline.rows(table) for table in star.STAR} == before
    assert pipeline.rows("staging.sales_order_landed", order="1, 12") == landed_before, (
        "the window replaced its rows"
    )


def test_windows_out_of_order_give_the_same_warehouse(
    source, warehouse_dsn, postgres_admin_dsn, aws, three_windows, pipeline, monkeypatch
):
    run_in_order(pipeline, three_windows, [0, 1, 2])
    in_order = pipeline.star()
    from conftest import _fresh_database

    with _fresh_database(postgres_admin_dsn, monkeypatch, "other_warehouse") as other_dsn:
        shuffled = Pipeline(source, other_dsn, aws["session"].client("s3"))
        run_in_order(shuffled, three_windows, [2, 0, 1])
        assert shuffled.star() == in_order
        # A late window never puts an older version in front of a newer one.
        assert shuffled.rows("staging.department", "department_id, department_name") == [
            (1, "Sales & Marketing"),
            (2, "Purchasing"),
        ]


# --- the gate -----------------------------------------------------------------------------------


def _check(operator_class, arguments: dict):
    operator = operator_class(task_id="check", conn_id="warehouse_db", **arguments)
    operator.execute({})


def gate_failures(window: windows.Window) -> dict[str, str]:
    """Run the gate (one SQLTableCheckOperator per star table, as check_tables does) over what
    `window` covers; {table: the error} for each table whose checks failed."""
    from airflow.providers.common.sql.operators.sql import SQLTableCheckOperator
    from airflow.sdk.exceptions import AirflowException

    failures = {}
    for table in star.STAR:
        try:
            _check(SQLTableCheckOperator, gate.checks(table, f"'{window.name}'"))
        except AirflowException as exc:
            failures[table] = str(exc)
    return failures


def test_the_gate_passes_every_good_window(pipeline, three_windows):
    run_in_order(pipeline, three_windows, [0, 1, 2])
    assert [gate_failures(window) for window in WINDOWS] == [{}, {}, {}]
    run_in_order(pipeline, three_windows, [0])  # a rerun of an old window checks as good too
    assert gate_failures(WINDOWS[0]) == {}


def test_a_window_without_orders_checks_and_passes(pipeline, three_windows):
    run_in_order(pipeline, three_windows, [0, 1])  # window 1 holds no purchase order and no payment
    assert gate_failures(WINDOWS[1]) == {}


# Each defect the gate exists for, planted without touching a constraint: (window, SQL, the
# failing table, the check that names it).
DEFECTS = {
    "a missing fact version": (
        1,
        "DELETE FROM fact_sales_order WHERE sales_order_id = 1 AND units_sold = 120",
        "fact_sales_order",
        "fact_sales_order_versions_landed_are_facts",
    ),
    "a dimension row with stale values": (
        1,  # the department rename cascaded to staff 1 in window 1
        "UPDATE dim_staff SET department_name = 'Sales' WHERE staff_id = 1",
        "dim_staff",
        "dim_staff_rows_match_source",
    ),
    "a dimension row left at an older version": (
        1,  # address 1 moved in window 1; its row still says where it was
        "UPDATE dim_location SET city = 'Kraków', postal_code = '30-001', "
        "source_version = source_version - 3600000000 WHERE location_id = 1",
        "dim_location",
        "dim_location_rows_match_source",
    ),
    "a missing dimension row": (
        2,
        "DELETE FROM dim_transaction WHERE transaction_id = 3",
        "dim_transaction",
        "dim_transaction_rows_present",
    ),
    "an orphan fact row": (
        2,  # payment 2 (window 2) is in EUR
        "DELETE FROM dim_currency WHERE currency_id = 2",
        "fact_payment",
        "fact_payment_currency_id_in_dim_currency",
    ),
    "a dimension row no source row has": (
        0,
        "INSERT INTO dim_payment_type VALUES (9, 'GIFT_CARD', 'w', 0)",
        "dim_payment_type",
        "dim_payment_type_every_row_has_a_source",
    ),
    "a dimension row swapped for one no source has (the count unchanged)": (
        0,
        "UPDATE dim_design SET design_id = 99 WHERE design_id = 1",
        "dim_design",
        "dim_design_every_source_has_a_row",
    ),
    # docs/star-schema.md's checklist: a dimension column migrated, but not in the dimension's
    # source view and model SQL, fails the gate.
    "a dimension column migrated but not modelled": (
        0,
        "ALTER TABLE dim_location ADD COLUMN phone_extension text",
        "dim_location",
        "dim_location_rows_match_source",
    ),
    "a date with the wrong parts": (
        2,
        "UPDATE dim_date SET day_name = 'Caturday' WHERE date_id = '2024-04-05'",
        "dim_date",
        "dim_date_parts_right",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_the_gate_fails_on_each_planted_defect_naming_it(pipeline, three_windows, defect):
    index, plant, table, check = DEFECTS[defect]
    run_in_order(pipeline, three_windows, [0, 1, 2])
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        conn.execute(plant)
    failures = gate_failures(WINDOWS[index])
    assert table in failures, failures
    assert check in failures[table], failures[table]


def test_a_widened_window_checks_and_exports_the_rows_a_failed_run_modelled(pipeline, three_windows):
    """A scheduled run lands and models window 1, then fails (export, say): the watermark stays.
    The next scheduled run's window widens back over window 1; its model changes nothing there
    (those rows are current already), yet its gate and its export cover them."""
    import io

    import pyarrow.parquet as pq

    run_in_order(pipeline, three_windows, [0, 1])  # window 1: modelled, never exported
    widened = windows.Window(WINDOWS[1].start, WINDOWS[2].end, widened_from=WINDOWS[2].start)
    pipeline.run_window(widened)  # the source has moved on to window 2's changes too
    assert gate_failures(widened) == {}
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        exported = {e["table"]: e for e in warehouse.export_all(conn, pipeline.s3, PROCESSED, widened)}

    def rows(table):
        body = pipeline.s3.get_object(Bucket=PROCESSED, Key=exported[table]["key"])["Body"].read()
        return pq.read_table(io.BytesIO(body)).to_pylist()

    # Window 1's rows (written under its name, before the failure) and window 2's, all exported.
    assert {(r["staff_id"], r["department_name"]) for r in rows("dim_staff")} == {
        (1, "Sales & Marketing"),
        (2, "Sales & Marketing"),
    }
    assert {r["location_id"] for r in rows("dim_location")} == {1}
    assert {r["counterparty_id"] for r in rows("dim_counterparty")} == {1}
    assert {(r["sales_order_id"], r["units_sold"]) for r in rows("fact_sales_order")} == {(1, 120), (2, 5)}
    assert {r["payment_id"] for r in rows("fact_payment")} == {2}
    assert {r["transaction_id"] for r in rows("dim_transaction")} == {3}
    assert all(
        r["source_version"] > 0 and r["source_version"] == int(r["source_version"]) for r in rows("dim_staff")
    )
    dates = {r["date_id"] for r in rows("dim_date")}
    assert {at(1, 30).date(), at(2).date(), date(2024, 4, 5)} <= dates
    assert exported["dim_design"]["rows"] == 0 and exported["dim_design"]["key"] is None


def test_a_landing_that_disagrees_with_the_manifest_fails(pipeline, three_windows):
    entry = next(e for e in three_windows[0] if e["table"] == "staff")
    with (
        psycopg.connect(pipeline.warehouse_dsn) as conn,
        pytest.raises(
            warehouse.LandingMismatch, match=r"staff: landed 3 rows of window .*, the manifest says 4"
        ),
    ):
        warehouse.land(conn, pipeline.s3, INGESTION, {**entry, "rows": 4}, WINDOWS[0])
    assert pipeline.rows("staging.staff_landed") == [], "nothing of the failed landing stays"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_landing_takes_the_column_order_from_the_file_not_the_xcom(pipeline, fmt):
    """On MWAA, XComs live in Postgres as jsonb, which hands a dict back with its keys reordered
    (shortest first): the manifest entry's `schema` must not decide COPY's column order."""
    make_changes(pipeline.source_dsn, 0)
    with psycopg.connect(pipeline.source_dsn) as conn:
        spec = next(s for s in SPECS if s.name == "payment")
        entry = extract.extract_table(
            conn, pipeline.s3, INGESTION, spec, tables.catalog_columns(conn, spec), WINDOWS[0], fmt=fmt
        )
    as_jsonb = {name: entry["schema"][name] for name in sorted(entry["schema"], key=lambda k: (len(k), k))}
    assert list(as_jsonb) != list(entry["schema"])
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        warehouse.land(conn, pipeline.s3, INGESTION, {**entry, "schema": as_jsonb}, WINDOWS[0])
    with psycopg.connect(pipeline.source_dsn) as conn:
        expected = conn.execute("SELECT * FROM payment ORDER BY 1").fetchall()
    assert pipeline.rows("staging.payment_landed", columns=", ".join(entry["schema"])) == expected


# --- failures -------------------------------------------------------------------------------------


def test_the_warehouse_going_down_mid_load_then_a_retry_loses_and_duplicates_nothing(
    pipeline, three_windows, postgres_admin_dsn, monkeypatch
):
    monkeypatch.setattr(warehouse, "ROW_BATCH", 1)  # one row per COPY chunk: "mid-load" exists
    entry = next(e for e in three_windows[0] if e["table"] == "staff")
    real_chunks = warehouse._chunks

    def chunks_then_outage(*args):
        for number, chunk in enumerate(real_chunks(*args)):
            yield chunk
            if number == 1:  # two rows sent: the server goes away
                with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'COPY %%staff_landed%%' AND pid <> pg_backend_pid()"
                    )

    monkeypatch.setattr(warehouse, "_chunks", chunks_then_outage)
    with psycopg.connect(pipeline.warehouse_dsn) as conn, pytest.raises(psycopg.OperationalError):
        warehouse.land(conn, pipeline.s3, INGESTION, entry, WINDOWS[0])
    assert pipeline.rows("staging.staff_landed") == [], "the interrupted COPY left nothing"

    monkeypatch.setattr(warehouse, "_chunks", real_chunks)
    run_in_order(pipeline, three_windows, [0])  # the retry
    assert [r[0] for r in pipeline.rows("staging.staff_landed")] == [1, 2, 3]
    assert [r[0] for r in pipeline.rows("dim_staff")] == [1, 2, 3]


def test_two_landings_of_the_same_window_at_once_leave_one_copy(pipeline, three_windows, monkeypatch):
    """A backfill and a scheduled run of the same interval land at the same time: the second
    waits for the first, then replaces its rows (without the lock both copies would stay)."""
    import threading
    import time

    entry = next(e for e in three_windows[0] if e["table"] == "staff")
    real_chunks = warehouse._chunks
    first_sent, release = threading.Event(), threading.Event()

    def first_one_pauses(*args):
        first = not first_sent.is_set()
        yield from real_chunks(*args)
        if first:
            first_sent.set()  # its rows are sent, its transaction still open
            release.wait(20)

    monkeypatch.setattr(warehouse, "_chunks", first_one_pauses)
    errors = []

    def land():
        try:
            with psycopg.connect(pipeline.warehouse_dsn) as conn:
                warehouse.land(conn, pipeline.s3, INGESTION, entry, WINDOWS[0])
        except Exception as exc:  # reported below
            errors.append(exc)

    first = threading.Thread(target=land)
    first.start()
    assert first_sent.wait(20)
    second = threading.Thread(target=land)
    second.start()
    time.sleep(1.5)  # without the lock, the second landing would be done by now
    release.set()
    first.join(30)
    second.join(30)
    assert not errors, errors
    assert [r[0] for r in pipeline.rows("staging.staff_landed")] == [1, 2, 3]


def test_the_export_writes_the_rows_a_window_wrote(pipeline, three_windows):
    import io

    import pyarrow.parquet as pq

    run_in_order(pipeline, three_windows, [0, 1, 2])
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        staff = warehouse.export(conn, pipeline.s3, PROCESSED, "dim_staff", WINDOWS[1])
        facts = warehouse.export(conn, pipeline.s3, PROCESSED, "fact_sales_order", WINDOWS[1])
        nothing = warehouse.export(conn, pipeline.s3, PROCESSED, "dim_design", WINDOWS[1])
    assert staff["key"] == f"dim_staff/2024/03/05/2200/dim_staff-{WINDOWS[1].name}.parquet"
    body = pipeline.s3.get_object(Bucket=PROCESSED, Key=staff["key"])["Body"].read()
    exported = pq.read_table(io.BytesIO(body)).to_pylist()
    assert [(r["staff_id"], r["department_name"]) for r in exported] == [
        (1, "Sales & Marketing"),
        (2, "Sales & Marketing"),
    ]
    assert "window_name" not in exported[0]
    [fact] = pq.read_table(
        io.BytesIO(pipeline.s3.get_object(Bucket=PROCESSED, Key=facts["key"])["Body"].read())
    ).to_pylist()
    assert (fact["sales_order_id"], fact["units_sold"], fact["last_updated_time"]) == (
        1,
        120,
        at(1, 30).time(),
    )
    assert (nothing["rows"], nothing["key"]) == (0, None)


def test_a_version_a_failed_run_modelled_stays_covered_after_the_source_moves_on(pipeline, three_windows):
    """Window 1 models sales order 1's second version (120 units), then its run fails. Before the
    next scheduled run, the order changes again: the source holds only the third version now, so
    the widened window cannot land the second one again. Its bounds still cover it: the gate
    checks it and the export writes it."""
    import io

    import pyarrow.parquet as pq

    run_in_order(pipeline, three_windows, [0, 1])
    with psycopg.connect(pipeline.source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET units_sold = 130, last_updated = %s WHERE sales_order_id = 1",
            (at(2, 10),),
        )
    widened = windows.Window(WINDOWS[1].start, WINDOWS[2].end, widened_from=WINDOWS[2].start)
    pipeline.run_window(widened)
    assert gate_failures(widened) == {}
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        exported = warehouse.export(conn, pipeline.s3, PROCESSED, "fact_sales_order", widened)
    body = pipeline.s3.get_object(Bucket=PROCESSED, Key=exported["key"])["Body"].read()
    assert sorted(
        (r["sales_order_id"], r["units_sold"]) for r in pq.read_table(io.BytesIO(body)).to_pylist()
    ) == [
        (1, 120),
        (1, 130),
        (2, 5),
    ]


def test_a_window_landed_again_keeps_the_versions_its_source_no_longer_has(pipeline, three_windows):
    """A run cleared after its rows changed again: its new extract lacks a row created in its
    window and updated since. The version it landed stays (it is real, and the only landed copy
    until a later window lands the newer one), so the warehouse and the gate stay whole."""
    run_in_order(pipeline, three_windows, [0, 1, 2])
    with psycopg.connect(pipeline.source_dsn) as conn:  # transaction 3 (window 2) changes later
        conn.execute(
            "UPDATE transaction SET last_updated = %s WHERE transaction_id = 3", (at(2) + timedelta(hours=2),)
        )
    pipeline.run_window(WINDOWS[2])  # the clear: extract, land and model window 2 again
    assert pipeline.rows("staging.transaction_landed", "transaction_id, window_name") == [
        (1, WINDOWS[0].name),
        (2, WINDOWS[0].name),
        (3, WINDOWS[2].name),
    ]
    assert [row[0] for row in pipeline.rows("staging.payment_landed")] == [1, 2], "the same versions, once"
    assert gate_failures(WINDOWS[2]) == {}


def test_a_staff_move_to_a_department_untouched_for_years_raises_its_version(pipeline, three_windows):
    """dim_staff's version orders its own row before its department's: a move to a department
    last changed long ago is still a newer version (a plain sum of the two would go down)."""
    run_in_order(pipeline, three_windows, [0, 1, 2])
    [(before,)] = pipeline.rows("dim_staff WHERE staff_id = 1", "source_version")
    with psycopg.connect(pipeline.source_dsn) as conn:
        conn.execute("UPDATE department SET last_updated = '2019-01-01' WHERE department_id = 2")
        conn.execute("UPDATE staff SET department_id = 2, last_updated = %s WHERE staff_id = 1", (at(2, 20),))
    pipeline.run_window(windows.Window(WINDOWS[2].start, WINDOWS[2].end + timedelta(hours=1)))
    [(after, department)] = pipeline.rows("dim_staff WHERE staff_id = 1", "source_version, department_name")
    assert department == "Purchasing" and after > before


def test_the_operators_sessions_must_keep_the_statement_timeout(warehouse_dsn, monkeypatch):
    """A warehouse_db extra with its own `options` replaces the timeout the model and check
    operators are given: prepare_warehouse refuses, saying what to add."""
    from datetime import timedelta as td

    from conveyor import postgres

    assert postgres.check_operator_sessions("warehouse_db", td(minutes=15)) == "15min"
    connection = json.loads(os.environ["AIRFLOW_CONN_WAREHOUSE_DB"])
    connection["extra"] = {"options": "-c search_path=public"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", json.dumps(connection))
    with pytest.raises(
        postgres.SessionSettingsLost, match=r"no statement timeout.*-c statement_timeout=900000"
    ):
        postgres.check_operator_sessions("warehouse_db", td(minutes=15))
    connection["extra"] = {"options": "-c search_path=public -c statement_timeout=60000"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", json.dumps(connection))
    assert postgres.check_operator_sessions("warehouse_db", td(minutes=15)) == "1min"


# --- migrations: DDL once per schema version, never on a run's path --------------------------------


def test_migrations_apply_once_in_order_and_make_what_the_code_declares(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        first = migrations.migrate(conn)
        assert migrations.migrate(conn) == [], "a warehouse that is up to date runs no migration"
        recorded = conn.execute("SELECT version, name FROM staging.schema_migrations ORDER BY 1").fetchall()
        names = {
            r[0]
            for r in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema IN ('public', 'staging')"
            )
        }
        landed = {
            table: [c.name for c in tables.table_columns(conn, f"{table}_landed", "staging")]
            for table in star.MODEL_SOURCES
        }
    assert first == [name for _, name in migrations.migrations()]
    assert first[:2] == ["001_baseline.sql", "002_window_coverage.sql"]
    assert recorded == migrations.migrations()
    assert {f"public.{t}" for t in star.STAR} <= names
    assert {f"staging.{s.name}" for s in SPECS} | {f"staging.{s.name}_landed" for s in SPECS} <= names
    assert {f"staging.{t}_window" for t in star.STAR} <= names
    assert {f"staging.{d}_source" for d in star.DIMENSIONS if d != "dim_date"} <= names
    for table, (key, columns, _) in star.MODEL_SOURCES.items():  # the declaration is the schema's
        assert landed[table] == [key, *columns, "created_at", "last_updated", "window_name"], table


def test_a_warehouse_made_before_migrations_adopts_them_and_its_rows_get_versions(pipeline, three_windows):
    """A warehouse built by the old every-run schema.sql (migration 001's statements, no version
    table) with rows in it: the first migrate applies 001 as a no-op and 002 on top, giving the
    existing dimension rows the versions of the source rows they hold."""
    old_window = WINDOWS[0].name
    with psycopg.connect(pipeline.warehouse_dsn) as conn:
        conn.execute("DROP SCHEMA staging CASCADE")
        conn.execute("DROP TABLE " + ", ".join(star.STAR))
        conn.execute(paths.sql_path("warehouse", "migrations", "001_baseline.sql").read_text())
        # What the old landing and model left: a landed design and its dimension row.
        conn.execute("SELECT set_config('conveyor.window_name', %s, false)", (old_window,))
        conn.execute(
            "INSERT INTO staging.design_landed VALUES (1, 'Granite', '/designs', 'granite-1.json', %s, %s)",
            (at(0), at(0)),
        )
        conn.execute(
            "INSERT INTO dim_design VALUES (1, 'Granite', '/designs', 'granite-1.json', %s)", (old_window,)
        )
        conn.commit()
        assert migrations.migrate(conn) == [name for _, name in migrations.migrations()]
        [(version, expected)] = conn.execute(
            "SELECT d.source_version, staging.version_us(s.last_updated) FROM dim_design d "
            "JOIN staging.design s USING (design_id)"
        ).fetchall()
    assert version == expected > 0
    run_in_order(pipeline, three_windows, [0])
    assert gate_failures(WINDOWS[0]) == {}


def test_a_migration_waits_a_bounded_time_for_a_readers_lock_and_applies_nothing(
    warehouse_dsn, postgres_admin_dsn, monkeypatch
):
    """ALTER TABLE waits for a reader's lock, and every later reader queues behind it: a migration
    gives up after lock_timeout instead (the task retries), leaving the warehouse as it was."""
    import threading

    monkeypatch.setattr(migrations, "LOCK_TIMEOUT", "1s")
    with psycopg.connect(warehouse_dsn) as conn:
        conn.execute(paths.sql_path("warehouse", "migrations", "001_baseline.sql").read_text())
    reader = psycopg.connect(warehouse_dsn, autocommit=True)
    thread = threading.Thread(
        target=lambda: reader.execute(
            "SELECT pg_sleep(30) FROM dim_staff RIGHT JOIN (SELECT 1) AS one ON true"
        )
    )
    thread.start()
    try:
        threading.Event().wait(1)
        with psycopg.connect(warehouse_dsn) as conn, pytest.raises(psycopg.errors.LockNotAvailable):
            migrations.migrate(conn)
        with psycopg.connect(warehouse_dsn) as conn:
            assert conn.execute("SELECT to_regclass('staging.schema_migrations')").fetchone() == (None,)
    finally:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (reader.info.backend_pid,))
        thread.join(10)
        reader.close()


def test_a_migration_file_named_otherwise_is_refused_not_skipped(tmp_path, monkeypatch):
    import shutil

    include = tmp_path / "include"
    shutil.copytree(paths.include_dir(), include)
    (include / "sql" / "warehouse" / "migrations" / "003_add-index.sql").write_text("SELECT 1;")
    monkeypatch.setenv("CONVEYOR_INCLUDE_DIR", str(include))
    with pytest.raises(RuntimeError, match=r"'003_add-index\.sql' is not named NNN_lowercase_words\.sql"):
        migrations.migrations()


def test_a_long_read_on_a_staging_view_does_not_block_a_run(pipeline, three_windows, postgres_admin_dsn):
    """An analyst's long query on a staging view holds a lock that DDL waits for (CREATE OR REPLACE
    VIEW, CREATE INDEX): a run that applied the schema every time waited up to its statement
    timeout. With migrations applied, a run's prepare, landing and model run beside it."""
    import threading

    run_in_order(pipeline, three_windows, [0])
    reader = psycopg.connect(pipeline.warehouse_dsn, autocommit=True)
    pid = reader.info.backend_pid
    outcome = {}

    def read():
        try:
            reader.execute("SELECT pg_sleep(120) FROM staging.address LIMIT 1")
        except psycopg.errors.QueryCanceled:
            outcome["cancelled"] = True

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:  # the read holds its locks
            for _ in range(100):
                sleeping = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", (pid,)
                ).fetchone()[0]
                if sleeping:
                    break
                threading.Event().wait(0.1)
            assert sleeping, "the long read never started"
        timed = Pipeline(  # the run's sessions give up after 10 s, as statement_timeout would make them
            pipeline.source_dsn, f"{pipeline.warehouse_dsn} options='-c statement_timeout=10000'", pipeline.s3
        )
        timed.land(WINDOWS[1], three_windows[1])
        timed.model(WINDOWS[1])
        assert thread.is_alive(), "the read is still running: the run did not wait for it"
    finally:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)
        reader.close()
    assert outcome == {"cancelled": True}
    assert gate_failures(WINDOWS[1]) == {}


def test_every_warehouse_session_of_totesys_etl_has_the_statement_timeout(dagbag, warehouse_dsn):
    """The model and check operators open their own connections: they get the same statement
    timeout (and UTC) as the tasks that connect through conveyor.postgres."""
    from airflow.providers.common.sql.operators.sql import SQLTableCheckOperator

    dag = dagbag.get_dag("totesys_etl")
    check_tables = dag.get_task("check_tables")
    check = SQLTableCheckOperator(
        task_id="check",
        conn_id=check_tables.partial_kwargs["conn_id"],
        hook_params=check_tables.partial_kwargs["hook_params"],
        **gate.checks("dim_staff", "'w'"),
    )
    for operator in (dag.get_task("model_dimensions"), dag.get_task("model_facts"), check):
        with operator.get_db_hook().get_conn() as conn:
            settings = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
            )
            assert settings.fetchone() == ("15min", "UTC"), operator.task_id


def test_currency_names_come_from_iso_4217(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        loaded = warehouse.load_currency_names(conn)
        names = dict(conn.execute("SELECT currency_code, currency_name FROM staging.iso_4217").fetchall())
    assert loaded > 150 and names["GBP"] == "Pound Sterling" and names["JPY"] == "Yen"
    assert json.dumps(names)  # plain text, no objects
    assert isinstance(time(0), time)
