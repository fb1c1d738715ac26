"""Schema drift on a real Postgres: the catalog a table has, what changed between two of its
shapes (each change made by real DDL on the ToteSys schema), and the policy's decisions."""

from __future__ import annotations

import psycopg
import pytest

from conveyor.config import ConfigError
from conveyor.totesys import drift
from conveyor.totesys.tables import TableSpec
from conveyor_local import totesys_data

pytestmark = pytest.mark.integration

ADDRESS = TableSpec("address", "address_id", "last_updated")


@pytest.fixture
def db(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        totesys_data.create_schema(conn)
        yield conn


def changes_after(db, spec, *ddl) -> list[tuple]:
    before = drift.source_schema(db, spec)
    for statement in ddl:
        db.execute(statement)
    after = drift.source_schema(db, spec)
    assert drift.SourceSchema.from_dict(after.to_dict()) == after  # it round-trips through JSON
    return [(c.column, c.kind, c.old, c.new, c.retype) for c in drift.compare(before, after)]


def test_the_catalog_gives_exact_types_nullability_and_the_key(db):
    schema = drift.source_schema(db, TableSpec("sales_order", "sales_order_id", "last_updated"))
    columns = {c.name: (c.type, c.nullable) for c in schema.columns}
    assert schema.primary_key == ("sales_order_id",)
    assert columns["sales_order_id"] == ("integer", False)
    assert columns["unit_price"] == ("numeric(10,2)", False)
    assert columns["last_updated"] == ("timestamp without time zone", False)
    assert next(iter(columns)) == "sales_order_id", "in the table's column order"
    staff = drift.source_schema(
        db, TableSpec("staff", "staff_id", "last_updated", ("staff_id", "last_updated"))
    )
    assert [c.name for c in staff.columns] == ["staff_id", "last_updated"], "only the configured columns"
    with pytest.raises(ConfigError, match="'nope': no such table"):
        drift.source_schema(db, TableSpec("nope", "id", "last_updated"))


def test_nothing_changed_is_no_change(db):
    assert changes_after(db, ADDRESS) == []


def test_each_change_kind_is_named_with_old_and_new(db):
    assert changes_after(
        db,
        ADDRESS,
        "ALTER TABLE address ADD COLUMN region varchar(40)",
        "ALTER TABLE address DROP COLUMN district",
        "ALTER TABLE address ALTER COLUMN address_id TYPE bigint",
        "ALTER TABLE address ALTER COLUMN phone DROP NOT NULL",
    ) == [
        ("address_id", "retyped", "integer", "bigint", "widening"),
        ("phone", "nullability", "NOT NULL", "NULL", None),
        ("region", "added", None, "character varying(40)", None),
        ("district", "dropped", "character varying(100)", None, None),
    ]


def test_a_primary_key_change_is_named(db):
    assert changes_after(
        db,
        ADDRESS,
        "ALTER TABLE address DROP CONSTRAINT address_pkey CASCADE",
        "ALTER TABLE address ADD PRIMARY KEY (address_id, created_at)",
    ) == [("address_id, created_at", "primary_key", "address_id", "address_id, created_at", None)]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("integer", "bigint", "widening"),
        ("smallint", "integer", "widening"),
        ("bigint", "integer", "narrowing"),
        ("numeric(10,2)", "numeric(12,2)", "widening"),
        ("numeric(10,2)", "numeric(12,4)", "widening"),
        ("numeric(10,2)", "numeric(10,3)", "incompatible"),  # a digit moves from the integer part
        ("numeric(10,2)", "numeric(12,1)", "incompatible"),  # 1.25 would be rounded
        ("numeric(10,2)", "numeric", "widening"),
        ("integer", "numeric(12,2)", "widening"),
        ("integer", "numeric(8,0)", "narrowing"),
        ("varchar(20)", "varchar(40)", "widening"),
        ("varchar(40)", "varchar(20)", "narrowing"),
        ("varchar(20)", "text", "widening"),
        ("text", "varchar(20)", "narrowing"),
        ("varchar(20)", "char(40)", "incompatible"),
        ("timestamp", "timestamptz", "widening"),
        ("timestamptz", "timestamp", "narrowing"),
        ("timestamp", "timestamp(3)", "narrowing"),
        ("real", "double precision", "widening"),
        ("integer", "text", "incompatible"),
        ("text", "integer", "incompatible"),
        ("date", "timestamp", "incompatible"),
    ],
)
def test_retypes_made_by_real_ddl_are_classified(db, old, new, kind):
    """Each retype made on a real table (USING casts where Postgres needs one), so the types compared
    are exactly the ones format_type() gives."""
    spec = TableSpec("probe", "id", "last_updated")
    db.execute(f"CREATE TABLE probe (id integer PRIMARY KEY, v {old}, last_updated timestamp)")
    [(column, change, before, after, retype)] = changes_after(
        db, spec, f"ALTER TABLE probe ALTER COLUMN v TYPE {new} USING NULL"
    )
    assert (column, change, retype) == ("v", "retyped", kind), (before, after)


