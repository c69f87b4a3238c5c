//! One file per Kafka API family: a request in, a response out.
//!
//! Handlers take the shared [`Broker`] and the decoded request (already checked to be a version we
//! serve) and return the response message; they never fail as a whole: every error is a Kafka error
//! code inside the response, per topic or partition where the protocol has one.

use crate::catalog::Catalog;

/// What every handler can reach.
#[derive(Debug)]
pub struct Broker {
    /// Topics and their partition logs.
    pub catalog: Catalog,
    /// This broker's node id (Metadata, FindCoordinator); a single node is always 1.
    pub node_id: i32,
    /// The cluster id reported in Metadata; persisted in the data dir so it survives restarts.
    pub cluster_id: String,
    /// Host and port clients are told to connect to (Metadata brokers).
    pub advertised_host: String,
    pub advertised_port: i32,
}

pub(crate) mod configs;
pub(crate) mod topics;
