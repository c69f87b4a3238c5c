//! Cluster mode: stateless brokers sharing PostgreSQL (the sequencer and metadata store) and an
//! S3-compatible object store (the record batches). Without `--metadata`, none of this runs and
//! Sluice is the single-node broker on its local log.
//!
//! - [`types`]: what crosses between the modules below (the contract): uploads, batch
//!   coordinates, brokers and their leases, topics.
//! - [`config`]: `--metadata postgres://...` and `--objects s3://BUCKET?endpoint=URL&region=R`.
//! - [`objects`]: the object store (S3 or in memory) and a bounded cache of ranged reads.
//! - [`db`]: PostgreSQL: versioned schema migrations, broker registrations and leases, topics,
//!   the commit of one upload (offsets in partition order, idempotent sequences), batch
//!   coordinates, commit notifications (LISTEN/NOTIFY), groups and their offsets.
//! - [`upload`]: the per-broker buffer of produced batches across partitions: one object at the
//!   linger deadline or size limit, then one commit; producers answered after it.
//! - [`read`]: fetches: coordinates (cached) and ranged GETs, offsets patched into batch headers
//!   (outside the CRC).
//! - [`maintenance`]: the background task of the maintenance lease holder: retention, deleting
//!   unreferenced and never-committed objects, merging small objects per partition.
//! - [`groups`]: consumer groups: this broker's fenced group leases, committed offsets in
//!   PostgreSQL (the coordinator's seam, [`crate::group::RemoteGroups`]).
//! - [`topic_rules`]: the topic configs cluster mode accepts (the catalog's rules, no
//!   compaction yet).
//! - [`modules`]: guest modules shared by hash through the object store.
//! - [`deployments`]: the cluster's transform deployments applied to every broker's registry.
//! - [`placement`]: live brokers and the leader shown per partition (rendezvous hashing).

pub mod config;
pub mod db;
pub mod deployments;
pub mod groups;
pub mod maintenance;
pub mod modules;
pub mod node;
pub mod objects;
pub mod placement;
pub mod read;
pub mod topic_rules;
pub mod types;
pub mod upload;
