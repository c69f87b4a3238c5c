-- Sluice cluster metadata, schema version 4: the cluster's identity. Self-contained: it needs
-- nothing of the other versions.

-- The one cluster id every broker answers (Metadata, DescribeCluster, Connect's REST root).
-- Written once by the first broker to start on this database; never changed after.
CREATE TABLE sluice_cluster (
    id          BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    cluster_id  TEXT NOT NULL CHECK (cluster_id <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
