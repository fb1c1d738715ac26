-- dim_location: the current row of every address the window landed.
INSERT INTO dim_location (location_id, address_line_1, address_line_2, district, city, postal_code, country, phone,
                          window_name)
SELECT a.address_id, a.address_line_1, a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone,
       %(window)s
FROM staging.address AS a
WHERE a.address_id IN (SELECT address_id FROM staging.address_landed WHERE window_name = %(window)s)
ON CONFLICT (location_id) DO UPDATE SET
    address_line_1 = excluded.address_line_1,
    address_line_2 = excluded.address_line_2,
    district = excluded.district,
    city = excluded.city,
    postal_code = excluded.postal_code,
    country = excluded.country,
    phone = excluded.phone,
    window_name = excluded.window_name
WHERE (dim_location.address_line_1, dim_location.address_line_2, dim_location.district, dim_location.city,
       dim_location.postal_code, dim_location.country, dim_location.phone)
      IS DISTINCT FROM (excluded.address_line_1, excluded.address_line_2, excluded.district, excluded.city,
                        excluded.postal_code, excluded.country, excluded.phone);
