"""Schema drift: a ToteSys table that changed shape is detected before the extract, and handled by
a stated policy.

1. **Detect** (`source_schema`, `compare`): each configured table's live catalog (column, type as
   Postgres formats it, nullability, primary key) against the schema the warehouse last accepted
   for it (`staging.source_schemas`, migrations/003). Changes per column: added, dropped, retyped
   (old → new), nullability; per table: primary key.
2. **Decide** (`decide`): each change gets an action from the table's policy (the tables config's
   `drift` field, over DEFAULT_POLICY): `carry` (the landing table follows it, the run goes on) or
   `fail` (the run stops before anything lands, naming table.column, old → new, and what to do).
   Some changes only ever fail: a dropped column a star model uses, an incompatible retype, a
   changed primary key, a dropped or retyped cursor.
3. **Apply** (`reconcile`): in the warehouse, in one transaction under one lock: the carried
   ALTERs on `staging.<table>_landed` (and its newest-version view; for a widening, the star
   columns that hold the column, star.yml's `holds`, with every view that reads either dropped
   and recreated from its own definition), each change in `staging.schema_changes`, and the
   accepted schema in `staging.source_schemas`. (Snowflake's star columns follow when a window
   with the wider values loads: conveyor.totesys.to_snowflake.)
4. **Tell** (`drift_notices`): each logged change, once, on the notifications topic.

Why the warehouse keeps the reference schema, not the watermark's manifest: the extract always
reads the live catalog, whatever window a run covers, so the schema that matters is the one the
landing tables were last made to hold, which is ordered by when runs applied it, not by window.
The watermark moves only for scheduled runs and only forward by window: a backfill or a manual run
that carried an added column would leave it behind, and a cleared old run would compare against a
newer window's schema. Kept beside the landing tables and written in the same transaction as the
ALTERs, the reference can never disagree with what the warehouse holds (a restore brings both
back together), and two runs that check at once take turns: the second finds nothing left to do.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from airflow.sdk.exceptions import AirflowFailException

from conveyor.config import ConfigError

log = logging.getLogger(__name__)

CARRY, FAIL = "carry", "fail"
# Change kinds a table's `drift` policy may set, and what each does unless it says otherwise.
DEFAULT_POLICY = {
    "added": CARRY,  # the landing table gains the column; the star is unchanged
    "dropped": CARRY,  # a column no star model uses: absent from then on, with a warning
    "widened": CARRY,  # int → bigint, numeric/varchar bigger, timestamp → timestamptz
    "narrowed": FAIL,  # the landing column is wider than the source's new type
    "nullability": CARRY,  # NOT NULL dropped: the landing column drops it too
}
ACTIONS = (CARRY, FAIL)
STEP = "docs/runbook.md, 'totesys_etl stopped on a schema change'"


ACCEPTED = "accepted_schema"  # the field check_drift adds to each table spec it passes on


class SchemaDriftError(AirflowFailException):
    """A change the policy does not carry: the run stops before anything lands (no retries: only
    the source, the config or the model can change it)."""


# --- the live catalog ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # format_type(): 'integer', 'numeric(10,2)', 'character varying(20)', ...
    nullable: bool


@dataclass(frozen=True)
class SourceSchema:
    table: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...] = ()

    def column(self, name: str) -> SourceColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "columns": [[c.name, c.type, c.nullable] for c in self.columns],
            "primary_key": list(self.primary_key),
        }

    @classmethod
    def from_dict(cls, d: dict) -> SourceSchema:
        return cls(d["table"], tuple(SourceColumn(*c) for c in d["columns"]), tuple(d["primary_key"]))


def source_schema(conn, spec, schema: str = "public") -> SourceSchema:
    """The table's columns as the live catalog has them (only the configured ones, when the config
    lists columns), their exact types and nullability, and its primary key."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
        "coalesce(a.attnum = ANY (i.indkey), false) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, spec.name),
    ).fetchall()
    if not rows:
        raise ConfigError(f"table {spec.name!r}: no such table in schema {schema!r}")
    wanted = set(spec.columns) if spec.columns else None
    return SourceSchema(
        spec.name,
        tuple(SourceColumn(n, t, nullable) for n, t, nullable, _ in rows if wanted is None or n in wanted),
        tuple(n for n, _, _, pk in rows if pk),
    )


