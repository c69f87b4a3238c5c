-- Sluice cluster metadata, schema version 1. Applied by db::migrations in one transaction.

CREATE TABLE sluice_brokers (
    node_id        INT PRIMARY KEY,
    host           TEXT NOT NULL,
    port           INT NOT NULL,
    rack           TEXT,
    -- Bumped at every registration: a commit naming an older epoch is refused (a zombie).
    epoch          BIGINT NOT NULL,
    lease_expires  TIMESTAMPTZ NOT NULL,
    UNIQUE (host, port)
);
CREATE SEQUENCE sluice_node_ids START 1;

CREATE TABLE sluice_topics (
    topic_id    UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    partitions  INT NOT NULL CHECK (partitions > 0),
    configs     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sluice_partitions (
    topic_id          UUID NOT NULL REFERENCES sluice_topics ON DELETE CASCADE,
    partition         INT NOT NULL,
    log_start_offset  BIGINT NOT NULL DEFAULT 0,
    high_watermark    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

-- Objects referenced by committed batches. An object in the bucket with no row here, older
-- than the upload timeout, was never committed and is collected.
CREATE TABLE sluice_objects (
    object_key   TEXT PRIMARY KEY,
    node_id      INT NOT NULL,
    size         BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When maintenance first saw no batch pointing here (retention, deletes, rewrites): the
    -- object is deleted a grace period later, so fetches still reading it finish first.
    orphaned_at  TIMESTAMPTZ
);

CREATE TABLE sluice_batches (
    topic_id        UUID NOT NULL,
    partition       INT NOT NULL,
    base_offset     BIGINT NOT NULL,
    last_offset     BIGINT NOT NULL,
    base_timestamp  BIGINT NOT NULL,
    max_timestamp   BIGINT NOT NULL,
    object_key      TEXT NOT NULL REFERENCES sluice_objects,
    byte_offset     BIGINT NOT NULL,
    byte_length     INT NOT NULL,
    producer_id     BIGINT NOT NULL,
    producer_epoch  SMALLINT NOT NULL,
    base_sequence   INT NOT NULL,
    is_transactional BOOLEAN NOT NULL DEFAULT false,
    is_control      BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (topic_id, partition, base_offset),
    FOREIGN KEY (topic_id, partition) REFERENCES sluice_partitions ON DELETE CASCADE
);
CREATE INDEX sluice_batches_by_object ON sluice_batches (object_key);
CREATE INDEX sluice_batches_by_time ON sluice_batches (topic_id, partition, max_timestamp);
-- Idempotent retries: a batch is a duplicate when its producer, epoch and sequence are stored.
CREATE INDEX sluice_batches_by_producer
    ON sluice_batches (topic_id, partition, producer_id, producer_epoch, base_sequence)
    WHERE producer_id >= 0;

-- Idempotent producer state per partition: the last sequence stored, for order checks.
CREATE TABLE sluice_producers (
    topic_id        UUID NOT NULL,
    partition       INT NOT NULL,
    producer_id     BIGINT NOT NULL,
    producer_epoch  SMALLINT NOT NULL,
    last_sequence   INT NOT NULL,
    last_offset     BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, partition, producer_id),
    FOREIGN KEY (topic_id, partition) REFERENCES sluice_partitions ON DELETE CASCADE
);
CREATE SEQUENCE sluice_producer_ids START 1000;

-- Group coordination: one coordinator broker per group, holding a fenced lease.
-- A lease is free once it expires or its holder's broker registration lapses or is superseded.
-- The protocol type and generation outlive each coordinator, so generations keep counting up
-- across a failover and a fenced member's stale generation is never reused.
CREATE TABLE sluice_group_leases (
    group_id       TEXT PRIMARY KEY,
    node_id        INT NOT NULL,
    broker_epoch   BIGINT NOT NULL,
    lease_expires  TIMESTAMPTZ NOT NULL,
    protocol_type  TEXT,
    generation     INT NOT NULL DEFAULT 0
);

CREATE TABLE sluice_group_offsets (
    group_id      TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     INT NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch  INT NOT NULL DEFAULT -1,
    metadata      TEXT,
    committed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Background maintenance (retention, object collection and merging) runs on one broker at a
-- time: the holder of this single-row lease, bound to its broker epoch like group leases.
CREATE TABLE sluice_maintenance_lease (
    id             BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    node_id        INT NOT NULL,
    broker_epoch   BIGINT NOT NULL,
    lease_expires  TIMESTAMPTZ NOT NULL
);
