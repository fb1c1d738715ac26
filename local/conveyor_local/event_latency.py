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
import time
from datetime import datetime

LAMBDA_NOTE = 'the old Lambda copier: "seconds, sometimes a minute or longer" (S3 event delivery, AWS docs)'


def measure(
    api, s3, raw: str, curated: str, count: int = 20, spacing: float = 0.5, timeout: float = 180
) -> dict:
    """Unpause s3_event_copy, put `count` objects `spacing` seconds apart, time each into curated.
    Returns the latencies and the DAG's runs during the measurement."""
    # Runs already finished are not this measurement's (one left running by a pause is).
    before = {r["dag_run_id"] for r in api.runs("s3_event_copy") if r["state"] in ("success", "failed")}
    api.unpause("s3_event_copy")
    put_at, seen_at = {}, {}
    try:
        for number in range(count):
            key = f"events/latency/object {number:02d}.json"
            s3.put_object(Bucket=raw, Key=key, Body=json.dumps({"n": number}).encode())
            put_at[key] = time.monotonic()
            time.sleep(spacing)
        while len(seen_at) < len(put_at):
            now = time.monotonic()
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=curated, Prefix="events/latency/")
            for key in {o["Key"] for page in pages for o in page.get("Contents", [])} - set(seen_at):
                seen_at[key] = now
            if now - min(put_at.values()) > timeout:
                raise TimeoutError(
                    f"not in curated after {timeout:.0f}s: {sorted(set(put_at) - set(seen_at))}"
                )
            time.sleep(0.1)
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
    return {
        "keys": sorted(put_at),
        "latencies": latencies,
        "p50": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[18],
        "runs": runs,
    }


def report(count: int = 20) -> None:
    """`make bench` part 5: `make airflow` on a stack of its own, then `measure`."""
    from conveyor_local.airflow_api import scratch_airflow

    print(f"5. s3_event_copy under the scheduler: put_object in raw -> copy in curated, {count} objects")
    with scratch_airflow() as airflow:
        result = measure(
            airflow.api, airflow.s3, airflow.bucket("raw"), airflow.bucket("curated"), count=count
        )
    print(f"   p50 {result['p50']:5.1f}s   p95 {result['p95']:5.1f}s   (goal: p95 < 10 s)")
    print(f"   max {result['latencies'][-1]:5.1f}s   min {result['latencies'][0]:5.1f}s")
    print(f"   beside {LAMBDA_NOTE}")
