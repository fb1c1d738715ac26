-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_payment_type: upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the
-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old
-- interval, never puts an older version in front of a newer one.
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_PAYMENT_TYPE AS t
USING (
  SELECT PAYMENT_TYPE_ID, PAYMENT_TYPE_NAME, SOURCE_VERSION, '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_PAYMENT_TYPE_STAGING
) AS s
ON t.PAYMENT_TYPE_ID = s.PAYMENT_TYPE_ID
WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET
  PAYMENT_TYPE_NAME = s.PAYMENT_TYPE_NAME, WINDOW_NAME = s.WINDOW_NAME, SOURCE_VERSION = s.SOURCE_VERSION
WHEN NOT MATCHED THEN INSERT
  (PAYMENT_TYPE_ID, PAYMENT_TYPE_NAME, WINDOW_NAME, SOURCE_VERSION)
  VALUES (s.PAYMENT_TYPE_ID, s.PAYMENT_TYPE_NAME, s.WINDOW_NAME, s.SOURCE_VERSION);
