-- Migration 002: what each window covers, and the source version of every dimension row.
--
-- A window's star rows are the rows built from what it landed, whoever modelled them first: a
-- scheduled run that failed after its model leaves its rows to the next scheduled run, whose
-- widened window lands the same source versions again (or newer ones). So the export and the
-- gate select a window's rows through these views, never through the `window_name` a row was last
-- written by.
--
-- staging.windows                each landed window's cursor bounds (a full snapshot: unbounded)
-- staging.<star table>_window    (star key, window_name): every star key each window covers
-- staging.<dimension>_source     what each dimension row must hold now: built from the newest
--                                landed version of each of its source rows, with its version
-- <dimension>.source_version     that version: its own source row's last_updated (epoch µs), then,
--                                for a row built through a join (dim_staff: its department;
--                                dim_counterparty: its legal address), the joined row's, as
--                                own * 10^16 + joined. Ordered so, it only rises: a change of the
--                                joined row raises the second part, and any change of the row
--                                itself (a move to another department included) raises the
--                                first. Snowflake's MERGE keeps the row with the higher version,
--                                as Postgres keeps the newest. numeric(32, 0) holds it to 2286.

-- A source row's version: its last_updated in epoch microseconds (0 for a row that is absent).
-- (Whole seconds and microseconds apart: exact on every Postgres, whatever type extract returns.)
CREATE FUNCTION staging.version_us(last_updated timestamp) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(extract(epoch FROM date_trunc('second', last_updated))::numeric * 1000000
                          + extract(microseconds FROM last_updated)::numeric % 1000000, 0) $$;

-- Every window that landed anything, with its bounds: a fact version belongs to each window
-- whose bounds hold its last_updated, whichever window landed it.
CREATE TABLE staging.windows (
    window_name     text PRIMARY KEY,
    window_start    timestamp NOT NULL,
    window_end      timestamp NOT NULL,
    full_snapshot   boolean NOT NULL
);

-- --- what each dimension row must hold now ----------------------------------------------------
CREATE VIEW staging.dim_staff_source AS
    SELECT s.staff_id, s.first_name, s.last_name, d.department_name, d.location, s.email_address,
           staging.version_us(s.last_updated) * 1e16 + staging.version_us(d.last_updated) AS source_version
    FROM staging.staff AS s
    LEFT JOIN staging.department AS d ON d.department_id = s.department_id;
CREATE VIEW staging.dim_location_source AS
    SELECT a.address_id AS location_id, a.address_line_1, a.address_line_2, a.district, a.city, a.postal_code,
           a.country, a.phone, staging.version_us(a.last_updated) AS source_version
    FROM staging.address AS a;
CREATE VIEW staging.dim_currency_source AS
    SELECT c.currency_id, c.currency_code, iso.currency_name, staging.version_us(c.last_updated) AS source_version
    FROM staging.currency AS c
    LEFT JOIN staging.iso_4217 AS iso ON iso.currency_code = upper(c.currency_code);
CREATE VIEW staging.dim_design_source AS
    SELECT d.design_id, d.design_name, d.file_location, d.file_name,
           staging.version_us(d.last_updated) AS source_version
    FROM staging.design AS d;
CREATE VIEW staging.dim_counterparty_source AS
    SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1 AS counterparty_legal_address_line_1,
           a.address_line_2 AS counterparty_legal_address_line_2, a.district AS counterparty_legal_district,
           a.city AS counterparty_legal_city, a.postal_code AS counterparty_legal_postal_code,
           a.country AS counterparty_legal_country, a.phone AS counterparty_legal_phone_number,
           staging.version_us(c.last_updated) * 1e16 + staging.version_us(a.last_updated) AS source_version
    FROM staging.counterparty AS c
    LEFT JOIN staging.address AS a ON a.address_id = c.legal_address_id;
CREATE VIEW staging.dim_payment_type_source AS
    SELECT p.payment_type_id, p.payment_type_name, staging.version_us(p.last_updated) AS source_version
    FROM staging.payment_type AS p;
CREATE VIEW staging.dim_transaction_source AS
    SELECT t.transaction_id, t.transaction_type, t.sales_order_id, t.purchase_order_id,
           staging.version_us(t.last_updated) AS source_version
    FROM staging.transaction AS t;

