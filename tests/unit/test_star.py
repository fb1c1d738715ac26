"""The star's one declaration (include/sql/warehouse/star.yml): what the code reads from it, the
files rendered from it (the Snowflake MERGEs), and the errors a bad declaration gets.
(The DDLs are checked against it on real databases: tests/integration/test_star_ddl.py.)"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from conveyor import paths, snowflake
from conveyor.totesys import star, to_snowflake
from conveyor_local import star_sql

DECLARATION = paths.sql_path(*star.DECLARATION).read_text()


def test_the_code_reads_the_star_from_its_declaration():
    assert star.STAR == star.DIMENSIONS + star.FACTS and len(star.STAR) == 11
    assert all(t.startswith("dim_") for t in star.DIMENSIONS) and all(
        t.startswith("fact_") for t in star.FACTS
    )
    assert star.STAR_KEYS["dim_staff"] == ("staff_id",)
    assert star.STAR_KEYS["fact_payment"] == ("payment_id", "last_updated_date", "last_updated_time")
    assert star.FACT_REFERENCES["fact_sales_order"]["sales_staff_id"] == ("dim_staff", "staff_id")
    source_version = star.TABLES["dim_staff"].columns[-1]
    assert (source_version.name, source_version.type, source_version.not_null) == (
        "source_version", "numeric(32, 0)", True
    )  # fmt: skip
    assert (source_version.snowflake_type, source_version.snowflake_not_null) == ("NUMBER(32, 0)", False)
    # Which star columns hold a source column's values (star.yml's holds): what a widening widens.
    assert star.holders("address", "address_line_1") == [
        ("dim_location", "address_line_1"), ("dim_counterparty", "counterparty_legal_address_line_1")
    ]  # fmt: skip
    assert star.holders("sales_order", "staff_id") == [("fact_sales_order", "sales_staff_id")]
    assert star.holders("sales_order", "last_updated") == [], "split into a date and a time: not held"
    record_id = star.TABLES["fact_payment"].columns[0]
    assert (record_id.type, record_id.snowflake_type, star.TABLES["fact_payment"].primary_key) == (
        "serial", "INTEGER", ("payment_record_id",)
    )  # fmt: skip


def test_every_merge_file_is_what_the_declaration_renders():
    """Fails while a file in include/sql/snowflake/totesys/merge/ is stale, missing or of no
    declared table: run `make star`."""
    assert star_sql.stale() == [], "run `make star`"
    assert sorted(p.stem for p in star_sql.merge_dir().glob("*.sql")) == sorted(star.STAR)


def test_the_stale_check_names_a_missing_an_edited_and_an_extra_file(tmp_path):
    merge = tmp_path / "merge"
    star_sql.write(merge)
    assert star_sql.stale(merge) == []
    (merge / "dim_staff.sql").write_text("-- edited by hand\n")
    (merge / "fact_payment.sql").unlink()
    (merge / "dim_old.sql").write_text("")
    assert star_sql.stale(merge) == [
        f"{merge}/dim_staff.sql: out of date",
        f"{merge}/fact_payment.sql: missing",
        f"{merge}/dim_old.sql: no star table 'dim_old' in star.yml",
    ]
    star_sql.write(merge)  # `make star` mends all three
    assert star_sql.stale(merge) == [] and not (merge / "dim_old.sql").exists()


def _merge(table: str) -> exp.Merge:
    names = {"db": "CONVEYOR", "window": "20240305T195900Z-20240305T200200Z"}
    [statement] = sqlglot.parse(snowflake.render(to_snowflake.merge_file(table), names), read="snowflake")
    assert isinstance(statement, exp.Merge), table
    return statement


@pytest.mark.parametrize("table", star.STAR)
def test_each_merge_matches_on_the_declared_key_and_writes_every_declared_column(table):
    declared = star.TABLES[table]
    merge = _merge(table)
    assert merge.this.name == table.upper()
    on = {c.name.lower() for c in merge.args["on"].find_all(exp.Column)}
    assert on == set(declared.key)
    [insert] = [w for w in merge.args["whens"].expressions if not w.args.get("matched")]
    inserted = [c.name.lower() for c in insert.args["then"].this.expressions]
    assert inserted == list(declared.column_names)
    updates = [w for w in merge.args["whens"].expressions if w.args.get("matched")]
    if declared.merge == "insert_new":
        assert updates == []
    else:
        [update] = updates
        condition = update.args["condition"].sql(dialect="snowflake")
        expected = (
            "WINDOW_NAME < t.WINDOW_NAME" if declared.merge == "keep_first" else "SOURCE_VERSION > COALESCE"
        )
        assert expected in condition, condition


def test_a_table_added_to_the_declaration_gets_its_merge_and_its_copy(tmp_path, monkeypatch):
    """One step, edit star.yml, then `make star`: the new table's MERGE is rendered and the COPY
    and staging clean-up list it (they loop over the declaration)."""
    region = (
        "  dim_region:\n    kind: dimension\n    built_from: [address]\n    key: [region_id]\n"
        "    merge: newest_version\n    columns:\n      region_id: integer NOT NULL\n      region_name: text\n"
        "      window_name: text NOT NULL\n      source_version: *source_version\n\n"
    )
    last = "\n# The ToteSys tables the star is built from"  # declared after the facts
    tables, sources = star.parse(DECLARATION.replace(last, "\n" + region + last[1:], 1))
    assert sources["address"][2] == ("dim_location", "dim_counterparty", "dim_region")
    assert list(tables)[8] == "dim_region", "dimensions come first"
    monkeypatch.setattr(star_sql, "TABLES", tables)
    star_sql.write(tmp_path)
    assert "MERGE INTO {{ db }}.TOTESYS.DIM_REGION" in (tmp_path / "dim_region.sql").read_text()
    names = {"db": "C", "window": "w", "partition": "p", "star_tables": tuple(tables)}
    for name in (to_snowflake.COPY_FILE, to_snowflake.CLEAR_STAGING_FILE):
        assert "C.TOTESYS.DIM_REGION_STAGING" in snowflake.render(name, names), name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    key: [staff_id]", "    key: [staf_id]"),
         r"dim_staff: key names column\(s\) \['staf_id'\] it does not declare"),
        (("      units_sold: integer NOT NULL", "      units_sold: int4 NOT NULL"),
         r"fact_sales_order.units_sold: Postgres type 'int4 NOT NULL' is not one the star uses"),
        (("      sales_staff_id: dim_staff.staff_id", "      sales_staff_id: dim_staf.staff_id"),
         r"fact_sales_order.sales_staff_id references dim_staf.staff_id, not a declared dimension column"),
        (("    merge: insert_new", "    merge: upsert"), r"fact_\w+: merge is 'upsert'; one of"),
        (("    kind: fact", "    kind: facts"), r"fact_\w+: kind is 'facts'; one of"),
        (("    merge: keep_first", "    merge: keep_first\n    keys: [date_id]"), r"dim_date: unknown field\(s\) \['keys'\]"),
        (("    built_from: [address]\n", "    built_from: [adress]\n"), r"dim_location: built_from names \['adress'\], not in sources"),
        (("  design:\n    primary_key", "  designs:\n    primary_key"), r"sources: designs builds no star table"),
        (("\nsources:\n", "\nsource:\n"), r"exactly two mappings: tables and sources"),
        (("unit_price: sales_order.unit_price", "unit_price: sales_order.unit_cost"),
         r"fact_sales_order.unit_price holds sales_order.unit_cost, not a column sources lands of sales_order"),
        (("sales_staff_id: sales_order.staff_id", "sales_staff_id: staff.staff_id"),
         r"fact_sales_order.sales_staff_id holds staff.staff_id: staff is not in its built_from"),
        (("units_sold: sales_order.units_sold", "units_sold: units_sold"),
         r"fact_sales_order.units_sold holds 'units_sold': not <table>.<column>"),
        (("phone: address.phone}", "phone: address.phone, phone_extension: address.phone}"),
         r"dim_location: holds names column\(s\) \['phone_extension'\] it does not declare"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_refused_naming_the_table_and_what(edit, message):
    old, new = edit
    assert old in DECLARATION
    with pytest.raises(star.StarDeclarationError, match=message):
        star.parse(DECLARATION.replace(old, new, 1))
