"""The data assets the DAGs produce: lineage in the UI, and schedules for downstream DAGs."""

from __future__ import annotations

from airflow.sdk import Asset

CURATED = Asset("curated")  # raw objects copied by s3_event_copy; Snowpipe's stage
STAGE = Asset("stage")  # retail files ready for Snowflake
INGESTION = Asset("ingestion")  # ToteSys changed rows
PROCESSED = Asset("processed")  # ToteSys star schema
WAREHOUSE = Asset("warehouse")  # loaded warehouse tables
