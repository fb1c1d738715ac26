-- dim_payment_type: the current row of every payment type the window landed.
INSERT INTO dim_payment_type (payment_type_id, payment_type_name, window_name)
SELECT p.payment_type_id, p.payment_type_name, %(window)s
FROM staging.payment_type AS p
WHERE p.payment_type_id IN (SELECT payment_type_id FROM staging.payment_type_landed WHERE window_name = %(window)s)
ON CONFLICT (payment_type_id) DO UPDATE SET
    payment_type_name = excluded.payment_type_name,
    window_name = excluded.window_name
WHERE dim_payment_type.payment_type_name IS DISTINCT FROM excluded.payment_type_name;
