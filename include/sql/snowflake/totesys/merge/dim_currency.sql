-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_currency: upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the
-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old
-- interval, never puts an older version in front of a newer one.
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_CURRENCY AS t
USING (
  SELECT CURRENCY_ID, CURRENCY_CODE, CURRENCY_NAME, SOURCE_VERSION, '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_CURRENCY_STAGING
) AS s
ON t.CURRENCY_ID = s.CURRENCY_ID
WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET
  CURRENCY_CODE = s.CURRENCY_CODE, CURRENCY_NAME = s.CURRENCY_NAME, WINDOW_NAME = s.WINDOW_NAME,
  SOURCE_VERSION = s.SOURCE_VERSION
WHEN NOT MATCHED THEN INSERT
  (CURRENCY_ID, CURRENCY_CODE, CURRENCY_NAME, WINDOW_NAME, SOURCE_VERSION)
  VALUES (s.CURRENCY_ID, s.CURRENCY_CODE, s.CURRENCY_NAME, s.WINDOW_NAME, s.SOURCE_VERSION);
