"""Is the Snowpipe path healthy? What snowflake_health checks and how it says what is wrong.

The Snowpipe path (pipes, streams, tasks: docs/snowflake.md) runs without Airflow, so nothing
else notices when it stops: a pipe that no longer loads (`SYSTEM$PIPE_STATUS`), a file a pipe
could not load (`COPY_HISTORY`), a task run that failed or a task suspended (`TASK_HISTORY`, `SHOW
TASKS`: a task is suspended after 10 failed runs in a row), a stream gone stale or about to
(`SHOW STREAMS`: a stream nobody reads for 14 days can no longer be read), and order events the
task's merge rejected (`EVENTS.ORDER_REJECTS`, reported once). With none of these objects (the
Airflow path) only the rejects are checked.

The functions here turn the rows those statements return (their documented columns) into
`Problem`s; `gather` runs the statements (include/sql/snowflake/health/); `alert` is the message
published on the notifications topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

# Warn this long before a stream goes stale: time to resume its task or read it.
STREAM_STALE_WARNING = timedelta(days=2)
# A pipe's oldest file waiting longer than this is stuck, not queued.
PIPE_BACKLOG = timedelta(hours=1)
SUBJECT_LIMIT = 100  # SNS
SHOWN = 20  # problems named in the message's summary line
LISTED = 200  # problems listed in the message (and in XCom); the count says how many in all


@dataclass(frozen=True)
class Problem:
    kind: str  # pipe, pipe_load, task, task_run, stream, rejected_rows
    name: str  # the object (or file) it is about
    detail: str  # what is wrong and what to do

    def line(self) -> str:
        return f"{self.kind} {self.name}: {self.detail}"


def _lower(row: dict) -> dict:
    return {str(k).lower(): v for k, v in row.items()}


def _qualified(row: dict) -> str:
    return ".".join(str(row[k]) for k in ("database_name", "schema_name", "name") if row.get(k))


def _when(value) -> datetime | None:
    """A timestamp from a row or a JSON field (datetime, ISO text, or epoch milliseconds)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    text = str(value).strip().replace(" ", "T", 1)
    text = text[:-1] + "+00:00" if text.endswith("Z") else text
    return datetime.fromisoformat(text)


# --- what each statement's rows say -------------------------------------------------------------


def pipe_problems(pipe: str, status: str | dict, at: datetime) -> list[Problem]:
    """SYSTEM$PIPE_STATUS: anything but RUNNING stops loading; an `error` says why; a file
    waiting for over PIPE_BACKLOG means the pipe is not keeping up or is stuck."""
    state = json.loads(status) if isinstance(status, str) else dict(status)
    found = []
    execution = state.get("executionState", "UNKNOWN")
    if execution != "RUNNING":
        found.append(
            Problem("pipe", pipe, f"executionState {execution}: nothing loads until it is RUNNING again")
        )
    if state.get("error"):
        found.append(Problem("pipe", pipe, f"error: {state['error']}"))
    oldest = _when(state.get("oldestFileTimestamp"))
    if oldest is not None and at - oldest > PIPE_BACKLOG:
        found.append(
            Problem(
                "pipe",
                pipe,
                f"{state.get('pendingFileCount', '?')} file(s) pending, the oldest since {oldest.isoformat()} "
                f"({state.get('oldestPendingFilePath', '?')})",
            )
        )
    return found


def task_problems(show_tasks: list[dict]) -> list[Problem]:
    """SHOW TASKS: a suspended task merges nothing (it was suspended by hand, or after failing
    SUSPEND_TASK_AFTER_NUM_FAILURES = 10 runs in a row)."""
    found = []
    for row in map(_lower, show_tasks):
        if str(row.get("state", "")).lower() == "suspended":
            reason = row.get("last_suspended_reason") or "suspended"
            found.append(
                Problem(
                    "task",
                    _qualified(row),
                    f"{reason}: its stream is not merged (fix the cause, then ALTER TASK ... RESUME)",
                )
            )
    return found


def task_run_problems(history: list[dict]) -> list[Problem]:
    """TASK_HISTORY(ERROR_ONLY => TRUE): the failed and cancelled runs, per task, with the last error."""
    runs: dict[str, list[dict]] = {}
    for row in map(_lower, history):
        runs.setdefault(_qualified(row), []).append(row)
    found = []
    for name, failed in runs.items():
        last = failed[-1]  # the statement orders them by SCHEDULED_TIME
        states = sorted({str(r.get("state")) for r in failed})
        found.append(
            Problem(
                "task_run",
                name,
                f"{len(failed)} run(s) {'/'.join(states)}; last at {last.get('scheduled_time')}: "
                f"{last.get('error_message') or last.get('error_code') or 'no message'}",
            )
        )
    return found


