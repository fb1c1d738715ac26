"""Freshness end to end under the real scheduler (`make bench --only freshness`; issue 20).

Two paths, each timed per item from the moment it changes at its source to the moment its row is
where an analyst reads it, with every DAG on its own schedule (nothing is triggered by hand):

- ToteSys: a sales order changed in the source database (units_sold + 1, last_updated = now,
  as ToteSys's own writes do) -> its new version's row in the warehouse's `fact_sales_order`.
  `totesys_etl` runs on its deployed schedule and lag (`[conveyor] totesys_cron`, every 3 min;
  `totesys_lag_seconds`, 60 s) unless told otherwise. The changes are spread evenly over one
  schedule interval, so they meet every phase of it: a change made just after a window's end
  waits for the next interval, one made just before it does not. What to expect: lag + up to one
  interval + the run's own time (goal: p95 < 2 schedule intervals).
- Events: an order object put in the raw bucket's `events/` -> its row in Snowflake's
  EVENTS.ORDERS (the fake Snowflake): S3 -> SNS -> SQS -> `s3_event_copy` -> curated (an asset
  event) -> `curated_to_snowflake` (COPY INTO the files the event names, MERGE into ORDERS).

What this cannot show: S3's own event delivery (moto delivers at once; AWS: "typically seconds,
sometimes a minute or longer") and a real Snowflake warehouse's COPY/MERGE times (the fake runs
DuckDB in-process, on the same two cores as everything else).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime

TOTESYS_DAG = "totesys_etl"
EVENT_DAGS = ("s3_event_copy", "curated_to_snowflake")


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def _summary(latencies: list[float]) -> dict:
    latencies = sorted(latencies)
    return {
        "latencies": latencies,
        "p50": statistics.median(latencies),
        "p95": _p95(latencies),
        "max": latencies[-1],
    }


def _cron_seconds(cron: str) -> int:
    """The interval of the `*/N * * * *` / `* * * * *` crons the bench runs with."""
    minute = cron.split()[0]
    if minute == "*":
        return 60
    if minute.startswith("*/"):
        return 60 * int(minute[2:])
    raise ValueError(f"freshness bench: give an every-N-minutes cron (*/N * * * *), not {cron!r}")


def totesys(airflow, changes: int = 20, interval_s: int = 180, timeout: float = 900) -> dict:
    """Change `changes` sales orders evenly over one schedule interval while totesys_etl runs on
    its schedule; time each until its version's fact row is in the warehouse."""
    import psycopg

    api = airflow.api
    source, warehouse = airflow.info["postgres"]["totesys"], airflow.info["postgres"]["warehouse"]
    scheduled = lambda r: r["run_type"] == "scheduled"  # noqa: E731
    api.unpause(TOTESYS_DAG)  # left running: the stack is stopped after the bench
    # Warm: the first scheduled run (the one unpausing creates) has built the warehouse, as in a
    # deployment that runs all along.
    [first] = api.wait_for_runs(TOTESYS_DAG, scheduled, count=1, timeout=timeout)
    if first["state"] != "success":
        raise RuntimeError(airflow.failure_detail(TOTESYS_DAG, first))
    with psycopg.connect(source, autocommit=True) as conn:
        ids = [
            i
            for (i,) in conn.execute("SELECT sales_order_id FROM sales_order ORDER BY 1 LIMIT %s", (changes,))
        ]
    if len(ids) < changes:
        raise RuntimeError(f"the ToteSys source has {len(ids)} sales orders, fewer than {changes}")
    changed: dict[int, tuple[datetime, float]] = {}
    seen: dict[int, float] = {}
    spacing = interval_s / changes

    def poll() -> None:
        pending = [i for i in changed if i not in seen]
        if not pending:
            return
        with psycopg.connect(warehouse) as conn:
            rows = conn.execute(
                "SELECT sales_order_id, last_updated_date, last_updated_time FROM fact_sales_order "
                "WHERE sales_order_id = ANY(%s)",
                (pending,),
            ).fetchall()
        now = time.monotonic()
        for order_id, day, at in rows:
            version = changed[order_id][0]
            if (day, at) == (version.date(), version.time()):
                seen.setdefault(order_id, now)

    start = time.monotonic()
    with psycopg.connect(source, autocommit=True) as conn:
        for number, order_id in enumerate(ids):
            while time.monotonic() < start + number * spacing:
                poll()
                time.sleep(0.5)
            version = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            conn.execute(
                "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = %s WHERE sales_order_id = %s",
                (version, order_id),
            )
            changed[order_id] = (version, time.monotonic())
    deadline = time.monotonic() + timeout
    while len(seen) < len(changed):
        if time.monotonic() > deadline:
            late = sorted(set(changed) - set(seen))
            runs = [(r["dag_run_id"], r["state"]) for r in api.runs(TOTESYS_DAG)[-5:]]
            raise TimeoutError(
                f"sales orders {late} not in fact_sales_order after {timeout:.0f}s; runs {runs}"
            )
        poll()
        time.sleep(1)
    result = _summary([seen[i] - changed[i][1] for i in changed])
    result["interval_s"] = interval_s
    return result


