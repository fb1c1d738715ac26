"""What a curated_to_snowflake run costs on Snowflake does not grow with the files already loaded
(issue 19, item 2): the run's tasks, called as Airflow calls them (their python_callable, with the
`curated` asset events that triggered the run), on the fake Snowflake reading a moto server.

Measured with `fake_snowflake.cost_accounting()`: the statements each run sends, the files each
COPY lists or names, and the rows each table scan returns after the filters pushed into it. What
the fake cannot show: Snowflake's own pruning (DuckDB reads every row group of tables this small:
the rows a scan returns stand for what Snowflake reads once it prunes micro-partitions by the same
filter), and Snowflake's listing cost (the fake lists moto's bucket; what is counted is the files a
COPY considers). FILES and the load history are the fake's emulation (see its docstring): a named
file is read without a listing, and a file loaded before is skipped, named or listed.

The Airflow task functions are called directly (not `dag.test()`): a run triggered by asset events
cannot be made by `dag.test()`, and this keeps the test to seconds. The Variables they read are
replaced by the defaults (no Airflow metadata here).
"""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import pytest

from conveyor import snowflake
from conveyor.assets import CURATED as CURATED_ASSET
from conveyor.assets import curated_extra
from conveyor.resources import ResourceNames
from conveyor_local import fake_snowflake

pytestmark = pytest.mark.integration

CURATED = ResourceNames().bucket("curated")
PARAMS = {"validate_only": False, "merge_only": False, "files": [], "sweep": False}


def order(order_id: int, total: str, items: int = 1) -> dict:
    return {
        "order_id": order_id,
        "customer": {"id": f"c-{order_id}", "country": "GB"},
        "currency": "GBP",
        "total": total,
        "ordered_at": "2024-03-05T10:00:00+00:00",
        "items": [{"sku": f"S-{n}", "qty": 1, "price": "1.00"} for n in range(items)],
    }


@pytest.fixture
def run(snowflake_conn, moto_server, monkeypatch):
    """Calls a curated_to_snowflake run's tasks, as triggered by events naming `keys` (None: a
    run no event triggered); returns (copy report, merged, error from check_loads or None)."""
    from airflow.dag_processing.dagbag import DagBag
    from conftest import ROOT

    dag = DagBag(dag_folder=str(ROOT / "dags" / "curated_to_snowflake.py")).get_dag("curated_to_snowflake")
    conn = snowflake_conn()
    fake_snowflake.apply_setup(conn)
    tasks = {t.task_id: t.python_callable for t in dag.tasks}
    for function in tasks.values():  # the DAG file's module: its Variables read as the defaults
        monkeypatch.setitem(function.__globals__, "names_from_variable", ResourceNames)
    monkeypatch.setattr(snowflake, "settings_from_variable", snowflake.SnowflakeSettings)

    def call(task_id: str, *args, **kwargs):
        function = tasks[task_id]
        accepted = inspect.signature(function).parameters
        return function(*args, **{k: v for k, v in kwargs.items() if k in accepted})

    def run_once(keys: list[str] | None, **params):
        events = (
            {}
            if keys is None
            else {CURATED_ASSET: [SimpleNamespace(extra=curated_extra(keys, len(keys), 0))]}
        )
        params = {**PARAMS, **params}
        report = call("copy_raw_events", params=params, triggering_asset_events=events)
        merged = call("merge_orders", params=params)
        ti = SimpleNamespace(dag_id=dag.dag_id, task_id="check_loads", run_id="test", try_number=1)
        try:
            call("check_loads", report, ti=ti)
            error = None
        except Exception as exc:  # check_loads names what failed; the test reads it
            error = str(exc)
        return report, merged, error

    cursor = conn.cursor()
    yield run_once, (lambda sql: cursor.execute(sql).fetchall()), moto_server["session"].client("s3")
    conn.close()


def put(s3, key: str, documents: list[dict]) -> str:
    s3.put_object(Bucket=CURATED, Key=key, Body="\n".join(json.dumps(d) for d in documents).encode())
    return key


def history(run_once, query, s3, start: int, stop: int) -> None:
    """Files start..stop-1 in curated, loaded and merged as earlier runs left them: an order in
    every other one, a click (not an order) in the others. Built directly (each object put, its
    rows inserted into RAW_EVENTS, the file recorded in the load history with its ETag), then one
    merge through the DAG's task: a COPY per file takes a second on the fake. Loaded now, so
    within the hour the old pending view read again."""
    tags, values = {}, []
    for i in range(start, stop):
        key, document = f"events/history/{i:05d}.json", order(i, "1.00") if i % 2 else {"click": i}
        tags[f"s3://{CURATED}/{key}"] = s3.put_object(
            Bucket=CURATED, Key=key, Body=json.dumps(document).encode()
        )["ETag"]
        values.append(
            f"({snowflake.sql_string(json.dumps(document))}, {snowflake.sql_string(f's3://{CURATED}/{key}')})"
        )
    fake_snowflake.mark_loaded("RAW_EVENTS", tags)
    query(
        "INSERT INTO CONVEYOR.EVENTS.RAW_EVENTS (V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT) "
        "SELECT PARSE_JSON(column1), column2, '2024-03-05 10:00:00'::TIMESTAMP_NTZ, 1, CURRENT_TIMESTAMP() "
        f"FROM VALUES {', '.join(values)}"
    )
    assert run_once([])[2] is None  # a run whose event names no new file: the merge


