"""The Snowflake loads as users run them: `make airflow` (its `make services` starts the fake
Snowflake and applies what `snowflake_setup` creates), objects put into the curated bucket, and
runs of `curated_to_snowflake` created and watched through the REST API only.
"""

from __future__ import annotations

import json

import pytest

from conveyor_local import fake_snowflake

pytestmark = pytest.mark.scheduler

DAG_ID = "curated_to_snowflake"


def order(order_id, total: str, **extra) -> dict:
    return {
        "order_id": order_id,
        "customer": {"id": f"c-{order_id}", "country": "GB"},
        "currency": "GBP",
        "total": total,
        "ordered_at": "2024-03-05T10:00:00+00:00",
        "items": [{"sku": f"S-{order_id}", "qty": 1, "price": total}],
        **extra,
    }


def run_once(airflow) -> dict:
    api = airflow.api
    created = api.trigger(DAG_ID)
    [done] = api.wait_for_runs(DAG_ID, lambda r: r["dag_run_id"] == created["dag_run_id"], timeout=400)
    return done


def test_a_bad_order_event_is_rejected_and_the_good_ones_before_and_after_it_are_flattened(airflow):
    curated = airflow.bucket("curated")
    snowflake = fake_snowflake.connect(airflow.info["snowflake"]["port"])
    cursor = snowflake.cursor()

    def query(sql: str) -> list[tuple]:
        return cursor.execute(sql).fetchall()

    def put(key: str, documents: list[dict]) -> None:
        body = "\n".join(json.dumps(d) for d in documents).encode()
        airflow.s3.put_object(Bucket=curated, Key=key, Body=body)

    ours = "order_id BETWEEN 9000 AND 9099"
    airflow.api.unpause(DAG_ID)
    try:
        put(
            "events/orders/scheduler/first.json",
            [order(9001, "10.00"), order("not-a-number", "1.00"), order(9002, "20.00", currency="EURO")],
        )
        put("events/orders/scheduler/second.json", [order(9003, "30.00")])
        first = run_once(airflow)
        states = {t["task_id"]: t["state"] for t in airflow.api.task_instances(DAG_ID, first["dag_run_id"])}
        assert first["state"] == "failed", airflow.failure_detail(DAG_ID, first)
        assert states == {"copy_raw_events": "success", "merge_orders": "success", "check_loads": "failed"}
        assert query(f"SELECT order_id, total FROM CONVEYOR.EVENTS.ORDERS WHERE {ours} ORDER BY 1") == [
            (9001, 10),
            (9003, 30),
        ]
        rejects = query(
            "SELECT file_name, file_row_number, reason, reported_by FROM CONVEYOR.EVENTS.ORDER_REJECTS "
            "WHERE file_name LIKE '%/scheduler/%' ORDER BY 2"
        )
        assert [(f.rsplit("/", 1)[-1], row, reason) for f, row, reason, _ in rejects] == [
            ("first.json", 2, "order_id is null or not a whole number"),
            ("first.json", 3, "currency is longer than 3 characters"),
        ]
        assert {by for *_, by in rejects} == {f"{DAG_ID}.check_loads {first['dag_run_id']} try 1"}

        # Good events after the bad ones: the next run flattens them and does not fail again.
        put("events/orders/scheduler/third.json", [order(9004, "40.00"), order(9002, "20.00")])
        second = run_once(airflow)
        assert second["state"] == "success", airflow.failure_detail(DAG_ID, second)
        assert [
            r[0] for r in query(f"SELECT order_id FROM CONVEYOR.EVENTS.ORDERS WHERE {ours} ORDER BY 1")
        ] == [
            9001,
            9002,
            9003,
            9004,
        ]
        assert query(
            "SELECT count(*) FROM CONVEYOR.EVENTS.ORDER_REJECTS WHERE file_name LIKE '%/scheduler/%'"
        ) == [(2,)]
    finally:
        airflow.api.pause(DAG_ID)
        snowflake.close()
