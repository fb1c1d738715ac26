-- Load the curated JSON documents (newline-delimited or one per file) into RAW_EVENTS, with the
-- file's name, S3 last-modified time and row (what orders versions of an order) and the load time.
-- `file_batches`: the files to load, by name under the stage (what the triggering `curated` asset
-- events name), at most 1,000 per COPY (Snowflake's limit for FILES): Snowflake reads those
-- files and lists nothing. Without it, a sweep: the whole stage is listed and PATTERN picks the
-- .json files (its cost grows with the files the prefix holds: the fallback for files no event
-- named, never the steady state).
-- Snowflake's load metadata (per table, 64 days) skips a file this COPY loaded before, so replays
-- and retries never double-load, named or swept. (A pipe keeps its own history: use the pipes or
-- this, not both.)
-- ON_ERROR = SKIP_FILE: a malformed file loads nothing and comes back LOAD_FAILED with its first
-- error; the other files load and merge, then the run fails naming it. The file stays in curated;
-- fixed (rewritten), it is a new file to the load metadata and the next run loads it.
{%- for batch in (file_batches if file_batches is defined else [none]) %}
COPY INTO {{ db }}.EVENTS.RAW_EVENTS (V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT)
FROM (
  SELECT $1, METADATA$FILENAME, METADATA$FILE_LAST_MODIFIED, METADATA$FILE_ROW_NUMBER, METADATA$START_SCAN_TIME
  FROM @{{ db }}.EVENTS.CURATED_STAGE
)
FILE_FORMAT = (TYPE = JSON)
{% if batch is none %}PATTERN = '.*[.]json'{% else %}FILES = ({{ batch | map("sql_string") | join(", ") }}){% endif %}
ON_ERROR = SKIP_FILE;
{%- endfor %}
