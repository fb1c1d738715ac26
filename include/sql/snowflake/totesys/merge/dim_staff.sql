-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_staff: upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the
-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old
-- interval, never puts an older version in front of a newer one.
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_STAFF AS t
USING (
  SELECT STAFF_ID, FIRST_NAME, LAST_NAME, DEPARTMENT_NAME, LOCATION, EMAIL_ADDRESS, SOURCE_VERSION,
    '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_STAFF_STAGING
) AS s
ON t.STAFF_ID = s.STAFF_ID
WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET
  FIRST_NAME = s.FIRST_NAME, LAST_NAME = s.LAST_NAME, DEPARTMENT_NAME = s.DEPARTMENT_NAME,
  LOCATION = s.LOCATION, EMAIL_ADDRESS = s.EMAIL_ADDRESS, WINDOW_NAME = s.WINDOW_NAME,
  SOURCE_VERSION = s.SOURCE_VERSION
WHEN NOT MATCHED THEN INSERT
  (STAFF_ID, FIRST_NAME, LAST_NAME, DEPARTMENT_NAME, LOCATION, EMAIL_ADDRESS, WINDOW_NAME, SOURCE_VERSION)
  VALUES (s.STAFF_ID, s.FIRST_NAME, s.LAST_NAME, s.DEPARTMENT_NAME, s.LOCATION, s.EMAIL_ADDRESS,
          s.WINDOW_NAME, s.SOURCE_VERSION);
