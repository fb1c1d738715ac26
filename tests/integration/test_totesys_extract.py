"""The incremental extract against a real Postgres and moto S3, and totesys_etl through Airflow."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, read_messages, run_dag, task_states

from conveyor import postgres
from conveyor.config import ConfigError
from conveyor.postgres import SourceUnavailable
from conveyor.totesys import extract, tables, windows
from conveyor.totesys.tables import TableSpec
from conveyor_local import totesys_data as totesys
from conveyor_local.provision import NOTIFICATIONS_INBOX, delete_bucket

pytestmark = pytest.mark.integration

BUCKET = "conveyor-local-ingestion"
PROCESSED = "conveyor-local-processed"
T1 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)
LAG = timedelta(seconds=60)
EVENTS = TableSpec("event", "event_id", "last_updated")


@pytest.fixture
def db(pg_database):
    with psycopg.connect(pg_database) as conn:
        yield conn


@pytest.fixture
def s3(aws):
    return aws["session"].client("s3")


def read_rows(s3, key: str) -> list[dict]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body)) if key.endswith(".parquet") else pa_csv.read_csv(io.BytesIO(body))
    return table.to_pylist()


def run_window(db, s3, spec, window, **options) -> tuple[dict, list[dict]]:
    result = extract.extract_table(db, s3, BUCKET, spec, tables.catalog_columns(db, spec), window, **options)
    return result, (read_rows(s3, result["key"]) if result["key"] else [])


def make_events_table(db) -> None:
    db.execute(
        "CREATE TABLE event (event_id serial PRIMARY KEY, label text, day date, last_updated timestamp NOT NULL)"
    )
    db.commit()


def insert(db, stamp: datetime, labels: list[str]) -> None:
    naive = stamp.astimezone(UTC).replace(tzinfo=None)
    db.cursor().executemany(
        "INSERT INTO event (label, last_updated) VALUES (%s, %s)", [(x, naive) for x in labels]
    )
    db.commit()


def test_rows_on_window_boundaries_are_extracted_exactly_once(db, s3):
    """Rows keep arriving at the boundary timestamp between runs; each lands in exactly one run."""
    make_events_table(db)
    interval = timedelta(minutes=3)
    w1 = windows.extract_window(T1, T1 + interval, LAG)
    w2 = windows.extract_window(T1 + interval, T1 + 2 * interval, LAG)
    w3 = windows.extract_window(T1 + 2 * interval, T1 + 3 * interval, LAG)
    boundary = w1.end  # == w2.start

    insert(db, boundary - timedelta(microseconds=1), ["b-just-before"])
    insert(db, boundary, ["a1-at-boundary", "a2-at-boundary"])
    _, run1 = run_window(db, s3, EVENTS, w1)
    insert(db, boundary, ["c-at-boundary-after-run-1"])  # same timestamp, after run 1
    insert(db, boundary + timedelta(seconds=1), ["d-later"])
    insert(db, w2.end, ["e-at-next-boundary"])
    _, run2 = run_window(db, s3, EVENTS, w2)
    _, run3 = run_window(db, s3, EVENTS, w3)

    assert [r["label"] for r in run1] == ["b-just-before"]
    assert sorted(r["label"] for r in run2) == [
        "a1-at-boundary",
        "a2-at-boundary",
        "c-at-boundary-after-run-1",
        "d-later",
    ]
    assert [r["label"] for r in run3] == ["e-at-next-boundary"]
    every = [r["event_id"] for r in run1 + run2 + run3]
    assert sorted(every) == list(range(1, 7)), "every row exactly once across runs"


def test_late_committing_row_is_picked_up_thanks_to_the_lag(db, s3):
    """A row stamped 30 s before a run's interval end but committed after the run executed."""
    make_events_table(db)
    interval = timedelta(minutes=3)
    late_stamp = T1 + interval - timedelta(seconds=30)

    _, run1 = run_window(db, s3, EVENTS, windows.extract_window(T1, T1 + interval, LAG))
    insert(db, late_stamp, ["late"])  # commits after run 1 ran
    _, run2 = run_window(db, s3, EVENTS, windows.extract_window(T1 + interval, T1 + 2 * interval, LAG))
    assert run1 == [] and [r["label"] for r in run2] == ["late"]

    # Without the lag the same sequence loses it: run 1's window already covered its timestamp.
    no_lag_2 = windows.extract_window(T1 + interval, T1 + 2 * interval, timedelta(0))
    _, lost = run_window(db, s3, EVENTS, no_lag_2)
    assert lost == []


