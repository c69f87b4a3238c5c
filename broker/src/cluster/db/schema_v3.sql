-- Sluice cluster metadata, schema version 3: transform deployments, cluster-wide.
-- Self-contained: it needs no table of the earlier versions.

-- Every transform deployment of the cluster, as the admin API on any broker made it. The module
-- it names is in the object store under modules/<sha256>.
CREATE TABLE sluice_transforms (
    name        TEXT PRIMARY KEY,
    -- The deployment as the broker's transform registry keeps it (JSON of its fields).
    deployment  JSONB NOT NULL,
    -- Bumped by every change (pause, resume): brokers compare it to what they applied.
    version     BIGINT NOT NULL DEFAULT 1,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
