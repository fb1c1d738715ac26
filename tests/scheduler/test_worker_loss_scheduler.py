"""A Celery worker lost in the middle of a task, as MWAA loses one when it scales in or a container
dies: `make airflow` with CONVEYOR_EXECUTOR=celery (Redis, two workers, each in a directory and
session of its own), driven through the REST API.

The module is named to run last: the worker it kills stays dead for the rest of the session.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from conveyor.totesys import windows
from conveyor_local import stack
from conveyor_local.airflow_api import AirflowAPIError

pytestmark = pytest.mark.scheduler


def _map_index(api, run_id: str, table: str) -> int | None:
    """extract_table's map index for `table` in run `run_id` (its position in check_drift's list),
    once check_drift has run. (rendered_map_index is set only when a try ends.)"""
    run = urllib.parse.quote(run_id, safe="")
    try:
        specs = api._send(
            "GET",
            f"/api/v2/dags/totesys_etl/dagRuns/{run}/taskInstances/check_drift/xcomEntries/return_value"
            "?deserialize=true",
        )["value"]
    except AirflowAPIError:
        return None  # check_drift has not run yet
    return [spec["name"] for spec in specs].index(table)


def _extract(api, run_id: str, map_index: int) -> dict:
    run = urllib.parse.quote(run_id, safe="")
    return api._send("GET", f"/api/v2/dags/totesys_etl/dagRuns/{run}/taskInstances/extract_table/{map_index}")


def _try(api, run_id: str, map_index: int, try_number: int) -> dict:
    run = urllib.parse.quote(run_id, safe="")
    return api._send(
        "GET",
        f"/api/v2/dags/totesys_etl/dagRuns/{run}/taskInstances/extract_table/{map_index}/tries/{try_number}",
    )


def test_a_worker_killed_mid_extract_has_the_task_retried_on_the_other_worker_and_lands_each_row_once(
    celery_airflow,
):
    """The extract of `address` waits for a lock the test holds on the ToteSys table (drift.hold
    waits up to 10 s a try); meanwhile its worker's whole session (the worker and the task
    processes it forked: a container) is SIGKILLed and the lock released. The scheduler fails
    that try when its heartbeat stops (task_instance_heartbeat_timeout: 30 s in the tests) and the
    retry runs on the other worker; the run succeeds and every changed row lands exactly once, in
    the run's window."""
    airflow = celery_airflow
    api, s3 = airflow.api, airflow.s3
    workers = {w["name"]: w for w in json.loads((airflow.local_dir / "stack.json").read_text())["workers"]}
    assert len(workers) >= 2, workers
    api.settle("totesys_etl")
    before = {r["dag_run_id"] for r in api.runs("totesys_etl")}
    watermark = windows.read_watermark(s3, airflow.bucket("ingestion"), "totesys_etl")
    # Into the next window: just after the watermark, or (no run yet) well inside the first,
    # full-snapshot window.
    changed_at = (
        watermark.replace(tzinfo=None) + timedelta(seconds=1)
        if watermark
        else datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=10)
    )
    changed = list(range(1, 6))
    source = airflow.info["postgres"]["totesys"]
    with psycopg.connect(source) as conn:
        conn.execute(
            "UPDATE address SET postal_code = 'W1 0AA', last_updated = %s WHERE address_id = ANY(%s)",
            (changed_at, changed),
        )
    api.unpause("totesys_etl")
    try:
        with psycopg.connect(source) as lock, psycopg.connect(source, autocommit=True) as watch:
            lock.execute("LOCK TABLE address IN ACCESS EXCLUSIVE MODE")
            deadline = time.monotonic() + 480
            map_index = None
            while map_index is None:  # the first new run's check_drift has run
                assert time.monotonic() < deadline, f"no run reached its extracts: {api.runs('totesys_etl')}"
                time.sleep(0.5)
                fresh = [r for r in api.runs("totesys_etl") if r["dag_run_id"] not in before]
                if fresh:
                    run_id = fresh[0]["dag_run_id"]
                    map_index = _map_index(api, run_id, "address")
            # The extract waits for the lock (drift.hold: up to migrations.LOCK_TIMEOUT, 10 s, a try).
            while True:
                assert time.monotonic() < deadline, (
                    f"no extract of address held: {_extract(api, run_id, map_index)}"
                )
                if watch.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'address'::regclass AND NOT granted"
                ).fetchone()[0]:
                    ti = _extract(api, run_id, map_index)
                    if ti["state"] == "running" and ti["hostname"] in workers and ti["pid"]:
                        break
                time.sleep(0.1)
            victim, killed_try = workers[ti["hostname"]], ti["try_number"]
            # The task process is the victim's (in its session), which goes as a container does:
            # the worker and every process it started, at once.
            assert os.getsid(ti["pid"]) == victim["pid"], (ti, victim)
            killed = stack.kill_session(victim["pid"], signal.SIGKILL)
            assert victim["pid"] in killed and ti["pid"] in killed, (killed, ti, victim)
            lock.rollback()  # the lock goes; the dead try's query has no client to answer
        [done] = api.wait_for_runs("totesys_etl", lambda r: r["dag_run_id"] == run_id, timeout=480)
    finally:
        api.settle("totesys_etl")
    assert done["state"] == "success", airflow.failure_detail("totesys_etl", done)
    assert killed_try < 3, f"the kill came at try {killed_try}, the last (retries: 2)"
    dead = _try(api, run_id, map_index, killed_try)
    assert dead["state"] == "failed" and dead["hostname"] == victim["name"], dead
    retried = _extract(api, run_id, map_index)
    survivors = set(workers) - {victim["name"]}
    assert retried["state"] == "success" and retried["try_number"] == killed_try + 1, retried
    assert retried["hostname"] in survivors, (retried, victim["name"])
    with psycopg.connect(airflow.info["postgres"]["warehouse"]) as conn:
        landed = conn.execute(
            "SELECT address_id, window_name FROM staging.address_landed WHERE last_updated = %s "
            "ORDER BY address_id",
            (changed_at,),
        ).fetchall()
        [(rows, distinct)] = conn.execute(
            "SELECT count(*), count(DISTINCT (address_id, last_updated)) FROM staging.address_landed "
            "WHERE window_name = %s",
            (landed[0][1] if landed else "",),
        ).fetchall()
    assert [a for a, _ in landed] == changed, f"each changed row landed once: {landed}"
    assert {w for _, w in landed} == {landed[0][1]}, f"in one window: {landed}"
    assert rows == distinct, f"the run's window landed {rows} rows for {distinct} versions"
