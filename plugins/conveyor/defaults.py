"""Settings every Conveyor DAG shares: owner, retries with backoff, the failure alert, the tags.

No DAG has a `start_date`: a run whose logical date is before a DAG's start date runs no task
and still reports success, so a backfill or test run of an old interval would silently do
nothing. Without one, every interval a user asks for is run; `catchup=False` keeps the scheduler
from creating past runs on its own.

The exception is `@continuous`: without a start date its first run's interval is empty
([now, now]) and every later run is given that same logical date, so the scheduler never
creates a second run ("run already exists"). Continuous DAGs start at CONTINUOUS_SINCE, long
before any date a run is asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from airflow.sdk.configuration import conf

from conveyor.alerts import FailureAlert

CONTINUOUS_SINCE = datetime(2020, 1, 1, tzinfo=UTC)

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    # The first retry's delay, doubling after (Airflow config: loaded at start-up, no I/O here).
    "retry_delay": timedelta(seconds=conf.getint("conveyor", "retry_delay_seconds", fallback=60)),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    # Once a task has no retries left: DAG, task, run, interval, error, try and log URL on SNS.
    "on_failure_callback": [FailureAlert()],
}


class Tag(StrEnum):
    """Tags come from here so the UI's tag filter stays tidy."""

    CONVEYOR = "conveyor"
    INGESTION = "ingestion"
    S3 = "s3"
    SNS = "sns"
    SQS = "sqs"
    SNOWFLAKE = "snowflake"
    POSTGRES = "postgres"
    RETAIL = "retail"
    TOTESYS = "totesys"
