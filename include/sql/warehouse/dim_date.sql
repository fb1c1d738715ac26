-- dim_date: every date the orders and payments the window landed hold (staging.landed_dates:
-- created, last updated, agreed delivery and payment, payment date). Dates never change, so a
-- date already there stays; its window_name is the first window by name that covered it, so
-- windows modelled (or loaded into Snowflake) in any order leave the same rows.
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
FROM (SELECT DISTINCT date_id FROM staging.landed_dates WHERE window_name = %(window)s) AS dates (d)
ON CONFLICT (date_id) DO UPDATE SET window_name = excluded.window_name
WHERE excluded.window_name < dim_date.window_name;
