"""Where the project's non-Python files live, locally and on MWAA."""

from __future__ import annotations

import os
from pathlib import Path

# plugins/conveyor/paths.py -> the project root in a checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def include_dir() -> Path:
    """The `include/` folder: $CONVEYOR_INCLUDE_DIR, the checkout's, or `dags/include` on MWAA.

    MWAA only syncs `dags/`, `plugins.zip` and `requirements.txt`, so the packaged project
    ships `include/` inside the dags folder. Call this at run time, not at DAG parse time.
    """
    candidates = [
        os.environ.get("CONVEYOR_INCLUDE_DIR"),
        PROJECT_ROOT / "include",
        Path(os.environ.get("AIRFLOW_HOME", "/usr/local/airflow")) / "dags" / "include",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"no include/ folder found; looked in {[str(c) for c in candidates if c]}")


def sql_path(*parts: str) -> Path:
    """`include/sql/<parts>`: how every SQL file or folder is found, engine first
    (`sql_path("warehouse", "dim_staff.sql")`); `sql_path()` is the SQL operators'
    `template_searchpath`, so they name files the same way (`sql_files`)."""
    return include_dir().joinpath("sql", *parts)


def sql_files(engine: str, names) -> list[str]:
    """`<engine>/<name>.sql` per name: what an SQL operator under `template_searchpath=[sql_path()]`
    names as its `sql` (and `sql_path(*file.split("/"))` reads)."""
    return [f"{engine}/{name}.sql" for name in names]