# --- what changed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    table: str
    column: str | None  # a primary key change: the key's columns, comma-separated; a table: None
    kind: str  # added | dropped | retyped | nullability | primary_key | table_added | table_removed
    old: str | None
    new: str | None
    retype: str | None = None  # for a retype: widening | narrowing | incompatible

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table

    def describe(self) -> str:
        what = self.retype + " retype" if self.retype else self.kind.replace("_", " ")
        if self.column is None:
            return f"{self.name}: {what} (the tables config)"
        return f"{self.name}: {what} ({self.old or '-'} → {self.new or '-'})"


def _nullability(nullable: bool) -> str:
    return "NULL" if nullable else "NOT NULL"


def compare(old: SourceSchema, new: SourceSchema) -> list[Change]:
    """What changed from `old` (the accepted schema) to `new` (the live one), in column order."""
    changes = []
    table = new.table
    for column in new.columns:
        before = old.column(column.name)
        if before is None:
            changes.append(Change(table, column.name, "added", None, column.type))
            continue
        if before.type != column.type:
            kind = classify(before.type, column.type)
            changes.append(Change(table, column.name, "retyped", before.type, column.type, kind))
        if before.nullable != column.nullable:
            old_null, new_null = _nullability(before.nullable), _nullability(column.nullable)
            changes.append(Change(table, column.name, "nullability", old_null, new_null))
    for column in old.columns:
        if new.column(column.name) is None:
            changes.append(Change(table, column.name, "dropped", column.type, None))
    if old.primary_key != new.primary_key:
        key = ", ".join(new.primary_key) or ", ".join(old.primary_key)
        changes.append(
            Change(
                table,
                key,
                "primary_key",
                ", ".join(old.primary_key) or None,
                ", ".join(new.primary_key) or None,
            )
        )
    return changes


# --- widening or narrowing -----------------------------------------------------------------------

_INTEGERS = {"smallint": 16, "integer": 32, "bigint": 64}
_FLOATS = {"real": 24, "double precision": 53}
_NUMERIC = re.compile(r"numeric(?:\((\d+),(\d+)\))?")
_TEXT = re.compile(r"(character varying|character|text)(?:\((\d+)\))?")
_TIMESTAMP = re.compile(r"timestamp(?:\((\d)\))? with(out)? time zone")
_UNBOUNDED = float("inf")


def _digits(pg_type: str, *, target: bool = False) -> tuple[float, float] | None:
    """(integer digits, fraction digits) of a numeric or integer type; None for other types. An
    integer type's values need 5, 10 or 19 digits, but it holds every number of only 4, 9 or 18
    (`target`): integer holds numeric(9,0), not numeric(10,0)."""
    if pg_type in _INTEGERS:
        return ({16: 4, 32: 9, 64: 18} if target else {16: 5, 32: 10, 64: 19})[_INTEGERS[pg_type]], 0
    if match := _NUMERIC.fullmatch(pg_type):
        if match[1] is None:
            return (_UNBOUNDED, _UNBOUNDED)
        precision, scale = int(match[1]), int(match[2])
        return (precision - scale, scale)
    return None


