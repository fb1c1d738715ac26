-- External stages over the buckets Snowflake reads. The COPY statements state their own file
-- format, so a stage carries none. IF NOT EXISTS: a pipe on a replaced stage stops loading.
CREATE STAGE IF NOT EXISTS {{ db }}.EVENTS.CURATED_STAGE
  URL = 's3://{{ buckets.curated }}/events/'
  {% if storage_integration %}STORAGE_INTEGRATION = {{ storage_integration }}{% endif %}
  COMMENT = 'curated JSON events (s3_event_copy writes them)';
CREATE STAGE IF NOT EXISTS {{ db }}.RETAIL.RETAIL_STAGE
  URL = 's3://{{ buckets.stage }}/'
  {% if storage_integration %}STORAGE_INTEGRATION = {{ storage_integration }}{% endif %}
  COMMENT = 'retail user/ and transactions/ files (inbound_to_stage writes them)';
CREATE STAGE IF NOT EXISTS {{ db }}.TOTESYS.PROCESSED_STAGE
  URL = 's3://{{ buckets.processed }}/'
  {% if storage_integration %}STORAGE_INTEGRATION = {{ storage_integration }}{% endif %}
  COMMENT = 'ToteSys star rows as Parquet, per window (totesys_etl writes them)';
