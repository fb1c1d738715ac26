{#- The Airflow merge's source: the raw rows loaded after `since` (what merge_since.sql returned). -#}
(SELECT V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT FROM {{ db }}.EVENTS.RAW_EVENTS WHERE LOADED_AT > {{ since | sql_string }}::TIMESTAMP_TZ)