def test_types_survive_exactly(db, s3):
    db.execute(
        """CREATE TABLE typed (
             typed_id bigserial PRIMARY KEY, amount numeric(20, 6), price numeric(10, 2), label text,
             code char(3), flag boolean, day date, at_tz timestamptz, last_updated timestamp NOT NULL,
             free numeric)"""
    )
    rows = [
        (
            Decimal("12345678901234.123456"),
            Decimal("0.10"),
            'Zoë "quoted", comma\nnew line ✓',
            "GBP",
            True,
            datetime(2024, 2, 29).date(),
            datetime(2024, 3, 5, 12, 0, 0, 123456, tzinfo=UTC),
            datetime(2024, 3, 5, 19, 58, 59, 999999),
            Decimal("3.14159265358979323846"),
        ),
        (None, Decimal("-5.00"), "", None, False, None, None, datetime(2024, 3, 5, 19, 58), None),
    ]
    db.cursor().executemany(
        "INSERT INTO typed (amount, price, label, code, flag, day, at_tz, last_updated, free) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        rows,
    )
    db.commit()
    spec = TableSpec("typed", "typed_id", "last_updated")
    result, extracted = run_window(db, s3, spec, windows.extract_window(T1 - timedelta(minutes=3), T1, LAG))
    assert result["rows"] == 2
    assert (
        result["schema"]["amount"] == "decimal128(20, 6)"
        and result["schema"]["at_tz"] == "timestamp[us, tz=UTC]"
    )
    first, second = sorted(extracted, key=lambda r: r["typed_id"])
    assert first["amount"] == Decimal("12345678901234.123456")
    assert first["price"] == Decimal("0.10")
    assert first["label"] == 'Zoë "quoted", comma\nnew line ✓'
    assert (first["code"], first["flag"], first["day"]) == ("GBP", True, datetime(2024, 2, 29).date())
    assert first["at_tz"] == datetime(2024, 3, 5, 12, 0, 0, 123456, tzinfo=UTC)
    assert first["last_updated"] == datetime(2024, 3, 5, 19, 58, 59, 999999)
    assert first["free"] == "3.14159265358979323846"
    assert second["amount"] is None and second["label"] == "" and second["code"] is None, (
        "NULL and '' stay distinct"
    )
    assert second["flag"] is False and second["price"] == Decimal("-5.00")


def test_csv_output_and_full_snapshot(db, s3):
    make_events_table(db)
    insert(db, T1 - timedelta(days=30), ["old"])
    insert(db, T1 - timedelta(minutes=2), ["new"])
    window = windows.extract_window(T1 - timedelta(minutes=3), T1, LAG)
    delta, rows = run_window(db, s3, EVENTS, window, fmt="csv")
    assert delta["key"].endswith(".csv") and [r["label"] for r in rows] == ["new"]
    snapshot, rows = run_window(db, s3, EVENTS, dataclasses.replace(window, full_snapshot=True))
    assert snapshot["full_snapshot"] and sorted(r["label"] for r in rows) == ["new", "old"]


def test_empty_delta_writes_no_file_and_removes_a_stale_one(db, s3):
    make_events_table(db)
    window = windows.extract_window(T1, T1 + timedelta(minutes=3), LAG)
    insert(db, window.start, ["x"])
    first, _ = run_window(db, s3, EVENTS, window)
    assert first["rows"] == 1
    db.execute("UPDATE event SET last_updated = last_updated + interval '1 day'")  # moved out of the window
    db.commit()
    rerun, _ = run_window(db, s3, EVENTS, window)
    assert (rerun["rows"], rerun["key"]) == (0, None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET), "no data file for an empty delta"


def test_backfill_of_several_intervals_equals_one_run_over_their_union(db, s3):
    totesys.create_schema(db)
    totesys.populate(db, scale=0.5, seed=3, at=T1)
    spec = TableSpec("sales_order", "sales_order_id", "last_updated")
    step = timedelta(days=3)
    starts = [T1 - timedelta(days=30) + i * step for i in range(10)]
    pieces = []
    for start in starts:
        _, rows = run_window(db, s3, spec, windows.extract_window(start, start + step, LAG))
        pieces += rows
    _, union = run_window(db, s3, spec, windows.extract_window(starts[0], starts[-1] + step, LAG))
    key = lambda r: r["sales_order_id"]  # noqa: E731
    assert sorted(pieces, key=key) == sorted(union, key=key)
    assert len(union) == len({r["sales_order_id"] for r in union}) > 0


