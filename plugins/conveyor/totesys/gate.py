"""totesys_etl's gate: checks that fail when the star does not hold what the window landed.

One `SQLTableCheckOperator` per star table, each over the rows the window covers
(`staging.<table>_window`, whoever modelled them), so a window that widened over a failed run's
rows checks those rows too. Every check compares the star with staging, so each can fail without
any constraint being dropped:

* **facts**: every version the window landed has its fact row (`<fact>_versions_landed_are_facts`),
  and each of those rows finds its dimension rows (`<fact>_<column>_in_<dimension>`);
* **dimensions**: every key the window covers has its row (`<dim>_rows_present`), holding exactly
  what the newest landed source rows say, version included (`<dim>_rows_match_source`, compared as
  JSON); across the whole table, every row has its source row and every current source row its
  dimension row (`<dim>_every_row_has_a_source`, `<dim>_every_source_has_a_row`);
* **dim_date**: every date the window's rows hold is there (`dim_date_dates_present`), with its
  parts right (`dim_date_parts_right`).

Each checked "table" is a one-row subquery of counts, so a window that covers no row of a table
checks (and passes) too. A run that lands newer versions of the same keys between another run's
model and its gate (a backfill beside the scheduled runs) can fail `rows_match_source` or
`every_source_has_a_row` for those keys until it models them: the gate's retries cover that.
"""

from __future__ import annotations

from conveyor.totesys.star import DIMENSIONS, FACT_REFERENCES, FACTS, STAR_KEYS, covered_keys, covered_rows


def checks(table: str, window_sql: str) -> dict:
    """`SQLTableCheckOperator` arguments for `table`'s rows that the window covers.

    `window_sql`: the window's name as an SQL literal."""
    if table in FACTS:
        return _fact_checks(table, window_sql)
    if table == "dim_date":
        return _date_checks(window_sql)
    if table in DIMENSIONS:
        return _dimension_checks(table, window_sql)
    raise KeyError(f"not a star table: {table!r}")


def all_checks(window_sql: str) -> list[dict]:
    """One set of arguments per star table (for `.expand_kwargs`)."""
    return [checks(table, window_sql) for table in (*DIMENSIONS, *FACTS)]


def window_checks(window_name: str) -> list[dict]:
    """`all_checks` for the window named `window_name` (a task's output), quoted as an SQL literal."""
    return all_checks("'" + window_name.replace("'", "''") + "'")


def _fact_checks(fact: str, window_sql: str) -> dict:
    on_key = " AND ".join(f"f.{k} = w.{k}" for k in STAR_KEYS[fact])
    references = FACT_REFERENCES[fact]
    counts = [
        f"(SELECT count(*) FROM ({covered_keys(fact, window_sql)}) AS w "
        f"WHERE NOT EXISTS (SELECT 1 FROM {fact} AS f WHERE {on_key})) AS versions_without_fact",
        *(
            f"(SELECT count(*) FROM ({covered_rows(fact, window_sql)}) AS f "
            f"WHERE NOT EXISTS (SELECT 1 FROM {dim} AS d WHERE d.{key} = f.{column})) AS missing_{column}"
            for column, (dim, key) in references.items()
        ),
    ]
    checks = {f"{fact}_versions_landed_are_facts": {"check_statement": "versions_without_fact = 0"}}
    checks.update(
        {
            f"{fact}_{column}_in_{dim}": {"check_statement": f"missing_{column} = 0"}
            for column, (dim, _) in references.items()
        }
    )
    return {"table": f"(SELECT {', '.join(counts)}) AS {fact}_window", "checks": checks}


def _dimension_checks(dim: str, window_sql: str) -> dict:
    [key] = STAR_KEYS[dim]
    covered = (
        f"FROM ({covered_keys(dim, window_sql)}) AS w "
        f"JOIN staging.{dim}_source AS s ON s.{key} = w.{key} "
        f"LEFT JOIN {dim} AS d ON d.{key} = w.{key}"
    )
    counts = [
        f"(SELECT count(*) {covered} WHERE d.{key} IS NULL) AS missing_rows",
        # The whole row as JSON (the source view has the dimension's columns, window_name aside).
        f"(SELECT count(*) {covered} WHERE to_jsonb(d) - 'window_name' <> to_jsonb(s)) AS rows_unlike_source",
        f"(SELECT count(*) FROM {dim} AS d WHERE NOT EXISTS "
        f"(SELECT 1 FROM staging.{dim}_source AS s WHERE s.{key} = d.{key})) AS rows_without_source",
        f"(SELECT count(*) FROM staging.{dim}_source AS s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {dim} AS d WHERE d.{key} = s.{key})) AS sources_without_row",
    ]
    return {
        "table": f"(SELECT {', '.join(counts)}) AS {dim}_window",
        "checks": {
            f"{dim}_rows_present": {"check_statement": "missing_rows = 0"},
            f"{dim}_rows_match_source": {"check_statement": "rows_unlike_source = 0"},
            f"{dim}_every_row_has_a_source": {"check_statement": "rows_without_source = 0"},
            f"{dim}_every_source_has_a_row": {"check_statement": "sources_without_row = 0"},
        },
    }


def _date_checks(window_sql: str) -> dict:
    parts = (
        "(d.year, d.month, d.day, d.day_of_week, d.day_name, d.month_name, d.quarter) IS DISTINCT FROM "
        "(extract(year FROM w.date_id)::integer, extract(month FROM w.date_id)::integer, "
        "extract(day FROM w.date_id)::integer, extract(isodow FROM w.date_id)::integer, "
        "to_char(w.date_id, 'FMDay'), to_char(w.date_id, 'FMMonth'), extract(quarter FROM w.date_id)::integer)"
    )
    covered = (
        f"FROM (SELECT DISTINCT date_id FROM staging.dim_date_window WHERE window_name = {window_sql}) AS w "
        "LEFT JOIN dim_date AS d ON d.date_id = w.date_id"
    )
    counts = [
        f"(SELECT count(*) {covered} WHERE d.date_id IS NULL) AS missing_dates",
        f"(SELECT count(*) {covered} WHERE d.date_id IS NOT NULL AND {parts}) AS wrong_dates",
    ]
    return {
        "table": f"(SELECT {', '.join(counts)}) AS dim_date_window",
        "checks": {
            "dim_date_dates_present": {"check_statement": "missing_dates = 0"},
            "dim_date_parts_right": {"check_statement": "wrong_dates = 0"},
        },
    }
