"""Window arithmetic, keys, types and config checks for the incremental extract."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pyarrow as pa
import pytest
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DataInterval, TimeRestriction

from conveyor import extract
from conveyor.extract import Column
from conveyor.ingestion import ConfigError

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


@pytest.mark.parametrize("cron", ["*/3 * * * *", "0 * * * *", "17 2 * * *"])
def test_windows_of_consecutive_runs_tile_time(cron):
    windows = [extract.extract_window(i.start, i.end, LAG) for i in consecutive_intervals(cron, 200)]
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        assert end == next_start, "no gap and no overlap between consecutive windows"
    assert all(start < end for start, end in windows)


def test_window_is_the_interval_shifted_back_by_the_lag_in_utc():
    start, end = datetime(2024, 3, 31, 0, 57, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert extract.extract_window(start, end, LAG) == (
        datetime(2024, 3, 31, 0, 56, tzinfo=UTC),
        datetime(2024, 3, 31, 0, 59, tzinfo=UTC),
    )
    # The same instants given in another offset (here across the UK's DST change) are the same window.
    bst = timezone(timedelta(hours=1))
    assert extract.extract_window(start.astimezone(bst), end.astimezone(bst), LAG) == extract.extract_window(
        start, end, LAG
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        extract.extract_window(datetime(2024, 1, 1), datetime(2024, 1, 2), LAG)
    with pytest.raises(ValueError, match="empty data interval"):
        extract.extract_window(end, start, LAG)


def test_keys_derive_from_the_window_end():
    end = datetime(2024, 3, 5, 20, 2, 0, tzinfo=UTC)
    assert (
        extract.data_key("sales_order", end, "parquet")
        == "sales_order/2024/03/05/2002/sales_order-20240305T200200Z.parquet"
    )
    assert extract.manifest_key(end) == "_manifests/2024/03/05/2002/manifest-20240305T200200Z.json"


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
    ],
)
def test_bad_table_config_names_table_and_field(text, message):
    with pytest.raises(ConfigError) as raised:
        extract.parse_tables_config(text, origin="tables.json")
    assert message in str(raised.value)
