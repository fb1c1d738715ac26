"""Window arithmetic (including scheduled runs after a pause), keys, types and config checks for
the incremental extract."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pyarrow as pa
import pytest
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DataInterval, TimeRestriction

from conveyor.config import ConfigError
from conveyor.totesys import extract, tables, windows
from conveyor.totesys.tables import Column

LAG = timedelta(seconds=60)


def consecutive_intervals(cron: str, count: int) -> list[DataInterval]:
    """The data intervals Airflow's scheduler would create, from the real timetable."""
    from airflow.sdk import CronDataIntervalTimetable, dag

    @dag(
        schedule=CronDataIntervalTimetable(cron, timezone="UTC"), start_date=datetime(2024, 3, 30, tzinfo=UTC)
    )
    def probe():
        pass

    timetable = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(probe())).timetable
    restriction = TimeRestriction(
        earliest=pendulum.datetime(2024, 3, 30, 23, tz="UTC"), latest=None, catchup=True
    )
    intervals, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        intervals.append(info.data_interval)
        last = info.data_interval
    return intervals


def _bounds(window: windows.Window) -> tuple[datetime, datetime]:
    return window.start, window.end


@pytest.mark.parametrize("cron", ["*/3 * * * *", "0 * * * *", "17 2 * * *"])
def test_windows_of_consecutive_runs_tile_time(cron):
    tiled = [_bounds(windows.extract_window(i.start, i.end, LAG)) for i in consecutive_intervals(cron, 200)]
    for (_, end), (next_start, _) in itertools.pairwise(tiled):
        assert end == next_start, "no gap and no overlap between consecutive windows"
    assert all(start < end for start, end in tiled)


