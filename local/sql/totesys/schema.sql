-- ToteSys: the OLTP database of a design-and-sales business (the extract's source).
-- Rerunnable. Every table: serial primary key <table>_id, created_at, last_updated (UTC).
CREATE TABLE IF NOT EXISTS address (
    address_id      serial PRIMARY KEY,
    address_line_1  varchar(200) NOT NULL,
    address_line_2  varchar(200),
    district        varchar(100),
    city            varchar(100) NOT NULL,
    postal_code     varchar(20)  NOT NULL,
    country         varchar(100) NOT NULL,
    phone           varchar(40)  NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS department (
    department_id   serial PRIMARY KEY,
    department_name varchar(100) NOT NULL,
    location        varchar(100),
    manager         varchar(100),
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS staff (
    staff_id        serial PRIMARY KEY,
    first_name      varchar(100) NOT NULL,
    last_name       varchar(100) NOT NULL,
    department_id   integer NOT NULL REFERENCES department,
    email_address   varchar(200) NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS currency (
    currency_id     serial PRIMARY KEY,
    currency_code   char(3) NOT NULL UNIQUE,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS design (
    design_id       serial PRIMARY KEY,
    design_name     varchar(200) NOT NULL,
    file_location   varchar(300) NOT NULL,
    file_name       varchar(200) NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS counterparty (
    counterparty_id             serial PRIMARY KEY,
    counterparty_legal_name     varchar(200) NOT NULL,
    legal_address_id            integer NOT NULL REFERENCES address (address_id),
    commercial_contact          varchar(200),
    delivery_contact            varchar(200),
    created_at                  timestamp NOT NULL,
    last_updated                timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_type (
    payment_type_id     serial PRIMARY KEY,
    payment_type_name   varchar(100) NOT NULL,
    created_at          timestamp NOT NULL,
    last_updated        timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS sales_order (
    sales_order_id                  serial PRIMARY KEY,
    design_id                       integer NOT NULL REFERENCES design,
    staff_id                        integer NOT NULL REFERENCES staff,
    counterparty_id                 integer NOT NULL REFERENCES counterparty,
    units_sold                      integer NOT NULL,
    unit_price                      numeric(10, 2) NOT NULL,
    currency_id                     integer NOT NULL REFERENCES currency,
    agreed_delivery_date            date NOT NULL,
    agreed_payment_date             date NOT NULL,
    agreed_delivery_location_id     integer NOT NULL REFERENCES address (address_id),
    created_at                      timestamp NOT NULL,
    last_updated                    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS purchase_order (
    purchase_order_id               serial PRIMARY KEY,
    staff_id                        integer NOT NULL REFERENCES staff,
    counterparty_id                 integer NOT NULL REFERENCES counterparty,
    item_code                       varchar(50) NOT NULL,
    item_quantity                   integer NOT NULL,
    item_unit_price                 numeric(12, 2) NOT NULL,
    currency_id                     integer NOT NULL REFERENCES currency,
    agreed_delivery_date            date NOT NULL,
    agreed_payment_date             date NOT NULL,
    agreed_delivery_location_id     integer NOT NULL REFERENCES address (address_id),
    created_at                      timestamp NOT NULL,
    last_updated                    timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS transaction (
    transaction_id      serial PRIMARY KEY,
    transaction_type    varchar(20) NOT NULL CHECK (transaction_type IN ('SALE', 'PURCHASE')),
    sales_order_id      integer REFERENCES sales_order,
    purchase_order_id   integer REFERENCES purchase_order,
    created_at          timestamp NOT NULL,
    last_updated        timestamp NOT NULL
);
CREATE TABLE IF NOT EXISTS payment (
    payment_id                  serial PRIMARY KEY,
    transaction_id              integer NOT NULL REFERENCES transaction,
    counterparty_id             integer NOT NULL REFERENCES counterparty,
    payment_amount              numeric(14, 2) NOT NULL,
    currency_id                 integer NOT NULL REFERENCES currency,
    payment_type_id             integer NOT NULL REFERENCES payment_type,
    paid                        boolean NOT NULL,
    payment_date                date NOT NULL,
    company_ac_number           integer NOT NULL,
    counterparty_ac_number      integer NOT NULL,
    created_at                  timestamp NOT NULL,
    last_updated                timestamp NOT NULL
);
-- The extract filters on last_updated: index it.
CREATE INDEX IF NOT EXISTS address_last_updated ON address (last_updated);
CREATE INDEX IF NOT EXISTS department_last_updated ON department (last_updated);
CREATE INDEX IF NOT EXISTS staff_last_updated ON staff (last_updated);
CREATE INDEX IF NOT EXISTS currency_last_updated ON currency (last_updated);
CREATE INDEX IF NOT EXISTS design_last_updated ON design (last_updated);
CREATE INDEX IF NOT EXISTS counterparty_last_updated ON counterparty (last_updated);
CREATE INDEX IF NOT EXISTS payment_type_last_updated ON payment_type (last_updated);
CREATE INDEX IF NOT EXISTS sales_order_last_updated ON sales_order (last_updated);
CREATE INDEX IF NOT EXISTS purchase_order_last_updated ON purchase_order (last_updated);
CREATE INDEX IF NOT EXISTS transaction_last_updated ON transaction (last_updated);
CREATE INDEX IF NOT EXISTS payment_last_updated ON payment (last_updated);
