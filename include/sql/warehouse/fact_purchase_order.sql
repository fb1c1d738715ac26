-- fact_purchase_order: one row per version of a purchase order the window landed.
INSERT INTO fact_purchase_order (purchase_order_id, created_date, created_time, last_updated_date,
                                 last_updated_time, staff_id, counterparty_id, item_code, item_quantity,
                                 item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date,
                                 agreed_delivery_location_id, window_name)
SELECT DISTINCT ON (o.purchase_order_id, o.last_updated)
       o.purchase_order_id, o.created_at::date, o.created_at::time, o.last_updated::date, o.last_updated::time,
       o.staff_id, o.counterparty_id, o.item_code, o.item_quantity, o.item_unit_price, o.currency_id,
       o.agreed_delivery_date, o.agreed_payment_date, o.agreed_delivery_location_id, %(window)s
FROM staging.purchase_order_landed AS o
WHERE o.window_name = %(window)s
ORDER BY o.purchase_order_id, o.last_updated
ON CONFLICT (purchase_order_id, last_updated_date, last_updated_time) DO NOTHING;
