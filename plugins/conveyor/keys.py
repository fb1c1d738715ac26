"""Date-partitioned S3 keys: every dated key the pipelines write is built here.

Two layouts, both derived from the run's data interval (never the clock):
- `day_partition`: Hive-style `year=YYYY/month=MM/day=DD` (nightly ingestion, archive, quarantine);
- `window_partition` / `window_stamp`: `YYYY/MM/DD/HHMM` and `YYYYMMDDTHHMMSSZ` of a window's end
  (the ToteSys extract and its manifests).
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def utc_date(moment: datetime) -> date:
    """The UTC calendar date of an aware datetime (e.g. a run's data_interval_end)."""
    if moment.tzinfo is None:
        raise ValueError("the datetime must be timezone-aware")
    return moment.astimezone(UTC).date()


def day_partition(day: date) -> str:
    return f"year={day:%Y}/month={day:%m}/day={day:%d}"


def window_partition(end: datetime) -> str:
    return f"{_utc(end):%Y/%m/%d/%H%M}"


WINDOW_STAMP = "%Y%m%dT%H%M%SZ"  # a window's bounds in its name and keys (UTC)


def window_stamp(end: datetime) -> str:
    return _utc(end).strftime(WINDOW_STAMP)


def parse_window_stamp(stamp: str) -> datetime:
    """The UTC moment `window_stamp` wrote."""
    return datetime.strptime(stamp, WINDOW_STAMP).replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the datetime must be timezone-aware")
    return moment.astimezone(UTC)
