-- The demo's sample database: a small shop with keys, foreign keys, a
-- check, an index, non-ASCII text, money-like decimals and a keyless log.
CREATE SCHEMA shop;

CREATE TABLE shop.customers (
    customer_id integer PRIMARY KEY,
    name        text NOT NULL,
    email       varchar(200) NOT NULL UNIQUE,
    country     char(2) NOT NULL,
    vip         boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);
INSERT INTO shop.customers
SELECT g,
       (ARRAY['Zoë', 'Łukasz', 'Søren', 'José', 'Ана', '美咲', 'Chloé', 'Oğuz'])[1 + g % 8] || ' ' || g,
       'customer' || g || '@example.com',
       (ARRAY['DE', 'PL', 'DK', 'ES', 'UA', 'JP', 'FR', 'TR'])[1 + g % 8],
       g % 17 = 0,
       timestamptz '2020-01-01 00:00:00+00' + g * interval '37 minutes'
FROM generate_series(1, 20000) g;

CREATE TABLE shop.products (
    product_id integer PRIMARY KEY,
    sku        varchar(20) NOT NULL UNIQUE,
    title      text NOT NULL,
    price      numeric(10, 2) NOT NULL CHECK (price >= 0),
    weight_kg  real,
    barcode    uuid
);
INSERT INTO shop.products
SELECT g, 'SKU-' || lpad(g::text, 6, '0'), 'Product № ' || g || ' — ' || md5(g::text),
       round((g % 500) * 1.37 + 0.99, 2), (g % 90) / 10.0, md5('p' || g)::uuid
FROM generate_series(1, 2000) g;

CREATE TABLE shop.orders (
    order_id    bigint PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES shop.customers (customer_id),
    placed_at   timestamp NOT NULL,
    status      varchar(12) NOT NULL DEFAULT 'new',
    note        text
);
INSERT INTO shop.orders
SELECT g, 1 + (g * 7919) % 20000, timestamp '2021-01-01' + g * interval '5 minutes',
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4],
       CASE WHEN g % 10 = 0 THEN 'leave at the door ☺' END
FROM generate_series(1, 100000) g;
CREATE INDEX orders_by_customer ON shop.orders (customer_id, placed_at DESC);

CREATE TABLE shop.order_lines (
    order_id   bigint NOT NULL REFERENCES shop.orders (order_id),
    line_no    smallint NOT NULL,
    product_id integer NOT NULL REFERENCES shop.products (product_id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO shop.order_lines
SELECT o, l, 1 + (o * 31 + l * 17) % 2000, 1 + (o + l) % 5, round(((o + l) % 500) * 1.37 + 0.99, 2)
FROM generate_series(1, 100000) o, generate_series(1, 1 + (o % 4)) l;

CREATE TABLE shop.audit_log (
    at      timestamptz NOT NULL,
    message text NOT NULL
);
INSERT INTO shop.audit_log
SELECT timestamptz '2022-06-01 12:00:00+02' + g * interval '1 second', 'event ' || g
FROM generate_series(1, 5000) g;

ANALYZE;
