//! Produce: validate and append each partition's batches in request order, then (for `acks=-1`)
//! wait until they are durable before answering.
//!
//! The append happens synchronously while the request is dispatched, so requests pipelined on one
//! connection are appended in the order sent (idempotent sequences depend on it); only the wait
//! for durability runs concurrently with later requests.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{now_ms, Broker};
use crate::log::{AppendError, PartitionLog};

/// Appended but not yet answered: the response so far and what must be durable before it goes.
pub(crate) struct PendingProduce {
    response: ProduceResponse,
    acks: i16,
    timeout: Duration,
    /// `(topic index, partition index in the response, log, last offset to be durable)`.
    waits: Vec<(usize, usize, Arc<PartitionLog>, i64)>,
}

/// Whether the request writes to a topic with transforms, so [`append`] belongs on the guest
/// pool rather than on a connection's async worker.
pub(crate) fn runs_guests(broker: &Broker, request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .any(|t| crate::write::runs_guests(broker, &t.name.0))
}

/// Appends every partition's records; errors are recorded per partition.
pub(crate) fn append(broker: &Broker, version: i16, request: ProduceRequest) -> PendingProduce {
    let now = now_ms();
    let mut waits = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (t, topic_data) in request.topic_data.into_iter().enumerate() {
        let name = topic_data.name.0.to_string();
        let topic = broker.catalog.get(&name);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (p, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let log = topic.as_ref().and_then(|t| t.partition(data.index));
            match (log, data.records) {
                (None, _) => {
                    response.error_code = ResponseError::UnknownTopicOrPartition.code();
                }
                (Some(_), _) if request.transactional_id.is_some() => {
                    response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
                    set_message(&mut response, version, "transactions are not supported");
                }
                (Some(_), None) => {
                    response.error_code = ResponseError::InvalidRecord.code();
                    set_message(&mut response, version, "no records");
                }
                (Some(log), Some(records)) => {
                    match crate::write::append(broker, &name, data.index, records, now) {
                        Ok(appended) => {
                            let outcome = appended.outcome;
                            response.base_offset = outcome.base_offset;
                            response.log_append_time_ms = outcome.log_append_time;
                            response.log_start_offset = outcome.log_start_offset;
                            waits.extend(
                                appended
                                    .durable
                                    .into_iter()
                                    .map(|d| (t, p, d.log, d.last_offset)),
                            );
                        }
                        Err(e) => {
                            response.error_code = append_error_code(&e);
                            response.log_start_offset = log.log_start_offset();
                            if matches!(e, AppendError::Io(_)) {
                                tracing::error!(topic = %name, partition = data.index, "append failed: {e}");
                            } else {
                                tracing::debug!(topic = %name, partition = data.index, "append refused: {e}");
                            }
                            set_message(&mut response, version, &e.to_string());
                        }
                    }
                }
            }
            crate::metrics::request_error(ApiKey::Produce, response.error_code);
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    PendingProduce {
        response: ProduceResponse::default().with_responses(topics),
        acks: request.acks,
        timeout: Duration::from_millis(request.timeout_ms.max(0) as u64),
        waits,
    }
}

/// Waits (for `acks=-1`) until every appended partition is durable, then yields the response.
pub(crate) async fn complete(pending: PendingProduce) -> ProduceResponse {
    let PendingProduce {
        mut response,
        acks,
        timeout,
        waits,
    } = pending;
    if acks != -1 {
        return response;
    }
    for (t, p, log, last_offset) in waits {
        let code = match tokio::time::timeout(timeout, log.wait_durable(last_offset)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => {
                tracing::error!("flush failed: {e}");
                ResponseError::KafkaStorageError.code()
            }
            Err(_) => ResponseError::RequestTimedOut.code(),
        };
        crate::metrics::request_error(ApiKey::Produce, code);
        if let Some(partition) = response
            .responses
            .get_mut(t)
            .and_then(|topic| topic.partition_responses.get_mut(p))
        {
            partition.error_code = code;
        }
    }
    response
}

/// The Kafka error code for a refused append.
fn append_error_code(error: &AppendError) -> i16 {
    match error {
        AppendError::CorruptMessage(_) => ResponseError::CorruptMessage,
        AppendError::InvalidRecord(_) | AppendError::Unsupported(_) => ResponseError::InvalidRecord,
        AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        AppendError::Io(_) => ResponseError::KafkaStorageError,
    }
    .code()
}

/// `error_message` exists from v8.
fn set_message(response: &mut PartitionProduceResponse, version: i16, message: &str) {
    if version >= 8 {
        response.error_message = Some(StrBytes::from_string(message.to_string()));
    }
}
