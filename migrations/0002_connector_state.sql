-- Per-connector state walcast keeps in the source database (applied by `walcast setup`).
--
-- walcast.connector_state: whether the connector's initial snapshot finished. A slot
--   that exists while its snapshot is marked unfinished means the snapshot was
--   interrupted: walcast drops the slot and takes the snapshot again.

CREATE TABLE IF NOT EXISTS walcast.connector_state (
    connector          text PRIMARY KEY,
    slot               text NOT NULL,
    snapshot_completed boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE walcast.connector_state IS 'walcast: per-connector state (initial snapshot progress)';
