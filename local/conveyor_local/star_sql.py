"""Render the Snowflake MERGE of each star table from the star's declaration
(include/sql/warehouse/star.yml) into include/sql/snowflake/totesys/merge/<table>.sql.

    python -m conveyor_local.star_sql            # write the files (`make star`)
    python -m conveyor_local.star_sql --check    # exit 1 naming each file that is stale or extra

The files are generated, checked in and shipped (MWAA runs them; this renderer is local
tooling). tests/unit/test_star.py fails while any of them differs from what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conveyor.totesys.star import TABLES, Table

HEADER = (
    "-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.\n"
)
WIDTH = 110

RULES = {
    "keep_first": (
        "dates never change: a new key is inserted; a key already there keeps its row and takes the\n"
        "-- earlier window's name (the first window by name that covered it, as in Postgres)."
    ),
    "newest_version": (
        "upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the\n"
        "-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old\n"
        "-- interval, never puts an older version in front of a newer one."
    ),
    "insert_new": (
        "a row is one version of an order or payment, keyed by its id and last update: inserted\n"
        "-- only when its key is not there yet."
    ),
}


def merge_dir() -> Path:
    from conveyor import paths

    return paths.sql_path("snowflake", "totesys", "merge")


def _wrap(items: list[str], first: str, then: str | None = None) -> str:
    """`items`, comma-separated, wrapped at WIDTH between items (never inside one): the first line
    starts with `first`, the others are indented by `then` (default: as deep as `first`)."""
    then = " " * len(first) if then is None else then
    lines, line = [], first
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if line.strip() and len(line) + 1 + len(text) > WIDTH:
            lines.append(line)
            line = then + text
        else:
            line += ("" if line == first else " ") + text
    return "\n".join([*lines, line])


def render_merge(table: Table) -> str:
    """The MERGE of one window's staging rows into `table` (a Jinja template: db, window)."""
    name = table.name.upper()
    columns = [c.upper() for c in table.column_names]
    staged = [c for c in columns if c != "WINDOW_NAME"]
    key = [k.upper() for k in table.key]
    on = "\n  AND ".join(
        [f"t.{key[0]} = s.{key[0]}", *([" AND ".join(f"t.{k} = s.{k}" for k in key[1:])] if key[1:] else [])]
    )
    lines = [
        HEADER.rstrip("\n"),
        f"-- {table.name}: {RULES[table.merge]}",
        "-- Reads the staging table copy_window.sql fills; names besides the database: window (the",
        "-- window's name, written to WINDOW_NAME).",
        f"MERGE INTO {{{{ db }}}}.TOTESYS.{name} AS t",
        "USING (",
        _wrap([*staged, "'{{ window }}' AS WINDOW_NAME"], "  SELECT ", "    "),
        f"  FROM {{{{ db }}}}.TOTESYS.{name}_STAGING",
        ") AS s",
        f"ON {on}",
    ]
    if table.merge == "keep_first":
        lines.append(
            "WHEN MATCHED AND s.WINDOW_NAME < t.WINDOW_NAME THEN UPDATE SET WINDOW_NAME = s.WINDOW_NAME"
        )
    elif table.merge == "newest_version":
        updated = [f"{c} = s.{c}" for c in columns if c not in key]
        lines.append("WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET")
        lines.append(_wrap(updated, "  "))
    lines.append("WHEN NOT MATCHED THEN INSERT")
    lines.append(_wrap(columns, "  (") + ")")
    lines.append(_wrap([f"s.{c}" for c in columns], "  VALUES (") + ");")
    return "\n".join(lines) + "\n"


def rendered() -> dict[str, str]:
    """File name -> contents, for every star table."""
    return {f"{name}.sql": render_merge(table) for name, table in TABLES.items()}


def stale(directory: Path | None = None) -> list[str]:
    """What differs from the declaration: files missing or out of date, and files of no star table."""
    directory = directory or merge_dir()
    expected = rendered()
    found = {p.name for p in directory.glob("*.sql")} if directory.is_dir() else set()
    problems = [
        f"{directory / name}: {'missing' if name not in found else 'out of date'}"
        for name, text in expected.items()
        if name not in found or (directory / name).read_text() != text
    ]
    problems += [
        f"{directory / name}: no star table {name[:-4]!r} in star.yml"
        for name in sorted(found - set(expected))
    ]
    return problems


def write(directory: Path | None = None) -> list[str]:
    """Write every MERGE file; remove those of tables star.yml no longer declares. Returns what changed."""
    directory = directory or merge_dir()
    directory.mkdir(parents=True, exist_ok=True)
    changed = stale(directory)
    expected = rendered()
    for path in directory.glob("*.sql"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)
    return changed


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if problems := stale():
            print("The Snowflake MERGE files disagree with star.yml (run `make star`):", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 1
        print(f"{len(TABLES)} MERGE files match star.yml")
        return 0
    changed = write()
    print("\n".join(changed) if changed else f"{len(TABLES)} MERGE files already match star.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
