"""Both DDLs make exactly the star that include/sql/warehouse/star.yml declares: the tables the
warehouse migrations build on a real Postgres (read back from information_schema), and the
tables snowflake/setup/060_totesys_tables.sql builds on the fake Snowflake (its
information_schema and SHOW PRIMARY KEYS), each column's name, order, type and nullability, and
each table's keys. A difference fails naming the table and the column.

What the fake Snowflake cannot show, checked otherwise or not at all: VARCHAR lengths (it reports
every VARCHAR as TEXT(16777216), as Snowflake does for an unsized one, so a sized VARCHAR would go
unnoticed here); UNIQUE constraints (SHOW UNIQUE KEYS lists none), so the facts' unique keys are
read from 060's CREATE statements with sqlglot instead.
"""

from __future__ import annotations

import psycopg
import pytest
import sqlglot
from sqlglot import exp

from conveyor import paths, snowflake
from conveyor.resources import ResourceNames
from conveyor.totesys import migrations, star
from conveyor_local import fake_snowflake

pytestmark = pytest.mark.integration

SETUP_FILE = "setup/060_totesys_tables.sql"


# --- the comparison --------------------------------------------------------------------------
# found: {table: {"columns": [(name, type, not_null)], "primary_key": (...), "unique": [(...)]}}


def expected_postgres(tables: dict[str, star.Table]) -> dict:
    return {
        name: {
            "columns": [(c.name, c.type, c.not_null) for c in t.columns],
            "primary_key": t.primary_key,
            "unique": [t.key] if t.key != t.primary_key else [],
        }
        for name, t in tables.items()
    }


def expected_snowflake(tables: dict[str, star.Table]) -> dict:
    def number(sf_type: str) -> str:  # INTEGER is Snowflake's NUMBER(38, 0)
        return "NUMBER(38, 0)" if sf_type == "INTEGER" else "TEXT" if sf_type == "VARCHAR" else sf_type

    found = {}
    for name, t in tables.items():
        found[name.upper()] = {
            "columns": [(c.name.upper(), number(c.snowflake_type), c.snowflake_not_null) for c in t.columns],
            "primary_key": tuple(k.upper() for k in t.primary_key),
            "unique": [tuple(k.upper() for k in t.key)] if t.key != t.primary_key else [],
        }
        # Staging: what COPY reads from the window's file; every column but WINDOW_NAME, nullable.
        found[f"{name.upper()}_STAGING"] = {
            "columns": [
                (c.name.upper(), number(c.snowflake_type), False)
                for c in t.columns
                if c.name != "window_name"
            ],
            "primary_key": (),
            "unique": [],
        }
    return found


def differences(expected: dict, found: dict, ddl: str) -> list[str]:
    """Every way `found` (what `ddl` built) differs from `expected` (the declaration), named."""
    problems = []
    for table, want in expected.items():
        got = found.get(table)
        if got is None:
            problems.append(f"{table}: declared in star.yml, not made by {ddl}")
            continue
        want_columns = {c[0]: c for c in want["columns"]}
        got_columns = {c[0]: c for c in got["columns"]}
        for column in want_columns.keys() - got_columns.keys():
            problems.append(f"{table}.{column}: declared in star.yml, not made by {ddl}")
        for column in got_columns.keys() - want_columns.keys():
            problems.append(f"{table}.{column}: made by {ddl}, not declared in star.yml")
        for column in want_columns.keys() & got_columns.keys():
            (_, want_type, want_not_null), (_, got_type, got_not_null) = (
                want_columns[column],
                got_columns[column],
            )
            if want_type != got_type:
                problems.append(f"{table}.{column}: star.yml says {want_type}, {ddl} made {got_type}")
            if want_not_null != got_not_null:
                problems.append(
                    f"{table}.{column}: star.yml says {'NOT NULL' if want_not_null else 'nullable'}, "
                    f"{ddl} made it {'NOT NULL' if got_not_null else 'nullable'}"
                )
        shared = [c for c in got_columns if c in want_columns]
        if [c for c in want_columns if c in got_columns] != shared:
            problems.append(f"{table}: columns in another order than star.yml's: {shared}")
        for key in ("primary_key", "unique"):
            if want[key] != got[key]:
                problems.append(f"{table}: {key} is {got[key]} in {ddl}, {want[key]} in star.yml")
    return problems


# --- Postgres: what the migrations build -----------------------------------------------------


def postgres_star(conn) -> dict:
    found = {}
    for table, column, data_type, precision, scale, nullable, default in conn.execute(
        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable, "
        "column_default FROM information_schema.columns WHERE table_schema = 'public' "
        "ORDER BY table_name, ordinal_position"
    ):
        if data_type == "numeric":
            data_type = f"numeric({precision}, {scale})"
        elif data_type == "integer" and str(default or "").startswith("nextval("):
            data_type = "serial"
        data_type = {"time without time zone": "time"}.get(data_type, data_type)
        entry = found.setdefault(table, {"columns": [], "primary_key": (), "unique": []})
        entry["columns"].append((column, data_type, nullable == "NO"))
    for table, kind, columns in conn.execute(
        "SELECT tc.table_name, tc.constraint_type, array_agg(k.column_name::text ORDER BY k.ordinal_position) "
        "FROM information_schema.table_constraints AS tc "
        "JOIN information_schema.key_column_usage AS k USING (constraint_schema, constraint_name) "
        "WHERE tc.table_schema = 'public' AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') "
        "GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type"
    ):
        if kind == "PRIMARY KEY":
            found[table]["primary_key"] = tuple(columns)
        else:
            found[table]["unique"].append(tuple(columns))
    return found


