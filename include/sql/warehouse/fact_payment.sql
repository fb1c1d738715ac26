-- fact_payment: one row per version of a payment the window landed.
INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated_time,
                          transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid,
                          payment_date, window_name)
SELECT DISTINCT ON (p.payment_id, p.last_updated)
       p.payment_id, p.created_at::date, p.created_at::time, p.last_updated::date, p.last_updated::time,
       p.transaction_id, p.counterparty_id, p.payment_amount, p.currency_id, p.payment_type_id, p.paid,
       p.payment_date, %(window)s
FROM staging.payment_landed AS p
WHERE p.window_name = %(window)s
ORDER BY p.payment_id, p.last_updated
ON CONFLICT (payment_id, last_updated_date, last_updated_time) DO NOTHING;