def classify(old: str, new: str) -> str:
    """Whether every value of type `old` is held exactly by `new` (widening), the reverse holds
    (narrowing), or neither (incompatible). Types as `format_type()` writes them."""
    if old == new:
        return "widening"
    if old in _INTEGERS and new in _INTEGERS:
        return "widening" if _INTEGERS[new] > _INTEGERS[old] else "narrowing"
    if old in _FLOATS and new in _FLOATS:
        return "widening" if _FLOATS[new] > _FLOATS[old] else "narrowing"
    before, after = _digits(old), _digits(new, target=True)
    if before and after:
        if after[0] >= before[0] and after[1] >= before[1]:
            return "widening"
        if _digits(new)[0] <= _digits(old, target=True)[0] and after[1] <= before[1]:
            return "narrowing"
        return "incompatible"  # more integer digits but fewer fraction digits, or the reverse
    old_text, new_text = _TEXT.fullmatch(old), _TEXT.fullmatch(new)
    if old_text and new_text:
        # char(n) → varchar/text: Postgres's cast strips the trailing blanks char(n) pads with, as
        # the extract's text of a char(n) value does not (its blanks are not significant).
        old_len = int(old_text[2]) if old_text[2] else _UNBOUNDED
        new_len = int(new_text[2]) if new_text[2] else _UNBOUNDED
        if new_text[1] == "character" and old_text[1] != "character":
            return "incompatible"  # to char(n): values are padded, so they change
        return "widening" if new_len >= old_len else "narrowing"
    old_ts, new_ts = _TIMESTAMP.fullmatch(old), _TIMESTAMP.fullmatch(new)
    if old_ts and new_ts:
        old_precision = int(old_ts[1]) if old_ts[1] else 6
        new_precision = int(new_ts[1]) if new_ts[1] else 6
        zoned_before, zoned_after = old_ts[2] is None, new_ts[2] is None
        if new_precision < old_precision or (zoned_before and not zoned_after):
            return "narrowing"  # fewer fraction digits, or timestamptz → timestamp (a zone lost)
        return "widening"  # timestamp → timestamptz: the session is UTC, the instant stays
    return "incompatible"


# --- the policy ----------------------------------------------------------------------------------


def parse_policy(value, label: str) -> dict[str, str]:
    """A table config's `drift` field: {kind: carry | fail} over DEFAULT_POLICY; errors name
    table.field."""
    if value is None:
        return dict(DEFAULT_POLICY)
    if not isinstance(value, dict):
        raise ConfigError(
            f'{label}: field \'drift\' must be an object of change kind → action, e.g. {{"added": "fail"}}'
        )
    policy = dict(DEFAULT_POLICY)
    for kind, action in value.items():
        if kind not in DEFAULT_POLICY:
            raise ConfigError(
                f"{label}: field 'drift.{kind}': no such change kind (one of {', '.join(DEFAULT_POLICY)})"
            )
        if action not in ACTIONS:
            raise ConfigError(f"{label}: field 'drift.{kind}': {action!r} is not one of {', '.join(ACTIONS)}")
        policy[kind] = action
    return policy


@dataclass(frozen=True)
class Decision:
    """What one change does: `carry` (with `alter`, the DDL it needs on the landing table: 'add',
    'type', 'drop not null', or None) or `fail`; `message` says why (what to do, for a failure)."""

    change: Change
    action: str
    alter: str | None
    message: str
    warning: bool = False


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)

    @property
    def failures(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == FAIL]

    @property
    def alters(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == CARRY and d.alter]

    @property
    def warnings(self) -> list[Decision]:
        return [d for d in self.decisions if d.warning]

    def failure_message(self) -> str:
        lines = [d.message for d in self.failures]
        return (
            f"schema drift: {len(lines)} change(s) the policy does not carry; nothing was landed or "
            f"altered:\n  " + "\n  ".join(lines) + f"\n(what to do: {STEP})"
        )


