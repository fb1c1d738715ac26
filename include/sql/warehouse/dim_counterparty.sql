-- dim_counterparty: the current row of every counterparty the window covers: those it
-- landed, and every counterparty whose legal address it landed (a moved address moves them all).
-- staging.dim_counterparty_source builds the row from the newest landed version of each source row, and
-- staging.dim_counterparty_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_counterparty (counterparty_id, counterparty_legal_name, counterparty_legal_address_line_1,
    counterparty_legal_address_line_2, counterparty_legal_district, counterparty_legal_city,
    counterparty_legal_postal_code, counterparty_legal_country, counterparty_legal_phone_number,
    source_version, window_name)
SELECT s.counterparty_id, s.counterparty_legal_name, s.counterparty_legal_address_line_1,
       s.counterparty_legal_address_line_2, s.counterparty_legal_district, s.counterparty_legal_city,
       s.counterparty_legal_postal_code, s.counterparty_legal_country, s.counterparty_legal_phone_number,
       s.source_version, %(window)s
FROM staging.dim_counterparty_source AS s
WHERE s.counterparty_id IN (SELECT counterparty_id FROM staging.dim_counterparty_window WHERE window_name = %(window)s)
ON CONFLICT (counterparty_id) DO UPDATE SET
    counterparty_legal_name = excluded.counterparty_legal_name,
    counterparty_legal_address_line_1 = excluded.counterparty_legal_address_line_1,
    counterparty_legal_address_line_2 = excluded.counterparty_legal_address_line_2,
    counterparty_legal_district = excluded.counterparty_legal_district,
    counterparty_legal_city = excluded.counterparty_legal_city,
    counterparty_legal_postal_code = excluded.counterparty_legal_postal_code,
    counterparty_legal_country = excluded.counterparty_legal_country,
    counterparty_legal_phone_number = excluded.counterparty_legal_phone_number,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_counterparty.counterparty_legal_name, dim_counterparty.counterparty_legal_address_line_1,
       dim_counterparty.counterparty_legal_address_line_2, dim_counterparty.counterparty_legal_district,
       dim_counterparty.counterparty_legal_city, dim_counterparty.counterparty_legal_postal_code,
       dim_counterparty.counterparty_legal_country, dim_counterparty.counterparty_legal_phone_number,
       dim_counterparty.source_version)
      IS DISTINCT FROM (excluded.counterparty_legal_name, excluded.counterparty_legal_address_line_1,
                        excluded.counterparty_legal_address_line_2, excluded.counterparty_legal_district,
                        excluded.counterparty_legal_city, excluded.counterparty_legal_postal_code,
                        excluded.counterparty_legal_country, excluded.counterparty_legal_phone_number,
                        excluded.source_version);
