"""The ToteSys star schema as the code sees it, read from its one declaration,
include/sql/warehouse/star.yml: its tables and keys, what each fact references, how Snowflake
merges a window into each table, the ToteSys tables it is built from (MODEL_SOURCES, checked
against the table config before any extract), and which star column holds which ToteSys column's
values (`holders`: the columns a widened source column widens, conveyor.totesys.drift).

The tables themselves are made by include/sql/warehouse/migrations/ (Postgres) and
include/sql/snowflake/setup/060_totesys_tables.sql (Snowflake) and filled by the model SQL beside
the declaration; tests check both DDLs against it. Read once, at import: a file shipped in
include/, no network or database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conveyor import paths

DECLARATION = ("warehouse", "star.yml")  # under include/sql/
KINDS = ("dimension", "fact")
MERGES = ("keep_first", "newest_version", "insert_new")  # see star.yml
# Postgres type -> Snowflake type (star.yml's header); numeric(p, s) -> NUMBER(p, s).
SNOWFLAKE_TYPES = {
    "integer": "INTEGER",
    "serial": "INTEGER",
    "text": "VARCHAR",
    "date": "DATE",
    "time": "TIME",
    "boolean": "BOOLEAN",
}
_COLUMN = re.compile(r"(?P<type>[a-z]+(?:\(\d+, \d+\))?)(?P<not_null> NOT NULL)?")
_SNOWFLAKE_COLUMN = re.compile(r"(?P<type>[A-Z]+(?:\(\d+, \d+\))?)(?P<not_null> NOT NULL)?")


class StarDeclarationError(ValueError):
    """star.yml says something the code cannot use (the message names the table and what)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Postgres: integer, serial, text, date, time, boolean, numeric(p, s)
    not_null: bool
    snowflake_type: str  # INTEGER, VARCHAR, NUMBER(p, s), ...
    snowflake_not_null: bool


@dataclass(frozen=True)
class Table:
    name: str
    kind: str
    key: tuple[str, ...]
    primary_key: tuple[str, ...]
    merge: str
    columns: tuple[Column, ...]
    built_from: tuple[str, ...] = ()
    references: dict[str, tuple[str, str]] = field(default_factory=dict)
    holds: dict[str, tuple[str, str]] = field(default_factory=dict)  # column: (source table, column)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _snowflake_type(pg_type: str) -> str:
    if m := re.fullmatch(r"numeric(\(\d+, \d+\))", pg_type):
        return f"NUMBER{m[1]}"
    return SNOWFLAKE_TYPES[pg_type]


def _column(table: str, name: str, spec) -> Column:
    where = f"star.yml: {table}.{name}"
    if isinstance(spec, str):
        spec = {"postgres": spec}
    if not isinstance(spec, dict) or set(spec) - {"postgres", "snowflake"} or "postgres" not in spec:
        raise StarDeclarationError(
            f"{where}: expected '<type> [NOT NULL]' or {{postgres: ..., snowflake: ...}}"
        )
    pg = _COLUMN.fullmatch(str(spec["postgres"]))
    pg_type = pg["type"] if pg else None
    if pg_type not in SNOWFLAKE_TYPES and not (pg_type and pg_type.startswith("numeric(")):
        raise StarDeclarationError(
            f"{where}: Postgres type {spec['postgres']!r} is not one the star uses "
            f"({', '.join(SNOWFLAKE_TYPES)}, numeric(p, s); optionally NOT NULL)"
        )
    sf = _SNOWFLAKE_COLUMN.fullmatch(str(spec["snowflake"])) if "snowflake" in spec else None
    if "snowflake" in spec and not sf:
        raise StarDeclarationError(
            f"{where}: Snowflake type {spec['snowflake']!r} is not '<TYPE> [NOT NULL]'"
        )
    return Column(
        name=name,
        type=pg_type,
        not_null=bool(pg["not_null"]),
        snowflake_type=sf["type"] if sf else _snowflake_type(pg_type),
        snowflake_not_null=bool(sf["not_null"]) if sf else bool(pg["not_null"]),
    )


