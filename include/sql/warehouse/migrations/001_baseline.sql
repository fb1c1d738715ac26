-- Migration 001: the ToteSys warehouse as it was before migrations (connection warehouse_db).
-- Every statement is IF NOT EXISTS, so a warehouse created by the earlier every-run schema.sql
-- adopts it unchanged. Applied once, by conveyor.totesys.migrations.migrate (see 002 onwards).
--
-- staging.<table>_landed   every row each window landed, tagged with the window (a rerun of a
--                          window replaces its own rows): the versions the facts are built from
-- staging.<table>          the mirror of each ToteSys table: its newest landed version per
--                          primary key (what the type 1 dimensions are built from)
-- public.dim_* / fact_*    the star schema; `window_name` says which window last wrote a row
--                          (what a window's export contains); facts are unique on the source
--                          id and last_updated (date + time, to the microsecond): one row per
--                          extracted version
CREATE SCHEMA IF NOT EXISTS staging;

-- --- staging: what each window landed, and the current row per primary key -------------------
-- staging.<table>_landed holds every row a window landed (columns as extracted, see
-- include/config/totesys_tables.json), tagged with the window: COPY fills window_name in from the
-- session setting conveyor.window_name, and a rerun of a window replaces its own rows. No unique
-- key: two windows may land the same version (a widened scheduled window and a manual run).
-- staging.<table> is the mirror: the newest landed version per primary key, so a late or
-- repeated window can never put an older version in front of a newer one.
CREATE TABLE IF NOT EXISTS staging.address_landed (
    address_id      integer NOT NULL,
    address_line_1  text NOT NULL,
    address_line_2  text,
    district        text,
    city            text NOT NULL,
    postal_code     text NOT NULL,
    country         text NOT NULL,
    phone           text NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL,
    window_name     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS address_landed_window ON staging.address_landed (window_name);
CREATE OR REPLACE VIEW staging.address AS
    SELECT DISTINCT ON (address_id) address_id, address_line_1, address_line_2, district, city, postal_code, country, phone, created_at, last_updated
    FROM staging.address_landed
    ORDER BY address_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.department_landed (
    department_id   integer NOT NULL,
    department_name text NOT NULL,
    location        text,
    manager         text,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL,
    window_name     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS department_landed_window ON staging.department_landed (window_name);
CREATE OR REPLACE VIEW staging.department AS
    SELECT DISTINCT ON (department_id) department_id, department_name, location, manager, created_at, last_updated
    FROM staging.department_landed
    ORDER BY department_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.staff_landed (
    staff_id        integer NOT NULL,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    department_id   integer NOT NULL,
    email_address   text NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL,
    window_name     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS staff_landed_window ON staging.staff_landed (window_name);
CREATE OR REPLACE VIEW staging.staff AS
    SELECT DISTINCT ON (staff_id) staff_id, first_name, last_name, department_id, email_address, created_at, last_updated
    FROM staging.staff_landed
    ORDER BY staff_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.currency_landed (
    currency_id     integer NOT NULL,
    currency_code   text NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL,
    window_name     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS currency_landed_window ON staging.currency_landed (window_name);
CREATE OR REPLACE VIEW staging.currency AS
    SELECT DISTINCT ON (currency_id) currency_id, currency_code, created_at, last_updated
    FROM staging.currency_landed
    ORDER BY currency_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.design_landed (
    design_id       integer NOT NULL,
    design_name     text NOT NULL,
    file_location   text NOT NULL,
    file_name       text NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL,
    window_name     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS design_landed_window ON staging.design_landed (window_name);
CREATE OR REPLACE VIEW staging.design AS
    SELECT DISTINCT ON (design_id) design_id, design_name, file_location, file_name, created_at, last_updated
    FROM staging.design_landed
    ORDER BY design_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.counterparty_landed (
    counterparty_id             integer NOT NULL,
    counterparty_legal_name     text NOT NULL,
    legal_address_id            integer NOT NULL,
    commercial_contact          text,
    delivery_contact            text,
    created_at                  timestamp NOT NULL,
    last_updated                timestamp NOT NULL,
    window_name                 text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS counterparty_landed_window ON staging.counterparty_landed (window_name);
CREATE OR REPLACE VIEW staging.counterparty AS
    SELECT DISTINCT ON (counterparty_id) counterparty_id, counterparty_legal_name, legal_address_id, commercial_contact, delivery_contact, created_at, last_updated
    FROM staging.counterparty_landed
    ORDER BY counterparty_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.payment_type_landed (
    payment_type_id     integer NOT NULL,
    payment_type_name   text NOT NULL,
    created_at          timestamp NOT NULL,
    last_updated        timestamp NOT NULL,
    window_name         text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS payment_type_landed_window ON staging.payment_type_landed (window_name);
CREATE OR REPLACE VIEW staging.payment_type AS
    SELECT DISTINCT ON (payment_type_id) payment_type_id, payment_type_name, created_at, last_updated
    FROM staging.payment_type_landed
    ORDER BY payment_type_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.sales_order_landed (
    sales_order_id                  integer NOT NULL,
    design_id                       integer NOT NULL,
    staff_id                        integer NOT NULL,
    counterparty_id                 integer NOT NULL,
    units_sold                      integer NOT NULL,
    unit_price                      numeric(10, 2) NOT NULL,
    currency_id                     integer NOT NULL,
    agreed_delivery_date            date NOT NULL,
    agreed_payment_date             date NOT NULL,
    agreed_delivery_location_id     integer NOT NULL,
    created_at                      timestamp NOT NULL,
    last_updated                    timestamp NOT NULL,
    window_name                     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS sales_order_landed_window ON staging.sales_order_landed (window_name);
CREATE OR REPLACE VIEW staging.sales_order AS
    SELECT DISTINCT ON (sales_order_id) sales_order_id, design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated
    FROM staging.sales_order_landed
    ORDER BY sales_order_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.purchase_order_landed (
    purchase_order_id               integer NOT NULL,
    staff_id                        integer NOT NULL,
    counterparty_id                 integer NOT NULL,
    item_code                       text NOT NULL,
    item_quantity                   integer NOT NULL,
    item_unit_price                 numeric(12, 2) NOT NULL,
    currency_id                     integer NOT NULL,
    agreed_delivery_date            date NOT NULL,
    agreed_payment_date             date NOT NULL,
    agreed_delivery_location_id     integer NOT NULL,
    created_at                      timestamp NOT NULL,
    last_updated                    timestamp NOT NULL,
    window_name                     text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS purchase_order_landed_window ON staging.purchase_order_landed (window_name);
CREATE OR REPLACE VIEW staging.purchase_order AS
    SELECT DISTINCT ON (purchase_order_id) purchase_order_id, staff_id, counterparty_id, item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated
    FROM staging.purchase_order_landed
    ORDER BY purchase_order_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.transaction_landed (
    transaction_id      integer NOT NULL,
    transaction_type    text NOT NULL,
    sales_order_id      integer,
    purchase_order_id   integer,
    created_at          timestamp NOT NULL,
    last_updated        timestamp NOT NULL,
    window_name         text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS transaction_landed_window ON staging.transaction_landed (window_name);
CREATE OR REPLACE VIEW staging.transaction AS
    SELECT DISTINCT ON (transaction_id) transaction_id, transaction_type, sales_order_id, purchase_order_id, created_at, last_updated
    FROM staging.transaction_landed
    ORDER BY transaction_id, last_updated DESC, window_name DESC;
CREATE TABLE IF NOT EXISTS staging.payment_landed (
    payment_id                  integer NOT NULL,
    transaction_id              integer NOT NULL,
    counterparty_id             integer NOT NULL,
    payment_amount              numeric(14, 2) NOT NULL,
    currency_id                 integer NOT NULL,
    payment_type_id             integer NOT NULL,
    paid                        boolean NOT NULL,
    payment_date                date NOT NULL,
    company_ac_number           integer NOT NULL,
    counterparty_ac_number      integer NOT NULL,
    created_at                  timestamp NOT NULL,
    last_updated                timestamp NOT NULL,
    window_name                 text NOT NULL DEFAULT current_setting('conveyor.window_name')
);
CREATE INDEX IF NOT EXISTS payment_landed_window ON staging.payment_landed (window_name);
CREATE OR REPLACE VIEW staging.payment AS
    SELECT DISTINCT ON (payment_id) payment_id, transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date, company_ac_number, counterparty_ac_number, created_at, last_updated
    FROM staging.payment_landed
    ORDER BY payment_id, last_updated DESC, window_name DESC;

-- ISO 4217 names for dim_currency, loaded from the pycountry package (its ISO 4217 data is the
-- Debian iso-codes list), not typed by hand.
CREATE TABLE IF NOT EXISTS staging.iso_4217 (
    currency_code   text PRIMARY KEY,
    currency_name   text NOT NULL
);

-- --- the star schema ------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS dim_date (
    date_id         date PRIMARY KEY,
    year            integer NOT NULL,
    month           integer NOT NULL,
    day             integer NOT NULL,
    day_of_week     integer NOT NULL,  -- ISO: Monday 1 .. Sunday 7
    day_name        text NOT NULL,
    month_name      text NOT NULL,
    quarter         integer NOT NULL,
    window_name     text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_staff (
    staff_id        integer PRIMARY KEY,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    department_name text,
    location        text,
    email_address   text NOT NULL,
    window_name     text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_location (
    location_id     integer PRIMARY KEY,
    address_line_1  text NOT NULL,
    address_line_2  text,
    district        text,
    city            text NOT NULL,
    postal_code     text NOT NULL,
    country         text NOT NULL,
    phone           text NOT NULL,
    window_name     text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_currency (
    currency_id     integer PRIMARY KEY,
    currency_code   text NOT NULL,
    currency_name   text,
    window_name     text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_design (
    design_id       integer PRIMARY KEY,
    design_name     text NOT NULL,
    file_location   text NOT NULL,
    file_name       text NOT NULL,
    window_name     text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_counterparty (
    counterparty_id                     integer PRIMARY KEY,
    counterparty_legal_name             text NOT NULL,
    counterparty_legal_address_line_1   text,
    counterparty_legal_address_line_2   text,
    counterparty_legal_district         text,
    counterparty_legal_city             text,
    counterparty_legal_postal_code      text,
    counterparty_legal_country          text,
    counterparty_legal_phone_number     text,
    window_name                         text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_payment_type (
    payment_type_id     integer PRIMARY KEY,
    payment_type_name   text NOT NULL,
    window_name         text NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_transaction (
    transaction_id      integer PRIMARY KEY,
    transaction_type    text NOT NULL,
    sales_order_id      integer,
    purchase_order_id   integer,
    window_name         text NOT NULL
);
CREATE TABLE IF NOT EXISTS fact_sales_order (
    sales_record_id             serial PRIMARY KEY,
    sales_order_id              integer NOT NULL,
    created_date                date NOT NULL,
    created_time                time NOT NULL,
    last_updated_date           date NOT NULL,
    last_updated_time           time NOT NULL,
    sales_staff_id              integer NOT NULL,
    counterparty_id             integer NOT NULL,
    units_sold                  integer NOT NULL,
    unit_price                  numeric(10, 2) NOT NULL,
    currency_id                 integer NOT NULL,
    design_id                   integer NOT NULL,
    agreed_payment_date         date NOT NULL,
    agreed_delivery_date        date NOT NULL,
    agreed_delivery_location_id integer NOT NULL,
    window_name                 text NOT NULL,
    UNIQUE (sales_order_id, last_updated_date, last_updated_time)  -- one row per version
);
CREATE TABLE IF NOT EXISTS fact_purchase_order (
    purchase_record_id          serial PRIMARY KEY,
    purchase_order_id           integer NOT NULL,
    created_date                date NOT NULL,
    created_time                time NOT NULL,
    last_updated_date           date NOT NULL,
    last_updated_time           time NOT NULL,
    staff_id                    integer NOT NULL,
    counterparty_id             integer NOT NULL,
    item_code                   text NOT NULL,
    item_quantity               integer NOT NULL,
    item_unit_price             numeric(12, 2) NOT NULL,
    currency_id                 integer NOT NULL,
    agreed_delivery_date        date NOT NULL,
    agreed_payment_date         date NOT NULL,
    agreed_delivery_location_id integer NOT NULL,
    window_name                 text NOT NULL,
    UNIQUE (purchase_order_id, last_updated_date, last_updated_time)
);
CREATE TABLE IF NOT EXISTS fact_payment (
    payment_record_id           serial PRIMARY KEY,
    payment_id                  integer NOT NULL,
    created_date                date NOT NULL,
    created_time                time NOT NULL,
    last_updated_date           date NOT NULL,
    last_updated_time           time NOT NULL,
    transaction_id              integer NOT NULL,
    counterparty_id             integer NOT NULL,
    payment_amount              numeric(14, 2) NOT NULL,
    currency_id                 integer NOT NULL,
    payment_type_id             integer NOT NULL,
    paid                        boolean NOT NULL,
    payment_date                date NOT NULL,
    window_name                 text NOT NULL,
    UNIQUE (payment_id, last_updated_date, last_updated_time)
);
-- A window's export reads the rows it wrote.
CREATE INDEX IF NOT EXISTS dim_date_window ON dim_date (window_name);
CREATE INDEX IF NOT EXISTS dim_staff_window ON dim_staff (window_name);
CREATE INDEX IF NOT EXISTS dim_location_window ON dim_location (window_name);
CREATE INDEX IF NOT EXISTS dim_currency_window ON dim_currency (window_name);
CREATE INDEX IF NOT EXISTS dim_design_window ON dim_design (window_name);
CREATE INDEX IF NOT EXISTS dim_counterparty_window ON dim_counterparty (window_name);
CREATE INDEX IF NOT EXISTS dim_payment_type_window ON dim_payment_type (window_name);
CREATE INDEX IF NOT EXISTS dim_transaction_window ON dim_transaction (window_name);
CREATE INDEX IF NOT EXISTS fact_sales_order_window ON fact_sales_order (window_name);
CREATE INDEX IF NOT EXISTS fact_purchase_order_window ON fact_purchase_order (window_name);
CREATE INDEX IF NOT EXISTS fact_payment_window ON fact_payment (window_name);
