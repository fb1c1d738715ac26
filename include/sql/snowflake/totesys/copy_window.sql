-- Load one window's export into the staging tables: for each star table, empty its staging table,
-- then COPY the window's one Parquet file, `<table>/YYYY/MM/DD/HHMM/<table>-<window>.parquet`
-- (totesys_etl's export; a table the window wrote no rows of has no file and loads nothing).
-- Names besides the database: window (the window's name), partition (YYYY/MM/DD/HHMM of its end),
-- star_tables (the star's tables, from include/sql/warehouse/star.yml).
-- FORCE = TRUE: a rerun or retry of the window reads its file again (the load metadata would skip
-- it) into the emptied staging table; the MERGE makes a second load change nothing.
-- ON_ERROR = ABORT_STATEMENT: a window loads whole or not at all.
{% for table in star_tables %}
DELETE FROM {{ db }}.TOTESYS.{{ table | upper }}_STAGING;
COPY INTO {{ db }}.TOTESYS.{{ table | upper }}_STAGING
FROM @{{ db }}.TOTESYS.PROCESSED_STAGE/{{ table }}/{{ partition }}/
PATTERN = '.*/{{ table }}-{{ window }}[.]parquet'
FILE_FORMAT = (TYPE = PARQUET)
MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
ON_ERROR = ABORT_STATEMENT
FORCE = TRUE;
{% endfor %}
