"""conveyor.intervals.require_data_interval: the guard interval DAGs call first (the DAG tests run
it through Airflow; here, its answer for each kind of run, with the run's fields as Airflow sets
them for a run with and without a logical date)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from conveyor.intervals import NoDataInterval, require_data_interval

START, END = datetime(2024, 3, 4, 20, tzinfo=UTC), datetime(2024, 3, 5, 20, tzinfo=UTC)


def run(**fields):
    return SimpleNamespace(dag_id="nightly_file_ingestion", run_id="manual__x", **fields)


def test_a_run_with_an_interval_gets_it():
    dag_run = run(data_interval_start=START, data_interval_end=END, run_after=END)
    assert require_data_interval(dag_run) == (START, END)


def test_a_run_without_a_logical_date_fails_for_good_saying_what_to_pass():
    dag_run = run(
        data_interval_start=None, data_interval_end=None, run_after=datetime(2026, 11, 30, 8, 1, 2, 345, UTC)
    )
    with pytest.raises(NoDataInterval) as refused:
        require_data_interval(dag_run)
    assert isinstance(refused.value, AirflowFailException), "no retries: a retry has no interval either"
    message = str(refused.value)
    assert message.startswith("run 'manual__x' of nightly_file_ingestion has no data interval")
    assert '"logical_date": "2026-11-30T08:01:02Z" takes the latest complete one' in message