def _table(name: str, spec) -> Table:
    if not isinstance(spec, dict):
        raise StarDeclarationError(f"star.yml: {name} must be a mapping (kind, key, merge, columns)")
    known = {"kind", "built_from", "key", "primary_key", "merge", "references", "holds", "columns"}
    if unknown := sorted(set(spec) - known):
        raise StarDeclarationError(f"star.yml: {name}: unknown field(s) {unknown}; known: {sorted(known)}")
    if spec.get("kind") not in KINDS:
        raise StarDeclarationError(f"star.yml: {name}: kind is {spec.get('kind')!r}; one of {KINDS}")
    if spec.get("merge") not in MERGES:
        raise StarDeclarationError(f"star.yml: {name}: merge is {spec.get('merge')!r}; one of {MERGES}")
    if not isinstance(spec.get("columns"), dict) or not spec["columns"]:
        raise StarDeclarationError(f"star.yml: {name}: columns must map each column to its type")
    columns = tuple(_column(name, c, t) for c, t in spec["columns"].items())
    names = {c.name for c in columns}
    key = tuple(spec.get("key") or ())
    primary_key = tuple(spec.get("primary_key") or key)
    for what, cols in (
        ("key", key),
        ("primary_key", primary_key),
        ("references", spec.get("references") or {}),
        ("holds", spec.get("holds") or {}),
    ):
        if missing := [c for c in cols if c not in names]:
            raise StarDeclarationError(
                f"star.yml: {name}: {what} names column(s) {missing} it does not declare"
            )
    if not key:
        raise StarDeclarationError(f"star.yml: {name}: no key")
    references = {}
    for column, target in (spec.get("references") or {}).items():
        dim, _, dim_column = str(target).partition(".")
        references[column] = (dim, dim_column)
    built_from = tuple(spec.get("built_from") or ())
    if not built_from:
        raise StarDeclarationError(f"star.yml: {name}: built_from names no ToteSys table")
    holds = {}
    for column, source in (spec.get("holds") or {}).items():
        table, _, source_column = str(source).partition(".")
        if not source_column:
            raise StarDeclarationError(f"star.yml: {name}.{column} holds {source!r}: not <table>.<column>")
        holds[column] = (table, source_column)
    return Table(name, spec["kind"], key, primary_key, spec["merge"], columns, built_from, references, holds)


def _sources(doc, tables: dict[str, Table]) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    if not isinstance(doc, dict) or not doc:
        raise StarDeclarationError(
            "star.yml: sources must map each ToteSys table to its primary_key and columns"
        )
    sources = {}
    for name, spec in doc.items():
        if not isinstance(spec, dict) or set(spec) != {"primary_key", "columns"}:
            raise StarDeclarationError(f"star.yml: sources: {name} must give exactly primary_key and columns")
        feeds = tuple(t.name for t in tables.values() if name in t.built_from)
        if not feeds:
            raise StarDeclarationError(
                f"star.yml: sources: {name} builds no star table (no table's built_from names it)"
            )
        sources[name] = (str(spec["primary_key"]), tuple(spec["columns"]), feeds)
    for table in tables.values():
        if unknown := [s for s in table.built_from if s not in sources]:
            raise StarDeclarationError(f"star.yml: {table.name}: built_from names {unknown}, not in sources")
        for column, (source, source_column) in table.holds.items():
            if source not in table.built_from:
                raise StarDeclarationError(
                    f"star.yml: {table.name}.{column} holds {source}.{source_column}: {source} is not in its built_from"
                )
            primary_key, landed, _ = sources[source]
            if source_column not in (primary_key, *landed, "created_at", MODEL_CURSOR):
                raise StarDeclarationError(
                    f"star.yml: {table.name}.{column} holds {source}.{source_column}, not a column sources "
                    f"lands of {source}"
                )
    return sources


def parse(text: str) -> tuple[dict[str, Table], dict]:
    """The tables star.yml declares, dimensions first, in its order, and its sources as
    MODEL_SOURCES holds them (errors name what is wrong)."""
    import yaml

    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or set(doc) != {"tables", "sources"}:
        raise StarDeclarationError("star.yml must hold exactly two mappings: tables and sources")
    if not isinstance(doc["tables"], dict) or not doc["tables"]:
        raise StarDeclarationError("star.yml: tables must map each star table to its declaration")
    tables = {name: _table(name, spec) for name, spec in doc["tables"].items()}
    for table in tables.values():
        for column, (dim, dim_column) in table.references.items():
            target = tables.get(dim)
            if target is None or target.kind != "dimension" or dim_column not in target.column_names:
                raise StarDeclarationError(
                    f"star.yml: {table.name}.{column} references {dim}.{dim_column}, not a declared dimension column"
                )
    tables = {n: t for kind in KINDS for n, t in tables.items() if t.kind == kind}
    return tables, _sources(doc["sources"], tables)