def test_window_is_the_interval_shifted_back_by_the_lag_in_utc():
    start, end = datetime(2024, 3, 31, 0, 57, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert _bounds(windows.extract_window(start, end, LAG)) == (
        datetime(2024, 3, 31, 0, 56, tzinfo=UTC),
        datetime(2024, 3, 31, 0, 59, tzinfo=UTC),
    )
    # The same instants given in another offset (here across the UK's DST change) are the same window.
    bst = timezone(timedelta(hours=1))
    assert windows.extract_window(start.astimezone(bst), end.astimezone(bst), LAG) == windows.extract_window(
        start, end, LAG
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        windows.extract_window(datetime(2024, 1, 1), datetime(2024, 1, 2), LAG)
    with pytest.raises(ValueError, match="empty data interval"):
        windows.extract_window(end, start, LAG)


def test_scheduled_runs_after_a_pause_tile_time_from_the_watermark():
    """Scheduled runs at t0, t1, a pause the scheduler skips (catchup=False), then t5: the three
    windows still tile time, so nothing updated during the pause is missed or taken twice."""
    intervals = consecutive_intervals("*/3 * * * *", 6)
    watermark, taken = None, []
    for interval in (intervals[0], intervals[1], intervals[5]):
        window = windows.run_window(
            interval.start, interval.end, LAG, run_type="scheduled", watermark=watermark
        )
        taken.append(window)
        watermark = window.end  # the run succeeded
    assert [w.widened_from for w in taken[:2]] == [None, None]
    assert taken[2].start == taken[1].end, "the run after the pause starts where the last one ended"
    assert taken[2].widened_from == intervals[5].start - LAG
    assert taken[2].end == intervals[5].end - LAG


@pytest.mark.parametrize("run_type", ["manual", "backfill", "asset_triggered"])
def test_other_runs_take_exactly_their_interval(run_type):
    start, end = datetime(2024, 3, 5, 20, 0, tzinfo=UTC), datetime(2024, 3, 5, 20, 3, tzinfo=UTC)
    early = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
    window = windows.run_window(start, end, LAG, run_type=run_type, watermark=early)
    assert window == windows.extract_window(start, end, LAG)


def test_a_scheduled_run_behind_the_watermark_takes_its_own_interval():
    """A cleared old scheduled run reruns its own window; the watermark never moves it forward."""
    start, end = datetime(2024, 3, 5, 20, 0, tzinfo=UTC), datetime(2024, 3, 5, 20, 3, tzinfo=UTC)
    later = datetime(2024, 3, 6, tzinfo=UTC)
    assert windows.run_window(
        start, end, LAG, run_type="scheduled", watermark=later
    ) == windows.extract_window(start, end, LAG)


def test_watermark_only_moves_forward(aws):
    s3, bucket = aws["session"].client("s3"), aws["buckets"]["ingestion"]
    assert windows.read_watermark(s3, bucket, "dag") is None
    first = windows.Window(datetime(2024, 3, 5, 19, 56, tzinfo=UTC), datetime(2024, 3, 5, 19, 59, tzinfo=UTC))
    earlier = windows.Window(
        datetime(2024, 3, 5, 19, 50, tzinfo=UTC), datetime(2024, 3, 5, 19, 53, tzinfo=UTC)
    )
    assert windows.advance_watermark(s3, bucket, "dag", first, "run-1") == first.end
    assert windows.advance_watermark(s3, bucket, "dag", earlier, "run-0") == first.end
    assert windows.read_watermark(s3, bucket, "dag") == first.end
    assert windows.read_watermark(s3, bucket, "another_dag") is None


def test_keys_carry_both_window_bounds():
    window = windows.Window(datetime(2024, 3, 5, 19, 59, tzinfo=UTC), datetime(2024, 3, 5, 20, 2, tzinfo=UTC))
    assert (
        windows.data_key("sales_order", window, "parquet")
        == "sales_order/2024/03/05/2002/sales_order-20240305T195900Z-20240305T200200Z.parquet"
    )
    assert (
        windows.manifest_key(window)
        == "_manifests/2024/03/05/2002/manifest-20240305T195900Z-20240305T200200Z.json"
    )
    widened = windows.Window(datetime(2024, 3, 5, 19, 47, tzinfo=UTC), window.end, window.start)
    assert windows.data_key("sales_order", widened, "parquet") != windows.data_key(
        "sales_order", window, "parquet"
    )
    assert windows.Window.from_dict(widened.to_dict()) == widened
    # A snapshot of the same interval has its own keys: a delta never overwrites it.
    snapshot = windows.Window(window.start, window.end, full_snapshot=True)
    assert snapshot.name == "20240305T195900Z-20240305T200200Z-full"
    assert windows.data_key("sales_order", snapshot, "parquet") != windows.data_key(
        "sales_order", window, "parquet"
    )
    assert windows.manifest_key(snapshot) != windows.manifest_key(window)
    assert windows.Window.from_dict(snapshot.to_dict()) == snapshot
    legacy = {k: v for k, v in window.to_dict().items() if k != "full_snapshot"}  # planned before
    assert windows.Window.from_dict(legacy) == window


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (Column("a", "integer"), pa.int32()),
        (Column("a", "bigint"), pa.int64()),
        (Column("a", "numeric", 10, 2), pa.decimal128(10, 2)),
        (Column("a", "numeric"), pa.string()),
        (Column("a", "timestamp without time zone"), pa.timestamp("us")),
        (Column("a", "timestamp with time zone"), pa.timestamp("us", tz="UTC")),
        (Column("a", "date"), pa.date32()),
        (Column("a", "boolean"), pa.bool_()),
        (Column("a", "character varying"), pa.string()),
    ],
)
def test_arrow_types(column, expected):
    assert extract.arrow_type(column) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"tables": []}', 'non-empty "tables" list'),
        (
            '{"tables": [{"name": "t", "primary_key": "id"}]}',
            "table 't': field 'cursor' must be a non-empty string",
        ),
        (
            '{"tables": [{"name": "t", "primary_key": "id", "cursor": "u", "colums": []}]}',
            "table 't': unknown field(s) colums",
        ),
        (
            '{"tables": [{"name": "t", "primary_key": "id", "cursor": "u", "columns": "id"}]}',
            "field 'columns' must be a list",
        ),
        (
            '{"tables": [{"name": "t", "primary_key": "id", "cursor": "u"}, {"name": "t", "primary_key": "id", "cursor": "u"}]}',
            "listed twice",
        ),
        (
            '{"source": "totesys", "tables": [{"name": "t", "primary_key": "id", "cursor": "u"}]}',
            'unknown top-level field(s) source; expected only "tables"',
        ),
    ],
)
def test_bad_table_config_names_table_and_field(text, message):
    with pytest.raises(ConfigError) as raised:
        tables.parse_tables_config(text, origin="tables.json")
    assert message in str(raised.value)