POLICY = drift.DEFAULT_POLICY


def decisions(db, *ddl, policy=POLICY) -> list[tuple]:
    before = drift.source_schema(db, ADDRESS)
    for statement in ddl:
        db.execute(statement)
    changes = drift.compare(before, drift.source_schema(db, ADDRESS))
    made = drift.plan(changes, policy, used=drift.used_columns("address"), cursor="last_updated")
    return [(d.change.column, d.action, d.alter, d.warning) for d in made.decisions], made


def test_the_default_policy_carries_additions_and_widenings_and_fails_a_dropped_used_column(db):
    actions, made = decisions(
        db,
        "ALTER TABLE address ADD COLUMN region text",
        "ALTER TABLE address ALTER COLUMN address_id TYPE bigint",
        "ALTER TABLE address DROP COLUMN district",
    )
    assert actions == [
        ("address_id", "carry", "type", False),
        ("region", "carry", "add", False),
        ("district", "fail", None, False),
    ]
    message = made.failure_message()
    assert "address.district: dropped (character varying(100) → -)" in message
    assert "a star model reads it" in message and "docs/runbook.md" in message


def test_a_dropped_unused_column_is_carried_with_a_warning_and_a_policy_can_refuse_it(db):
    db.execute("ALTER TABLE address ADD COLUMN notes text")
    actions, made = decisions(db, "ALTER TABLE address DROP COLUMN notes")
    assert actions == [("notes", "carry", None, True)] and made.failures == []
    db.execute("ALTER TABLE address ADD COLUMN notes text")
    strict = drift.parse_policy({"dropped": "fail"}, "table 'address'")
    actions, made = decisions(db, "ALTER TABLE address DROP COLUMN notes", policy=strict)
    assert actions == [("notes", "fail", None, False)]
    assert "drift policy says dropped: fail" in made.failure_message()


def test_a_key_change_an_incompatible_retype_and_a_dropped_cursor_always_fail(db):
    everything_carried = {kind: "carry" for kind in drift.DEFAULT_POLICY}
    actions, _ = decisions(
        db,
        "ALTER TABLE address ALTER COLUMN phone TYPE integer USING NULL",
        "ALTER TABLE address DROP CONSTRAINT address_pkey CASCADE",
        "ALTER TABLE address ADD PRIMARY KEY (address_id, created_at)",
        "ALTER TABLE address DROP COLUMN last_updated",
        policy=everything_carried,
    )
    assert [(c, a) for c, a, _, _ in actions] == [
        ("phone", "fail"),
        ("last_updated", "fail"),
        ("address_id, created_at", "fail"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("carry", "table 'address': field 'drift' must be an object"),
        ({"renamed": "carry"}, "table 'address': field 'drift.renamed': no such change kind"),
        ({"added": "ignore"}, "table 'address': field 'drift.added': 'ignore' is not one of carry, fail"),
    ],
)
def test_a_bad_policy_names_the_table_and_field(value, message):
    with pytest.raises(ConfigError, match=message):
        drift.parse_policy(value, "table 'address'")


def test_the_tables_config_carries_a_policy_per_table_and_refuses_a_bad_one():
    from conveyor.totesys.tables import parse_tables_config

    text = '{"tables": [{"name": "address", "primary_key": "address_id", "cursor": "last_updated", %s}]}'
    [spec] = parse_tables_config(text % '"drift": {"added": "fail"}', "tables.json")
    assert spec.drift_policy() == {**drift.DEFAULT_POLICY, "added": "fail"}
    assert TableSpec.from_dict(spec.to_dict()) == spec
    [plain] = parse_tables_config(text % '"columns": null', "tables.json")
    assert plain.drift_policy() == drift.DEFAULT_POLICY
    with pytest.raises(ConfigError, match=r"tables.json: table 'address': field 'drift.added': 'yes' is not"):
        parse_tables_config(text % '"drift": {"added": "yes"}', "tables.json")