def load_problems(copy_history: list[dict]) -> list[Problem]:
    """COPY_HISTORY of the pipes: each file that did not load, with its first error."""
    found = []
    for row in map(_lower, copy_history):
        line = f" (line {row['first_error_line_number']})" if row.get("first_error_line_number") else ""
        found.append(
            Problem(
                "pipe_load",
                str(row.get("file_name")),
                f"{row.get('status')} by {row.get('pipe_name')} into {row.get('target')}: "
                f"{row.get('first_error_message') or 'no message'}{line}; write the fixed file under a new "
                "name (a pipe does not load a name twice)",
            )
        )
    return found


def stream_problems(show_streams: list[dict], at: datetime) -> list[Problem]:
    """SHOW STREAMS: a stale stream cannot be read (its unmerged rows are lost to it); one whose
    `stale_after` is near will be, unless its task reads it before."""
    found = []
    for row in map(_lower, show_streams):
        name = _qualified(row)
        stale_after = _when(row.get("stale_after"))
        if str(row.get("stale")).lower() == "true":
            found.append(
                Problem(
                    "stream",
                    name,
                    "stale: recreate it (CREATE OR REPLACE STREAM) and merge the raw rows loaded since "
                    "its last read (run the Airflow merge once)",
                )
            )
        elif row.get("invalid_reason") and str(row["invalid_reason"]).upper() != "N/A":
            found.append(Problem("stream", name, f"invalid: {row['invalid_reason']}"))
        elif stale_after is not None and stale_after - at < STREAM_STALE_WARNING:
            found.append(
                Problem(
                    "stream",
                    name,
                    f"goes stale at {stale_after.isoformat()} unless its task reads it (is the task running?)",
                )
            )
    return found


def reject_problems(rejects: list[dict]) -> list[Problem]:
    """Order events the merge rejected (`snowflake.claim_order_rejects`), each reported once."""
    return [
        Problem(
            "rejected_rows",
            str(r["file"]) + (f" row {r['row']}" if r.get("row") is not None else ""),
            f"{r['reason']} (kept with its raw document in EVENTS.ORDER_REJECTS; send the corrected event again)",
        )
        for r in rejects
    ]


# --- running the checks --------------------------------------------------------------------------


def gather(run: Callable[[str, dict | None], list[list[dict]]], start: datetime, end: datetime) -> dict:
    """Run the health statements for the interval [start, end); `run(name, parameters)` renders
    and runs a health/ file, returning each statement's rows."""
    bounds = {"start": start.isoformat(), "end": end.isoformat()}
    pipes, tasks, streams, task_runs, loads = run("health/snowpipe_state.sql", bounds)
    statuses = {}
    for row in map(_lower, pipes):
        name = _qualified(row)
        [[status]] = run("health/pipe_status.sql", {"pipe": name})
        statuses[name] = next(iter(status.values()))
    return {"pipes": statuses, "tasks": tasks, "streams": streams, "task_runs": task_runs, "loads": loads}


def problems(gathered: dict, rejects: list[dict], at: datetime) -> list[Problem]:
    """Everything wrong, in the order an on-call engineer would fix it: what stops loading first."""
    found = []
    for pipe, status in sorted(gathered["pipes"].items()):
        found += pipe_problems(pipe, status, at)
    found += task_problems(gathered["tasks"])
    found += stream_problems(gathered["streams"], at)
    found += task_run_problems(gathered["task_runs"])
    found += load_problems(gathered["loads"])
    found += reject_problems(rejects)
    return found


def alert(found: list[Problem], *, dag_id: str, run_id: str, interval: tuple[datetime, datetime]) -> dict:
    """The message on the notifications topic (JSON, as conveyor.alerts' messages)."""
    return {
        "status": "unhealthy",
        "dag_id": dag_id,
        "run_id": run_id,
        "checked": [interval[0].isoformat(), interval[1].isoformat()],
        "summary": "; ".join(p.line() for p in found[:SHOWN])
        + (f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""),
        "problem_count": len(found),
        "problems": [asdict(p) for p in found[:LISTED]],
        "runbook": "docs/snowflake.md, Operations",
    }


def subject(message: dict) -> str:
    kinds = sorted({p["kind"] for p in message["problems"]})
    text = f"[conveyor] UNHEALTHY Snowflake: {message['problem_count']} problem(s): {', '.join(kinds)}"
    return text.encode("ascii", "replace").decode()[:SUBJECT_LIMIT]


def publish(message: dict, topic_arn: str, aws_conn_id: str) -> str:
    """Publish the alert; returns the SNS MessageId."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    return SnsHook(aws_conn_id=aws_conn_id).publish_to_target(
        target_arn=topic_arn,
        message=json.dumps(message, indent=2, ensure_ascii=False, default=str),
        subject=subject(message),
        message_attributes={"status": message["status"], "dag_id": message["dag_id"]},
    )