def test_another_schema_is_ingested_by_config_alone(db, s3):
    db.execute(
        "CREATE TABLE sensor_reading (reading_no bigint PRIMARY KEY, device text NOT NULL, "
        "value numeric(8, 3), modified_at timestamptz NOT NULL)"
    )
    db.execute(
        "INSERT INTO sensor_reading VALUES (1, 'pump-α', 1.250, %s), (2, 'pump-β', NULL, %s)",
        (T1 - timedelta(minutes=2), T1 + timedelta(hours=1)),
    )
    db.commit()
    [spec] = tables.parse_tables_config(
        json.dumps(
            {
                "tables": [
                    {
                        "name": "sensor_reading",
                        "primary_key": "reading_no",
                        "cursor": "modified_at",
                        "columns": ["reading_no", "value", "modified_at"],
                    }
                ],
            }
        )
    )
    result, rows = run_window(db, s3, spec, windows.extract_window(T1 - timedelta(minutes=3), T1, LAG))
    assert rows == [{"reading_no": 1, "value": Decimal("1.250"), "modified_at": T1 - timedelta(minutes=2)}]
    assert list(result["schema"]) == ["reading_no", "value", "modified_at"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TableSpec("nope", "id", "last_updated"), "table 'nope': no such table"),
        (TableSpec("event", "id", "last_updated"), "table 'event': field 'primary_key': no column 'id'"),
        (TableSpec("event", "event_id", "updated"), "table 'event': field 'cursor': no column 'updated'"),
        (
            TableSpec("event", "event_id", "last_updated", ("event_id", "colour", "last_updated")),
            "no column(s) 'colour'",
        ),
        (
            TableSpec("event", "event_id", "label"),
            "field 'cursor': column 'label' is text; the cursor must be a timestamp",
        ),
        (
            TableSpec("event", "event_id", "day"),
            "field 'cursor': column 'day' is date; the cursor must be a timestamp",
        ),
        (
            TableSpec("event", "event_id", "event_id"),
            "column 'event_id' is integer; the cursor must be a timestamp",
        ),
        (TableSpec('event"; DROP TABLE event; --', "event_id", "last_updated"), "no such table"),
    ],
)
def test_wrong_names_fail_with_a_clear_message(db, spec, message):
    make_events_table(db)
    with pytest.raises(ConfigError) as raised:
        tables.catalog_columns(db, spec)
    assert message in str(raised.value)
    assert db.execute("SELECT count(*) FROM event").fetchone() == (0,), "the table is still there"


def test_unreachable_database_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOTESYS_DB",
        json.dumps(
            {"conn_type": "postgres", "host": str(tmp_path), "port": 5999, "login": "x", "schema": "totesys"}
        ),
    )
    with pytest.raises(
        SourceUnavailable, match=r"cannot connect to 'totesys_db' \(host .*, port 5999, database totesys\)"
    ):
        postgres.connect("totesys_db")


def _with_extra(monkeypatch, **extra) -> None:
    connection = json.loads(os.environ["AIRFLOW_CONN_TOTESYS_DB"])
    monkeypatch.setenv("AIRFLOW_CONN_TOTESYS_DB", json.dumps({**connection, "extra": extra}))


def test_connection_extras_are_honoured(pg_database, monkeypatch):
    """Built through PostgresHook: what the Airflow connection says is what the session gets."""
    _with_extra(monkeypatch, application_name="conveyor-test", options="-c work_mem=7MB")
    with postgres.connect("totesys_db") as conn:
        assert conn.execute(
            "SELECT current_setting('application_name'), current_setting('work_mem')"
        ).fetchone() == (
            "conveyor-test",
            "7MB",
        )
    # An extra that the server cannot satisfy fails the connection, naming it. (sslmode works the
    # same way over TCP; the embedded Postgres listens on a Unix socket, where libpq has no TLS.)
    _with_extra(monkeypatch, target_session_attrs="read-only")
    with pytest.raises(SourceUnavailable, match=r"cannot connect to 'totesys_db' .*read-only"):
        postgres.connect("totesys_db")


def test_statement_timeout_and_time_zone_are_session_settings(pg_database):
    with postgres.connect("totesys_db", statement_timeout=timedelta(seconds=2)) as conn:
        conn.execute("SET LOCAL statement_timeout = '1h'")
        conn.rollback()  # a transaction's own settings end with it; the session's stay
        assert conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
        ).fetchone() == (
            "2s",
            "UTC",
        )