-- --- which star keys each window covers -------------------------------------------------------
-- A dimension: the keys whose source rows the window landed, and the keys built from a row it
-- landed through a join (a renamed department: all its staff; a moved address: the counterparties
-- whose legal address it is).
CREATE VIEW staging.dim_staff_window AS
    SELECT staff_id, window_name FROM staging.staff_landed
    UNION
    SELECT s.staff_id, d.window_name
    FROM staging.department_landed AS d JOIN staging.staff AS s ON s.department_id = d.department_id;
CREATE VIEW staging.dim_location_window AS
    SELECT DISTINCT address_id AS location_id, window_name FROM staging.address_landed;
CREATE VIEW staging.dim_currency_window AS
    SELECT DISTINCT currency_id, window_name FROM staging.currency_landed;
CREATE VIEW staging.dim_design_window AS
    SELECT DISTINCT design_id, window_name FROM staging.design_landed;
CREATE VIEW staging.dim_counterparty_window AS
    SELECT counterparty_id, window_name FROM staging.counterparty_landed
    UNION
    SELECT c.counterparty_id, a.window_name
    FROM staging.address_landed AS a JOIN staging.counterparty AS c ON c.legal_address_id = a.address_id;
CREATE VIEW staging.dim_payment_type_window AS
    SELECT DISTINCT payment_type_id, window_name FROM staging.payment_type_landed;
CREATE VIEW staging.dim_transaction_window AS
    SELECT DISTINCT transaction_id, window_name FROM staging.transaction_landed;
-- A fact: the versions (source id, last_updated) the window landed, and every version whose
-- last_updated lies in its bounds (all of them for a full snapshot): a version a failed run
-- modelled stays covered by the widened window after it, even once the source has moved on.
CREATE INDEX fact_sales_order_version ON fact_sales_order ((last_updated_date + last_updated_time));
CREATE VIEW staging.fact_sales_order_window AS
    SELECT DISTINCT sales_order_id, last_updated::date AS last_updated_date, last_updated::time AS last_updated_time,
           window_name
    FROM staging.sales_order_landed
    UNION
    SELECT f.sales_order_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w
    JOIN fact_sales_order AS f ON f.last_updated_date + f.last_updated_time >= w.window_start
                    AND f.last_updated_date + f.last_updated_time < w.window_end
    WHERE NOT w.full_snapshot
    UNION
    SELECT f.sales_order_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w CROSS JOIN fact_sales_order AS f
    WHERE w.full_snapshot;
CREATE INDEX fact_purchase_order_version ON fact_purchase_order ((last_updated_date + last_updated_time));
CREATE VIEW staging.fact_purchase_order_window AS
    SELECT DISTINCT purchase_order_id, last_updated::date AS last_updated_date, last_updated::time AS last_updated_time,
           window_name
    FROM staging.purchase_order_landed
    UNION
    SELECT f.purchase_order_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w
    JOIN fact_purchase_order AS f ON f.last_updated_date + f.last_updated_time >= w.window_start
                    AND f.last_updated_date + f.last_updated_time < w.window_end
    WHERE NOT w.full_snapshot
    UNION
    SELECT f.purchase_order_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w CROSS JOIN fact_purchase_order AS f
    WHERE w.full_snapshot;
CREATE INDEX fact_payment_version ON fact_payment ((last_updated_date + last_updated_time));
CREATE VIEW staging.fact_payment_window AS
    SELECT DISTINCT payment_id, last_updated::date AS last_updated_date, last_updated::time AS last_updated_time,
           window_name
    FROM staging.payment_landed
    UNION
    SELECT f.payment_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w
    JOIN fact_payment AS f ON f.last_updated_date + f.last_updated_time >= w.window_start
                    AND f.last_updated_date + f.last_updated_time < w.window_end
    WHERE NOT w.full_snapshot
    UNION
    SELECT f.payment_id, f.last_updated_date, f.last_updated_time, w.window_name
    FROM staging.windows AS w CROSS JOIN fact_payment AS f
    WHERE w.full_snapshot;
