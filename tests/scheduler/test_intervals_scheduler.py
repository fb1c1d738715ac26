"""Runs created without a logical date, and backfills of a DAG that acts on a folder's current
state, under the real scheduler (the session's `make airflow`), driven through the REST API only.

In Airflow 3.3, `POST /api/v2/dags/{id}/dagRuns` with `"logical_date": null` creates a run with
no logical date and no data interval, whatever the timetable (`run_after` is the trigger time):
- `nightly_file_ingestion` dates its keys by the interval, so it refuses the run at once, saying
  to pass a logical date; a run with the logical date it suggests lands that day;
- `inbound_to_stage` moves what is in inbound now, archived by arrival: it needs no interval, so
  the run moves every version there; and it cannot be backfilled, which Airflow refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from conveyor_local.airflow_api import AirflowAPIError

pytestmark = pytest.mark.scheduler


@contextmanager
def unpaused(api, dag_id: str) -> Iterator[None]:
    api.unpause(dag_id)
    try:
        yield
    finally:
        api.pause(dag_id)


def states(api, dag_id: str, run: dict) -> dict[str, tuple[str, int]]:
    return {
        t["task_id"]: (t["state"], t["try_number"]) for t in api.task_instances(dag_id, run["dag_run_id"])
    }


def test_a_nightly_run_without_a_logical_date_is_refused_saying_what_to_pass(airflow):
    api, dag_id = airflow.api, "nightly_file_ingestion"
    with unpaused(api, dag_id):
        run = api.trigger(dag_id, logical_date=None)
        assert (run["logical_date"], run["data_interval_start"], run["data_interval_end"]) == (
            None,
            None,
            None,
        )
        assert run["run_after"]
        [done] = api.wait_for_runs(dag_id, lambda r: r["dag_run_id"] == run["dag_run_id"], timeout=240)
        assert done["state"] == "failed", airflow.failure_detail(dag_id, done)
        tasks = states(api, dag_id, done)
        assert tasks["load_datasets"] == ("failed", 1), tasks  # at once: a retry has no interval either
        assert tasks["copy_dataset"][0] == "upstream_failed", tasks
        log = api.task_log(dag_id, done["dag_run_id"], "load_datasets", 1)
        assert f"run {done['dag_run_id']!r} of nightly_file_ingestion has no data interval" in log, log[
            -3000:
        ]
        assert "Trigger it again with a logical date" in log

        # What the message says to pass: a logical date; the run covers the interval ending then.
        dated = api.trigger(dag_id, logical_date="2024-04-10T20:00:00Z")
        assert (dated["data_interval_start"], dated["data_interval_end"]) == (
            "2024-04-09T20:00:00Z",
            "2024-04-10T20:00:00Z",
        )
        [landed] = api.wait_for_runs(dag_id, lambda r: r["dag_run_id"] == dated["dag_run_id"], timeout=240)
        assert landed["state"] == "success", airflow.failure_detail(dag_id, landed)
        assert "landing/movies/year=2024/month=04/day=10/movies.csv" in airflow.keys("raw", "landing/movies/")


def wait_for_a_quiet_moment(api, dag_id: str, every_minutes: int = 5) -> None:
    """Return when no run of `dag_id` is active and no scheduled run is due for 100 s.

    The scheduler creates a tick's run a little after the tick (more on a busy machine), so a
    tick less than a minute ago counts as due too: its run is waited for.
    """
    period = every_minutes * 60
    now = datetime.now(UTC)
    last_tick = now - timedelta(seconds=now.timestamp() % period)
    due = [
        t for t in (last_tick, last_tick + timedelta(seconds=period)) if -60 < (t - now).total_seconds() < 100
    ]
    for tick in due:
        api.wait_for_runs(
            dag_id,
            lambda r, tick=tick: (
                r["run_type"] == "scheduled" and datetime.fromisoformat(r["data_interval_end"]) == tick
            ),
            timeout=400,
        )
    api.wait_for_runs(dag_id, lambda r: True, count=len(api.runs(dag_id)), timeout=240)


def test_an_inbound_run_without_a_logical_date_moves_every_version_there(airflow):
    api, dag_id, s3 = airflow.api, "inbound_to_stage", airflow.s3
    inbound = airflow.bucket("inbound")
    with unpaused(api, dag_id):
        # Unpausing starts a scheduled run of the latest interval, and another comes every 5
        # minutes: let them pass, so that the run we trigger is the one that finds our files.
        api.wait_for_runs(dag_id, lambda r: r["run_type"] == "scheduled", timeout=240)
        wait_for_a_quiet_moment(api, dag_id)
        for body in (b"user_id\n1\n", b"user_id\n1\n2\n"):
            s3.put_object(Bucket=inbound, Key="user/null-date.csv", Body=body)
        s3.put_object(Bucket=inbound, Key="transactions/null-date.csv", Body=b"transaction_id\n9\n")
        versions = {
            v["VersionId"]: v
            for v in s3.list_object_versions(Bucket=inbound, Prefix="user/null-date")["Versions"]
        }

        run = api.trigger(dag_id, logical_date=None)
        assert (run["logical_date"], run["data_interval_end"]) == (None, None)
        [finished] = api.wait_for_runs(dag_id, lambda r: r["dag_run_id"] == run["dag_run_id"], timeout=240)
        assert finished["state"] == "success", airflow.failure_detail(dag_id, finished)
        assert states(api, dag_id, finished)["stage_and_archive"] == ("success", 1)

    left = s3.list_object_versions(Bucket=inbound, Prefix="user/null-date")
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    stage = airflow.bucket("stage")
    assert s3.get_object(Bucket=stage, Key="user/null-date.csv")["Body"].read() == b"user_id\n1\n2\n"
    archived = [k for k in airflow.keys("archive", "user/") if k.endswith("_null-date.csv")]
    assert sorted(k.split("_")[-2] for k in archived) == sorted(versions), "every version, once"
    for key in archived:
        arrived = versions[key.split("_")[-2]]["LastModified"]
        assert key.startswith(f"user/{arrived:year=%Y/month=%m/day=%d}/{arrived:%Y%m%dT%H%M%S}Z-")


def test_inbound_to_stage_cannot_be_backfilled(airflow):
    """A backfill would move today's inbound files in runs of past intervals, beside the
    scheduled runs: Airflow refuses to create it, and the UI offers no backfill for the DAG."""
    api, dag_id = airflow.api, "inbound_to_stage"
    assert api.dag_details(dag_id)["is_backfillable"] is False
    with pytest.raises(AirflowAPIError, match=r"400 .*does not allow backfill runs"):
        api.backfill(dag_id, "2024-03-05T19:00:00Z", "2024-03-05T20:00:00Z", max_active_runs=1)
    assert api.backfills(dag_id) == []
    assert [r for r in api.runs(dag_id) if r["run_type"] == "backfill"] == []
