"""nightly_file_ingestion's run summary: per-dataset counts, or what failed and why, as one message.

Each task records what it failed on (`record_failure`: the subject, a dataset's name or "config",
and the error) before it fails; `notify_run` accounts for every planned dataset: copied, failed
with its recorded error, or "did not run" when an upstream task failed first. The message goes
to the notifications topic (`conveyor.alerts.publish`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from conveyor.keys import utc_date

ERROR_XCOM_KEY = "error"
DID_NOT_RUN = "did not run (an upstream task failed)"


@contextmanager
def record_failure(ti, subject: str) -> Iterator[None]:
    """Push `{"subject", "error"}` to XCom `error` when the block raises, then re-raise."""
    try:
        yield
    except Exception as exc:
        ti.xcom_push(key=ERROR_XCOM_KEY, value={"subject": subject, "error": str(exc) or type(exc).__name__})
        raise


def as_list(pulled) -> list:
    """A task output or XCom pull as a list without Nones: one value bare, several as a sequence.

    A mapped task's output is read by index, once: iterating it asks for one past the end, which
    the API server logs as an error."""
    if pulled is None:
        return []
    if isinstance(pulled, dict | str):
        return [pulled]
    if isinstance(pulled, Sequence):
        pulled = [pulled[i] for i in range(len(pulled))]
    return [value for value in pulled if value is not None]


def recorded_failures(ti) -> list[dict]:
    """What the tasks upstream of `ti` recorded with `record_failure` (every map index)."""
    return as_list(ti.xcom_pull(task_ids=sorted(ti.task.upstream_task_ids), key=ERROR_XCOM_KEY))


def failures(planned: list[dict], results: list[dict], recorded: list[dict]) -> list[dict]:
    """The recorded failures, then each planned dataset neither copied nor failed: it did not run."""
    accounted = {r["name"] for r in results} | {f["subject"] for f in recorded}
    return [
        *recorded,
        *({"subject": d["name"], "error": DID_NOT_RUN} for d in planned if d["name"] not in accounted),
    ]


def build_summary(
    *, dag_id: str, run_id: str, interval_end: datetime | None, planned, results, recorded: list[dict]
) -> dict:
    """The run's message: each dataset's counts, every failure, totals; `status` failed if any failed.

    A run without a logical date has no date (its run id names it)."""
    planned, results = as_list(planned), as_list(results)
    failed = failures(planned, results, recorded)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "date": utc_date(interval_end).isoformat() if interval_end else None,
        "status": "failed" if failed else "succeeded",
        "datasets": sorted(results, key=lambda r: r["name"]),
        "failures": failed,
        "totals": {
            "objects": sum(r["objects"] for r in results),
            "bytes": sum(r["bytes"] for r in results),
        },
    }


def run_outcome(summary: dict | None) -> str | None:
    """Why the run must fail, from `notify_run`'s summary (None: it succeeded)."""
    if summary is None:
        return "the run's notification was not published; see notify_run"
    if summary["status"] != "succeeded":
        failed = "; ".join(f"{f['subject']}: {f['error']}" for f in summary["failures"])
        return f"run failed (notification sent): {failed}"
    return None
