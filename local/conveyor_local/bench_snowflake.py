"""`make bench` section 6 (`--only snowflake`): what one curated_to_snowflake run costs on the fake
Snowflake at 10 and at 1,000 earlier files (issue 19, item 2), side by side, and their ratio.

A run is the DAG's own tasks (copy_raw_events, merge_orders, check_loads), called as Airflow calls
them, triggered by a `curated` asset event naming three new files. Counted by
`fake_snowflake.cost_accounting()`: the statements the run sends, the files its COPY statements
list or name, and the rows each table scan returns after the filters pushed into it. What the fake
cannot show is said in tests/integration/test_snowflake_load_cost.py (which asserts the same
figures): Snowflake's own pruning and listing costs.

The earlier files are built directly (put, their rows inserted into RAW_EVENTS, recorded in the load
history), then merged by one run: a COPY per file takes a second on the fake.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from types import SimpleNamespace

from conveyor import snowflake
from conveyor.assets import CURATED as CURATED_ASSET
from conveyor.assets import curated_extra
from conveyor.resources import ResourceNames
from conveyor_local import fake_snowflake

CURATED = ResourceNames().bucket("curated")
PARAMS = {"validate_only": False, "merge_only": False, "files": [], "sweep": False}
HISTORY_TABLES = ("RAW_EVENTS", "ORDER_REJECTS")  # what grows with every file loaded
TARGET_TABLES = ("ORDERS", "ORDER_ITEMS")  # what a MERGE joins (see shape)


def order(order_id: int, total: str, items: int = 1) -> dict:
    return {
        "order_id": order_id,
        "customer": {"id": f"c-{order_id}", "country": "GB"},
        "currency": "GBP",
        "total": total,
        "ordered_at": "2024-03-05T10:00:00+00:00",
        "items": [{"sku": f"S-{n}", "qty": 1, "price": "1.00"} for n in range(items)],
    }


def dag_tasks(set_global=None) -> dict:
    """curated_to_snowflake's task functions, by task_id, their Variables read as the defaults
    (`set_global(namespace, name, value)` replaces a module global: a test's monkeypatch.setitem)."""
    from airflow.dag_processing.dagbag import DagBag

    from conveyor.paths import PROJECT_ROOT

    # .dags, not get_dag(): the bench has no Airflow metadata database to look in.
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "curated_to_snowflake.py")).dags[
        "curated_to_snowflake"
    ]
    tasks = {t.task_id: t.python_callable for t in dag.tasks}
    set_global = set_global or (lambda namespace, name, value: namespace.__setitem__(name, value))
    for function in tasks.values():
        set_global(function.__globals__, "names_from_variable", ResourceNames)
    return tasks


class QueuedEvents:
    """`inlet_events[CURATED]` as a task sees it: `.after(run_after)` gives the `curated` events
    queued since the run was triggered (`queued`: the keys each names)."""

    def __init__(self, queued: list[list[str]] = ()):
        self.events = [SimpleNamespace(extra=curated_extra(keys, len(keys), 0)) for keys in queued]

    def after(self, after: str) -> list:
        return self.events


def run_once(
    tasks: dict, keys: list[str] | None, queued: list[list[str]] = (), **params
) -> tuple[dict, dict, str | None]:
    """One run triggered by an event naming `keys` (None: a run no event triggered, e.g. the
    daily sweep), with `queued` events after it; returns (copy report, merged, check_loads' error
    or None). Each task is given only the arguments its signature takes (so an older DAG runs too)."""
    import inspect

    def call(task_id: str, *args, **kwargs):
        function = tasks[task_id]
        accepted = inspect.signature(function).parameters
        return function(*args, **{k: v for k, v in kwargs.items() if k in accepted})

    events = (
        {} if keys is None else {CURATED_ASSET: [SimpleNamespace(extra=curated_extra(keys, len(keys), 0))]}
    )
    params = {**PARAMS, **params}
    report = call(
        "copy_raw_events",
        params=params,
        triggering_asset_events=events,
        inlet_events={CURATED_ASSET: QueuedEvents(queued)},
        dag_run=SimpleNamespace(run_after=datetime(2026, 1, 1, tzinfo=UTC)),
    )
    merged = call("merge_orders", params=params)
    ti = SimpleNamespace(dag_id="curated_to_snowflake", task_id="check_loads", run_id="bench", try_number=1)
    try:
        call("check_loads", report, ti=ti)
        return report, merged, None
    except Exception as exc:  # check_loads names what failed; the caller reads it
        return report, merged, str(exc)


def put(s3, key: str, documents: list[dict]) -> str:
    s3.put_object(Bucket=CURATED, Key=key, Body="\n".join(json.dumps(d) for d in documents).encode())
    return key


