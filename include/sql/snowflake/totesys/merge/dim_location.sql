-- Generated from include/sql/warehouse/star.yml by `make star`: edit the declaration, not this file.
-- dim_location: upserted by its key; a row is replaced only by one with a higher SOURCE_VERSION (the
-- newest source versions win, as in Postgres), so a late, older window, or a repair of an old
-- interval, never puts an older version in front of a newer one.
-- Reads the staging table copy_window.sql fills; names besides the database: window (the
-- window's name, written to WINDOW_NAME).
MERGE INTO {{ db }}.TOTESYS.DIM_LOCATION AS t
USING (
  SELECT LOCATION_ID, ADDRESS_LINE_1, ADDRESS_LINE_2, DISTRICT, CITY, POSTAL_CODE, COUNTRY, PHONE,
    SOURCE_VERSION, '{{ window }}' AS WINDOW_NAME
  FROM {{ db }}.TOTESYS.DIM_LOCATION_STAGING
) AS s
ON t.LOCATION_ID = s.LOCATION_ID
WHEN MATCHED AND s.SOURCE_VERSION > COALESCE(t.SOURCE_VERSION, -1) THEN UPDATE SET
  ADDRESS_LINE_1 = s.ADDRESS_LINE_1, ADDRESS_LINE_2 = s.ADDRESS_LINE_2, DISTRICT = s.DISTRICT, CITY = s.CITY,
  POSTAL_CODE = s.POSTAL_CODE, COUNTRY = s.COUNTRY, PHONE = s.PHONE, WINDOW_NAME = s.WINDOW_NAME,
  SOURCE_VERSION = s.SOURCE_VERSION
WHEN NOT MATCHED THEN INSERT
  (LOCATION_ID, ADDRESS_LINE_1, ADDRESS_LINE_2, DISTRICT, CITY, POSTAL_CODE, COUNTRY, PHONE, WINDOW_NAME,
   SOURCE_VERSION)
  VALUES (s.LOCATION_ID, s.ADDRESS_LINE_1, s.ADDRESS_LINE_2, s.DISTRICT, s.CITY, s.POSTAL_CODE, s.COUNTRY,
          s.PHONE, s.WINDOW_NAME, s.SOURCE_VERSION);
