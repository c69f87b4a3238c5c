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
    /// Producer ids for idempotent producers.
    pub producer_ids: crate::producer_ids::ProducerIds,
    /// Consumer groups and their committed offsets.
    pub groups: std::sync::Arc<crate::group::GroupCoordinator>,
    /// WebAssembly transforms run on produce.
    pub transforms: crate::transform::TransformRegistry,
    /// Connectors (Kafka Connect-style) running in the broker.
    pub connect: crate::connect::Connect,
    /// SCRAM credentials (SASL PLAIN and SCRAM, AlterUserScramCredentials).
    pub credentials: std::sync::Arc<crate::auth::credentials::CredentialStore>,
}

pub(crate) mod api_versions;
pub(crate) mod configs;
pub(crate) mod delete_records;
pub(crate) mod fetch;
pub(crate) mod group_offsets;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;
pub(crate) mod sasl;
pub(crate) mod scram_credentials;
pub(crate) mod topics;

use kafka_protocol::error::ResponseError;

use crate::catalog::TopicError;
use crate::log::LogError;

/// The Kafka error code for a catalog failure.
pub(crate) fn topic_error_code(error: &TopicError) -> i16 {
    match error {
        TopicError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::Io(_) | TopicError::Log(_) => ResponseError::KafkaStorageError,
    }
    .code()
}

/// The Kafka error code for a storage failure on a read.
pub(crate) fn log_error_code(error: &LogError) -> i16 {
    match error {
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Io(_) | LogError::Corrupt(_) => ResponseError::KafkaStorageError,
    }
    .code()
}

/// Milliseconds since the Unix epoch, the clock Kafka timestamps use.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A broker over an empty catalog in a temp dir, for handler tests.
#[cfg(test)]
pub(crate) fn test_broker() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = crate::catalog::Catalog::open(
        dir.path().to_path_buf(),
        crate::catalog::TopicDefaults::default(),
    )
    .expect("open catalog");
    let broker = Broker {
        catalog,
        node_id: 1,
        cluster_id: "test-cluster".into(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
        producer_ids: crate::producer_ids::ProducerIds::open(&dir.path().join("producer-ids"))
            .expect("producer ids"),
        groups: std::sync::Arc::new(
            crate::group::GroupCoordinator::open(dir.path(), crate::group::GroupConfig::default())
                .expect("group coordinator"),
        ),
        transforms: crate::transform::TransformRegistry::open(
            dir.path(),
            crate::wasm::WasmEngine::new().expect("wasm engine"),
            crate::wasm::GuestLimits::default(),
        )
        .expect("transforms"),
        connect: crate::connect::Connect::open(dir.path()).expect("connect"),
        credentials: std::sync::Arc::new(
            crate::auth::credentials::CredentialStore::open(dir.path()).expect("credentials"),
        ),
    };
    (dir, broker)
}
