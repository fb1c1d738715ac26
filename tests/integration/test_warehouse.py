"""The ToteSys warehouse on real Postgres: hand-written ToteSys rows go through the extract (to
moto S3), the landing (COPY into staging) and the model SQL in include/sql/warehouse/, window by
window, and every star table is compared with the rows it must hold."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg
import pytest

from conveyor import paths
from conveyor.totesys import extract, tables, warehouse, windows
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
            warehouse.create_schema(conn)
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
            for group in (warehouse.DIMENSIONS, warehouse.FACTS):
                for relative in warehouse.model_files(group):
                    conn.execute((paths.include_dir() / relative).read_text(), {"window": window.name})
                conn.commit()

    def run(self, index: int) -> None:
        window = WINDOWS[index]
        self.land(window, self.extract(window))
        self.model(window)

    def rows(self, table: str, columns: str = "*", order: str = "1") -> list[tuple]:
        with psycopg.connect(self.warehouse_dsn) as conn:
            return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()

    def star(self) -> dict[str, list[tuple]]:
        """Every star table's rows without surrogate keys and window names (which depend on the
        order the windows ran in), sorted."""
        with psycopg.connect(self.warehouse_dsn) as conn:
            out = {}
            for table in warehouse.STAR:
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
    before = {table: pipeline.rows(table) for table in warehouse.STAR}
    landed_before = pipeline.rows("staging.sales_order_landed", order="1, 12")
    run_in_order(pipeline, three_windows, [1])  # land and model window 1 again
    assert {table: pipeline.rows(table) for table in warehouse.STAR} == before
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


def test_the_checks_pass_on_a_good_window_and_catch_a_planted_orphan(pipeline, three_windows):
    from airflow.providers.common.sql.operators.sql import SQLColumnCheckOperator, SQLTableCheckOperator
    from airflow.sdk.exceptions import AirflowException

    run_in_order(pipeline, three_windows, [0, 1, 2])
    for index in range(3):
        window_sql = f"'{WINDOWS[index].name}'"
        for fact in warehouse.FACTS:
            _check(SQLColumnCheckOperator, warehouse.column_checks(fact, window_sql))
            _check(SQLTableCheckOperator, warehouse.fact_checks(fact, window_sql))
    _check(SQLTableCheckOperator, warehouse.dimension_checks())

    with psycopg.connect(pipeline.warehouse_dsn) as conn:  # a sales order whose staff member is unknown
        conn.execute("UPDATE fact_sales_order SET sales_staff_id = 999 WHERE sales_record_id = 3")
    window_sql = f"'{WINDOWS[2].name}'"
    with pytest.raises(AirflowException, match=r"sales_staff_id_in_dim_staff"):
        _check(SQLTableCheckOperator, warehouse.fact_checks("fact_sales_order", window_sql))
    with psycopg.connect(pipeline.warehouse_dsn) as conn:  # a dimension key twice
        conn.execute("ALTER TABLE dim_design DROP CONSTRAINT dim_design_pkey")
        conn.execute("INSERT INTO dim_design VALUES (1, 'x', 'y', 'z', 'w')")
    with pytest.raises(AirflowException, match=r"dim_design_keys_unique"):
        _check(SQLTableCheckOperator, warehouse.dimension_checks())
    with psycopg.connect(pipeline.warehouse_dsn) as conn:  # a fact row that lost its reference
        conn.execute("ALTER TABLE fact_payment ALTER COLUMN currency_id DROP NOT NULL")
        conn.execute("UPDATE fact_payment SET currency_id = NULL WHERE payment_id = 2")
    with pytest.raises(AirflowException, match=r"currency_id"):
        _check(SQLColumnCheckOperator, warehouse.column_checks("fact_payment", window_sql))


def test_a_window_without_orders_checks_and_passes(pipeline, three_windows):
    from airflow.providers.common.sql.operators.sql import SQLTableCheckOperator

    run_in_order(pipeline, three_windows, [0, 1])  # window 1 holds no purchase order and no payment
    for fact in warehouse.FACTS:
        _check(SQLTableCheckOperator, warehouse.fact_checks(fact, f"'{WINDOWS[1].name}'"))


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


def test_the_schema_is_rerunnable(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.create_schema(conn)
        warehouse.create_schema(conn)
        names = {
            r[0]
            for r in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema IN ('public', 'staging')"
            )
        }
    assert {f"public.{t}" for t in warehouse.STAR} <= names
    assert {f"staging.{s.name}" for s in SPECS} | {f"staging.{s.name}_landed" for s in SPECS} <= names


def test_currency_names_come_from_iso_4217(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        warehouse.create_schema(conn)
        loaded = warehouse.load_currency_names(conn)
        names = dict(conn.execute("SELECT currency_code, currency_name FROM staging.iso_4217").fetchall())
    assert loaded > 150 and names["GBP"] == "Pound Sterling" and names["JPY"] == "Yen"
    assert json.dumps(names)  # plain text, no objects
    assert isinstance(time(0), time)
