-- dim_date: every date the orders and payments the window landed hold (created, last updated,
-- agreed delivery and payment, payment date). Dates never change, so a date already there stays;
-- its window_name is the first window by name that covered it, so windows modelled (or loaded
-- into Snowflake) in any order leave the same rows.
-- The same dates as staging.landed_dates (migrations/002) holds for the window, read in one pass
-- over each landing table's window rows with one small hash table per date column (GROUPING
-- SETS): the view's one row per date per landed row (4,000,000 rows for a 1,000,000-row window,
-- then de-duplicated) was a third of a big window's model (4.3 s of 11.8 s; docs/totesys.md).
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
    SELECT DISTINCT v.d
    FROM (
        SELECT o.created_at::date, o.last_updated::date, o.agreed_delivery_date, o.agreed_payment_date
        FROM staging.sales_order_landed AS o
        WHERE o.window_name = %(window)s
        GROUP BY GROUPING SETS ((1), (2), (3), (4))
        UNION ALL
        SELECT o.created_at::date, o.last_updated::date, o.agreed_delivery_date, o.agreed_payment_date
        FROM staging.purchase_order_landed AS o
        WHERE o.window_name = %(window)s
        GROUP BY GROUPING SETS ((1), (2), (3), (4))
        UNION ALL
        SELECT p.created_at::date, p.last_updated::date, p.payment_date, NULL::date
        FROM staging.payment_landed AS p
        WHERE p.window_name = %(window)s
        GROUP BY GROUPING SETS ((1), (2), (3))
    ) AS landed (created, updated, first_date, second_date),
    LATERAL (VALUES (landed.created), (landed.updated), (landed.first_date), (landed.second_date)) AS v (d)
    WHERE v.d IS NOT NULL
) AS dates (d)
ON CONFLICT (date_id) DO UPDATE SET window_name = excluded.window_name
WHERE excluded.window_name < dim_date.window_name;