def decide(change: Change, policy: dict[str, str], *, used: set[str], cursor: str) -> Decision:
    """The action for one change under the table's policy; `used`: the columns a star model reads
    from the table (its key and cursor included)."""
    what = change.describe()

    def fail(why: str, step: str) -> Decision:
        return Decision(change, FAIL, None, f"{what}: {why}; {step}")

    def by_policy(kind: str, alter: str | None, note: str, warning: bool = False) -> Decision:
        if policy[kind] == FAIL:
            return fail(
                f"the table's drift policy says {kind}: fail",
                "restore the source, or set the policy to carry",
            )
        return Decision(change, CARRY, alter, f"{what}: {note}", warning)

    if change.kind == "primary_key":
        return fail(
            "the landing keeps one version per key, so a new key changes what every row means",
            "restore the key, or migrate the landing table and the config's primary_key to the new key",
        )
    if change.kind == "added":
        return by_policy("added", "add", "carried: the landing table gains the column; the star is unchanged")
    if change.kind == "dropped":
        if change.column == cursor:
            return fail(
                "it is the table's cursor", "restore it, or set the config's cursor to another column"
            )
        if change.column in used:
            return fail(
                "a star model reads it, and would overwrite good values with NULL",
                "restore the column, or change the model (star.yml and its SQL) not to read it",
            )
        return by_policy(
            "dropped",
            "drop not null",
            "carried as absent (no model reads it): it lands as NULL",
            warning=True,
        )
    if change.kind == "retyped":
        if change.column == cursor and change.retype != "widening":
            return fail("it is the table's cursor", "restore its type")
        if change.retype == "incompatible":
            return fail(
                "the landing column cannot hold the new type's values exactly",
                "restore the type, or migrate the landing column (and any star column) by hand",
            )
        if change.retype == "narrowing":
            return by_policy(
                "narrowed", None, "carried: the landing column is wider and holds it", warning=True
            )
        return by_policy("widened", "type", "carried: the landing column is widened")
    if change.kind == "nullability":
        if change.new == "NULL" and (strict := star_not_null(change.table, change.column)):
            return fail(
                f"the star's {', '.join(strict)} holds it and is NOT NULL, so the first NULL would fail the model",
                "restore NOT NULL in the source, or make the star column nullable (star.yml and a migration)",
            )
        if change.new == "NULL":
            return by_policy("nullability", "drop not null", "carried: the landing column allows NULL")
        return Decision(change, CARRY, None, f"{what}: nothing to do (the landing column is not stricter)")
    raise ValueError(f"unknown change kind {change.kind!r}")


def plan(changes: list[Change], policy: dict[str, str], *, used: set[str], cursor: str) -> Plan:
    return Plan([decide(c, policy, used=used, cursor=cursor) for c in changes])


def star_not_null(table: str, column: str) -> list[str]:
    """The NOT NULL star columns (`star_table.column`) that hold ToteSys column `table.column`."""
    from conveyor.totesys import star

    return [
        f"{star_table}.{star_column}"
        for star_table, star_column in star.holders(table, column)
        if next(c for c in star.TABLES[star_table].columns if c.name == star_column).not_null
    ]


def used_columns(table: str) -> set[str]:
    """The columns of a ToteSys table a star model reads (empty for a table the star does not use)."""
    from conveyor.totesys import star

    if table not in star.MODEL_SOURCES:
        return set()
    primary_key, needed, _ = star.MODEL_SOURCES[table]
    return {primary_key, *needed, "created_at", star.MODEL_CURSOR}


# --- the warehouse: the accepted schema, the ALTERs, the log ---------------------------------------

BASELINE = "(the landing table)"  # compared_with, for a table the warehouse has no accepted schema of
# Types a landing column takes as the source has them; any other lands as text, as the extract
# writes it (warehouse._pg_type: the same rule for a landing table made from an extract).
_LANDING_TYPES = re.compile(
    r"smallint|integer|bigint|real|double precision|boolean|date|text|numeric(\(\d+,\d+\))?"
    r"|character varying(\(\d+\))?|time(stamp)?(\(\d\))? with(out)? time zone"
)


def landing_type(source_type: str) -> str:
    return source_type if _LANDING_TYPES.fullmatch(source_type) else "text"


def _landed_columns(conn, table: str) -> dict[str, tuple[str, bool]]:
    """staging.<table>_landed's columns (window_name aside), each with its type and whether it is
    NOT NULL; empty when the table does not exist yet."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(format('staging.%%I', %s::text)) AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (f"{table}_landed",),
    ).fetchall()
    return {name: (pg_type, not_null) for name, pg_type, not_null in rows if name != "window_name"}


def _landed(conn, table: str) -> dict[str, str]:
    """staging.<table>_landed's columns and their types; empty when it does not exist yet."""
    return {name: pg_type for name, (pg_type, _) in _landed_columns(conn, table).items()}


