-- The Param validate_only: parse the curated files and return their errors, loading nothing.
-- `file_batches`: only the files the run names (at most 1,000 per COPY, as the load); without
-- it, every .json file under the stage (a sweep: it re-parses every file ever written).
-- VALIDATION_MODE cannot be combined with a COPY transformation, so it reads into the one-column
-- RAW_EVENTS_CHECK table (never loaded) with the same file format and pattern as the load.
{%- for batch in (file_batches if file_batches is defined else [none]) %}
COPY INTO {{ db }}.EVENTS.RAW_EVENTS_CHECK
FROM @{{ db }}.EVENTS.CURATED_STAGE
FILE_FORMAT = (TYPE = JSON)
{% if batch is none %}PATTERN = '.*[.]json'{% else %}FILES = ({{ batch | map("sql_string") | join(", ") }}){% endif %}
VALIDATION_MODE = RETURN_ERRORS;
{%- endfor %}
