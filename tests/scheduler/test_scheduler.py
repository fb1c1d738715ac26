"""Airflow as users run it: `make airflow` (api-server, scheduler, dag-processor, triggerer, the
LocalExecutor, metadata in Postgres) on the local stack, driven only through the public REST API
the UI uses. No `dags test`: the scheduler creates and runs every run here.

One Airflow for the session (the `airflow` fixture in tests/conftest.py), in a temporary CONVEYOR_LOCAL_DIR on
free ports, so it never touches a stack the developer has running.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import psycopg
import pyarrow.parquet as pq
import pytest

from conveyor.totesys import windows
from conveyor_local import event_latency
from conveyor_local.provision import delete_bucket

pytestmark = pytest.mark.scheduler


def test_a_backfill_of_three_days_gives_three_successful_runs_each_writing_its_own_date(airflow):
    api = airflow.api
    api.unpause("nightly_file_ingestion")
    backfill = api.backfill(
        "nightly_file_ingestion", "2024-03-02T20:00:00Z", "2024-03-04T20:00:00Z", max_active_runs=3
    )
    assert backfill["dag_id"] == "nightly_file_ingestion"
    runs = api.wait_for_runs("nightly_file_ingestion", lambda r: r["run_type"] == "backfill", count=3)
    assert [r["state"] for r in runs] == ["success"] * 3, [
        airflow.failure_detail("nightly_file_ingestion", r) for r in runs
    ]
    assert sorted(r["data_interval_end"][:10] for r in runs) == ["2024-03-03", "2024-03-04", "2024-03-05"]
    for day in ("03", "04", "05"):
        landed = airflow.keys("raw", "landing/movies/")
        assert f"landing/movies/year=2024/month=03/day={day}/movies.csv" in landed, landed


def test_a_trigger_with_changed_params_writes_what_they_ask_for(airflow):
    api = airflow.api
    api.unpause("retail_data_generator")  # manual schedule: unpausing creates no run
    conf = {"users": 7, "transactions": 31, "seed": 11, "format": "json"}
    run = api.trigger("retail_data_generator", conf=conf)
    [done] = api.wait_for_runs("retail_data_generator", lambda r: r["dag_run_id"] == run["dag_run_id"])
    assert done["state"] == "success", airflow.failure_detail("retail_data_generator", done)
    assert done["conf"] == conf
    users = [k for k in airflow.keys("inbound", "user/") if k.endswith("-seed11.json")]
    transactions = [k for k in airflow.keys("inbound", "transactions/") if k.endswith("-seed11.json")]
    assert len(users) == 1 and len(transactions) == 1, airflow.keys("inbound")
    body = airflow.s3.get_object(Bucket=airflow.bucket("inbound"), Key=users[0])["Body"].read()
    lines = body.decode().splitlines()
    assert len(lines) == 7 and all(json.loads(line) for line in lines)
    body = airflow.s3.get_object(Bucket=airflow.bucket("inbound"), Key=transactions[0])["Body"].read()
    assert len(body.decode().splitlines()) == 31


def test_unpaused_totesys_etl_runs_its_next_intervals_on_its_own_into_the_warehouse(airflow):
    """The scheduler runs totesys_etl by itself; rows changed after its first run reach the
    warehouse through the next one (with Airflow's metadata, and so the XComs, in Postgres)."""
    api = airflow.api
    api.unpause("totesys_etl")
    scheduled = lambda r: r["run_type"] == "scheduled"  # noqa: E731
    [first] = api.wait_for_runs("totesys_etl", scheduled, count=1, timeout=480)
    assert first["state"] == "success", airflow.failure_detail("totesys_etl", first)
    watermark = windows.read_watermark(airflow.s3, airflow.bucket("ingestion"), "totesys_etl")
    assert watermark == datetime.fromisoformat(first["data_interval_end"]) - timedelta(seconds=60)

    # Three orders change just after the watermark: the next scheduled window starts there.
    changed_at = watermark.replace(tzinfo=None) + timedelta(seconds=1)
    with psycopg.connect(airflow.info["postgres"]["totesys"]) as conn:
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s WHERE sales_order_id <= 3",
            (changed_at,),
        )
    runs = api.wait_for_runs("totesys_etl", scheduled, count=2, timeout=480)
    assert [r["state"] for r in runs[:2]] == ["success", "success"], [
        airflow.failure_detail("totesys_etl", r) for r in runs
    ]
    assert fact_sales_order_ids(airflow, changed_at) == [(1,), (2,), (3,)]
    api.settle("totesys_etl")


def fact_sales_order_ids(airflow, last_updated: datetime) -> list[tuple[int]]:
    """The sales orders whose version `last_updated` has its row in the warehouse's fact table."""
    with psycopg.connect(airflow.info["postgres"]["warehouse"]) as conn:
        return conn.execute(
            "SELECT sales_order_id FROM fact_sales_order WHERE last_updated_date = %s "
            "AND last_updated_time = %s ORDER BY 1",
            (last_updated.date(), last_updated.time()),
        ).fetchall()