def _reference(conn, live: SourceSchema) -> tuple[SourceSchema, str]:
    """The schema the warehouse accepted for the table, and the window that accepted it.

    None accepted yet (the first run after this migration, or a table the config just added): the
    landing table stands in for it, so a column the source gained or lost before this check existed
    is still an addition or a drop; a table without a landing table (made by its first landing) has
    no drift.
    """
    row = conn.execute(
        "SELECT schema, window_name FROM staging.source_schemas WHERE table_name = %s", (live.table,)
    ).fetchone()
    if row:
        return SourceSchema.from_dict(row[0]), row[1]
    landed = _landed(conn, live.table)
    if not landed:
        return live, BASELINE
    known = [c for c in live.columns if c.name in landed]
    names = {c.name for c in live.columns}
    # A landing column the source lacks was dropped (as the landing table types it).
    gone = [SourceColumn(name, pg_type, True) for name, pg_type in landed.items() if name not in names]
    return SourceSchema(live.table, tuple(known + gone), live.primary_key), BASELINE


def _unheld(conn, live: SourceSchema, changes: list[Change]) -> list[Change]:
    """What the landing table cannot hold of the live schema although no change says so: a retype
    or a relaxed NOT NULL made before there was a reference (the first check, or after the
    runbook's reset), a column dropped and added back with another type, a column the landing
    table lacks (made by a landing before the column was accepted, or restored from a backup).
    Each is a change from the landing table, decided by the policy like any other (never landed
    rounded, never a COPY that cannot find its column)."""
    from conveyor.totesys.widen import holds

    landed = _landed_columns(conn, live.table)
    named = {(c.column, c.kind) for c in changes}
    unheld = []
    for column in live.columns:
        if column.name not in landed:
            if landed and (column.name, "added") not in named:
                unheld.append(Change(live.table, column.name, "added", None, column.type))
            continue
        have, not_null = landed[column.name]
        if (column.name, "retyped") not in named and not holds(have, landing_type(column.type)):
            retype = classify(have, column.type)
            unheld.append(Change(live.table, column.name, "retyped", have, column.type, retype))
        if column.nullable and not_null and (column.name, "nullability") not in named:
            unheld.append(Change(live.table, column.name, "nullability", "NOT NULL", "NULL"))
    return unheld


def _alter(conn, spec, decision: Decision) -> Decision:
    """The landing table's DDL for one carried change (and its newest-version view, for a column
    added; for a widening, the star columns that hold it and the views that read them). Returns
    the decision, its message saying what a widening altered."""
    from psycopg import sql

    change = decision.change
    landed = _landed(conn, change.table)
    if not landed and decision.alter != "type":
        return decision  # no landing table yet: its first landing makes it from the extract's columns
    table = sql.Identifier("staging", f"{change.table}_landed")
    column = sql.Identifier(change.column)
    if decision.alter == "add":
        if change.column in landed:
            note = f"staging.{change.table}_landed already has the column (as {landed[change.column]})"
            decision = replace(decision, message=f"{change.describe()}: carried: {note}")
        else:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    table, column, sql.SQL(landing_type(change.new))
                )
            )
        _add_to_view(conn, spec, change.column)
    elif decision.alter == "drop not null" and change.column in landed:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(table, column))
    elif decision.alter == "type":
        if problem := _unwidened(conn, decision):
            raise SchemaDriftError(problem)  # reconcile turns these into failures before altering
        from conveyor.totesys import widen

        done = widen.widen(conn, decision.change)
        note = "; ".join(done) if done else "the landing and star columns already hold it"
        return replace(decision, message=f"{decision.message}: {note}")  # the log's detail
    return decision


def _unwidened(conn, decision: Decision) -> str | None:
    """Why a carried widening cannot be applied (None: it can, or nothing needs it): a star column
    that holds the source column and no type widens to hold its new type."""
    from conveyor.totesys import widen

    try:
        widen.needed(conn, decision.change)
    except SchemaDriftError as refused:
        return str(refused)
    return None


