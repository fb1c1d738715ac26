-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_transaction: upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the
-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old
-- interval, never puts an older version in front of a newer one.
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_TRANSACTION AS t
USING (
  SELECT TRANSACTION_ID, TRANSACTION_TYPE, SALES_ORDER_ID, PURCHASE_ORDER_ID, SOURCE_VERSION,
    '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_TRANSACTION_STAGING
) AS s
ON t.TRANSACTION_ID = s.TRANSACTION_ID
WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET
  TRANSACTION_TYPE = s.TRANSACTION_TYPE, SALES_ORDER_ID = s.SALES_ORDER_ID,
  PURCHASE_ORDER_ID = s.PURCHASE_ORDER_ID, WINDOW_NAME = s.WINDOW_NAME, SOURCE_VERSION = s.SOURCE_VERSION
WHEN NOT MATCHED THEN INSERT
  (TRANSACTION_ID, TRANSACTION_TYPE, SALES_ORDER_ID, PURCHASE_ORDER_ID, WINDOW_NAME, SOURCE_VERSION)
  VALUES (s.TRANSACTION_ID, s.TRANSACTION_TYPE, s.SALES_ORDER_ID, s.PURCHASE_ORDER_ID, s.WINDOW_NAME,
          s.SOURCE_VERSION);