def test_a_statement_over_the_timeout_fails_with_a_clear_message(pg_database, s3):
    """Two seconds against ten minutes: the timeout, not the machine's load, decides."""
    with postgres.connect("totesys_db", statement_timeout=timedelta(seconds=2)) as conn:
        conn.execute("CREATE TABLE slow (slow_id int PRIMARY KEY, last_updated timestamp)")
        conn.execute("CREATE VIEW slow_v AS SELECT s.*, (SELECT 1 FROM pg_sleep(600)) AS z FROM slow s")
        conn.execute("INSERT INTO slow VALUES (1, %s)", (datetime(2024, 3, 5, 19, 58),))
        conn.commit()
        spec = TableSpec("slow_v", "slow_id", "last_updated")
        columns = tables.catalog_columns(conn, spec)
        with pytest.raises(SourceUnavailable, match="'slow_v' was cancelled by statement_timeout"):
            extract.extract_table(
                conn, s3, BUCKET, spec, columns, windows.extract_window(T1 - timedelta(minutes=3), T1, LAG)
            )


def make_numbered_table(db, rows: int) -> TableSpec:
    """`numbered`: `rows` rows of a bigint, a numeric(12, 2) and a text, all in window T1 - 2 min."""
    db.execute(
        "CREATE TABLE numbered (numbered_id bigint PRIMARY KEY, price numeric(12, 2), label text, "
        "last_updated timestamp NOT NULL)"
    )
    db.execute(
        "INSERT INTO numbered SELECT i, i / 100.0, 'row ' || i, %s FROM generate_series(1, %s) AS i",
        ((T1 - timedelta(minutes=2)).replace(tzinfo=None), rows),
    )
    db.commit()
    return TableSpec("numbered", "numbered_id", "last_updated")


@pytest.fixture
def small_row_groups(monkeypatch):
    """Row groups of ~64 KiB from CSV blocks of 64 KiB, so a few thousand rows make many of each."""
    monkeypatch.setattr(extract, "CSV_BLOCK_SIZE", 64 * 1024)
    monkeypatch.setattr(extract, "ROW_GROUP_BYTES", 64 * 1024)


class FailingUploads:
    """A real (moto) S3 client whose `fail_at`-th upload_part fails as S3 would (a 503)."""

    def __init__(self, s3, fail_at: int):
        self._s3, self._fail_at, self.parts = s3, fail_at, 0

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def upload_part(self, **kwargs):
        self.parts += 1
        if self.parts == self._fail_at:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "UploadPart"
            )
        return self._s3.upload_part(**kwargs)


def test_an_upload_failing_mid_extract_fails_it_and_leaves_no_object_or_parts(db, s3, small_row_groups):
    """S3 refuses the second part: the extract raises S3's error, no object appears and the
    multipart upload is aborted (no parts billed)."""
    spec = make_numbered_table(db, 20_000)
    failing = FailingUploads(s3, fail_at=2)
    window = windows.extract_window(T1 - timedelta(minutes=3), T1, LAG)
    with pytest.raises(Exception, match="SlowDown"):
        extract.extract_table(
            db, failing, BUCKET, spec, tables.catalog_columns(db, spec), window, part_size=32 * 1024
        )
    assert failing.parts >= 2
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


def test_a_row_failing_to_decode_mid_extract_fails_it_and_leaves_no_object_or_parts(db, s3, small_row_groups):
    """Decoding fails after parts were uploaded (row 15,000's timestamp is 'infinity', which Arrow
    cannot hold): the error says so, the upload is aborted, and nothing is left in S3."""
    make_numbered_table(db, 20_000)
    db.execute(
        "CREATE VIEW numbered_v AS SELECT numbered_id, label, CASE WHEN numbered_id = 15000 "
        "THEN 'infinity'::timestamp ELSE last_updated END AS seen, last_updated FROM numbered"
    )
    db.commit()
    spec = TableSpec("numbered_v", "numbered_id", "last_updated")
    counting = FailingUploads(s3, fail_at=0)
    window = windows.extract_window(T1 - timedelta(minutes=3), T1, LAG)
    with pytest.raises(Exception, match="infinity"):
        extract.extract_table(
            db, counting, BUCKET, spec, tables.catalog_columns(db, spec), window, part_size=32 * 1024
        )
    assert counting.parts >= 2, "the failure should come after parts were uploaded"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


# --- the DAG ---------------------------------------------------------------------------------


