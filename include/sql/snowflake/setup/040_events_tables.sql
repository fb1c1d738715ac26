-- Curated events: every JSON document as loaded (RAW_EVENTS), the order events flattened into
-- typed tables (ORDERS, ORDER_ITEMS), and the order events that do not type (ORDER_REJECTS).
-- Which version of an order is newest is what the producer and S3 say, never the load order:
-- the event's ordered_at, then the file's FILE_LAST_MODIFIED (S3's clock, UTC), its name and the
-- document's row in it. LOADED_AT (METADATA$START_SCAN_TIME, per record) only says which raw rows
-- the merge has not seen yet.
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.RAW_EVENTS (
  V VARIANT NOT NULL,
  FILE_NAME VARCHAR NOT NULL,
  FILE_LAST_MODIFIED TIMESTAMP_NTZ,
  FILE_ROW_NUMBER NUMBER(38, 0),
  LOADED_AT TIMESTAMP_TZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.ORDERS (
  ORDER_ID NUMBER(38, 0) NOT NULL PRIMARY KEY,
  CUSTOMER_ID VARCHAR,
  COUNTRY VARCHAR(2),
  CURRENCY VARCHAR(3),
  TOTAL NUMBER(12, 2),
  ORDERED_AT TIMESTAMP_TZ,
  ITEM_COUNT NUMBER(9, 0),
  FILE_NAME VARCHAR NOT NULL,
  FILE_LAST_MODIFIED TIMESTAMP_NTZ,
  FILE_ROW_NUMBER NUMBER(38, 0),
  LOADED_AT TIMESTAMP_TZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.ORDER_ITEMS (
  ORDER_ID NUMBER(38, 0) NOT NULL,
  LINE_NUMBER NUMBER(9, 0) NOT NULL,
  SKU VARCHAR,
  QUANTITY NUMBER(9, 0),
  UNIT_PRICE NUMBER(12, 2),
  LOADED_AT TIMESTAMP_TZ NOT NULL,
  PRIMARY KEY (ORDER_ID, LINE_NUMBER)
);
-- An order event (a document with an order_id key) that does not type: why, and the document as
-- loaded. The merge adds each once; whoever reports it (curated_to_snowflake's check_loads, or
-- snowflake_health on the Snowpipe path) claims it with REPORTED_BY, so it is reported once.
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.ORDER_REJECTS (
  FILE_NAME VARCHAR NOT NULL,
  FILE_ROW_NUMBER NUMBER(38, 0),
  REASON VARCHAR NOT NULL,
  V VARIANT NOT NULL,
  LOADED_AT TIMESTAMP_TZ NOT NULL,
  REJECTED_AT TIMESTAMP_TZ NOT NULL,
  REPORTED_BY VARCHAR,
  REPORTED_AT TIMESTAMP_TZ
);
-- How far each merge has read its raw table: the newest LOADED_AT it has seen, orders, rejects
-- and other events alike, so the next run starts there (less an hour) whatever those rows were.
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.MERGE_WATERMARKS (
  TARGET VARCHAR NOT NULL PRIMARY KEY,
  LOADED_UP_TO TIMESTAMP_TZ NOT NULL
);
-- Tables created before these columns existed get them (NULL in older rows: oldest in the order).
ALTER TABLE {{ db }}.EVENTS.RAW_EVENTS ADD COLUMN IF NOT EXISTS FILE_LAST_MODIFIED TIMESTAMP_NTZ;
ALTER TABLE {{ db }}.EVENTS.RAW_EVENTS ADD COLUMN IF NOT EXISTS FILE_ROW_NUMBER NUMBER(38, 0);
ALTER TABLE {{ db }}.EVENTS.ORDERS ADD COLUMN IF NOT EXISTS FILE_LAST_MODIFIED TIMESTAMP_NTZ;
ALTER TABLE {{ db }}.EVENTS.ORDERS ADD COLUMN IF NOT EXISTS FILE_ROW_NUMBER NUMBER(38, 0);
-- What the Airflow merge reads (a Snowflake task reads the stream on RAW_EVENTS instead): the raw
-- rows loaded since the merge's watermark, less an hour of overlap (a COPY that committed late;
-- the MERGE makes overlap harmless). Before the first watermark: since ORDERS' newest LOADED_AT,
-- where the merge of earlier versions of this file stopped.
CREATE OR REPLACE VIEW {{ db }}.EVENTS.RAW_EVENTS_PENDING AS
SELECT V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT
FROM {{ db }}.EVENTS.RAW_EVENTS
WHERE LOADED_AT >= DATEADD(hour, -1, COALESCE(
  (SELECT MAX(LOADED_UP_TO) FROM {{ db }}.EVENTS.MERGE_WATERMARKS WHERE TARGET = 'ORDERS'),
  (SELECT MAX(LOADED_AT) FROM {{ db }}.EVENTS.ORDERS),
  '1970-01-01 00:00:00 +0000'::TIMESTAMP_TZ
));
-- Only for the validate_only Param: VALIDATION_MODE reads into it and never loads a row.
CREATE TABLE IF NOT EXISTS {{ db }}.EVENTS.RAW_EVENTS_CHECK (V VARIANT);
