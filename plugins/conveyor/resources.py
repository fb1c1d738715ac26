"""The names of every AWS resource and Airflow connection the DAGs use.

One place, so the DAGs, the local stack and Terraform agree. Every AWS name is
`<prefix>-<kind>`; the prefix is `conveyor-<environment>` (`conveyor-local` on the local stack,
`var.name_prefix` in Terraform) and is read at run time from the Airflow Variable
`conveyor_resource_prefix`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "conveyor-local"
PREFIX_VARIABLE = "conveyor_resource_prefix"
NOTIFICATIONS_TOPIC_VARIABLE = "conveyor_notifications_topic_arn"
DEFAULT_REGION = "eu-west-2"

# Bucket kinds: what each holds.
BUCKETS = {
    "source": "files dropped by upstream systems for the nightly ingestion",
    "raw": "raw landing zone (nightly ingestion target; its ObjectCreated events feed s3_event_copy)",
    "curated": "copies of raw objects made on events; Snowpipe's stage",
    "inbound": "retail generator output",
    "stage": "retail files ready for Snowflake",
    "archive": "date-partitioned archive of retail inbound files",
    "ingestion": "ToteSys changed rows",
    "processed": "ToteSys star schema in Parquet",
}
# SNS topics.
TOPICS = {
    "notifications": "run summaries (success and failure) for people",
    "raw-events": "raw bucket ObjectCreated events",
    "curated-events": "curated bucket ObjectCreated events (Snowpipe auto-ingest)",
}
# SQS queues, each with a dead-letter queue `<name>-dlq`; value: the topic it subscribes to.
QUEUES = {
    "raw-events": "raw-events",
}
MAX_RECEIVE_COUNT = 5
QUEUE_VISIBILITY_TIMEOUT_S = 900

AWS_CONN_ID = "aws_default"
TOTESYS_CONN_ID = "totesys_db"
WAREHOUSE_CONN_ID = "warehouse_db"
SNOWFLAKE_CONN_ID = "snowflake_default"


@dataclass(frozen=True)
class Names:
    """Resource names for one environment prefix."""

    prefix: str = DEFAULT_PREFIX

    def bucket(self, kind: str) -> str:
        if kind not in BUCKETS:
            raise KeyError(f"unknown bucket kind {kind!r}; known: {', '.join(BUCKETS)}")
        return f"{self.prefix}-{kind}"

    def topic(self, kind: str) -> str:
        if kind not in TOPICS:
            raise KeyError(f"unknown topic kind {kind!r}; known: {', '.join(TOPICS)}")
        return f"{self.prefix}-{kind}"

    def queue(self, kind: str) -> str:
        if kind not in QUEUES:
            raise KeyError(f"unknown queue kind {kind!r}; known: {', '.join(QUEUES)}")
        return f"{self.prefix}-{kind}"

    def dead_letter_queue(self, kind: str) -> str:
        return f"{self.queue(kind)}-dlq"

    def topic_arn(self, kind: str, region: str, account: str) -> str:
        return f"arn:aws:sns:{region}:{account}:{self.topic(kind)}"


def names_from_variable() -> Names:
    """Names for the prefix in the `conveyor_resource_prefix` Variable (call inside a task)."""
    from airflow.sdk import Variable

    return Names(Variable.get(PREFIX_VARIABLE, default=DEFAULT_PREFIX))
