-- dim_transaction: the current row of every transaction the window landed.
INSERT INTO dim_transaction (transaction_id, transaction_type, sales_order_id, purchase_order_id, window_name)
SELECT t.transaction_id, t.transaction_type, t.sales_order_id, t.purchase_order_id, %(window)s
FROM staging.transaction AS t
WHERE t.transaction_id IN (SELECT transaction_id FROM staging.transaction_landed WHERE window_name = %(window)s)
ON CONFLICT (transaction_id) DO UPDATE SET
    transaction_type = excluded.transaction_type,
    sales_order_id = excluded.sales_order_id,
    purchase_order_id = excluded.purchase_order_id,
    window_name = excluded.window_name
WHERE (dim_transaction.transaction_type, dim_transaction.sales_order_id, dim_transaction.purchase_order_id)
      IS DISTINCT FROM (excluded.transaction_type, excluded.sales_order_id, excluded.purchase_order_id);
