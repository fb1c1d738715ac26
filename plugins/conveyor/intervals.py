"""A run's data interval, which a run triggered without a logical date does not have.

Airflow 3 creates a run with `"logical_date": null` (REST API `POST /api/v2/dags/{id}/dagRuns`,
and any client built on it) with no logical date and no data interval, whatever the DAG's
timetable: Airflow infers an interval only from a logical date. Its tasks find no
`logical_date`, `ds`, `ts`, `data_interval_start` or `data_interval_end` in their context (TaskFlow
arguments of those names are None); `dag_run.run_after` (when it was triggered) is set.
Asset-triggered runs have none either. A task that works on its run's interval gets it from
`require_data_interval(dag_run)`, which fails such a run for good (no retries: a retry has no
interval either), saying what to pass instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk.exceptions import AirflowFailException


class NoDataInterval(AirflowFailException):
    """The run has no data interval: it was triggered without a logical date."""


def require_data_interval(dag_run) -> tuple[datetime, datetime]:
    """`(data_interval_start, data_interval_end)` of `dag_run` (the task context's `dag_run`).

    Raises NoDataInterval, naming the run and a logical date to trigger with, when it has none.
    """
    start, end = dag_run.data_interval_start, dag_run.data_interval_end
    if start is not None and end is not None:
        return start, end
    run_after = getattr(dag_run, "run_after", None)
    example = f"{run_after.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if run_after else "2024-03-05T20:00:00Z"
    raise NoDataInterval(
        f"run {dag_run.run_id!r} of {dag_run.dag_id} has no data interval: it was triggered without a "
        'logical date ("logical_date": null). This DAG works on a data interval and does not guess one. '
        "Trigger it again with a logical date: the run covers the last complete interval of the schedule "
        f'that ends at or before it (e.g. "logical_date": "{example}" takes the latest complete one); '
        "for several past intervals, create a backfill."
    )
