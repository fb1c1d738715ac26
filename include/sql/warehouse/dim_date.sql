-- dim_date: every date the window's orders and payments hold (created, last updated, agreed
-- delivery and payment, payment date), one pass over each landed table. Dates never change, so a
-- date already there stays.
INSERT INTO dim_date (date_id, year, month, day, day_of_week, day_name, month_name, quarter, window_name)
SELECT d,
       extract(year FROM d)::integer,
       extract(month FROM d)::integer,
       extract(day FROM d)::integer,
       extract(isodow FROM d)::integer,
       to_char(d, 'FMDay'),
       to_char(d, 'FMMonth'),
       extract(quarter FROM d)::integer,
       %(window)s
FROM (
    SELECT v.d FROM staging.sales_order_landed AS o,
        LATERAL (VALUES (o.created_at::date), (o.last_updated::date), (o.agreed_delivery_date), (o.agreed_payment_date)) AS v (d)
    WHERE o.window_name = %(window)s
    UNION
    SELECT v.d FROM staging.purchase_order_landed AS o,
        LATERAL (VALUES (o.created_at::date), (o.last_updated::date), (o.agreed_delivery_date), (o.agreed_payment_date)) AS v (d)
    WHERE o.window_name = %(window)s
    UNION
    SELECT v.d FROM staging.payment_landed AS p,
        LATERAL (VALUES (p.created_at::date), (p.last_updated::date), (p.payment_date)) AS v (d)
    WHERE p.window_name = %(window)s
) AS dates (d)
WHERE d IS NOT NULL
ON CONFLICT (date_id) DO NOTHING;
