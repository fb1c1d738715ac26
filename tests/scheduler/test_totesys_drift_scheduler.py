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
    """The worst moment, made certain: the column is added in a transaction that stays open while
    scheduled runs go on, so every check_drift sees the old shape (the catalog change is not
    committed) and the next extract of `address` waits on the ALTER's lock. The commit releases it
    mid-run: that extract must see the new column and reconcile it (extract_table's `hold` locks
    the table before it reads the catalog). The run caught mid-way and every run after it succeed;
    the value reaches the landing table and the version the star; the change is logged once, by
    the run caught mid-way. Without `hold` this test fails: the extract had read the catalog before
    the commit, so it extracted the old columns and only the next run's check logged the change
    (and had the commit come between check_drift and that catalog read, the extract would have
    written the new column and the landing COPY failed on every try: `hold`'s own test)."""
    api = airflow.api
    api.settle("totesys_etl")
    before = {r["dag_run_id"] for r in api.runs("totesys_etl")}
    new = lambda r: r["run_type"] == "scheduled" and r["dag_run_id"] not in before  # noqa: E731
    source = airflow.info["postgres"]["totesys"]
    api.unpause("totesys_etl")
    try:
        with psycopg.connect(source) as alter, psycopg.connect(source, autocommit=True) as watch:
            alter.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
            changed_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            alter.execute(
                "UPDATE address SET region = 'North West', last_updated = %s WHERE address_id = 1",
                (changed_at,),
            )
            deadline = time.monotonic() + 480
            while not watch.execute(  # an extract of address waits for the ALTER's lock
                "SELECT count(*) FROM pg_locks WHERE relation = 'address'::regclass AND NOT granted"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, f"no extract reached address: {api.runs('totesys_etl')}"
                time.sleep(0.5)
            [mid] = [r for r in api.runs("totesys_etl") if new(r) and r["state"] == "running"]
            alter.commit()
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
    assert mid["dag_run_id"] in {r["dag_run_id"] for r in runs}, "the run caught mid-way finished"
    with psycopg.connect(airflow.info["postgres"]["warehouse"]) as conn:
        # (Each window that holds the version lands it: the first scheduled run, a full snapshot
        # when the session has no watermark yet, can hold it too.)
        landed = conn.execute(
            "SELECT DISTINCT region FROM staging.address_landed WHERE address_id = 1 AND last_updated = %s",
            (changed_at,),
        ).fetchall()
        landed_windows = conn.execute(
            "SELECT window_name FROM staging.address_landed WHERE address_id = 1 AND last_updated = %s",
            (changed_at,),
        ).fetchall()
        star_window = conn.execute("SELECT window_name FROM dim_location WHERE location_id = 1").fetchone()
        logged = conn.execute(
            "SELECT table_name, column_name, change, action, detected_at FROM staging.schema_changes "
            "WHERE column_name = 'region'"
        ).fetchall()
    assert landed == [("North West",)], "the new column's value landed"
    assert star_window in landed_windows, "the changed address's version reached the star"
    mid_end = datetime.fromisoformat(mid["data_interval_end"])
    assert logged == [("address", "region", "added", "carry", mid_end)], (
        "logged once, by the run caught mid-way"
    )
