-- walcast's support objects, applied by `walcast setup` (tracked in walcast.schema_migrations).
--
-- walcast.heartbeat: a row per connector that `[heartbeat] action_query` can update, so
--   the slot keeps moving (and PostgreSQL releases WAL) while captured tables are idle.
-- walcast.signal: rows inserted here ask a running connector to act (incremental
--   snapshots: {"type":"execute-snapshot","data":{"data-collections":["public.orders"]}}).
--   Its columns follow Debezium's signal table (id, type, data), so existing tooling works.

CREATE SCHEMA IF NOT EXISTS walcast;

CREATE TABLE IF NOT EXISTS walcast.heartbeat (
    connector text PRIMARY KEY,
    ts        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS walcast.signal (
    id   varchar(64) PRIMARY KEY,
    type varchar(32) NOT NULL,
    data text
);

COMMENT ON TABLE walcast.heartbeat IS 'walcast: one row per connector, updated by [heartbeat] action_query';
COMMENT ON TABLE walcast.signal IS 'walcast: signals to running connectors (Debezium signal table layout)';
