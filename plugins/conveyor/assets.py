"""The data assets the DAGs produce: lineage in the UI, and schedules for downstream DAGs."""

from __future__ import annotations

from airflow.sdk import Asset

CURATED = Asset("curated")  # raw objects copied by s3_event_copy; Snowpipe's stage
STAGE = Asset("stage")  # retail files ready for Snowflake
INGESTION = Asset("ingestion")  # ToteSys changed rows
PROCESSED = Asset("processed")  # ToteSys star schema
WAREHOUSE = Asset("warehouse")  # loaded warehouse tables

# The most curated keys one CURATED event names (Snowflake's limit for one COPY's FILES list,
# and what keeps an event's extra small). An update with more names none and says so: the
# consumer sweeps the prefix instead.
MAX_EVENT_KEYS = 1000


def curated_extra(keys: list[str], objects: int, size: int) -> dict:
    """The CURATED event's extra: how many objects and bytes were copied, and the copied keys
    (each once, in order) when there are at most MAX_EVENT_KEYS; else `keys_omitted` instead."""
    keys = list(dict.fromkeys(keys))
    extra = {"objects": objects, "bytes": size}
    if len(keys) <= MAX_EVENT_KEYS:
        extra["keys"] = keys
    else:
        extra["keys_omitted"] = len(keys)
    return extra