@pytest.fixture
def migrated(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        yield postgres_star(conn)


def test_the_migrations_make_the_declared_star_on_postgres(migrated):
    assert differences(expected_postgres(star.TABLES), migrated, "the migrations") == []


def test_a_column_declared_but_not_migrated_fails_naming_it(migrated):
    """The checklist's claim: a column added to star.yml without its migration is named (and so is
    a type changed in one place only)."""
    declaration = paths.sql_path(*star.DECLARATION).read_text()
    edited = declaration.replace(
        "      phone: text NOT NULL\n", "      phone: text NOT NULL\n      phone_extension: text\n", 1
    ).replace("      unit_price: numeric(10, 2) NOT NULL", "      unit_price: numeric(12, 2) NOT NULL", 1)
    assert differences(expected_postgres(star.parse(edited)[0]), migrated, "the migrations") == [
        "dim_location.phone_extension: declared in star.yml, not made by the migrations",
        "fact_sales_order.unit_price: star.yml says numeric(12, 2), the migrations made numeric(10, 2)",
    ]


def test_each_star_column_that_holds_a_source_column_holds_its_landed_type(warehouse_dsn):
    """star.yml's `holds` (what a widened source column widens, conveyor.totesys.drift), against
    the migrated warehouse: each star column's type holds every value its landing column can have,
    so a lineage pointing at the wrong column (text into an integer) is named."""
    from conveyor.totesys import drift

    def pg_type(conn, relation: str, column: str) -> str:
        [(found,)] = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = %s",
            (relation, column),
        ).fetchall()
        return found

    with psycopg.connect(warehouse_dsn) as conn:
        migrations.migrate(conn)
        wrong = [
            f"{table}.{column} ({held}) holds {source}.{source_column} ({landed})"
            for table, declared in star.TABLES.items()
            for column, (source, source_column) in declared.holds.items()
            if drift.classify(
                landed := pg_type(conn, f"staging.{source}_landed", source_column),
                held := pg_type(conn, table, column),
            )
            != "widening"
        ]
    assert wrong == []
    assert [t for t, declared in star.TABLES.items() if not declared.holds] == ["dim_date"], (
        "every star table but dim_date (derived dates) holds source columns"
    )


# --- Snowflake: what 060 builds on the fake -------------------------------------------------


def snowflake_star(cursor) -> dict:
    found = {}
    for table, column, data_type, precision, scale, nullable in cursor.execute(
        "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, is_nullable "
        "FROM CONVEYOR.INFORMATION_SCHEMA.COLUMNS WHERE table_schema = 'TOTESYS' "
        "ORDER BY table_name, ordinal_position"
    ).fetchall():
        if data_type == "NUMBER":
            data_type = f"NUMBER({precision}, {scale})"
        entry = found.setdefault(table, {"columns": [], "primary_key": (), "unique": []})
        entry["columns"].append((column, data_type, nullable == "NO"))
    keys = {}
    for row in cursor.execute("SHOW PRIMARY KEYS IN SCHEMA CONVEYOR.TOTESYS").fetchall():
        keys.setdefault(row[3], []).append((row[5], row[4]))  # table: (key_sequence, column)
    for table, columns in keys.items():
        found[table]["primary_key"] = tuple(c for _, c in sorted(columns))
    # The fake lists no UNIQUE keys: read them from 060 itself.
    text = snowflake.render(SETUP_FILE, snowflake.SnowflakeSettings().template_variables(ResourceNames()))
    for statement in sqlglot.parse(text, read="snowflake"):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            table = statement.this.this.name.upper()
            for unique in statement.find_all(exp.UniqueColumnConstraint):
                if isinstance(unique.this, exp.Schema):  # a table constraint UNIQUE (a, b, c)
                    found[table]["unique"].append(tuple(c.name.upper() for c in unique.this.expressions))
    return found


@pytest.fixture
def snowflake_setup(snowflake_conn):
    conn = snowflake_conn()
    fake_snowflake.apply_setup(conn)
    yield snowflake_star(conn.cursor())
    conn.close()


def test_060_makes_the_declared_star_and_its_staging_tables_on_snowflake(snowflake_setup):
    assert differences(expected_snowflake(star.TABLES), snowflake_setup, SETUP_FILE) == []


def test_a_column_declared_but_not_in_060_fails_naming_it(snowflake_setup):
    declaration = paths.sql_path(*star.DECLARATION).read_text()
    edited = declaration.replace(
        "      phone: text NOT NULL\n", "      phone: text NOT NULL\n      phone_extension: text\n", 1
    )
    assert differences(expected_snowflake(star.parse(edited)[0]), snowflake_setup, SETUP_FILE) == [
        f"DIM_LOCATION.PHONE_EXTENSION: declared in star.yml, not made by {SETUP_FILE}",
        f"DIM_LOCATION_STAGING.PHONE_EXTENSION: declared in star.yml, not made by {SETUP_FILE}",
    ]
