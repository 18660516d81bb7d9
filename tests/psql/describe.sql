-- Run by tests/pg_catalog.rs with psql -X -A -v ON_ERROR_STOP=1 -f against a follower.
\set VERBOSITY verbose
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL UNIQUE,
  balance numeric(10,2) DEFAULT 0, created timestamptz DEFAULT now());
CREATE TABLE orders (id bigint PRIMARY KEY, account_id int REFERENCES accounts (id),
  total float8 CHECK (total >= 0), note varchar(20));
CREATE INDEX orders_account ON orders (account_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;

BEGIN;
INSERT INTO accounts (name) VALUES ('ada'), ('grace');
INSERT INTO orders VALUES (1, 1, 250.5, 'first'), (2, 2, 10, NULL);
COMMIT;

-- Errors carry their SQLSTATE (VERBOSITY verbose prints it after ERROR:).
\set ON_ERROR_STOP 0
INSERT INTO accounts (name) VALUES ('ada');
BEGIN;
INSERT INTO orders VALUES (3, 99, 1, NULL);
SELECT 1;
ROLLBACK;
SELECT * FROM no_such_table;
\set ON_ERROR_STOP 1

\echo ==dt
\dt
\echo ==d accounts
\d accounts
\echo ==d orders
\d orders
\echo ==di
\di
\echo ==dv
\dv
\echo ==l
\l
\echo ==du
\du
\echo ==conninfo
\conninfo
\echo ==count
SELECT count(*) AS orders FROM orders;
