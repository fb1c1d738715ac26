-- What snowflake_health reads about the Snowpipe path (fakesnow cannot run any of it:
-- tests/unit/test_snowflake_health.py checks the logic on the rows Snowflake documents, and that
-- this parses). The objects first: with none (the Airflow path), there is nothing more to check.
-- Needs only what the loader role has: it owns the pipes, streams and tasks it created.
SHOW PIPES IN DATABASE {{ db }};
SHOW TASKS IN DATABASE {{ db }};
SHOW STREAMS IN DATABASE {{ db }};
-- Task runs that failed (or were cancelled) in the checked interval, within the last 7 days.
SELECT NAME, DATABASE_NAME, SCHEMA_NAME, STATE, ERROR_CODE, ERROR_MESSAGE, SCHEDULED_TIME, COMPLETED_TIME
FROM TABLE({{ db }}.INFORMATION_SCHEMA.TASK_HISTORY(
  SCHEDULED_TIME_RANGE_START => TO_TIMESTAMP_LTZ(%(start)s),
  SCHEDULED_TIME_RANGE_END => TO_TIMESTAMP_LTZ(%(end)s),
  RESULT_LIMIT => 10000,
  ERROR_ONLY => TRUE
))
WHERE DATABASE_NAME = '{{ db }}'
ORDER BY SCHEDULED_TIME;
-- Files a pipe did not load in the checked interval (bulk COPY's failures are reported by the
-- Airflow loads themselves), per raw table, within the last 14 days.
{% for table in ("EVENTS.RAW_EVENTS", "RETAIL.USERS_RAW", "RETAIL.TRANSACTIONS_RAW") -%}
{% if not loop.first %}UNION ALL
{% endif -%}
SELECT FILE_NAME, STATUS, FIRST_ERROR_MESSAGE, FIRST_ERROR_LINE_NUMBER, ERROR_COUNT, PIPE_NAME,
  LAST_LOAD_TIME, '{{ table }}' AS TARGET
FROM TABLE({{ db }}.INFORMATION_SCHEMA.COPY_HISTORY(
  TABLE_NAME => '{{ db }}.{{ table }}',
  START_TIME => TO_TIMESTAMP_LTZ(%(start)s),
  END_TIME => TO_TIMESTAMP_LTZ(%(end)s)
))
WHERE PIPE_NAME IS NOT NULL AND UPPER(STATUS) NOT IN ('LOADED', 'LOAD IN PROGRESS')
{% endfor -%}
;
