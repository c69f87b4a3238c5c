//! PostgreSQL, the cluster's sequencer and metadata store.
