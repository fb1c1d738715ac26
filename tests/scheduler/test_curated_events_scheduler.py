"""curated_to_snowflake triggered by `curated` asset events under the real scheduler (`make
airflow`, REST API only): events that queue while a run is going are loaded by the next run.

Airflow 3.3 hands an asset-triggered run only the events up to the first one queued for it
(apache/airflow#56050): with `max_active_runs=1`, the events b and c posted while run 1 runs give
run 2 event b only, and no run ever has c. Before the fix c's file waited for the daily sweep.
"""

from __future__ import annotations

import json
import time

import pytest

from conveyor_local import fake_snowflake

pytestmark = pytest.mark.scheduler

DAG_ID = "curated_to_snowflake"


def test_events_queued_while_a_run_is_going_are_loaded_by_the_next_run(airflow):
    api = airflow.api
    curated = airflow.bucket("curated")
    keys = {}
    for number, name in enumerate("abc"):
        keys[name] = f"events/queued/{name}.json"
        document = {
            "order_id": 9_500 + number,
            "customer": {"id": f"c-{number}", "country": "GB"},
            "currency": "GBP",
            "total": "1.00",
            "ordered_at": "2024-03-05T10:00:00+00:00",
            "items": [],
        }
        airflow.s3.put_object(Bucket=curated, Key=keys[name], Body=json.dumps(document).encode())
    [asset] = [a for a in api._send("GET", "/api/v2/assets?limit=100")["assets"] if a["name"] == "curated"]

    def event(name: str) -> None:  # what s3_event_copy's outlet posts after copying `name`
        api._send("POST", "/api/v2/assets/events", {"asset_id": asset["id"], "extra": {"keys": [keys[name]]}})

    before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
    api.unpause(DAG_ID)
    try:
        event("a")
        deadline = time.monotonic() + 180
        while not (
            running := [
                r for r in api.runs(DAG_ID) if r["state"] == "running" and r["dag_run_id"] not in before
            ]
        ):
            assert time.monotonic() < deadline, "no run of curated_to_snowflake started for event a"
            time.sleep(0.2)
        event("b")
        time.sleep(0.5)
        event("c")
        first = running[0]["dag_run_id"]
        still = {r["dag_run_id"]: r["state"] for r in api.runs(DAG_ID)}
        assert still[first] == "running", "run 1 ended before events b and c queued: the case was not made"

        runs = api.wait_for_runs(DAG_ID, lambda r: r["dag_run_id"] not in before, count=2, timeout=400)
        assert [r["state"] for r in runs[:2]] == ["success", "success"], runs
        loaded = (
            fake_snowflake.connect(airflow.info["snowflake"]["port"])
            .cursor()
            .execute(
                "SELECT DISTINCT file_name FROM CONVEYOR.EVENTS.RAW_EVENTS WHERE file_name LIKE '%/queued/%'"
            )
            .fetchall()
        )
        assert sorted(f.rsplit("/", 1)[-1] for (f,) in loaded) == ["a.json", "b.json", "c.json"]
    finally:
        api.settle(DAG_ID)