def measured_run(run, s3, tag: str, first_id: int):
    """A run of three new files (two orders, one updating the other's order, and a click), under
    cost accounting; returns what each statement cost."""
    keys = [
        put(s3, f"events/new/{tag}-a.json", [order(first_id, "5.00", items=3)]),
        put(s3, f"events/new/{tag}-b.json", [{"click": tag}, order(first_id + 1, "6.00")]),
        put(s3, f"events/new/{tag}-c.json", [order(first_id, "7.00", items=1)]),  # fewer lines
    ]
    with fake_snowflake.cost_accounting() as costs:
        report, merged, error = run(keys)
    assert error is None, error
    assert (report["files"], report["rows"], report["failed"]) == (3, 4, [])
    assert merged["orders"] == {"inserted": 2, "updated": 0}
    return costs


def shape(costs) -> dict:
    """What a run's cost is made of: its statements (kinds, in order), the files its COPY
    statements considered, and the rows its scans returned from each history table."""
    rows = {}
    for cost in costs:
        for table, count in cost.rows.items():
            rows[table] = rows.get(table, 0) + count
    return {
        "statements": [c.kind for c in costs],
        "copy_files": sum(c.files for c in costs if c.kind == "COPY"),
        "raw_events_rows": rows.get("RAW_EVENTS", 0),
        "order_rejects_rows": rows.get("ORDER_REJECTS", 0),
    }


def test_a_runs_statements_and_scanned_rows_do_not_grow_with_the_files_loaded_before(run):
    run_once, query, s3 = run
    history(run_once, query, s3, 0, 10)
    small = measured_run(run_once, s3, "small", 100_001)

    history(run_once, query, s3, 10, 1_000)
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(1_000 + 4,)]
    large = measured_run(run_once, s3, "large", 200_001)

    print(f"\n10 earlier files: {shape(small)}\n1,000 earlier files: {shape(large)}")
    assert shape(large) == shape(small)
    assert shape(small)["copy_files"] == 3  # the named files, none listed
    assert shape(small)["raw_events_rows"] <= 4 * 3 * 4  # the run's rows, a few times per statement

    # Outcomes: every file loaded once, the newest version of each order with its lines.
    assert query("SELECT count(*), count(DISTINCT file_name) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [
        (1_008, 1_006)
    ]
    assert query("SELECT total, item_count FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 200001") == [(7, 1)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 200001") == [(1,)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.ORDERS") == [(500 + 4,)]


def test_files_no_event_named_are_swept_once_and_a_named_file_that_is_gone_is_named(run):
    run_once, query, s3 = run
    named = [put(s3, f"events/history/{i:05d}.json", [order(i, "1.00")]) for i in range(3)]
    unnamed = put(s3, "events/missed/lost-event.json", [order(7, "7.00")])
    report, _, error = run_once(named)
    assert (report["files"], error) == (3, None)
    assert query(f"SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS WHERE file_name LIKE '%{unnamed}'") == [
        (0,)
    ]

    # The daily (or a manual) run: no event, a sweep; the load history skips what was loaded.
    with fake_snowflake.cost_accounting() as costs:
        report, merged, error = run_once(None)
    assert (report["files"], error) == (1, None)
    assert merged["orders"] == {"inserted": 1, "updated": 0}
    assert sum(c.files for c in costs if c.kind == "COPY") == 4  # a sweep lists every file

    # An event naming more keys than an extra holds names none: the run sweeps (nothing new here).
    many = [f"events/x/{n}.json" for n in range(1_001)]
    assert "keys" not in curated_extra(many, len(many), 0)
    assert run_once(many)[0]["files"] == 0

    # A named file that is gone: named by check_loads; the other named file loads.
    s3.delete_object(Bucket=CURATED, Key=named[0])
    fresh = put(s3, "events/new/fresh.json", [order(8, "8.00")])
    report, merged, error = run_once([named[0], fresh, "events/readme.txt", "_quarantine/x.json"])
    assert report["files"] == 1 and merged["orders"]["inserted"] == 1
    assert [f["file"].rsplit("/", 1)[-1] for f in report["failed"]] == ["00000.json"]
    assert "1 curated file(s) not loaded" in error and "00000.json" in error

    # The `files` Param loads exactly those keys, and refuses one it would not load, naming it.
    again = put(s3, "events/new/param.json", [order(9, "9.00")])
    assert run_once(None, files=[again])[0]["files"] == 1
    with pytest.raises(Exception, match=r"readme\.txt"):
        run_once(None, files=["events/readme.txt"])


def test_batches_of_at_most_1000_names_and_quoted_names():
    names = [f"n{i}.json" for i in range(2_001)]
    assert [len(b) for b in snowflake.file_batches(names)] == [1_000, 1_000, 1]
    sql = snowflake.render(
        "events/copy_raw_events.sql",
        snowflake.load_variables(
            snowflake.SnowflakeSettings().template_variables(ResourceNames()), [*names, "it's\\.json"]
        ),
    )
    statements = snowflake.split(sql)
    assert len(statements) == 3 and all("FILES = (" in s and "PATTERN = " not in s for s in statements)
    assert "'it''s\\\\.json'" in statements[-1]
    assert snowflake.stage_files(["events/a.json", "events/a.json", "events/b.txt", "other/c.json"]) == [
        "a.json"
    ]
    assert snowflake.files_from_events([]) is None
    assert snowflake.files_from_events([SimpleNamespace(extra={"objects": 1, "bytes": 1})]) is None
    assert snowflake.files_from_events(
        [
            SimpleNamespace(extra={"keys": ["events/a.json"]}),
            SimpleNamespace(extra={"keys": ["events/b.json"]}),
        ]
    ) == ["a.json", "b.json"]
