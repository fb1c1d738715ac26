"""Which tables the extract takes: the JSON config, checked against the live catalog.

    {"tables": [{"name": "sales_order", "primary_key": "sales_order_id", "cursor": "last_updated",
                 "columns": ["sales_order_id", "...", "last_updated"],
                 "drift": {"added": "fail"}}]}   # columns, drift: optional

`drift` sets what a schema change does to the table, per change kind (conveyor.totesys.drift:
added, dropped, widened, narrowed, nullability → carry or fail; the rest keep DEFAULT_POLICY).

Every name must exist in the database (identifiers are quoted, never pasted), and the cursor must
be a `timestamp` or `timestamptz` column: windows are time ranges, and a `date` or number
compared with timestamp bounds would silently miss rows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from conveyor.config import ConfigError, load_json

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
CURSOR_TYPES = ("timestamp without time zone", "timestamp with time zone")
TABLE_FIELDS = ("name", "primary_key", "cursor", "columns", "drift")
# Column names that say "when the row last changed" (a created_* cursor beside one is refused).
UPDATE_TIME_COLUMN = re.compile(
    r"(last_)?(updated|modified|changed)(_at|_on|_time)?|(update|modify|change)_(time|date)"
)


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: str
    cursor: str
    columns: tuple[str, ...] | None = None
    drift: tuple[tuple[str, str], ...] = ()  # (change kind, action): the config's overrides

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "primary_key": self.primary_key,
            "cursor": self.cursor,
            "columns": list(self.columns) if self.columns else None,
            "drift": dict(self.drift),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TableSpec:
        columns = tuple(d["columns"]) if d.get("columns") else None
        drift = tuple(sorted((d.get("drift") or {}).items()))
        return cls(d["name"], d["primary_key"], d["cursor"], columns, drift)

    def drift_policy(self) -> dict[str, str]:
        """What each kind of schema change does to this table (conveyor.totesys.drift)."""
        from conveyor.totesys.drift import parse_policy

        return parse_policy(dict(self.drift), f"table {self.name!r}")


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    precision: int | None = None
    scale: int | None = None


def parse_tables_config(text: str, origin: str = "config") -> list[TableSpec]:
    """The table specs of the JSON config; every problem names the table and the field."""
    document = load_json(text, origin)
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("tables"), list)
        or not document["tables"]
    ):
        raise ConfigError(f'{origin}: expected an object with a non-empty "tables" list')
    unknown = sorted(set(document) - {"tables"})
    if unknown:
        raise ConfigError(
            f'{origin}: unknown top-level field(s) {", ".join(unknown)}; expected only "tables"'
        )
    specs, seen = [], set()
    for index, entry in enumerate(document["tables"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: table #{index + 1}: expected an object")
        label = f"table {entry.get('name', f'#{index + 1}')!r}"
        unknown = sorted(set(entry) - set(TABLE_FIELDS))
        if unknown:
            raise ConfigError(f"{origin}: {label}: unknown field(s) {', '.join(unknown)}")
        for field in ("name", "primary_key", "cursor"):
            if not isinstance(entry.get(field), str) or not entry[field]:
                raise ConfigError(f"{origin}: {label}: field {field!r} must be a non-empty string")
        columns = entry.get("columns")
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            raise ConfigError(f"{origin}: {label}: field 'columns' must be a list of column names")
        if "drift" in entry:
            from conveyor.totesys.drift import parse_policy

            parse_policy(entry["drift"], f"{origin}: {label}")  # a bad one is refused before any extract
        if entry["name"] in seen:
            raise ConfigError(f"{origin}: {label}: listed twice")
        seen.add(entry["name"])
        specs.append(TableSpec.from_dict(entry))
    return specs


def table_columns(conn, table: str, schema: str = "public") -> list[Column]:
    """A table's columns as the live catalog has them, in order; a missing table is a ConfigError."""
    rows = conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    if not rows:
        raise ConfigError(f"table {table!r}: no such table in schema {schema!r}")
    return [Column(*r) for r in rows]


def catalog_columns(conn, spec: TableSpec, schema: str = "public") -> list[Column]:
    """The columns to extract, checked against the live catalog (in the configured order)."""
    live = {c.name: c for c in table_columns(conn, spec.name, schema)}
    for field, column in (("primary_key", spec.primary_key), ("cursor", spec.cursor)):
        if column not in live:
            raise ConfigError(
                f"table {spec.name!r}: field {field!r}: no column {column!r} (has {', '.join(live)})"
            )
    wanted = list(spec.columns) if spec.columns else list(live)
    missing = [c for c in wanted if c not in live]
    if missing:
        raise ConfigError(
            f"table {spec.name!r}: field 'columns': no column(s) {', '.join(map(repr, missing))}"
        )
    for required in (spec.primary_key, spec.cursor):
        if required not in wanted:
            raise ConfigError(f"table {spec.name!r}: field 'columns' must include {required!r}")
    updated = [c for c in live if UPDATE_TIME_COLUMN.fullmatch(c)]
    if spec.cursor.startswith("created") and updated:
        raise ConfigError(
            f"table {spec.name!r}: field 'cursor': {spec.cursor!r} only moves when a row is inserted, so "
            f"updated rows would never be extracted; the table has {', '.join(map(repr, updated))}: use that"
        )
    cursor_type = live[spec.cursor].pg_type
    if cursor_type not in CURSOR_TYPES:
        raise ConfigError(
            f"table {spec.name!r}: field 'cursor': column {spec.cursor!r} is {cursor_type}; the cursor must "
            "be a timestamp or timestamptz column (windows are time ranges: a date or number compared "
            "with timestamp bounds misses rows)"
        )
    return [live[c] for c in wanted]


DEFAULT_CONFIG = "config/totesys_tables.json"  # under include/


def config_text(s3) -> tuple[str, str]:
    """The table config's text and where it came from: the Variable `totesys_tables_config`
    (`s3://bucket/key`, or the JSON itself), else include/config/totesys_tables.json (in a task)."""
    from airflow.sdk import Variable

    from conveyor import config, paths
    from conveyor.resources import TOTESYS_CONFIG_VARIABLE

    return config.config_text(
        s3,
        default=paths.include_dir() / DEFAULT_CONFIG,
        variable_name=TOTESYS_CONFIG_VARIABLE,
        variable=Variable.get(TOTESYS_CONFIG_VARIABLE, default=None),
    )


def checked_specs(conn, text: str, origin: str) -> list[TableSpec]:
    """The table config's specs, each checked against the live catalog (`conn`, the source) and
    against what the star is built from (a table it extracts that the star does not model is logged).

    Raises ConfigError naming the table and field (retrying cannot fix a config)."""
    from conveyor.totesys import star
    from conveyor.totesys.drift import used_columns

    specs = parse_tables_config(text, origin=origin)
    columns = {}
    for spec in specs:
        live = [c.name for c in catalog_columns(conn, spec)]
        # What the config leaves out starves the star; a column the source dropped is schema drift,
        # which check_drift names with its old type and what to do.
        columns[spec.name] = live if spec.columns else [*live, *used_columns(spec.name)]
    if problems := star.check_model_sources(specs, columns):
        raise ConfigError(f"{origin}: {'; '.join(problems)}")
    for extra in sorted(set(columns) - set(star.MODEL_SOURCES)):
        log.info("table %r is extracted and landed; the star does not model it", extra)
    return specs
