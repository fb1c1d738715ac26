"""The names of every AWS resource and Airflow connection the DAGs use.

One place, so the DAGs, the local stack and Terraform agree. Every AWS name is
`<prefix>-<kind>`; the prefix is `conveyor-<environment>` (`conveyor-local` on the local stack,
`local.name_prefix` in Terraform) and is read at run time from the Airflow Variable
`conveyor_resource_prefix`. `tests/unit/test_terraform.py` checks that Terraform creates exactly
these names.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "conveyor-local"
PREFIX_VARIABLE = "conveyor_resource_prefix"
NOTIFICATIONS_TOPIC_VARIABLE = "conveyor_notifications_topic_arn"
NIGHTLY_CONFIG_VARIABLE = "nightly_file_ingestion_config"
TOTESYS_CONFIG_VARIABLE = "totesys_tables_config"
SNOWFLAKE_VARIABLE = "conveyor_snowflake"
DEFAULT_REGION = "eu-west-2"

# Bucket kinds: what each holds.
BUCKETS = {
    "source": "files dropped by upstream systems for the nightly ingestion",
    "raw": "raw landing zone: nightly ingestion under landing/, event-driven drops under events/ (these feed s3_event_copy)",
    "curated": "copies of raw events/ objects made on their events (Snowpipe's stage); _quarantine/ for poison messages",
    "inbound": "retail generator output",
    "stage": "retail files ready for Snowflake",
    "archive": "date-partitioned archive of retail inbound files",
    "ingestion": "ToteSys changed rows",
    "processed": "ToteSys star schema in Parquet",
    "code": "MWAA source bucket: dags/, plugins.zip, requirements.txt (the seeds' Lambda code bucket)",
}
# SNS topics.
TOPICS = {
    "notifications": "run summaries (success and failure) for people",
    "raw-events": "raw bucket ObjectCreated events",
    "curated-events": "curated bucket ObjectCreated events (Snowpipe auto-ingest)",
    "stage-events": "stage bucket ObjectCreated events under user/ and transactions/ (retail Snowpipes)",
}
# Event-driven objects live under this prefix, in raw (s3_event_copy's input) and in curated
# (Snowpipe's stage). Nothing else in either bucket notifies anyone: the nightly landing zone
# (`landing/`) does not feed the copier, and the copier's quarantine (`_quarantine/` in curated)
# never reaches Snowpipe.
EVENTS_PREFIX = "events/"
# Bucket notifications (ObjectCreated): bucket kind -> (topic kind, key prefixes).
BUCKET_NOTIFICATIONS = {
    "raw": ("raw-events", (EVENTS_PREFIX,)),
    "curated": ("curated-events", (EVENTS_PREFIX,)),
    "stage": ("stage-events", ("user/", "transactions/")),
}
# SQS queues, each with a dead-letter queue `<name>-dlq`; value: the topic it subscribes to.
QUEUES = {
    "raw-events": "raw-events",
}
MAX_RECEIVE_COUNT = 5
# Both queues keep a message for the SQS maximum, counted from when it was first sent (a move to
# the DLQ keeps that time): a paused or failing s3_event_copy loses nothing for 14 days, and
# Terraform's alarm on the oldest message's age fires long before.
QUEUE_RETENTION_S = 14 * 24 * 3600
# s3_event_copy's `copy_events` first hides its batch for QUEUE_VISIBILITY_TIMEOUT_S from that
# moment (ChangeMessageVisibility), then runs for at most COPY_EVENTS_TIMEOUT_S (its
# execution_timeout): a message cannot become visible again while its copy is running.
COPY_EVENTS_TIMEOUT_S = 600
QUEUE_VISIBILITY_TIMEOUT_S = 900

AWS_CONN_ID = "aws_default"
TOTESYS_CONN_ID = "totesys_db"
WAREHOUSE_CONN_ID = "warehouse_db"
SNOWFLAKE_CONN_ID = "snowflake_default"
# An admin role for snowflake_setup's storage_integration Param only (docs/snowflake.md, step 2).
SNOWFLAKE_ADMIN_CONN_ID = "snowflake_admin"
CONNECTION_IDS = (AWS_CONN_ID, TOTESYS_CONN_ID, WAREHOUSE_CONN_ID, SNOWFLAKE_CONN_ID, SNOWFLAKE_ADMIN_CONN_ID)
# Connections whose values are secret: Terraform creates their secrets empty, people fill them.
SECRET_CONNECTION_IDS = (TOTESYS_CONN_ID, WAREHOUSE_CONN_ID, SNOWFLAKE_CONN_ID, SNOWFLAKE_ADMIN_CONN_ID)
# Airflow Variables the DAGs read (all optional: each has a default).
VARIABLES = (
    PREFIX_VARIABLE,
    NOTIFICATIONS_TOPIC_VARIABLE,
    NIGHTLY_CONFIG_VARIABLE,
    TOTESYS_CONFIG_VARIABLE,
    SNOWFLAKE_VARIABLE,
)


@dataclass(frozen=True)
class ResourceNames:
    """Resource names for one environment prefix."""

    prefix: str = DEFAULT_PREFIX

    def bucket(self, kind: str) -> str:
        return f"{self.prefix}-{_known(kind, BUCKETS, 'bucket kind')}"

    def topic(self, kind: str) -> str:
        return f"{self.prefix}-{_known(kind, TOPICS, 'topic kind')}"

    def queue(self, kind: str) -> str:
        return f"{self.prefix}-{_known(kind, QUEUES, 'queue kind')}"

    def dead_letter_queue(self, kind: str) -> str:
        return f"{self.queue(kind)}-dlq"

    def topic_arn(self, kind: str, region: str, account: str) -> str:
        return f"arn:aws:sns:{region}:{account}:{self.topic(kind)}"

    # On MWAA, connections and Variables come from Secrets Manager (Airflow's
    # SecretsManagerBackend), one secret per connection or Variable under these prefixes.
    @property
    def connections_secret_prefix(self) -> str:
        return f"{self.prefix}/connections"

    @property
    def variables_secret_prefix(self) -> str:
        return f"{self.prefix}/variables"

    def connection_secret(self, conn_id: str) -> str:
        return f"{self.connections_secret_prefix}/{_known(conn_id, CONNECTION_IDS, 'connection')}"

    def variable_secret(self, key: str) -> str:
        return f"{self.variables_secret_prefix}/{_known(key, VARIABLES, 'Variable')}"


def _known(name: str, known, what: str) -> str:
    """`name` if it is one of `known`; else a KeyError that lists them (a typo fails loudly)."""
    if name not in known:
        raise KeyError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return name


def names_from_variable() -> ResourceNames:
    """Names for the prefix in the `conveyor_resource_prefix` Variable (call inside a task)."""
    from airflow.sdk import Variable

    return ResourceNames(Variable.get(PREFIX_VARIABLE, default=DEFAULT_PREFIX))
