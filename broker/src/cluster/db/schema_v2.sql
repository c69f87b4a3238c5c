-- Sluice cluster metadata, schema version 2: connectors, cluster-wide. Self-contained: it
-- needs only version 1's sluice_brokers (the lease holders).

-- Every connector of the cluster, as the Connect REST API on any broker wrote it.
CREATE TABLE sluice_connectors (
    name        TEXT PRIMARY KEY,
    config      JSONB NOT NULL,
    target      TEXT NOT NULL CHECK (target IN ('RUNNING', 'PAUSED', 'STOPPED')),
    -- Who created or last configured it (User:NAME): its task runs with that principal's rights.
    deployer    TEXT,
    -- Bumped by every config change and restart: the task's holder restarts it on a change.
    generation  BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The fenced lease on a connector's one task (see db/lease.rs): the broker running it, and the
-- status it last reported, so every broker answers the same status.
CREATE TABLE sluice_connector_tasks (
    connector      TEXT PRIMARY KEY REFERENCES sluice_connectors ON DELETE CASCADE,
    node_id        INT NOT NULL,
    broker_epoch   BIGINT NOT NULL,
    lease_expires  TIMESTAMPTZ NOT NULL,
    -- The holder's REST address (host:port), Connect's worker id.
    worker_id      TEXT NOT NULL,
    state          TEXT NOT NULL,
    trace          TEXT
);

-- A file source's position in its file, written under the task lease after the lines before it
-- are committed, so the next holder continues from it.
CREATE TABLE sluice_source_positions (
    connector  TEXT PRIMARY KEY REFERENCES sluice_connectors ON DELETE CASCADE,
    filename   TEXT NOT NULL,
    position   BIGINT NOT NULL CHECK (position >= 0)
);
