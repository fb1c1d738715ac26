-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_date: dates never change: a new key is inserted; a key already there keeps its row and takes the
-- earlier window's name (the first window by name that covered it, as in Postgres).
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_DATE AS t
USING (
  SELECT DATE_ID, YEAR, MONTH, DAY, DAY_OF_WEEK, DAY_NAME, MONTH_NAME, QUARTER, '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_DATE_STAGING
) AS s
ON t.DATE_ID = s.DATE_ID
WHEN MATCHED AND s.WINDOW_NAME < t.WINDOW_NAME THEN UPDATE SET WINDOW_NAME = s.WINDOW_NAME
WHEN NOT MATCHED THEN INSERT
  (DATE_ID, YEAR, MONTH, DAY, DAY_OF_WEEK, DAY_NAME, MONTH_NAME, QUARTER, WINDOW_NAME)
  VALUES (s.DATE_ID, s.YEAR, s.MONTH, s.DAY, s.DAY_OF_WEEK, s.DAY_NAME, s.MONTH_NAME, s.QUARTER, s.WINDOW_NAME);