@pytest.fixture
def totesys_db(pg_database, warehouse_dsn):
    """ToteSys populated (connection totesys_db) and an empty warehouse (warehouse_db)."""
    with psycopg.connect(pg_database) as conn:
        totesys.create_schema(conn)
        totesys.populate(conn, scale=1, seed=1, at=T1)
        yield conn


def manifest_of(s3, dag_run) -> dict:
    key = dag_run.get_task_instance("write_manifest").xcom_pull(task_ids="write_manifest")["manifest"]
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_dag_initial_snapshot_then_delta_into_the_warehouse(totesys_db, s3, warehouse_dsn):
    """Full snapshot, then a delta: extracted (manifest, files), landed, modelled, checked,
    exported and declared. Then the delta again: nothing in the warehouse changes."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    full = run_dag("totesys_etl", T1, full_snapshot=True)
    assert full.state == "success"
    manifest = manifest_of(s3, full)
    counts = totesys.table_counts(totesys_db)
    assert {t["table"]: t["rows"] for t in manifest["tables"]} == counts
    assert manifest["window"] == ["2024-03-05T19:56:00+00:00", "2024-03-05T19:59:00+00:00"]

    changed = totesys.simulate(totesys_db, seed=9, at=T1 - timedelta(seconds=60), span=timedelta(minutes=3))
    delta = run_dag("totesys_etl", T1 + timedelta(minutes=3))
    assert delta.state == "success"
    manifest = manifest_of(s3, delta)
    rows = {t["table"]: t["rows"] for t in manifest["tables"]}
    assert rows["sales_order"] == changed["sales_order"] and rows["payment"] == changed["payment"]
    assert 0 < rows["counterparty"] <= changed["counterparty"]
    assert rows["address"] == 0
    [address] = [t for t in manifest["tables"] if t["table"] == "address"]
    assert address["key"] is None, "an empty delta is recorded in the manifest, with no file"
    [sales] = [t for t in manifest["tables"] if t["table"] == "sales_order"]
    assert sales["key"] == "sales_order/2024/03/05/2002/sales_order-20240305T195900Z-20240305T200200Z.parquet"
    assert sales["schema"]["unit_price"] == "decimal128(10, 2)"
    assert len(read_rows(s3, sales["key"])) == changed["sales_order"]
    assert all(s == "success" for states in task_states(delta).values() for s in states), task_states(delta)

    source = totesys.table_counts(totesys_db)
    star = star_rows(warehouse_dsn)
    dims = {"dim_staff": "staff", "dim_location": "address", "dim_currency": "currency", "dim_design": "design",
            "dim_counterparty": "counterparty", "dim_payment_type": "payment_type", "dim_transaction": "transaction"}  # fmt: skip
    assert {d: len(star[d]) for d in dims} == {d: source[t] for d, t in dims.items()}
    # One fact row per version: every order once from the snapshot, plus the delta's new versions.
    assert len(star["fact_sales_order"]) == source["sales_order"]  # simulate only adds sales orders
    assert len(star["fact_payment"]) == source["payment"]
    with psycopg.connect(warehouse_dsn) as conn:  # the current version of every ToteSys sales order
        current = conn.execute(
            "SELECT sales_order_id, units_sold, last_updated FROM staging.sales_order ORDER BY 1"
        ).fetchall()
    assert (
        current
        == totesys_db.execute(
            "SELECT sales_order_id, units_sold, last_updated FROM sales_order ORDER BY 1"
        ).fetchall()
    )
    assert changed["sales_order"] > 0

    with create_session() as session:
        [event] = [
            e
            for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == delta.run_id).all()
            if e.asset.name == "warehouse"
        ]
    assert event.extra["rows"] == {t: len(rows) for t, rows in star.items()}
    exported = s3.list_objects_v2(Bucket="conveyor-local-processed").get("Contents", [])
    assert any(o["Key"].startswith("fact_sales_order/2024/03/05/2002/") for o in exported)

    again = run_dag("totesys_etl", T1 + timedelta(minutes=3))
    assert again.state == "success"
    assert star_rows(warehouse_dsn) == star


def star_rows(warehouse_dsn) -> dict[str, list[tuple]]:
    from conveyor.totesys import star

    with psycopg.connect(warehouse_dsn) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in star.STAR}


def test_dag_bad_config_fails_without_retry(totesys_db, s3, monkeypatch):
    config = json.loads((ROOT / "include/config/totesys_tables.json").read_text())
    config["tables"][0]["cursor"] = "last_changed"
    s3.put_object(Bucket=BUCKET, Key="config/tables.json", Body=json.dumps(config).encode())
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_TABLES_CONFIG", f"s3://{BUCKET}/config/tables.json")
    dag_run = run_dag("totesys_etl", T1)
    assert dag_run.state == "failed"
    [ti] = [t for t in dag_run.get_task_instances() if t.task_id == "tables_to_extract"]
    assert (ti.state, ti.try_number) == ("failed", 1)


def use_config(s3, monkeypatch, change) -> None:
    """The shipped table config, changed by `change(tables: list[dict])`, as the Variable."""
    config = json.loads((ROOT / "include/config/totesys_tables.json").read_text())
    change(config["tables"])
    s3.put_object(Bucket=BUCKET, Key="config/tables.json", Body=json.dumps(config).encode())
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_TABLES_CONFIG", f"s3://{BUCKET}/config/tables.json")


def _without(name):
    return lambda tables: tables.remove(next(t for t in tables if t["name"] == name))


def _set(name, **fields):
    return lambda tables: next(t for t in tables if t["name"] == name).update(fields)


STAFF_COLUMNS = ["staff_id", "first_name", "last_name", "department_id", "created_at", "last_updated"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without("department"), "table 'department' is missing: dim_staff is built from it"),
        (
            _set("sales_order", cursor="created_at"),
            "table 'sales_order': field 'cursor': 'created_at' only moves when a row is inserted",
        ),
        (
            _set("staff", columns=STAFF_COLUMNS),
            "table 'staff': columns email_address are not extracted; dim_staff needs them",
        ),
        (_set("address", primary_key="phone"), "table 'address': primary_key is 'phone'"),
    ],
    ids=["a table removed", "a created_at cursor", "a column left out", "another key"],
)
def test_dag_refuses_a_table_config_that_would_starve_the_star_before_any_extract(
    totesys_db, s3, aws, monkeypatch, change, message
):
    use_config(s3, monkeypatch, change)
    dag_run = run_dag("totesys_etl", T1)
    assert dag_run.state == "failed"
    [ti] = [t for t in dag_run.get_task_instances() if t.task_id == "tables_to_extract"]
    assert (ti.state, ti.try_number) == ("failed", 1), "a config problem is not retried"
    assert task_states(dag_run)["extract_table"] == ["upstream_failed"]
    extracted = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert extracted == ["config/tables.json"], "nothing was extracted"
    [alert] = [  # what on-call reads: the failure alert names the table and why
        json.loads(e["Message"])
        for e in read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])
        if "tables_to_extract" in e["Subject"]
    ]
    assert message in alert["error"], alert["error"]


def test_dag_lands_a_table_the_config_adds_and_models_what_it_knows(
    totesys_db, s3, monkeypatch, warehouse_dsn
):
    """A table added to the config (the star does not model it) is extracted and landed: its
    staging tables are made from its columns; the star is built as without it."""
    totesys_db.execute(
        "CREATE TABLE promotion (promotion_id serial PRIMARY KEY, code varchar(20) NOT NULL, "
        "discount numeric(5, 2), starts date, created_at timestamp NOT NULL, last_updated timestamp NOT NULL)"
    )
    stamp = T1.replace(tzinfo=None) - timedelta(minutes=2)
    totesys_db.execute(
        "INSERT INTO promotion (code, discount, starts, created_at, last_updated) "
        "VALUES ('SPRING', 12.50, '2024-03-20', %s, %s), ('VIP', NULL, NULL, %s, %s)",
        (stamp,) * 4,
    )
    totesys_db.commit()
    use_config(
        s3,
        monkeypatch,
        lambda tables: tables.append(
            {"name": "promotion", "primary_key": "promotion_id", "cursor": "last_updated"}
        ),
    )
    dag_run = run_dag("totesys_etl", T1, full_snapshot=True)
    assert dag_run.state == "success", task_states(dag_run)
    with psycopg.connect(warehouse_dsn) as conn:
        landed = conn.execute(
            "SELECT promotion_id, code, discount, starts FROM staging.promotion ORDER BY 1"
        ).fetchall()
        types = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'staging' AND table_name = 'promotion_landed' ORDER BY ordinal_position"
        ).fetchall()
    assert landed == [(1, "SPRING", Decimal("12.50"), datetime(2024, 3, 20).date()), (2, "VIP", None, None)]
    assert types == [
        ("promotion_id", "integer"),
        ("code", "text"),
        ("discount", "numeric"),
        ("starts", "date"),
        ("created_at", "timestamp without time zone"),
        ("last_updated", "timestamp without time zone"),
        ("window_name", "text"),
    ]
    counts = totesys.table_counts(totesys_db)
    assert len(star_rows(warehouse_dsn)["dim_staff"]) == counts["staff"]


def test_dag_with_the_database_down_fails_the_extract(s3, monkeypatch, tmp_path, no_retries):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOTESYS_DB",
        json.dumps(
            {"conn_type": "postgres", "host": str(tmp_path), "port": 5999, "login": "x", "schema": "totesys"}
        ),
    )
    dag_run = run_dag("totesys_etl", T1)
    assert dag_run.state == "failed"
    assert task_states(dag_run)["tables_to_extract"] == ["failed"]


# --- scheduled runs, pauses, old intervals ---------------------------------------------------


def _scheduled_run(*, dag, logical_date, data_interval, run_after, conf, start_date, session, **_):
    """dag.test()'s get_or_create_dagrun, creating the run as the scheduler does: `scheduled`."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    existing = session.scalar(
        select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date)
    )
    if existing:  # as dag.test() does: a run for the same logical date is replaced
        session.delete(existing)
        session.commit()
    return dag.create_dagrun(
        run_id=DagRun.generate_run_id(
            run_type=DagRunType.SCHEDULED, logical_date=logical_date, run_after=run_after
        ),
        logical_date=logical_date,
        data_interval=data_interval,
        run_after=run_after,
        conf=conf,
        run_type=DagRunType.SCHEDULED,
        state="running",
        triggered_by=DagRunTriggeredByType.TIMETABLE,
        start_date=start_date,
        session=session,
    )