def _add_to_view(conn, spec, column: str) -> None:
    """staging.<table> (the newest version per key) gains the column, at its end."""
    from conveyor.totesys import warehouse

    columns = [
        name
        for (name,) in conn.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(format('staging.%%I', "
            "%s::text)) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (spec.name,),
        )
    ]
    if not columns or column in columns:
        return
    conn.execute(warehouse.newest_version_view(spec.name, spec.primary_key, spec.cursor, [*columns, column]))


def _log(conn, decision: Decision, window_name: str, compared_with: str, detected_at, run_id) -> None:
    change = decision.change
    conn.execute(
        "INSERT INTO staging.schema_changes (table_name, column_name, change, old_value, new_value, "
        "window_name, action, detail, compared_with, detected_at, run_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            change.table,
            change.column,
            change.kind,
            change.old,
            change.new,
            window_name,
            decision.action,
            decision.message,
            compared_with,
            detected_at,
            run_id,
        ),
    )


def reconcile(
    conn,
    specs,
    live: list[SourceSchema] | Callable[[], list[SourceSchema]],
    window_name: str,
    detected_at,
    run_id: str | None = None,
    *,
    whole_config: bool = True,
) -> list[dict]:
    """Compare each table's live schema with the one the warehouse accepted and apply the policy,
    in one transaction under one lock (a backfill beside the scheduled runs takes its turn, then
    finds nothing left to do).

    Every change is logged in staging.schema_changes, with `run_id` (the run that detected it; its
    message goes out after the commit: `drift_notices`). Any failure: nothing is altered or
    accepted, the failures are logged (once per reference schema), and SchemaDriftError names them all.
    Otherwise the carried ALTERs are applied and the live schemas become the accepted ones.
    `live` may be a function that reads the live schemas: it is called once the lock is held, so a
    run that waited for another compares what the source has now, not what it had before the wait.
    With whole_config=False (one table rechecked by its extract), an accepted table missing from
    `live` is not a removal. Returns the decisions, as dicts."""
    from conveyor.totesys import migrations

    by_name = {spec.name: spec for spec in specs}
    decided = []
    with conn.transaction():
        # As a migration does: the lock and any DDL wait a bounded time (every reader would queue
        # behind a waiting ALTER), then the task fails and retries.
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (migrations.LOCK_TIMEOUT,))
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('conveyor.totesys.drift'))")
        live = live() if callable(live) else live
        for schema in live:
            spec = by_name[schema.table]
            reference, compared_with = _reference(conn, schema)
            changes = compare(reference, schema)
            changes += _unheld(conn, schema, changes)
            made = plan(changes, spec.drift_policy(), used=used_columns(spec.name), cursor=spec.cursor)
            for d in made.decisions:
                if d.alter == "type" and (problem := _unwidened(conn, d)):
                    d = Decision(d.change, FAIL, None, problem)  # never land a value rounded
                decided.append((spec, d, compared_with))
            if compared_with == BASELINE and not _landed(conn, schema.table):
                added = Change(schema.table, None, "table_added", None, None)
                note = "extracted from now on; its first landing makes its staging tables from the catalog"
                decided.append((spec, Decision(added, CARRY, None, f"{added.describe()}: {note}"), BASELINE))
        removed = conn.execute(
            "SELECT table_name, window_name FROM staging.source_schemas WHERE NOT table_name = ANY(%s) "
            "AND %s ORDER BY 1",
            ([s.table for s in live], whole_config),
        ).fetchall()
        for table, accepted_in in removed:
            change = Change(table, None, "table_removed", None, None)
            note = f"no longer extracted; staging.{table}_landed and the star keep its rows"
            decided.append(
                (None, Decision(change, CARRY, None, f"{change.describe()}: {note}", True), accepted_in)
            )
        failures = [d for _, d, _ in decided if d.action == FAIL]
        if failures:
            for _, decision, compared_with in decided:
                if decision.action == FAIL:
                    _log(conn, decision, window_name, compared_with, detected_at, run_id)
        else:
            for spec, decision, compared_with in decided:
                if decision.alter:
                    decision = _alter(conn, spec, decision)
                _log(conn, decision, window_name, compared_with, detected_at, run_id)
                (log.warning if decision.warning else log.info)("schema drift: %s", decision.message)
            conn.execute(
                "DELETE FROM staging.source_schemas WHERE table_name = ANY(%s)", ([t for t, _ in removed],)
            )  # a table the config adds back is compared with its landing table again
            for schema in live:
                conn.execute(
                    "INSERT INTO staging.source_schemas (table_name, schema, window_name, accepted_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (table_name) DO UPDATE SET schema = excluded.schema, "
                    "window_name = excluded.window_name, accepted_at = excluded.accepted_at "
                    "WHERE source_schemas.schema IS DISTINCT FROM excluded.schema",
                    (schema.table, json.dumps(schema.to_dict()), window_name, detected_at),
                )
    if failures:
        raise SchemaDriftError(Plan(failures).failure_message())
    return [{"change": d.change.describe(), "action": d.action, "warning": d.warning} for _, d, _ in decided]


