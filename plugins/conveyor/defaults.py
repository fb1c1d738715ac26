"""Settings every Conveyor DAG shares: owner, retries with backoff, and the one list of tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

START_DATE = datetime(2024, 1, 1, tzinfo=UTC)

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
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