-- dim_date: every date the window's fact rows hold (created, last updated, agreed delivery and
-- payment, payment date).
CREATE VIEW staging.dim_date_window AS
    SELECT v.d AS date_id, w.window_name
    FROM staging.fact_sales_order_window AS w
    JOIN fact_sales_order AS f USING (sales_order_id, last_updated_date, last_updated_time),
        LATERAL (VALUES (f.created_date), (f.last_updated_date), (f.agreed_delivery_date),
                        (f.agreed_payment_date)) AS v (d)
    UNION
    SELECT v.d, w.window_name
    FROM staging.fact_purchase_order_window AS w
    JOIN fact_purchase_order AS f USING (purchase_order_id, last_updated_date, last_updated_time),
        LATERAL (VALUES (f.created_date), (f.last_updated_date), (f.agreed_delivery_date),
                        (f.agreed_payment_date)) AS v (d)
    UNION
    SELECT v.d, w.window_name
    FROM staging.fact_payment_window AS w
    JOIN fact_payment AS f USING (payment_id, last_updated_date, last_updated_time),
        LATERAL (VALUES (f.created_date), (f.last_updated_date), (f.payment_date)) AS v (d);
-- What dim_date's model inserts: every date the rows a window landed hold (before their facts exist).
CREATE VIEW staging.landed_dates AS
    SELECT v.d AS date_id, o.window_name FROM staging.sales_order_landed AS o,
        LATERAL (VALUES (o.created_at::date), (o.last_updated::date), (o.agreed_delivery_date),
                        (o.agreed_payment_date)) AS v (d)
    WHERE v.d IS NOT NULL
    UNION
    SELECT v.d, o.window_name FROM staging.purchase_order_landed AS o,
        LATERAL (VALUES (o.created_at::date), (o.last_updated::date), (o.agreed_delivery_date),
                        (o.agreed_payment_date)) AS v (d)
    WHERE v.d IS NOT NULL
    UNION
    SELECT v.d, p.window_name FROM staging.payment_landed AS p,
        LATERAL (VALUES (p.created_at::date), (p.last_updated::date), (p.payment_date)) AS v (d)
    WHERE v.d IS NOT NULL;

-- --- the dimensions' versions -------------------------------------------------------------------
ALTER TABLE dim_staff ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_location ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_currency ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_design ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_counterparty ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_payment_type ADD COLUMN source_version numeric(32, 0);
ALTER TABLE dim_transaction ADD COLUMN source_version numeric(32, 0);
-- Rows written before this migration: the version of the source rows they hold now.
UPDATE dim_staff AS t SET source_version = s.source_version FROM staging.dim_staff_source AS s WHERE s.staff_id = t.staff_id;
UPDATE dim_location AS t SET source_version = s.source_version FROM staging.dim_location_source AS s WHERE s.location_id = t.location_id;
UPDATE dim_currency AS t SET source_version = s.source_version FROM staging.dim_currency_source AS s WHERE s.currency_id = t.currency_id;
UPDATE dim_design AS t SET source_version = s.source_version FROM staging.dim_design_source AS s WHERE s.design_id = t.design_id;
UPDATE dim_counterparty AS t SET source_version = s.source_version FROM staging.dim_counterparty_source AS s WHERE s.counterparty_id = t.counterparty_id;
UPDATE dim_payment_type AS t SET source_version = s.source_version FROM staging.dim_payment_type_source AS s WHERE s.payment_type_id = t.payment_type_id;
UPDATE dim_transaction AS t SET source_version = s.source_version FROM staging.dim_transaction_source AS s WHERE s.transaction_id = t.transaction_id;
UPDATE dim_staff SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_location SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_currency SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_design SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_counterparty SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_payment_type SET source_version = 0 WHERE source_version IS NULL;
UPDATE dim_transaction SET source_version = 0 WHERE source_version IS NULL;
ALTER TABLE dim_staff ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_location ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_currency ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_design ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_counterparty ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_payment_type ALTER COLUMN source_version SET NOT NULL;
ALTER TABLE dim_transaction ALTER COLUMN source_version SET NOT NULL;

-- Nothing reads a star row by the window that last wrote it any more: those indexes only cost writes.
DROP INDEX IF EXISTS dim_date_window, dim_staff_window, dim_location_window, dim_currency_window, dim_design_window,
    dim_counterparty_window, dim_payment_type_window, dim_transaction_window, fact_sales_order_window,
    fact_purchase_order_window, fact_payment_window;
