-- dim_currency: the current row of every currency the window landed, named from ISO 4217.
INSERT INTO dim_currency (currency_id, currency_code, currency_name, window_name)
SELECT c.currency_id, c.currency_code, iso.currency_name, %(window)s
FROM staging.currency AS c
LEFT JOIN staging.iso_4217 AS iso ON iso.currency_code = upper(c.currency_code)
WHERE c.currency_id IN (SELECT currency_id FROM staging.currency_landed WHERE window_name = %(window)s)
ON CONFLICT (currency_id) DO UPDATE SET
    currency_code = excluded.currency_code,
    currency_name = excluded.currency_name,
    window_name = excluded.window_name
WHERE (dim_currency.currency_code, dim_currency.currency_name)
      IS DISTINCT FROM (excluded.currency_code, excluded.currency_name);
