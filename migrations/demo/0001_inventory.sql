-- The demo schema used by the quickstart (connectors/demo.toml) and the tests: a small
-- inventory with the column types users meet most. Applied by `walcast setup --demo`.

CREATE SCHEMA IF NOT EXISTS inventory;

DO $$ BEGIN
    CREATE TYPE inventory.order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS inventory.customers (
    id         serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name  text NOT NULL,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS inventory.products (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    description text,                 -- large values are TOASTed
    price       numeric(10, 2) NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    attributes  jsonb NOT NULL DEFAULT '{}',
    weight_kg   double precision
);

CREATE TABLE IF NOT EXISTS inventory.orders (
    id          bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES inventory.customers (id),
    product_id  integer NOT NULL REFERENCES inventory.products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    total       numeric(12, 2) NOT NULL,
    status      inventory.order_status NOT NULL DEFAULT 'pending',
    ordered_at  timestamp NOT NULL DEFAULT localtimestamp,
    notes       text
);

INSERT INTO inventory.customers (id, first_name, last_name, email) VALUES
    (1001, 'Sally', 'Thomas', 'sally.thomas@acme.com'),
    (1002, 'George', 'Bailey', 'gbailey@foobar.com'),
    (1003, 'Edward', 'Walker', 'ed@walker.com'),
    (1004, 'Anne', 'Kretchmar', 'annek@noanswer.org')
ON CONFLICT (id) DO NOTHING;
SELECT setval('inventory.customers_id_seq', 1004, true);

INSERT INTO inventory.products (id, name, description, price, tags, attributes, weight_kg) VALUES
    (101, 'scooter', 'Small 2-wheel scooter', 39.90, '{outdoor,kids}', '{"color": "red"}', 3.14),
    (102, 'car battery', '12V car battery', 89.00, '{auto}', '{"volts": 12}', 8.1),
    (103, '12-pack drill bits', '12-pack of drill bits with sizes ranging from #40 to #3', 7.50, '{tools}', '{}', 0.8),
    (104, 'hammer', '12oz carpenter''s hammer', 12.25, '{tools}', '{"head": "steel"}', 0.75),
    (105, 'manual', repeat('A very long product manual. ', 400), 0.00, '{docs}', '{}', NULL)
ON CONFLICT (id) DO NOTHING;
SELECT setval('inventory.products_id_seq', 105, true);

INSERT INTO inventory.orders (id, customer_id, product_id, quantity, total, status, ordered_at) VALUES
    (10001, 1001, 102, 1, 89.00, 'paid', '2026-01-16 10:00:00'),
    (10002, 1002, 105, 2, 0.00, 'shipped', '2026-01-17 11:30:00'),
    (10003, 1002, 101, 2, 79.80, 'pending', '2026-02-19 09:15:00'),
    (10004, 1003, 104, 1, 12.25, 'cancelled', '2026-02-21 16:45:00')
ON CONFLICT (id) DO NOTHING;
SELECT setval('inventory.orders_id_seq', 10004, true);
