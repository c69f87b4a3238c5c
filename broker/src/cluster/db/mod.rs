//! PostgreSQL, the cluster's sequencer and metadata store.
pub mod groups;
