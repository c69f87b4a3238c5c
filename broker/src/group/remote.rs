//! The seam to a cluster: in cluster mode, which broker coordinates a group and where its
//! committed offsets live are decided outside this process (a fenced lease and offsets in
//! PostgreSQL, [`crate::cluster::groups`]). Without one, this broker coordinates every group and
//! its offsets go to the local log ([`super::offsets`]), as always.

use std::fmt::Debug;

use futures_util::future::BoxFuture;
use kafka_protocol::error::ResponseError;

use super::offsets::GroupOffsets;
use super::{Committed, GroupMeta};

/// Why a group request could not be served here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// Another broker holds the group (or this one lost it): the client finds the coordinator
    /// again.
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// The shared store cannot be reached; retriable.
    #[error("the cluster's metadata store is unavailable: {0}")]
    Unavailable(String),
}

impl RemoteError {
    /// The Kafka error a group request is answered with.
    pub fn code(&self) -> ResponseError {
        match self {
            RemoteError::NotCoordinator => ResponseError::NotCoordinator,
            RemoteError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        }
    }
}

/// A group claimed by this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The lease was not held here a moment ago: whatever this broker kept in memory of the
    /// group is from an earlier tenure and is dropped; `meta` is what the cluster knows of it.
    pub fresh: bool,
    pub meta: Option<GroupMeta>,
}

/// Where a group's coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddress {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// A group as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteGroup {
    pub group_id: String,
    pub protocol_type: Option<String>,
    /// Whether this broker is its coordinator (its state is then the one in memory).
    pub here: bool,
    /// Whether any broker coordinates it now.
    pub coordinated: bool,
}

/// Group coordination shared with other brokers (cluster mode).
pub trait RemoteGroups: Send + Sync + Debug {
    /// Takes or renews this broker's lease on `group`; `NotCoordinator` when another holds it.
    fn claim<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Claim, RemoteError>>;
    /// Whether this broker holds a live lease on `group`, without I/O (heartbeats).
    fn holds(&self, group: &str) -> bool;
    /// The groups with members here and their last completed rebalance: their leases are kept
    /// renewed (and their metadata recorded); the others are let go.
    fn keep(&self, active: Vec<(String, Option<GroupMeta>)>);
    /// Where `group`'s coordinator is, or should be.
    fn coordinator<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<CoordinatorAddress, RemoteError>>;
    /// Stores offsets under this broker's lease on `group`: nothing when the lease is lost.
    /// Per entry: stored, or `false` for a partition the cluster does not have.
    fn commit<'a>(
        &'a self,
        group: &'a str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> BoxFuture<'a, Result<Vec<bool>, RemoteError>>;
    fn fetch<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupOffsets, RemoteError>>;
    fn delete_offsets<'a>(
        &'a self,
        group: &'a str,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'a, Result<(), RemoteError>>;
    /// Deletes the group's offsets and lease (it has no members).
    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), RemoteError>>;
    /// Deletes every group's offsets of a deleted topic.
    fn delete_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), RemoteError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteGroup>, RemoteError>>;
}