def history(tasks: dict, query, s3, start: int, stop: int) -> None:
    """Files start..stop-1 in curated, loaded and merged as earlier runs left them: an order in
    every other one, a click (not an order) in the others. Built directly (each object put, its
    rows inserted into RAW_EVENTS, the file recorded in the load history with its ETag), then one
    merge through the DAG's task. Loaded now: within the hour the old pending view read again."""
    tags, values = {}, []
    for i in range(start, stop):
        key, document = f"events/history/{i:05d}.json", order(i, "1.00") if i % 2 else {"click": i}
        url = f"s3://{CURATED}/{key}"
        tags[url] = s3.put_object(Bucket=CURATED, Key=key, Body=json.dumps(document).encode())["ETag"]
        values.append(f"({snowflake.sql_string(json.dumps(document))}, {snowflake.sql_string(url)})")
    fake_snowflake.mark_loaded("RAW_EVENTS", tags)
    query(
        "INSERT INTO CONVEYOR.EVENTS.RAW_EVENTS (V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT) "
        "SELECT PARSE_JSON(column1), column2, '2024-03-05 10:00:00'::TIMESTAMP_NTZ, 1, CURRENT_TIMESTAMP() "
        f"FROM VALUES {', '.join(values)}"
    )
    _, _, error = run_once(tasks, [])  # a run whose event names no new file: the merge
    if error:
        raise RuntimeError(f"merging the earlier files failed: {error}")


def measured_run(tasks: dict, s3, tag: str, first_id: int) -> list:
    """A run of three new files (an order, a click beside a second order, and a newer version of
    the first order with fewer lines), under cost accounting; what each statement cost."""
    keys = [
        put(s3, f"events/new/{tag}-a.json", [order(first_id, "5.00", items=3)]),
        put(s3, f"events/new/{tag}-b.json", [{"click": tag}, order(first_id + 1, "6.00")]),
        put(s3, f"events/new/{tag}-c.json", [order(first_id, "7.00", items=1)]),
    ]
    with fake_snowflake.cost_accounting() as costs:
        report, merged, error = run_once(tasks, keys)
    if error or (report["files"], report["rows"], report["failed"]) != (3, 4, []):
        raise RuntimeError(f"the measured run did not load its 3 files: {report} {error}")
    if merged["orders"] != {"inserted": 2, "updated": 0}:
        raise RuntimeError(f"the measured run did not merge its 2 orders: {merged}")
    return costs


def shape(costs: list) -> dict:
    """A run's cost: its statements (kinds, in order), the files its COPY statements listed or
    named, the rows its scans returned from the history tables (RAW_EVENTS, ORDER_REJECTS), and
    from the MERGE targets (ORDERS, ORDER_ITEMS: fakesnow's MERGE reads its target whole)."""
    rows: dict = {}
    for cost in costs:
        for table, count in cost.rows.items():
            rows[table] = rows.get(table, 0) + count
    return {
        "statements": [c.kind for c in costs],
        "copy_files": sum(c.files for c in costs),
        "history_rows": sum(rows.get(t, 0) for t in HISTORY_TABLES),
        "target_rows": sum(rows.get(t, 0) for t in TARGET_TABLES),
    }


def measure(sizes: tuple[int, int] = (10, 1_000)) -> dict:
    """The run's shape at each number of earlier files, on a fresh moto server and fake Snowflake
    (the tasks' own output and the hooks' SQL logging kept out of the bench's report)."""
    import contextlib
    import io
    import logging

    from conveyor_local.bench import _s3, _start_moto
    from conveyor_local.stack import free_port

    for name in ("airflow", "snowflake", "fakesnow", "uvicorn", "sqlglot"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        return _measure(sizes, _s3, _start_moto, free_port)


def _measure(sizes, _s3, _start_moto, free_port) -> dict:
    moto, endpoint = _start_moto()
    stop = None
    try:
        s3 = _s3(endpoint)
        s3.create_bucket(Bucket=CURATED, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        port = free_port()
        stop = fake_snowflake.serve_in_thread(port)
        fake_snowflake.route_http()
        fake_snowflake.reset(endpoint, "bench", "bench", "eu-west-2")
        os.environ["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] = json.dumps(fake_snowflake.connection(port))
        conn = fake_snowflake.connect(port)
        fake_snowflake.apply_setup(conn)
        cursor = conn.cursor()
        snowflake.settings_from_variable = snowflake.SnowflakeSettings  # the Variable's defaults
        tasks = dag_tasks()
        shapes, loaded = {}, 0
        for n, size in enumerate(sizes):
            history(tasks, lambda sql: cursor.execute(sql).fetchall(), s3, loaded, size)
            loaded = size
            shapes[size] = shape(measured_run(tasks, s3, f"run{n}", 100_000 * (n + 1) + 1))
        conn.close()
        return shapes
    finally:
        if stop:
            stop()
        moto.terminate()
        moto.wait()


def report(args=None) -> None:
    small, large = 10, 1_000
    print(
        f"6. one curated_to_snowflake run (3 new files) on the fake Snowflake, {small:,} vs {large:,} earlier files"
    )
    shapes = measure((small, large))
    a, b = shapes[small], shapes[large]
    for label, key in (
        ("statements sent", None),
        ("files its COPY listed or named", "copy_files"),
        ("rows read from RAW_EVENTS, ORDER_REJECTS", "history_rows"),
        ("rows read from the MERGE targets", "target_rows"),
    ):
        x, y = (len(a["statements"]), len(b["statements"])) if key is None else (a[key], b[key])
        print(f"   {label:42} {x:7,} vs {y:7,}   ratio {y / x if x else float(y == x):.2f}x")
    print("   (targets: fakesnow's MERGE reads its target whole; Snowflake prunes it by the batch's keys)")
