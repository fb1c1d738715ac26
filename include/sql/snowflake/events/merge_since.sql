-- Where the Airflow merge starts reading RAW_EVENTS: after the newest LOADED_AT the last merge
-- saw (its watermark), so it reads what the loads since then added (this run's load, and any load
-- whose merge failed) and nothing older, whatever those rows were (orders, rejects, other
-- events). Read first and bound as a constant, so Snowflake prunes RAW_EVENTS' micro-partitions
-- by it. `before_first_watermark` (only when there is none yet): ORDERS' newest LOADED_AT less an
-- hour (where the merge of earlier versions of this file stopped), else everything.
-- No overlap is needed: this DAG copies then merges, one run at a time, so no load can commit a
-- row older than the watermark after a merge read. (The Snowpipe path merges from its stream;
-- merge_only reads RAW_EVENTS_PENDING, which keeps an hour of overlap for the pipe's late commits.)
{%- if before_first_watermark is defined and before_first_watermark %}
SELECT COALESCE(
  (SELECT DATEADD(hour, -1, MAX(LOADED_AT)) FROM {{ db }}.EVENTS.ORDERS),
  '1970-01-01 00:00:00 +0000'::TIMESTAMP_TZ
) AS MERGED_UP_TO;
{%- else %}
SELECT MAX(LOADED_UP_TO) AS MERGED_UP_TO FROM {{ db }}.EVENTS.MERGE_WATERMARKS WHERE TARGET = 'ORDERS';
{%- endif %}
