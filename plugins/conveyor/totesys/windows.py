"""Which rows a run extracts: its cursor window, and the keys it writes.

A run's window is its data interval shifted back by a lag margin, half-open
`[start - lag, end - lag)`. Consecutive intervals tile time, so their windows do too: a row is
extracted by exactly one run, even when many rows share the boundary timestamp, and a row whose
transaction commits up to `lag` after its cursor timestamp is still picked up (one open longer
than `lag` is missed: its rows carry a timestamp that a finished window already covered).

A *scheduled* run starts where the last successful scheduled run's window ended (the watermark,
kept beside the data in the ingestion bucket), so the intervals the scheduler never created —
the DAG was paused, runs failed, MWAA was updating — are extracted by the next scheduled run,
exactly once. A backfill or manual run extracts exactly its own interval and leaves the
watermark alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from conveyor.keys import window_partition, window_stamp
from conveyor.s3 import s3_error_code

log = logging.getLogger(__name__)

SCHEDULED = "scheduled"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    widened_from: datetime | None = None  # a scheduled run's own start, when the watermark was earlier
    # Every row, whatever its cursor. A snapshot has a name of its own, so a delta of the same
    # interval (say, the first scheduled run cleared after the watermark moved) never replaces it.
    full_snapshot: bool = False

    @property
    def name(self) -> str:
        return f"{window_stamp(self.start)}-{window_stamp(self.end)}" + (
            "-full" if self.full_snapshot else ""
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "widened_from": self.widened_from.isoformat() if self.widened_from else None,
            "full_snapshot": self.full_snapshot,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Window:
        widened = d.get("widened_from")
        return cls(
            datetime.fromisoformat(d["start"]),
            datetime.fromisoformat(d["end"]),
            datetime.fromisoformat(widened) if widened else None,
            bool(d.get("full_snapshot", False)),  # runs planned before snapshots were named
        )


def extract_window(start: datetime, end: datetime, lag: timedelta) -> Window:
    """The half-open cursor window `[start - lag, end - lag)` of a data interval, in UTC."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("data interval bounds must be timezone-aware")
    if end <= start:
        raise ValueError(f"empty data interval [{start}, {end})")
    return Window((start - lag).astimezone(UTC), (end - lag).astimezone(UTC))


def run_window(
    start: datetime, end: datetime, lag: timedelta, *, run_type: str, watermark: datetime | None
) -> Window:
    """The window a run extracts: its own, or for a scheduled run, from the watermark on."""
    own = extract_window(start, end, lag)
    if run_type == SCHEDULED and watermark is not None and watermark < own.start:
        return Window(watermark.astimezone(UTC), own.end, widened_from=own.start)
    return own


def plan(
    start: datetime,
    end: datetime,
    lag: timedelta,
    *,
    run_type: str,
    watermark: datetime | None,
    full_snapshot: bool,
) -> Window:
    """The window a run extracts (`run_window`), a full snapshot when asked for or when a scheduled
    run finds no watermark: a deployment's first scheduled run needs every dimension row before
    its first facts."""
    first_scheduled = run_type == SCHEDULED and watermark is None
    window = run_window(start, end, lag, run_type=run_type, watermark=watermark)
    if first_scheduled and not full_snapshot:
        log.info("the first scheduled run (no watermark yet): taking a full snapshot")
    if window.widened_from:
        log.info(
            "scheduled run starts at the watermark %s (its own window: %s)", window.start, window.widened_from
        )
    return replace(window, full_snapshot=full_snapshot or first_scheduled)


def data_key(table: str, window: Window, fmt: str) -> str:
    """`<table>/YYYY/MM/DD/HHMM/<table>-<start>-<end>.<fmt>` (partitioned by the window's end).

    Both bounds are in the name: a widened scheduled window and a manual run of the same
    interval end at the same instant and must not overwrite each other.
    """
    return file_key(table, window.name, window_partition(window.end), fmt)


def file_key(table: str, window_name: str, partition: str, fmt: str) -> str:
    """data_key from a window's name and partition (what processed_to_snowflake knows of it)."""
    return f"{table}/{partition}/{table}-{window_name}.{fmt}"


def manifest_key(window: Window) -> str:
    return f"_manifests/{window_partition(window.end)}/manifest-{window.name}.json"


def write_manifest(
    s3, bucket: str, window: Window, results: list[dict], *, dag_run, lag: timedelta
) -> tuple[str, dict]:
    """Put the run's manifest (what each table's extract of `window` produced, tables in name
    order) at `manifest_key(window)`; a rerun rewrites the same key. Returns (key, manifest)."""
    # Read mapped results once, by index: iterating asks for one past the end (an API server error).
    results = [results[i] for i in range(len(results))]
    manifest = {
        "dag_id": dag_run.dag_id,
        "run_id": dag_run.run_id,
        "run_type": dag_run.run_type,
        "data_interval": [dag_run.data_interval_start.isoformat(), dag_run.data_interval_end.isoformat()],
        "window": [window.start.isoformat(), window.end.isoformat()],
        "lag_seconds": lag.total_seconds(),
        "tables": sorted(results, key=lambda r: r["table"]),
    }
    key = manifest_key(window)
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode(), ContentType="application/json"
    )
    return key, manifest


def watermark_key(dag_id: str) -> str:
    return f"_state/{dag_id}/scheduled-watermark.json"


def read_watermark(s3, bucket: str, dag_id: str) -> datetime | None:
    """Where the last successful scheduled run's window ended; None before the first one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=watermark_key(dag_id))["Body"].read()
    except Exception as exc:
        if s3_error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return datetime.fromisoformat(json.loads(body)["window_end"])


def advance_watermark(s3, bucket: str, dag_id: str, window: Window, run_id: str) -> datetime:
    """Move the watermark to `window.end`, never backwards (a cleared old run cannot rewind it)."""
    current = read_watermark(s3, bucket, dag_id)
    if current is not None and current >= window.end:
        return current
    s3.put_object(
        Bucket=bucket,
        Key=watermark_key(dag_id),
        Body=json.dumps({"window_end": window.end.isoformat(), "run_id": run_id}).encode(),
        ContentType="application/json",
    )
    return window.end