def events(airflow, count: int = 10, spacing: float = 3.0, timeout: float = 300) -> dict:
    """Put `count` order objects in raw `spacing` s apart while s3_event_copy and
    curated_to_snowflake run; time each until its order is in EVENTS.ORDERS."""
    from conveyor_local import fake_snowflake
    from conveyor_local.event_latency import _waiting

    api, s3 = airflow.api, airflow.s3
    raw = airflow.bucket("raw")
    snowflake = fake_snowflake.connect(airflow.info["snowflake"]["port"])
    for dag_id in EVENT_DAGS:  # left running (s3_event_copy is continuous): the stack is stopped after
        api.unpause(dag_id)
    put_at: dict[int, float] = {}
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while not _waiting(api):  # warm: a run of s3_event_copy waits on the queue
        if time.monotonic() > deadline:
            raise TimeoutError(f"s3_event_copy: no run waited on the queue within {timeout:.0f}s")
        time.sleep(0.5)
    base = 9_700_000

    def poll() -> None:
        pending = [i for i in put_at if i not in seen]
        if not pending:
            return
        listed = ", ".join(str(i) for i in pending)
        rows = (
            snowflake.cursor()
            .execute(f"SELECT ORDER_ID FROM CONVEYOR.EVENTS.ORDERS WHERE ORDER_ID IN ({listed})")
            .fetchall()
        )
        now = time.monotonic()
        for (order_id,) in rows:
            seen.setdefault(int(order_id), now)

    start = time.monotonic()
    for number in range(count):
        while time.monotonic() < start + number * spacing:
            poll()
            time.sleep(0.2)
        order_id = base + number
        document = {
            "order_id": order_id,
            "customer": {"id": f"fresh-{number}", "country": "GB"},
            "currency": "GBP",
            "total": "9.99",
            "ordered_at": "2026-11-30T10:00:00+00:00",
            "items": [],
        }
        put_at[order_id] = time.monotonic()
        s3.put_object(
            Bucket=raw, Key=f"events/freshness/order-{order_id}.json", Body=json.dumps(document).encode()
        )
    deadline = time.monotonic() + timeout
    while len(seen) < len(put_at):
        if time.monotonic() > deadline:
            late = sorted(set(put_at) - set(seen))
            raise TimeoutError(f"orders {late} not in EVENTS.ORDERS after {timeout:.0f}s")
        poll()
        time.sleep(0.2)
    return _summary([seen[i] - put_at[i] for i in put_at])


def report(cron: str = "*/3 * * * *", lag_seconds: int = 60, changes: int = 20, objects: int = 10) -> dict:
    """`make bench` part 7: `make airflow` on a stack of its own, then both measurements."""
    from conveyor_local.airflow_api import scratch_airflow

    interval_s = _cron_seconds(cron)
    print(
        f"7. Freshness under the scheduler: {changes} ToteSys changes -> fact_sales_order "
        f"(totesys_etl every {interval_s // 60} min, lag {lag_seconds} s); "
        f"{objects} raw objects -> Snowflake EVENTS.ORDERS"
    )
    env = {
        "AIRFLOW__CONVEYOR__TOTESYS_CRON": cron,
        "AIRFLOW__CONVEYOR__TOTESYS_LAG_SECONDS": str(lag_seconds),
    }
    with scratch_airflow(**env) as airflow:
        airflow.api.unpause(TOTESYS_DAG)  # every DAG on its schedule, as deployed
        order_events = events(airflow, count=objects)
        changes_result = totesys(airflow, changes=changes, interval_s=interval_s)
    interval_m = interval_s / 60
    print(
        f"   ToteSys row -> fact row:   p50 {changes_result['p50']:6.1f}s   p95 {changes_result['p95']:6.1f}s"
        f"   max {changes_result['max']:6.1f}s   = p95 {changes_result['p95'] / interval_s:.2f} intervals"
        f" of {interval_m:g} min (goal < 2)"
    )
    print(
        f"   raw object -> EVENTS.ORDERS: p50 {order_events['p50']:6.1f}s   p95 {order_events['p95']:6.1f}s"
        f"   max {order_events['max']:6.1f}s"
    )
    print("   (moto delivers S3 events at once; AWS: seconds, sometimes a minute; the Snowflake is the fake)")
    return {"totesys": changes_result, "events": order_events}
