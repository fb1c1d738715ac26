-- fact_purchase_order: one row per version of a purchase order the window landed; a version already
-- there (a rerun, or an overlapping window) is left as it is. A plain insert of the versions not
-- yet there: ON CONFLICT DO NOTHING gave the same rows 1.4x slower on 1M rows. A window's extract
-- holds each purchase_order once, and the unique key still refuses a duplicate should two runs
-- race.
INSERT INTO fact_purchase_order (purchase_order_id, created_date, created_time, last_updated_date,
                                 last_updated_time, staff_id, counterparty_id, item_code, item_quantity,
                                 item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date,
                                 agreed_delivery_location_id, window_name)
SELECT o.purchase_order_id, o.created_at::date, o.created_at::time, o.last_updated::date, o.last_updated::time,
       o.staff_id, o.counterparty_id, o.item_code, o.item_quantity, o.item_unit_price, o.currency_id,
       o.agreed_delivery_date, o.agreed_payment_date, o.agreed_delivery_location_id, %(window)s
FROM staging.purchase_order_landed AS o
WHERE o.window_name = %(window)s
  AND NOT EXISTS (SELECT 1 FROM fact_purchase_order AS f
                  WHERE f.purchase_order_id = o.purchase_order_id
                    AND f.last_updated_date = o.last_updated::date
                    AND f.last_updated_time = o.last_updated::time);
