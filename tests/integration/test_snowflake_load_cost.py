"""What a curated_to_snowflake run costs on Snowflake does not grow with the files already loaded
(issue 19, item 2): the run's tasks, called as Airflow calls them (their python_callable, with the
`curated` asset events that triggered the run), on the fake Snowflake reading a moto server.

Measured with `fake_snowflake.cost_accounting()`: the statements each run sends, the files each
COPY lists or names, and the rows each table scan returns after the filters pushed into it. What
the fake cannot show: Snowflake's own pruning (DuckDB reads every row group of tables this small:
the rows a scan returns stand for what Snowflake reads once it prunes micro-partitions by the same
filter), and Snowflake's listing cost (the fake lists moto's bucket; what is counted is the files a
COPY considers). FILES and the load history are the fake's emulation (see its docstring): a named
file is read without a listing, and a file loaded before is skipped, named or listed. Nor can it
show a MERGE's target pruned: fakesnow's MERGE joins the source to the whole target table, so the
rows read from ORDERS and ORDER_ITEMS grow with them here (printed, not asserted); Snowflake prunes
the target's micro-partitions by the batch's ORDER_ID range, and the stale-lines DELETE, which the
fake does filter, reads only the batch's orders' lines.

The Airflow task functions are called directly (not `dag.test()`): a run triggered by asset events
cannot be made by `dag.test()`, and this keeps the test to seconds. The Variables they read are
replaced by the defaults (no Airflow metadata here).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conveyor import snowflake
from conveyor.assets import curated_extra
from conveyor.resources import ResourceNames
from conveyor_local import bench_snowflake, fake_snowflake
from conveyor_local.bench_snowflake import history, measured_run, order, put, shape

pytestmark = pytest.mark.integration

CURATED = ResourceNames().bucket("curated")


@pytest.fixture
def run(snowflake_conn, moto_server, monkeypatch):
    """Runs of curated_to_snowflake's tasks (bench_snowflake.run_once: triggered by an event naming
    `keys`, None for a run no event triggered); yields (run, query, s3)."""
    conn = snowflake_conn()
    fake_snowflake.apply_setup(conn)
    tasks = bench_snowflake.dag_tasks(monkeypatch.setitem)
    monkeypatch.setattr(snowflake, "settings_from_variable", snowflake.SnowflakeSettings)
    cursor = conn.cursor()

    def run_once(keys, **params):
        return bench_snowflake.run_once(tasks, keys, **params)

    yield run_once, (lambda sql: cursor.execute(sql).fetchall()), moto_server["session"].client("s3"), tasks
    conn.close()


def test_a_runs_statements_and_scanned_rows_do_not_grow_with_the_files_loaded_before(run):
    _, query, s3, tasks = run
    history(tasks, query, s3, 0, 10)
    small = measured_run(tasks, s3, "small", 100_001)

    history(tasks, query, s3, 10, 1_000)
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [(1_000 + 4,)]
    large = measured_run(tasks, s3, "large", 200_001)

    print(f"\n10 earlier files: {shape(small)}\n1,000 earlier files: {shape(large)}")
    flat = ("statements", "copy_files", "history_rows")  # the MERGE targets: see the module's docstring
    assert {k: shape(large)[k] for k in flat} == {k: shape(small)[k] for k in flat}
    assert shape(small)["copy_files"] == 3  # the named files, none listed
    assert shape(small)["history_rows"] <= 4 * 3 * 4  # the run's 4 rows, a few times per statement

    # Outcomes: every file loaded once, the newest version of each order with its lines.
    assert query("SELECT count(*), count(DISTINCT file_name) FROM CONVEYOR.EVENTS.RAW_EVENTS") == [
        (1_008, 1_006)
    ]
    assert query("SELECT total, item_count FROM CONVEYOR.EVENTS.ORDERS WHERE order_id = 200001") == [(7, 1)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.ORDER_ITEMS WHERE order_id = 200001") == [(1,)]
    assert query("SELECT count(*) FROM CONVEYOR.EVENTS.ORDERS") == [(500 + 4,)]


def test_files_no_event_named_are_swept_once_and_a_named_file_that_is_gone_is_named(run):
    run_once, query, s3, _ = run
    named = [put(s3, f"events/history/{i:05d}.json", [order(i, "1.00")]) for i in range(3)]
    unnamed = put(s3, "events/missed/lost-event.json", [order(7, "7.00")])
    report, _, error = run_once(named)
    assert (report["files"], error) == (3, None)
    assert query(f"SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS WHERE file_name LIKE '%{unnamed}'") == [
        (0,)
    ]

    # Events queued while the previous run was going reach the next run with the one that
    # triggered it (Airflow hands the run only the first; see snowflake.run_files): their files
    # load now, with no listing, not at the daily sweep.
    queued = [put(s3, f"events/queued/{i}.json", [order(20 + i, "2.00")]) for i in range(2)]
    first = put(s3, "events/queued/first.json", [order(19, "1.90")])
    with fake_snowflake.cost_accounting() as costs:
        report, merged, error = run_once([first], queued=[[queued[0]], [queued[1]]])
    assert (report["files"], error) == (3, None) and merged["orders"]["inserted"] == 3
    assert sum(c.files for c in costs if c.kind == "COPY") == 3  # named, not listed

    # The daily (or a manual) run: no event, a sweep; the load history skips what was loaded.
    with fake_snowflake.cost_accounting() as costs:
        report, merged, error = run_once(None)
    assert (report["files"], error) == (1, None)
    assert merged["orders"] == {"inserted": 1, "updated": 0}
    assert sum(c.files for c in costs if c.kind == "COPY") == 7  # a sweep lists every file

    # An event naming more keys than an extra holds names none: such a run sweeps.
    many = [f"events/x/{n}.json" for n in range(1_001)]
    assert snowflake.files_from_events([SimpleNamespace(extra=curated_extra(many, len(many), 0))]) is None

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
