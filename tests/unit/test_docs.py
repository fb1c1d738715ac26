"""The README is a map that stays true: every DAG in dags/ has its row and its page (with the same
four parts), the DAG count it states is the real one, and docs/settings.md lists exactly the
settings the code reads, each once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conveyor import deadlines, resources, snowflake
from conveyor.nightly import ingest
from conveyor.totesys import tables

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PAGES = ROOT / "docs" / "pipelines"
HEADINGS = ["what it does", "reads → writes", "reruns and backfills", "what to do when it fails"]
NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
]
KINDS = ("Airflow config", "Variable", "Param", "config JSON")


def dag_ids() -> list[str]:
    """Each DAG file's DAG_ID (one DAG per file, named after it)."""
    ids = []
    for path in sorted((ROOT / "dags").glob("*.py")):
        match = re.search(r'^DAG_ID = "(\w+)"$', path.read_text(), re.M)
        assert match, f"{path.name} has no DAG_ID constant"
        assert match.group(1) == path.stem, f"{path.name} defines {match.group(1)}"
        ids.append(match.group(1))
    return ids


def headings(markdown: str) -> list[str]:
    return [h.strip().lower().replace("->", "→") for h in re.findall(r"^## (.+)$", markdown, re.M)]


def readme_rows() -> dict[str, str]:
    """The pipeline table's rows by the DAG they link."""
    return dict(re.findall(r"^\| \[`(\w+)`\]\(dags/\1\.py\) \|(.*)$", README, re.M))


@pytest.mark.parametrize("dag_id", dag_ids())
def test_every_dag_has_its_readme_row_and_its_page_with_the_four_parts(dag_id):
    row = readme_rows().get(dag_id)
    assert row, f"README has no row for {dag_id} in its pipeline table"
    assert f"](docs/pipelines/{dag_id}.md)" in row, f"README's {dag_id} row does not link its page"
    page = PAGES / f"{dag_id}.md"
    assert page.is_file(), f"no docs/pipelines/{dag_id}.md"
    found = headings(page.read_text())
    assert [h for h in found if h in HEADINGS] == HEADINGS, (
        f"{page.name}: ## headings {found}, want {HEADINGS}"
    )


def test_no_row_or_page_for_a_dag_that_is_not_there_and_the_count_is_true():
    dags = set(dag_ids())
    assert set(readme_rows()) == dags
    assert {p.stem for p in PAGES.glob("*.md")} <= dags, "a page for a DAG that is not in dags/"
    counts = [m.lower() for m in re.findall(r"\b([A-Za-z]+) DAGs\b", README) if m.lower() in NUMBERS]
    assert counts, "README states no DAG count"
    assert {NUMBERS.index(c) for c in counts} == {len(dags)}, f"README counts {counts}; dags/ has {len(dags)}"


# --- docs/settings.md: one row per setting the code reads -------------------------------------


def settings_table() -> list[dict]:
    text = (ROOT / "docs" / "settings.md").read_text()
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1] in KINDS:
            rows.append(dict(zip(("setting", "kind", "default", "read_by"), cells, strict=True)))
    return rows


def code_settings() -> dict[str, tuple[str, str | None]]:
    """What the code reads, as the table names it: setting -> (kind, default or None)."""
    found: dict[str, tuple[str, str | None]] = {}
    sources = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    option = re.compile(r'conf\.get\w*\(\s*"conveyor",\s*"(\w+)",\s*fallback=([^)]+)\)')
    for path in sources:
        for name, fallback in option.findall(path.read_text()):
            found[f"conveyor.{name}"] = ("Airflow config", fallback.strip().strip('"'))
    # The deadlines' options are named after their DAGs (conveyor.deadlines' two tables).
    for dag_id, seconds in deadlines.ALLOWED_SECONDS.items():
        found[f"conveyor.{dag_id}_deadline_seconds"] = ("Airflow config", str(seconds))
    for dag_id, finish_by in deadlines.FINISH_BY.items():
        found[f"conveyor.{dag_id}_finish_by"] = ("Airflow config", finish_by)
    for name in resources.VARIABLES:
        found[name] = ("Variable", None)
    defaults = snowflake.SnowflakeSettings()
    for key in snowflake.SnowflakeSettings.__dataclass_fields__:
        value = getattr(defaults, key)
        found[f"{resources.SNOWFLAKE_VARIABLE}.{key}"] = (
            "Variable",
            json.dumps(value) if value in ("", {}) else value,
        )
    for field in ingest.FIELDS:
        found[f"nightly_file_ingestion.json: datasets[].{field}"] = ("config JSON", None)
    for field in tables.TABLE_FIELDS:
        found[f"totesys_tables.json: tables[].{field}"] = ("config JSON", None)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors
    for dag_id, dag in bag.dags.items():
        for name in dag.params:
            found[f"{dag_id}.{name}"] = ("Param", json.dumps(dag.params.get_param(name).value))
    return found


def test_settings_table_lists_exactly_what_the_code_reads_each_once():
    rows = settings_table()
    names = [r["setting"].strip("`") for r in rows]
    assert len(names) == len(set(names)), (
        f"a setting with two rows: {sorted(n for n in names if names.count(n) > 1)}"
    )
    code = code_settings()
    assert sorted(set(code) - set(names)) == [], "read by the code, missing from docs/settings.md"
    assert sorted(set(names) - set(code)) == [], "in docs/settings.md, read by nothing"
    for row in rows:
        kind, default = code[row["setting"].strip("`")]
        assert row["kind"] == kind, row
        assert row["read_by"], row
        if default is not None:  # the table states the code's default
            stated = re.match(r"`([^`]*)`", row["default"])
            assert stated and stated.group(1) == default, (row, default)


def test_the_settings_check_can_fail():
    code = code_settings()
    assert "conveyor.totesys_lag_seconds" in code and code["conveyor.totesys_lag_seconds"][1] == "60"
    assert code["retail_data_generator.format"] == ("Param", '"csv"')
    assert code["conveyor_snowflake.storage_integration"] == ("Variable", '""')
    assert "conveyor.not_an_option" not in code