def test_a_scheduled_totesys_run_that_fails_at_export_strands_nothing(airflow):
    """Under the scheduler: the processed bucket becomes unreachable, so a scheduled run lands and
    models its rows, then fails at export (after its retries). The bucket comes back; the next
    scheduled runs export every row the failed run modelled."""
    api, s3 = airflow.api, airflow.s3
    api.settle("totesys_etl")  # the earlier test's runs all finished, and the DAG paused
    before = api.runs("totesys_etl")
    new = lambda r: r["run_type"] == "scheduled" and r["dag_run_id"] not in {b["dag_run_id"] for b in before}  # noqa: E731
    watermark = windows.read_watermark(s3, airflow.bucket("ingestion"), "totesys_etl")
    changed_at = watermark.replace(tzinfo=None) + timedelta(seconds=1)
    with psycopg.connect(airflow.info["postgres"]["totesys"]) as conn:
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s WHERE sales_order_id IN (7, 8)",
            (changed_at,),
        )
    delete_bucket(s3, airflow.bucket("processed"))
    api.unpause("totesys_etl")
    try:
        failed = api.wait_for_runs("totesys_etl", new, count=1, timeout=480)[0]
        assert failed["state"] == "failed", airflow.failure_detail("totesys_etl", failed)
        states = {t["task_id"]: t["state"] for t in api.task_instances("totesys_etl", failed["dag_run_id"])}
        assert states["model_facts"] == "success" and states["export_star"] == "failed", states
        assert windows.read_watermark(s3, airflow.bucket("ingestion"), "totesys_etl") == watermark
        assert fact_sales_order_ids(airflow, changed_at) == [(7,), (8,)], "the failed run modelled them"

        s3.create_bucket(
            Bucket=airflow.bucket("processed"),
            CreateBucketConfiguration={"LocationConstraint": airflow.info["region"]},
        )
        recovered = api.wait_for_runs("totesys_etl", new, count=2, timeout=480)[1]
        assert recovered["state"] == "success", airflow.failure_detail("totesys_etl", recovered)
    finally:
        api.settle("totesys_etl")
    exported = []
    for key in airflow.keys("processed", "fact_sales_order/"):
        body = s3.get_object(Bucket=airflow.bucket("processed"), Key=key)["Body"].read()
        exported += pq.read_table(io.BytesIO(body)).to_pylist()
    versions = {(r["sales_order_id"], r["last_updated_date"], r["last_updated_time"]) for r in exported}
    assert {(7, changed_at.date(), changed_at.time()), (8, changed_at.date(), changed_at.time())} <= versions
    assert windows.read_watermark(s3, airflow.bucket("ingestion"), "totesys_etl") > watermark


def test_a_totesys_run_without_a_logical_date_is_refused_saying_what_to_pass(airflow):
    """`"logical_date": null` through the REST API gives a run no data interval: totesys_etl
    refuses it at once (no retries: a retry has none either), naming what to pass."""
    api = airflow.api
    api.unpause("totesys_etl")  # a paused DAG's manual runs wait queued
    try:
        run = api.trigger("totesys_etl", logical_date=None)
        assert run["data_interval_start"] is None and run["data_interval_end"] is None
        [done] = api.wait_for_runs("totesys_etl", lambda r: r["dag_run_id"] == run["dag_run_id"], timeout=240)
    finally:
        api.pause("totesys_etl")
    assert done["state"] == "failed", airflow.failure_detail("totesys_etl", done)
    tasks = {
        t["task_id"]: (t["state"], t["try_number"])
        for t in api.task_instances("totesys_etl", run["dag_run_id"])
    }
    assert tasks["plan_window"] == ("failed", 1), tasks
    log = api.task_log("totesys_etl", run["dag_run_id"], "plan_window", 1)
    assert "has no data interval" in log and "Trigger it again with a logical date" in log, log[-3000:]


def test_continuous_s3_event_copy_copies_each_object_put_in_raw(airflow, record_property):
    """Time from put_object in raw to the copy in curated, s3_event_copy running continuously
    (20 objects, 0.5 s apart; `make bench` reports the same figure)."""
    result = event_latency.measure(airflow.api, airflow.s3, airflow.bucket("raw"), airflow.bucket("curated"))
    record_property("put_to_curated_p50_s", round(result["p50"], 2))
    record_property("put_to_curated_p95_s", round(result["p95"], 2))
    print(f"put_object -> curated copy over 20 objects: p50 {result['p50']:.1f}s, p95 {result['p95']:.1f}s")
    assert airflow.keys("curated", "events/latency/") == result["keys"]
    body = airflow.s3.get_object(Bucket=airflow.bucket("curated"), Key="events/latency/object 07.json")[
        "Body"
    ]
    assert json.loads(body.read()) == {"n": 7}
    runs = result["runs"]  # this measurement's, oldest first
    assert len(runs) >= 2 and runs[0]["state"] == "success", "continuous: a new run after each one"
    assert all(r["state"] in ("success", "running", "queued") for r in runs), [
        airflow.failure_detail("s3_event_copy", r) for r in runs if r["state"] == "failed"
    ]
