-- Load the curated JSON documents (newline-delimited or one per file) into RAW_EVENTS, with the
-- file's name, S3 last-modified time and row (what orders versions of an order) and the load time.
-- Snowflake's load metadata (per table, 64 days) skips a file this COPY loaded before, so replays
-- and retries never double-load. (A pipe keeps its own history: use the pipes or this, not both.)
-- ON_ERROR = SKIP_FILE: a malformed file loads nothing and comes back LOAD_FAILED with its first
-- error; the other files load and merge, then the run fails naming it. The file stays in curated;
-- fixed (rewritten), it is a new file to the load metadata and the next run loads it.
COPY INTO {{ db }}.EVENTS.RAW_EVENTS (V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT)
FROM (
  SELECT $1, METADATA$FILENAME, METADATA$FILE_LAST_MODIFIED, METADATA$FILE_ROW_NUMBER, METADATA$START_SCAN_TIME
  FROM @{{ db }}.EVENTS.CURATED_STAGE
)
FILE_FORMAT = (TYPE = JSON)
PATTERN = '.*[.]json'
ON_ERROR = SKIP_FILE;