def run_scheduled(dag_id: str, logical_date: datetime):
    """A run through dag.test() (tasks, XCom, metadata DB as usual) that is `scheduled`, as the
    scheduler's runs are: dag.test() itself always creates manual runs, and the run type is what
    decides the window."""
    from unittest import mock

    with mock.patch("airflow.models.dagrun.get_or_create_dagrun", _scheduled_run):
        return run_dag(dag_id, logical_date)


def _touch(db, sales_order_id: int, at: datetime) -> tuple[int, datetime]:
    naive = at.astimezone(UTC).replace(tzinfo=None)
    db.execute(
        "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s WHERE sales_order_id = %s",
        (naive, sales_order_id),
    )
    db.commit()
    return sales_order_id, naive


def _sales_rows(s3, dag_run) -> list[tuple[int, datetime]]:
    [sales] = [t for t in manifest_of(s3, dag_run)["tables"] if t["table"] == "sales_order"]
    return (
        [(r["sales_order_id"], r["last_updated"]) for r in read_rows(s3, sales["key"])]
        if sales["key"]
        else []
    )


def _exported(s3, dag_run, table: str) -> list[dict]:
    """The rows a run exported of a star table (from its export_star result)."""
    [entry] = [
        e
        for e in dag_run.get_task_instance("export_star").xcom_pull(task_ids="export_star")
        if e["table"] == table
    ]
    if not entry["key"]:
        return []
    body = s3.get_object(Bucket=PROCESSED, Key=entry["key"])["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pylist()


def test_a_scheduled_run_that_fails_at_export_strands_nothing(totesys_db, s3, no_retries):
    """A scheduled run lands and models its window, then its export fails (the processed bucket
    is unreachable): the watermark stays. The next scheduled run, the bucket back, widens over
    the failed window and exports every row the failed run modelled, as well as its own."""
    at = lambda minutes, seconds=0: T1 + timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    assert run_scheduled("totesys_etl", at(0)).state == "success"  # the first: a full snapshot
    stranded = _touch(totesys_db, 2, at(1))  # in the next window, [19:59, 20:02)
    totesys_db.execute(
        "UPDATE staff SET email_address = 'moved@example.com', last_updated = %s WHERE staff_id = 1",
        (stranded[1],),
    )
    totesys_db.commit()
    delete_bucket(s3, PROCESSED)
    failed = run_scheduled("totesys_etl", at(3))
    assert failed.state == "failed"
    states = task_states(failed)
    assert states["model_facts"] == ["success"] and states["export_star"] == ["failed"], states
    assert windows.read_watermark(s3, BUCKET, "totesys_etl") == at(-1), "a failed run leaves the watermark"

    s3.create_bucket(Bucket=PROCESSED, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    own = _touch(totesys_db, 3, at(4))  # in the next run's own window, [20:02, 20:05)
    recovered = run_scheduled("totesys_etl", at(6))
    assert recovered.state == "success", task_states(recovered)
    assert manifest_of(s3, recovered)["window"] == ["2024-03-05T19:59:00+00:00", "2024-03-05T20:05:00+00:00"]
    facts = {
        (r["sales_order_id"], r["last_updated_date"], r["last_updated_time"])
        for r in _exported(s3, recovered, "fact_sales_order")
    }
    assert facts == {(i, t.date(), t.time()) for i, t in (stranded, own)}
    assert [(r["staff_id"], r["email_address"]) for r in _exported(s3, recovered, "dim_staff")] == [
        (1, "moved@example.com")
    ]
    assert windows.read_watermark(s3, BUCKET, "totesys_etl") == at(5)


def test_scheduled_manual_and_old_runs_take_the_windows_they_should(totesys_db, s3):
    """The first scheduled run (t0, no watermark yet) takes a full snapshot: the warehouse needs
    its dimensions. Then scheduled runs at t1, a pause (catchup=False: the scheduler skips t2-t4),
    then t5: every row updated during the pause arrives exactly once. A manual run then takes
    exactly its own interval and leaves the watermark alone; and an interval before any start
    date runs like any other."""
    at = lambda minutes, seconds=0: T1 + timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    every_order = totesys_db.execute("SELECT count(*) FROM sales_order").fetchone()[0]
    t0 = run_scheduled("totesys_etl", at(0))
    updates = [_touch(totesys_db, 2, at(1))]  # window of t1: [19:59, 20:02)
    t1 = run_scheduled("totesys_etl", at(3))
    # Paused: the intervals ending 20:06, 20:09, 20:12 and 20:15 never run.
    updates += [_touch(totesys_db, 3, at(3)), _touch(totesys_db, 4, at(7)), _touch(totesys_db, 5, at(13, 59))]
    updates.append(_touch(totesys_db, 6, at(15)))  # t5's own window: [20:14, 20:17)
    t5 = run_scheduled("totesys_etl", at(18))

    assert [r.state for r in (t0, t1, t5)] == ["success"] * 3
    assert [r.run_type for r in (t0, t1, t5)] == ["scheduled"] * 3
    first = manifest_of(s3, t0)
    assert all(t["full_snapshot"] for t in first["tables"]), "the first scheduled run takes everything"
    assert len(_sales_rows(s3, t0)) == every_order
    assert manifest_of(s3, t1)["window"] == ["2024-03-05T19:59:00+00:00", "2024-03-05T20:02:00+00:00"]
    assert not any(t["full_snapshot"] for t in manifest_of(s3, t1)["tables"])
    assert manifest_of(s3, t5)["window"] == ["2024-03-05T20:02:00+00:00", "2024-03-05T20:17:00+00:00"]
    extracted = _sales_rows(s3, t1) + _sales_rows(s3, t5)
    assert sorted(extracted) == sorted(updates), "each update once: none lost in the pause, none twice"
    assert windows.read_watermark(s3, BUCKET, "totesys_etl") == at(17)

    touched = _touch(totesys_db, 7, at(4))
    manual = run_dag("totesys_etl", at(6))  # interval [20:03, 20:06)
    assert manual.state == "success"
    assert manifest_of(s3, manual)["window"] == ["2024-03-05T20:02:00+00:00", "2024-03-05T20:05:00+00:00"]
    # Exactly its window's rows: the new one, and one t5 took already (a harmless overlap).
    assert sorted(_sales_rows(s3, manual)) == sorted([updates[1], touched])
    assert windows.read_watermark(s3, BUCKET, "totesys_etl") == at(17), "a manual run leaves the watermark"

    # `airflow dags test totesys_etl 2021-06-01T00:30:00+00:00` used to "succeed" running no task.
    old = datetime(2021, 6, 1, 0, 30, tzinfo=UTC)
    touched = _touch(totesys_db, 8, old - timedelta(minutes=2, seconds=30))  # in [00:26, 00:29)
    dag_run = run_dag("totesys_etl", old)
    assert dag_run.state == "success"
    assert {"plan_window", "extract_table", "land_table", "model_facts", "declare_warehouse"} <= set(
        task_states(dag_run)
    )
    assert all(state == "success" for states in task_states(dag_run).values() for state in states)
    assert _sales_rows(s3, dag_run) == [touched]
