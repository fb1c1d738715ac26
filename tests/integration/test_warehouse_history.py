"""The warehouse model over a long landed history, on real Postgres (issue 19, item 1): a window's
model reads the versions of the keys it landed, not the whole of staging.<table>_landed, and the
newest-version views still pick what `DISTINCT ON (key) ... ORDER BY key, last_updated DESC,
window_name DESC` picks.

The history is generated straight into the landing tables (conveyor_local.bench_warehouse, the
bench's own generator), not through the pipeline: only its size matters here."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from conveyor import paths
from conveyor.totesys import migrations, star, warehouse, windows
from conveyor_local import bench_warehouse

pytestmark = pytest.mark.integration

HISTORY = 200_000
WINDOW = windows.Window(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, 0, 3, tzinfo=UTC))
PRIMARY_KEYS = {name: source[0] for name, source in star.MODEL_SOURCES.items()}


@pytest.fixture
def warehouse_with_history(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        warehouse.load_currency_names(conn)
        keys = bench_warehouse.fill_history(conn, HISTORY)
        conn.commit()
        assert bench_warehouse.land_small_window(conn, keys, WINDOW) == 1_000
    return warehouse_dsn


def _landed_rows_read(plan: dict) -> tuple[int, list[str]]:
    """Rows the plan read from staging.*_landed (returned or filtered out, over every loop), and
    the *_landed tables it read by sequential scan."""
    rows, scans = 0, []
    if plan.get("Relation Name", "").endswith("_landed"):
        read = (
            plan["Actual Rows"]
            + plan.get("Rows Removed by Filter", 0)
            + plan.get("Rows Removed by Index Recheck", 0)
        )
        rows += read * plan["Actual Loops"]
        if plan["Node Type"] == "Seq Scan":
            scans.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        child_rows, child_scans = _landed_rows_read(child)
        rows += child_rows
        scans += child_scans
    return rows, scans


def test_a_windows_model_reads_the_history_of_the_keys_it_landed_not_all_of_it(warehouse_with_history):
    """Every model statement, run as the model runs them (dimensions, then facts), under
    EXPLAIN ANALYZE: none reads a landing table by sequential scan, and all of them together read
    a few rows per row the window landed, not the 200,000 rows of history."""
    read, report = {}, {}
    with psycopg.connect(warehouse_with_history) as conn:
        # Whether the statements CAN be driven from the window's keys, whatever the table sizes:
        # at this test's size (tables of 200 to 64,000 rows) Postgres' default costs rightly
        # prefer a sequential scan to a few hundred random reads; past some 100,000 rows a table
        # (a year of windows is millions) it drives from the keys by itself (`make bench`,
        # --only history). With the DISTINCT ON views no such plan exists: a seq scan or a full
        # index scan of every version, sorted.
        conn.execute("SET enable_seqscan = off")
        for group in (star.DIMENSIONS, star.FACTS):
            for relative in paths.sql_files("warehouse", group):
                statement = paths.sql_path(relative).read_text()
                [[[plan]]] = conn.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + _without_comments(statement),
                    {"window": WINDOW.name},
                ).fetchall()
                read[relative], scans = _landed_rows_read(plan["Plan"])
                report[relative] = scans
            conn.commit()
        modelled = conn.execute("SELECT count(*) FROM fact_sales_order").fetchone()[0]
    assert modelled == 500  # the window's sales order versions: the statements ran
    assert {name: scans for name, scans in report.items() if scans} == {}
    # 1,000 rows landed: each needs its key's versions (5 here) and a probe for a newer one.
    assert sum(read.values()) < 10_000, read


def _distinct_on(conn, table: str) -> list[tuple]:
    """The newest version per key as migration 001 defined it: the oracle for staging.<table>."""
    key = PRIMARY_KEYS[table]
    columns = [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = format('staging.%%I', %s::text)::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
    ]
    listed = ", ".join(columns)
    return conn.execute(
        f"SELECT DISTINCT ON ({key}) {listed} FROM staging.{table}_landed "
        f"ORDER BY {key}, last_updated DESC, window_name DESC"
    ).fetchall()


def test_the_newest_version_views_pick_what_distinct_on_picked(warehouse_with_history):
    """Over the whole history and the window, every staging.<table> view holds the same rows as
    migration 001's DISTINCT ON (the window's versions are the newest of the keys it landed)."""
    with psycopg.connect(warehouse_with_history) as conn:
        for table in PRIMARY_KEYS:
            key = PRIMARY_KEYS[table]
            now = conn.execute(f"SELECT * FROM staging.{table} ORDER BY {key}").fetchall()
            assert now == _distinct_on(conn, table), table
            assert len(now) == bench_warehouse._history_keys(HISTORY)[table], table


def test_a_late_or_repeated_version_never_moves_a_row_backwards(warehouse_dsn):
    """The order that makes a rerun of an old window harmless: the later last_updated wins
    whichever window landed it last; the same version in two windows is the later window's; two
    copies of one version in one window are one row."""
    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        rows = [
            # key 1: version 2 landed by window B, then an old window A's rerun lands version 1 again
            (1, "first v2", datetime(2024, 1, 2), "20240102T000000Z-B"),
            (1, "first v1", datetime(2024, 1, 1), "20240101T000000Z-A"),
            (1, "first v1 rerun", datetime(2024, 1, 1), "20240101T000000Z-A"),
            # key 2: one version in two windows (a widened window landed it again)
            (2, "second, earlier window", datetime(2024, 1, 1), "20240101T000000Z-A"),
            (2, "second, later window", datetime(2024, 1, 1), "20240102T000000Z-B"),
            # key 3: two copies of one version in one window
            (3, "third", datetime(2024, 1, 1), "20240101T000000Z-A"),
            (3, "third", datetime(2024, 1, 1), "20240101T000000Z-A"),
        ]
        for key, name, last_updated, window in rows:
            conn.execute(
                "INSERT INTO staging.department_landed VALUES (%s, %s, NULL, NULL, %s, %s, %s)",
                (key, name, last_updated, last_updated, window),
            )
        got = conn.execute(
            "SELECT department_id, department_name FROM staging.department ORDER BY department_id"
        ).fetchall()
        assert got == [(1, "first v2"), (2, "second, later window"), (3, "third")]
        # A key asked for alone (as the model asks) gives the same row.
        assert conn.execute(
            "SELECT department_name FROM staging.department WHERE department_id = 1"
        ).fetchall() == [("first v2",)]


def _without_comments(statement: str) -> str:
    return "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))


def test_every_table_the_star_is_built_from_has_its_version_index(warehouse_dsn):
    """A source star.yml adds without a migration that indexes it would read its whole history
    on every run again: each landing table has (primary key, last_updated, window_name)."""
    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        indexed = {
            (table, tuple(columns))
            for table, columns in conn.execute(
                "SELECT c.relname, array_agg(a.attname ORDER BY k.ord)::text[] FROM pg_index AS i "
                "JOIN pg_class AS c ON c.oid = i.indrelid "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = 'staging' "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord) "
                "JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = k.attnum "
                "GROUP BY i.indexrelid, c.relname"
            )
        }
    missing = [
        table
        for table, key in PRIMARY_KEYS.items()
        if (f"{table}_landed", (key, star.MODEL_CURSOR, "window_name")) not in indexed
    ]
    assert missing == []


def test_a_table_the_config_adds_with_null_cursors_keeps_one_current_row_per_key(warehouse_dsn):
    """The view a config-added table gets (warehouse.newest_version_view): its cursor may be
    NULL; each key still has one current row, the one DISTINCT ON picked (a NULL cursor first)."""
    from conveyor.totesys.warehouse import newest_version_view

    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.execute(
            "CREATE TABLE staging.extra_landed (id int, v text, lu timestamp, window_name text NOT NULL)"
        )
        conn.execute(
            "INSERT INTO staging.extra_landed VALUES (1, 'null-w1', NULL, 'w1'), (1, 'dated-w2', '2026-01-01', 'w2'),"
            " (2, 'null-w1', NULL, 'w1'), (2, 'null-w2', NULL, 'w2'), (3, 'old', '2025-01-01', 'w3'),"
            " (3, 'new', '2026-01-01', 'w1')"
        )
        conn.execute(newest_version_view("extra", "id", "lu", ["id", "v", "lu", "window_name"]))
        current = conn.execute("SELECT id, v FROM staging.extra ORDER BY id").fetchall()
        distinct_on = conn.execute(
            "SELECT DISTINCT ON (id) id, v FROM staging.extra_landed ORDER BY id, lu DESC, window_name DESC"
        ).fetchall()
    assert current == distinct_on == [(1, "null-w1"), (2, "null-w2"), (3, "new")]


def _most_rows_of_a_node(plan: dict) -> int:
    return max(
        [
            plan["Actual Rows"] * plan["Actual Loops"],
            *(_most_rows_of_a_node(p) for p in plan.get("Plans", [])),
        ]
    )


def test_dim_date_reads_each_landed_row_once_and_keeps_the_dates_of_landed_dates(warehouse_with_history):
    """dim_date's model (a third of a 1,000,000-row window's model when it read staging.landed_dates,
    which makes one row per date column per landed row, 4,000,000 rows, then de-duplicates them):
    no step of its plan handles more rows than the window landed or than the distinct dates of
    each date column, and it inserts exactly the dates that view holds for the window."""
    window = {"window": WINDOW.name}
    date_columns = {
        "sales_order": (
            "created_at::date",
            "last_updated::date",
            "agreed_delivery_date",
            "agreed_payment_date",
        ),
        "purchase_order": (
            "created_at::date",
            "last_updated::date",
            "agreed_delivery_date",
            "agreed_payment_date",
        ),
        "payment": ("created_at::date", "last_updated::date", "payment_date"),
    }
    with psycopg.connect(warehouse_with_history) as conn:
        landed = per_column = 0
        for table, columns in date_columns.items():
            counts = ", ".join(f"count(DISTINCT {c})" for c in columns)
            row = conn.execute(
                f"SELECT count(*), {counts} FROM staging.{table}_landed WHERE window_name = %(window)s",
                window,
            ).fetchone()
            landed, per_column = landed + row[0], per_column + sum(row[1:])
        assert landed == 750  # bench_warehouse.HISTORY_TABLES: 500 + 100 + 150
        statement = paths.sql_path("warehouse", "dim_date.sql").read_text()
        [[[plan]]] = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _without_comments(statement), window
        ).fetchall()
        # One row per date column per landed row would be 4 * 600 + 3 * 150 = 2,850.
        assert _most_rows_of_a_node(plan["Plan"]) <= max(landed, per_column) < 2_850
        modelled = {
            d for (d,) in conn.execute("SELECT date_id FROM dim_date WHERE window_name = %(window)s", window)
        }
        expected = {
            d
            for (d,) in conn.execute(
                "SELECT DISTINCT date_id FROM staging.landed_dates WHERE window_name = %(window)s", window
            )
        }
    assert len(expected) > 100  # the window's orders and payments hold a few hundred dates
    assert modelled == expected
