"""Schema drift under the real scheduler (`make airflow`, totesys_etl every minute): a ToteSys
column added while the DAG runs on its schedule does not stop the pipeline.

The module runs after test_scheduler.py (file order) because the column it adds stays in the
session's ToteSys source."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.scheduler


def test_a_column_added_while_totesys_etl_runs_on_its_schedule_does_not_stop_it(airflow):
    """The column is added right after a scheduled run's check_drift passed, before (or while) its
    extract reads the table: the run, and every one after it, succeeds; the new column's value
    reaches the landing table and the changed row's version the star; the change is logged once."""
    api = airflow.api
    api.settle("totesys_etl")
    before = {r["dag_run_id"] for r in api.runs("totesys_etl")}
    new = lambda r: r["run_type"] == "scheduled" and r["dag_run_id"] not in before  # noqa: E731
    api.unpause("totesys_etl")
    try:
        deadline = time.monotonic() + 480
        while True:  # a new scheduled run whose check_drift has passed and which is still running
            mid = [
                r
                for r in api.runs("totesys_etl")
                if new(r)
                and r["state"] == "running"
                and any(
                    t["task_id"] == "check_drift" and t["state"] == "success"
                    for t in api.task_instances("totesys_etl", r["dag_run_id"])
                )
            ]
            if mid:
                break
            assert time.monotonic() < deadline, (
                f"no scheduled run reached check_drift: {api.runs('totesys_etl')}"
            )
            time.sleep(0.5)
        changed_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        with psycopg.connect(airflow.info["postgres"]["totesys"], autocommit=True) as conn:
            conn.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
            conn.execute(
                "UPDATE address SET region = 'North West', last_updated = %s WHERE address_id = 1",
                (changed_at,),
            )
        # Runs until one whose window (its interval less the 60 s lag) holds the change.
        holds = changed_at.replace(tzinfo=UTC) + timedelta(seconds=60)
        covers = lambda r: new(r) and datetime.fromisoformat(r["data_interval_end"]) > holds  # noqa: E731
        api.wait_for_runs("totesys_etl", covers, count=1, timeout=720)
    finally:
        api.settle("totesys_etl")
    runs = [r for r in api.runs("totesys_etl") if new(r)]
    assert [r["state"] for r in runs] == ["success"] * len(runs), [
        airflow.failure_detail("totesys_etl", r) for r in runs if r["state"] != "success"
    ]
    assert mid[0]["dag_run_id"] in {r["dag_run_id"] for r in runs}, "the run caught mid-way finished too"
    with psycopg.connect(airflow.info["postgres"]["warehouse"]) as conn:
        # (Each window that holds the version lands it: the first scheduled run, a full snapshot
        # when the session has no watermark yet, can hold it too.)
        landed = conn.execute(
            "SELECT DISTINCT region FROM staging.address_landed WHERE address_id = 1 AND last_updated = %s",
            (changed_at,),
        ).fetchall()
        logged = conn.execute(
            "SELECT table_name, column_name, change, action FROM staging.schema_changes "
            "WHERE column_name = 'region'"
        ).fetchall()
        star_window = conn.execute("SELECT window_name FROM dim_location WHERE location_id = 1").fetchone()
        landed_windows = conn.execute(
            "SELECT window_name FROM staging.address_landed WHERE address_id = 1 AND last_updated = %s",
            (changed_at,),
        ).fetchall()
    assert landed == [("North West",)], "the new column's value landed"
    assert star_window in landed_windows, "the changed address's version reached the star"
    assert logged == [("address", "region", "added", "carry")], "logged once"
