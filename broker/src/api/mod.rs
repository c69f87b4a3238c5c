//! One file per Kafka API family: a request in, a response out.
//!
//! Handlers take the shared [`Broker`](crate::broker::Broker) and the decoded request (already checked to be a version we
//! serve) and return the response message; they never fail as a whole: every error is a Kafka error
//! code inside the response, per topic or partition where the protocol has one.

pub(crate) use crate::broker::{now_ms, Broker};

pub(crate) mod acls;
pub(crate) mod api_versions;
pub(crate) mod client_quotas;
pub(crate) mod configs;
pub(crate) mod delete_records;
pub(crate) mod describe_cluster;
pub(crate) mod describe_producers;
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
pub(crate) mod transactions;

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
