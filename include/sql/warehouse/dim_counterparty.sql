-- dim_counterparty: the current row of every counterparty the window touched: those it landed,
-- and every counterparty whose legal address it landed (a changed address moves them all).
INSERT INTO dim_counterparty (counterparty_id, counterparty_legal_name, counterparty_legal_address_line_1,
                              counterparty_legal_address_line_2, counterparty_legal_district,
                              counterparty_legal_city, counterparty_legal_postal_code,
                              counterparty_legal_country, counterparty_legal_phone_number, window_name)
SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1, a.address_line_2, a.district, a.city,
       a.postal_code, a.country, a.phone, %(window)s
FROM staging.counterparty AS c
LEFT JOIN staging.address AS a ON a.address_id = c.legal_address_id
WHERE c.counterparty_id IN (SELECT counterparty_id FROM staging.counterparty_landed WHERE window_name = %(window)s)
   OR c.legal_address_id IN (SELECT address_id FROM staging.address_landed WHERE window_name = %(window)s)
ON CONFLICT (counterparty_id) DO UPDATE SET
    counterparty_legal_name = excluded.counterparty_legal_name,
    counterparty_legal_address_line_1 = excluded.counterparty_legal_address_line_1,
    counterparty_legal_address_line_2 = excluded.counterparty_legal_address_line_2,
    counterparty_legal_district = excluded.counterparty_legal_district,
    counterparty_legal_city = excluded.counterparty_legal_city,
    counterparty_legal_postal_code = excluded.counterparty_legal_postal_code,
    counterparty_legal_country = excluded.counterparty_legal_country,
    counterparty_legal_phone_number = excluded.counterparty_legal_phone_number,
    window_name = excluded.window_name
WHERE (dim_counterparty.counterparty_legal_name, dim_counterparty.counterparty_legal_address_line_1,
       dim_counterparty.counterparty_legal_address_line_2, dim_counterparty.counterparty_legal_district,
       dim_counterparty.counterparty_legal_city, dim_counterparty.counterparty_legal_postal_code,
       dim_counterparty.counterparty_legal_country, dim_counterparty.counterparty_legal_phone_number)
      IS DISTINCT FROM (excluded.counterparty_legal_name, excluded.counterparty_legal_address_line_1,
                        excluded.counterparty_legal_address_line_2, excluded.counterparty_legal_district,
                        excluded.counterparty_legal_city, excluded.counterparty_legal_postal_code,
                        excluded.counterparty_legal_country, excluded.counterparty_legal_phone_number);
