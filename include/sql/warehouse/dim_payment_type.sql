-- dim_payment_type: the current row of every payment type the window landed.
-- staging.dim_payment_type_source builds the row from the newest landed version of each source row, and
-- staging.dim_payment_type_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_payment_type (payment_type_id, payment_type_name, source_version, window_name)
SELECT s.payment_type_id, s.payment_type_name, s.source_version, %(window)s
FROM staging.dim_payment_type_source AS s
WHERE s.payment_type_id IN (SELECT payment_type_id FROM staging.dim_payment_type_window WHERE window_name = %(window)s)
ON CONFLICT (payment_type_id) DO UPDATE SET
    payment_type_name = excluded.payment_type_name,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_payment_type.payment_type_name, dim_payment_type.source_version)
      IS DISTINCT FROM (excluded.payment_type_name, excluded.source_version);