def load() -> tuple[dict[str, Table], dict]:
    """The star as include/sql/warehouse/star.yml declares it: its tables, and its sources."""
    return parse(paths.sql_path(*DECLARATION).read_text())


# TABLES: each star table's declaration. MODEL_SOURCES: the ToteSys tables the star is built
# from, {table: (primary_key, the columns its landing table holds (migrations/001), the star
# tables built from it)}; the model orders their versions by MODEL_CURSOR.
MODEL_CURSOR = "last_updated"
TABLES, MODEL_SOURCES = load()
DIMENSIONS = tuple(n for n, t in TABLES.items() if t.kind == "dimension")
FACTS = tuple(n for n, t in TABLES.items() if t.kind == "fact")
STAR = DIMENSIONS + FACTS
# The key of each star table (facts: the source id and the version), for exports and checks.
STAR_KEYS = {n: t.key for n, t in TABLES.items()}
# The dimension row each fact column must find (dates: dim_date).
FACT_REFERENCES = {n: TABLES[n].references for n in FACTS}


def holders(table: str, column: str) -> list[tuple[str, str]]:
    """The star columns (star table, column) that hold ToteSys column `table.column`'s values as
    they are (star.yml's `holds`): what must widen when the source column widens."""
    return [
        (star_table, star_column)
        for star_table, declared in TABLES.items()
        for star_column, source in declared.holds.items()
        if source == (table, column)
    ]


def covered_keys(table: str, window_sql: str) -> str:
    """SQL: the keys of star table `table` that a window covers (`staging.<table>_window`, from
    migrations/002: built from what it landed, whoever modelled them). `window_sql`: the window's
    name as an SQL literal."""
    keys = ", ".join(STAR_KEYS[table])
    return f"SELECT {keys} FROM staging.{table}_window WHERE window_name = {window_sql}"


def covered_rows(table: str, window_sql: str) -> str:
    """SQL: the rows of star table `table` that a window covers (what its export and gate read)."""
    return (
        f"SELECT * FROM {table} WHERE ({', '.join(STAR_KEYS[table])}) IN ({covered_keys(table, window_sql)})"
    )


def check_model_sources(specs, columns: dict[str, list[str]]) -> list[str]:
    """What in the table config would starve or break the star model (empty: nothing).

    `specs`: the config's TableSpecs; `columns`: each table's extracted columns. Every table the
    star is built from must be extracted, with its primary key, the `last_updated` cursor (the
    model's version: a `created_at` cursor never sees an update), and every column its landing
    table holds.
    """
    by_name = {spec.name: spec for spec in specs}
    problems = []
    for table, (primary_key, needed, feeds) in MODEL_SOURCES.items():
        spec = by_name.get(table)
        if spec is None:
            problems.append(
                f"table {table!r} is missing: {', '.join(feeds)} {'is' if len(feeds) == 1 else 'are'} built "
                "from it, and without it would silently stop changing"
            )
            continue
        if spec.primary_key != primary_key:
            problems.append(
                f"table {table!r}: primary_key is {spec.primary_key!r}; the star keys it by {primary_key!r}"
            )
        if spec.cursor != MODEL_CURSOR:
            problems.append(
                f"table {table!r}: cursor is {spec.cursor!r}; the star orders versions by {MODEL_CURSOR!r}, "
                f"and any other cursor misses updated rows (a created_at cursor never sees an update)"
            )
        missing = [c for c in (primary_key, *needed, "created_at", MODEL_CURSOR) if c not in columns[table]]
        if missing:
            problems.append(
                f"table {table!r}: columns {', '.join(missing)} are not extracted; "
                f"{', '.join(feeds)} {'needs' if len(feeds) == 1 else 'need'} them"
            )
    return problems
