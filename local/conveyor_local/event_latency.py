"""Event-to-curated latency of `s3_event_copy` under the real scheduler (test and `make bench`).

Objects are put in the raw bucket's `events/` a little apart while the DAG runs continuously;
each is timed from its `put_object` until it is listed in the curated bucket.

The old copier was S3 → SNS → SQS → Lambda. AWS documents S3's own part: "Typically, event
notifications are delivered in seconds but can sometimes take a minute or longer"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html). moto delivers
at once, so the figure here is what Airflow adds: the sensor's wake-up, the copy task's start,
the copy, and the next continuous run's start.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from datetime import datetime

LAMBDA_NOTE = 'the old Lambda copier: "seconds, sometimes a minute or longer" (S3 event delivery, AWS docs)'


def _waiting(api) -> bool:
    """A run of s3_event_copy is waiting on the queue (its sensor poking or deferred)."""
    running = [r for r in api.runs("s3_event_copy") if r["state"] == "running"]
    return any(
        t["task_id"] == "wait_for_events" and t["state"] in ("running", "deferred")
        for r in running
        for t in api.task_instances("s3_event_copy", r["dag_run_id"])
    )


def measure(
    api,
    s3,
    raw: str,
    curated: str,
    count: int = 20,
    spacing: float = 0.5,
    timeout: float = 180,
    warm: bool = False,
    label: str = "latency",
) -> dict:
    """Unpause s3_event_copy, put `count` objects `spacing` seconds apart, time each into curated.
    `warm`: first wait until a run waits on the queue, as in a deployment that runs all along
    (else the first objects also wait for the first run to be created and start). Returns the
    latencies and the DAG's runs during the measurement."""
    # Runs already finished are not this measurement's (one left running by a pause is).
    before = {r["dag_run_id"] for r in api.runs("s3_event_copy") if r["state"] in ("success", "failed")}
    api.unpause("s3_event_copy")
    put_at, seen_at = {}, {}
    try:
        deadline = time.monotonic() + timeout
        while warm and not _waiting(api):
            if time.monotonic() > deadline:
                raise TimeoutError(f"s3_event_copy: no run waited on the queue within {timeout:.0f}s")
            time.sleep(0.5)
        # Curated is listed all along, beside the puts: each object is timed when it appears,
        # not once the last one is put (which made every figure at least the puts' own spread).
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket=curated, Prefix=f"events/{label}/"
                )
                listed = {o["Key"] for page in pages for o in page.get("Contents", [])}
                now = time.monotonic()  # once listed: never before the object was there
                for key in listed:
                    seen_at.setdefault(key, now)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            for number in range(count):
                key = f"events/{label}/object {number:02d}.json"
                put_at[key] = time.monotonic()
                s3.put_object(Bucket=raw, Key=key, Body=json.dumps({"n": number}).encode())
                time.sleep(spacing)
            while not set(put_at) <= set(seen_at):
                if time.monotonic() - min(put_at.values()) > timeout:
                    raise TimeoutError(
                        f"not in curated after {timeout:.0f}s: {sorted(set(put_at) - set(seen_at))}"
                    )
                time.sleep(0.1)
        finally:
            stop.set()
            watcher.join()
        # Continuous: the run that copied the last object finishes and the next one starts. (One
        # run may copy them all, in waves; paused now, it would stay running: the scheduler
        # advances only unpaused DAGs' runs.)
        while True:
            runs = sorted(  # all continuous runs share one logical date: order by when they could start
                (r for r in api.runs("s3_event_copy") if r["dag_run_id"] not in before),
                key=lambda r: datetime.fromisoformat(r["run_after"]),
            )
            if any(r["state"] == "success" for r in runs[:-1]):
                break
            if time.monotonic() - max(put_at.values()) > timeout:
                raise TimeoutError(f"s3_event_copy: no run finished and was followed by the next: {runs}")
            time.sleep(0.5)
    finally:
        api.pause("s3_event_copy")
    latencies = sorted(seen_at[key] - put_at[key] for key in put_at)
    tasks = api.task_instances("s3_event_copy", runs[0]["dag_run_id"]) if runs else []
    return {
        "keys": sorted(put_at),
        "latencies": latencies,
        "p50": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[18],
        "runs": runs,
        "tasks": tasks,
    }


def report(count: int = 20) -> None:
    """`make bench` part 5: `make airflow` on a stack of its own, then `measure`."""
    from conveyor_local.airflow_api import scratch_airflow

    print(f"5. s3_event_copy under the scheduler: put_object in raw -> copy in curated, {count} objects")
    with scratch_airflow() as airflow:
        buckets = airflow.bucket("raw"), airflow.bucket("curated")
        cold = measure(airflow.api, airflow.s3, *buckets, count=count, label="cold")
        warm = measure(airflow.api, airflow.s3, *buckets, count=count, warm=True, label="warm")
    for name, result in (("from unpause (the first run starts)", cold), ("running (a run waits)", warm)):
        print(f"   {name}:")
        print(f"     p50 {result['p50']:5.1f}s   p95 {result['p95']:5.1f}s   (goal: p95 < 5 s)")
        print(f"     max {result['latencies'][-1]:5.1f}s   min {result['latencies'][0]:5.1f}s")
    print(f"   where the first warm object's time goes: {handoff(warm)}")
    print(f"   beside {LAMBDA_NOTE}")


def handoff(result: dict) -> str:
    """The first measured run's steps, from its tasks' times: the sensor's end (an event arrived),
    copy_events queued, started and ended."""
    from datetime import datetime

    run = result["runs"][0]
    tasks = {t["task_id"]: t for t in result["tasks"]}
    sensor, copy = tasks.get("wait_for_events"), tasks.get("copy_events")
    if not (sensor and copy and sensor.get("end_date") and copy.get("start_date") and copy.get("end_date")):
        return f"(run {run['dag_run_id']}: task times not available)"

    def at(value: str) -> datetime:
        return datetime.fromisoformat(value)

    return (
        f"sensor ended -> copy_events queued {(at(copy['queued_when']) - at(sensor['end_date'])).total_seconds():.1f}s, "
        f"-> started {(at(copy['start_date']) - at(copy['queued_when'])).total_seconds():.1f}s, "
        f"-> ended {(at(copy['end_date']) - at(copy['start_date'])).total_seconds():.1f}s"
    )
