-- dim_transaction: the current row of every transaction the window landed.
-- staging.dim_transaction_source builds the row from the newest landed version of each source row, and
-- staging.dim_transaction_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_transaction (transaction_id, transaction_type, sales_order_id, purchase_order_id, source_version, window_name)
SELECT s.transaction_id, s.transaction_type, s.sales_order_id, s.purchase_order_id, s.source_version,
       %(window)s
FROM staging.dim_transaction_source AS s
WHERE s.transaction_id IN (SELECT transaction_id FROM staging.dim_transaction_window WHERE window_name = %(window)s)
ON CONFLICT (transaction_id) DO UPDATE SET
    transaction_type = excluded.transaction_type,
    sales_order_id = excluded.sales_order_id,
    purchase_order_id = excluded.purchase_order_id,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_transaction.transaction_type, dim_transaction.sales_order_id, dim_transaction.purchase_order_id,
       dim_transaction.source_version)
      IS DISTINCT FROM (excluded.transaction_type, excluded.sales_order_id, excluded.purchase_order_id,
                        excluded.source_version);
