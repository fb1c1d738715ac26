-- dim_location: the current row of every address the window landed.
-- staging.dim_location_source builds the row from the newest landed version of each source row, and
-- staging.dim_location_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_location (location_id, address_line_1, address_line_2, district, city, postal_code, country, phone, source_version,
    window_name)
SELECT s.location_id, s.address_line_1, s.address_line_2, s.district, s.city, s.postal_code, s.country,
       s.phone, s.source_version, %(window)s
FROM staging.dim_location_source AS s
WHERE s.location_id IN (SELECT location_id FROM staging.dim_location_window WHERE window_name = %(window)s)
ON CONFLICT (location_id) DO UPDATE SET
    address_line_1 = excluded.address_line_1,
    address_line_2 = excluded.address_line_2,
    district = excluded.district,
    city = excluded.city,
    postal_code = excluded.postal_code,
    country = excluded.country,
    phone = excluded.phone,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_location.address_line_1, dim_location.address_line_2, dim_location.district, dim_location.city,
       dim_location.postal_code, dim_location.country, dim_location.phone, dim_location.source_version)
      IS DISTINCT FROM (excluded.address_line_1, excluded.address_line_2, excluded.district, excluded.city,
                        excluded.postal_code, excluded.country, excluded.phone, excluded.source_version);
