-- dim_currency: the current row of every currency the window landed, named from ISO 4217.
-- staging.dim_currency_source builds the row from the newest landed version of each source row, and
-- staging.dim_currency_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_currency (currency_id, currency_code, currency_name, source_version, window_name)
SELECT s.currency_id, s.currency_code, s.currency_name, s.source_version, %(window)s
FROM staging.dim_currency_source AS s
WHERE s.currency_id IN (SELECT currency_id FROM staging.dim_currency_window WHERE window_name = %(window)s)
ON CONFLICT (currency_id) DO UPDATE SET
    currency_code = excluded.currency_code,
    currency_name = excluded.currency_name,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_currency.currency_code, dim_currency.currency_name, dim_currency.source_version)
      IS DISTINCT FROM (excluded.currency_code, excluded.currency_name, excluded.source_version);