def check(
    source_conn_id: str, warehouse_conn_id: str, timeout, specs: list[dict], window_name: str, dag_run
) -> list[dict]:
    """totesys_etl's drift check: each configured table's live schema (the source) reconciled with
    the one the warehouse accepted (after the migrations it lacks: the log is migration 003's),
    detected at the run's data interval end. Returns the specs to extract, each with the schema it
    was checked at (`ACCEPTED`, for `hold`); raises SchemaDriftError when the policy says fail.
    Either way, once the reconcile has committed, every logged change not yet on the notifications
    topic is published, one message each (`drift_notices`)."""
    from conveyor import postgres
    from conveyor.totesys import drift_notices, migrations
    from conveyor.totesys.tables import TableSpec

    table_specs, live = [TableSpec.from_dict(s) for s in specs], []

    def read_live() -> list[SourceSchema]:  # under reconcile's lock
        live[:] = [source_schema(source, spec) for spec in table_specs]
        source.commit()
        return live

    with (
        postgres.connect(source_conn_id, timeout) as source,
        postgres.connect(warehouse_conn_id, timeout) as conn,
    ):
        migrations.migrate(conn)
        try:
            reconcile(conn, table_specs, read_live, window_name, dag_run.data_interval_end, dag_run.run_id)
        finally:  # a stopping change is on the topic before the task fails; a publish never fails it
            drift_notices.publish_pending(conn, dag_run.dag_id, dag_run.run_id)
    return [{**spec, ACCEPTED: schema.to_dict()} for spec, schema in zip(specs, live, strict=True)]


def hold(source_conn, warehouse_conn_id: str, timeout, table: dict, window_name: str, dag_run) -> None:
    """extract_table's half of the check, in the extract's own transaction: the table is locked
    against DDL until the extract ends (ACCESS SHARE, as its SELECT takes anyway), and a change made
    since check_drift (a column added while the run was between the two) is reconciled now, by the
    same policy, so the file the extract writes always fits the landing table."""
    from psycopg import sql

    from conveyor import postgres
    from conveyor.totesys import drift_notices, migrations
    from conveyor.totesys.tables import TableSpec

    spec = TableSpec.from_dict(table)
    # A DDL statement holding the table makes the extract wait a bounded time, then fail and retry.
    source_conn.execute("SELECT set_config('lock_timeout', %s, true)", (migrations.LOCK_TIMEOUT,))
    source_conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(spec.name)))
    live = source_schema(source_conn, spec)
    if ACCEPTED in table and SourceSchema.from_dict(table[ACCEPTED]) == live:
        return
    log.warning("schema drift: %s changed since check_drift; reconciling before its extract", spec.name)
    with postgres.connect(warehouse_conn_id, timeout) as conn:
        try:
            reconcile(
                conn,
                [spec],
                [live],
                window_name,
                dag_run.data_interval_end,
                dag_run.run_id,
                whole_config=False,
            )
        finally:
            drift_notices.publish_pending(conn, dag_run.dag_id, dag_run.run_id)
