//! Produce: validate and append each partition's batches in request order, then (for `acks=-1`)
//! wait until they are durable before answering.
//!
//! The append happens synchronously while the request is dispatched, so requests pipelined on one
//! connection are appended in the order sent (idempotent sequences depend on it); only the wait
//! for durability runs concurrently with later requests.
//!
//! In cluster mode ([`append_cluster`]) the batches go to the broker's upload buffer instead, in
//! the order sent, and `acks=1` and `acks=-1` are both answered once the upload holding them is
//! committed to the metadata database (there is no earlier point where a batch is stored);
//! `acks=0` is answered at once, as always. A failed upload answers a retriable error, never
//! offsets.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{now_ms, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::log::{AppendError, PartitionLog};

/// Appended but not yet answered: the response so far and what must be durable before it goes.
pub(crate) struct PendingProduce {
    response: ProduceResponse,
    acks: i16,
    timeout: Duration,
    /// `(topic index, partition index in the response, log, last offset to be durable)`.
    waits: Vec<(usize, usize, Arc<PartitionLog>, i64)>,
    /// Cluster mode: `(topic index, partition index in the response, the commit's answer)`.
    commits: Vec<(usize, usize, crate::cluster::upload::Answer)>,
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
pub(crate) fn append(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: ProduceRequest,
) -> PendingProduce {
    let now = now_ms();
    let mut waits = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (t, topic_data) in request.topic_data.into_iter().enumerate() {
        let name = topic_data.name.0.to_string();
        // Checked before existence, as Kafka does, so an unauthorized client learns nothing.
        let authorized = broker.authorize(who, Operation::Write, Resource::topic(&name));
        let topic = authorized.then(|| broker.catalog.get(&name)).flatten();
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (p, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let log = topic.as_ref().and_then(|t| t.partition(data.index));
            match (log, data.records) {
                (None, _) if !authorized => {
                    response.error_code = ResponseError::TopicAuthorizationFailed.code();
                }
                (None, _) => {
                    response.error_code = ResponseError::UnknownTopicOrPartition.code();
                }
                (Some(_), None) => {
                    response.error_code = ResponseError::InvalidRecord.code();
                    set_message(&mut response, version, "no records");
                }
                (Some(log), Some(records)) => {
                    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.as_str());
                    match crate::write::append_produced(
                        broker,
                        transactional_id,
                        &name,
                        data.index,
                        records,
                        now,
                    ) {
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
                            if let AppendError::InvalidTimestamp {
                                record_index,
                                message,
                            } = &e
                            {
                                // KIP-467: which record, from v8.
                                if version >= 8 {
                                    response.record_errors =
                                        vec![BatchIndexAndErrorMessage::default()
                                            .with_batch_index(*record_index)
                                            .with_batch_index_error_message(Some(
                                                StrBytes::from_string(message.clone()),
                                            ))];
                                }
                            }
                            if matches!(e, AppendError::Io(_)) {
                                tracing::error!(topic = %name, partition = data.index, "append failed: {e}");
                            } else {
                                tracing::debug!(topic = %name, partition = data.index, "append refused: {e}");
                            }
                            if let AppendError::KeylessRecords { records } = &e {
                                set_keyless_errors(
                                    &mut response,
                                    version,
                                    records,
                                    &name,
                                    data.index,
                                );
                            } else {
                                set_message(&mut response, version, &e.to_string());
                            }
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
        commits: Vec::new(),
    }
}

/// [`append`] in cluster mode: each partition's batches are validated and submitted to the
/// upload buffer, in request order; [`complete`] waits for their commit.
pub(crate) async fn append_cluster(
    broker: &Arc<Broker>,
    cluster: &crate::cluster::node::Cluster,
    who: &Requester,
    version: i16,
    request: ProduceRequest,
) -> PendingProduce {
    let now = now_ms();
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    let mut commits = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (t, topic_data) in request.topic_data.into_iter().enumerate() {
        let name = topic_data.name.0.to_string();
        let authorized = broker.authorize(who, Operation::Write, Resource::topic(&name));
        let meta = if authorized {
            cluster.topic(&name).await
        } else {
            Ok(None)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (p, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            match (&meta, data.records) {
                _ if !authorized => {
                    response.error_code = ResponseError::TopicAuthorizationFailed.code();
                }
                (Err(e), _) => {
                    tracing::warn!(topic = %name, "cannot look the topic up: {e}");
                    response.error_code = ResponseError::RequestTimedOut.code();
                    set_message(&mut response, version, &e.to_string());
                }
                (Ok(None), _) => {
                    response.error_code = ResponseError::UnknownTopicOrPartition.code();
                }
                (Ok(Some(_)), None) => {
                    response.error_code = ResponseError::InvalidRecord.code();
                    set_message(&mut response, version, "no records");
                }
                (Ok(Some(meta)), Some(records)) => {
                    let submitted = crate::write::cluster::submit(
                        broker,
                        cluster,
                        transactional_id.as_deref(),
                        meta,
                        data.index,
                        records,
                        now,
                    )
                    .await;
                    match submitted {
                        Ok(answer) => commits.push((t, p, answer)),
                        Err(e) => {
                            tracing::debug!(topic = %name, partition = data.index, "append refused: {e}");
                            response.error_code = append_error_code(&e);
                            set_message(&mut response, version, &e.to_string());
                        }
                    }
                }
            }
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
        waits: Vec::new(),
        commits,
    }
}

/// Fills in each partition's answer from its upload's commit (cluster mode).
async fn complete_commits(
    response: &mut ProduceResponse,
    timeout: Duration,
    commits: Vec<(usize, usize, crate::cluster::upload::Answer)>,
) {
    use crate::cluster::types::{BatchOutcome, BatchRefusal};
    use crate::cluster::upload::UploadError;
    let deadline = tokio::time::Instant::now() + timeout;
    for (t, p, answer) in commits {
        let Some(partition) = response
            .responses
            .get_mut(t)
            .and_then(|topic| topic.partition_responses.get_mut(p))
        else {
            continue;
        };
        let outcomes = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(outcomes))) => outcomes,
            // Both retriable for every client; an idempotent retry of a commit that did happen
            // is answered as a duplicate with its original offsets.
            Ok(Ok(Err(UploadError::Fenced | UploadError::Closed))) => {
                partition.error_code = ResponseError::NotLeaderOrFollower.code();
                continue;
            }
            Ok(Ok(Err(_))) | Ok(Err(_)) | Err(_) => {
                partition.error_code = ResponseError::RequestTimedOut.code();
                continue;
            }
        };
        let refused = outcomes.iter().find_map(|o| match o {
            BatchOutcome::Refused(r) => Some(*r),
            _ => None,
        });
        if let Some(refusal) = refused {
            partition.error_code = match refusal {
                BatchRefusal::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
                BatchRefusal::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
                BatchRefusal::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
                BatchRefusal::UnknownProducerId => ResponseError::UnknownProducerId,
            }
            .code();
            continue;
        }
        if let Some(
            BatchOutcome::Appended {
                base_offset,
                log_start_offset,
            }
            | BatchOutcome::Duplicate {
                base_offset,
                log_start_offset,
            },
        ) = outcomes.first()
        {
            partition.base_offset = *base_offset;
            partition.log_start_offset = *log_start_offset;
        }
    }
}

/// Waits (for `acks=-1`) until every appended partition is durable, then yields the response.
pub(crate) async fn complete(pending: PendingProduce) -> ProduceResponse {
    let PendingProduce {
        mut response,
        acks,
        timeout,
        waits,
        commits,
    } = pending;
    if !commits.is_empty() {
        complete_commits(&mut response, timeout, commits).await;
    }
    if acks != -1 {
        return response;
    }
    // All at once: a transformed write waits for its input and its outputs, each partition's
    // fsync on its own, and in turn they would add up.
    let waited = futures_util::future::join_all(waits.into_iter().map(
        |(t, p, log, last_offset)| async move {
            let waited = tokio::time::timeout(timeout, log.wait_durable(last_offset)).await;
            (t, p, waited)
        },
    ))
    .await;
    for (t, p, waited) in waited {
        let code = match waited {
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
        AppendError::InvalidRecord(_)
        | AppendError::Unsupported(_)
        | AppendError::KeylessRecords { .. } => ResponseError::InvalidRecord,
        AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        AppendError::TransactionRejected { code, .. } => return *code,
        AppendError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        AppendError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
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

/// A compacted topic's refusal of keyless records, worded as Kafka words it, with one KIP-467
/// `record_errors` entry per keyless record (v8+).
fn set_keyless_errors(
    response: &mut PartitionProduceResponse,
    version: i16,
    records: &[i32],
    topic: &str,
    partition: i32,
) {
    if version < 8 {
        return;
    }
    let why = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    );
    response.error_message = Some(StrBytes::from_string(format!(
        "One or more records have been rejected: {why}"
    )));
    response.record_errors = records
        .iter()
        .map(|&i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i)
                .with_batch_index_error_message(Some(StrBytes::from_string(why.clone())))
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker;
    use crate::records::record::{build_batch, BatchMeta, NewRecord};
    use crate::records::{batch, Compression};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;

    fn batch_at(timestamp: i64, codec: Compression) -> bytes::Bytes {
        let record = NewRecord {
            timestamp,
            key: Some(b"k".to_vec()),
            value: Some(b"a value, a value, a value, a value".to_vec()),
            headers: vec![],
        };
        build_batch(&[record], codec, &BatchMeta::default()).into()
    }

    fn request(topic: &str, records: bytes::Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    }

    fn partition(pending: &PendingProduce) -> &PartitionProduceResponse {
        &pending.response.responses[0].partition_responses[0]
    }

    #[test]
    fn batches_are_stored_in_the_topic_codec() {
        let (_dir, b) = test_broker();
        let configs = [("compression.type".to_string(), Some("zstd".to_string()))];
        let topic = b.catalog.create_topic("z", 1, 1, &configs, false).unwrap();
        let pending = append(
            &b,
            &crate::acl::Requester::broker(),
            9,
            request("z", batch_at(now_ms(), Compression::Gzip)),
        );
        assert_eq!(partition(&pending).error_code, 0);
        let stored = topic.partition(0).unwrap().read(0, 1 << 20, true).unwrap();
        let header = batch::validate(&stored.records, 1 << 20).unwrap();
        assert_eq!(header.compression(), Some(Compression::Zstd));
    }

    #[test]
    fn timestamps_out_of_bounds_get_invalid_timestamp_with_the_record_at_v8() {
        let (_dir, b) = test_broker();
        let configs = [(
            "message.timestamp.before.max.ms".to_string(),
            Some("60000".to_string()),
        )];
        let topic = b.catalog.create_topic("ts", 1, 1, &configs, false).unwrap();
        let old = now_ms() - 3_600_000;
        for version in [7, 8] {
            let pending = append(
                &b,
                &crate::acl::Requester::broker(),
                version,
                request("ts", batch_at(old, Compression::Lz4)),
            );
            let p = partition(&pending);
            assert_eq!(p.error_code, ResponseError::InvalidTimestamp.code());
            assert_eq!(p.base_offset, -1);
            if version >= 8 {
                assert_eq!(p.record_errors.len(), 1);
                assert_eq!(p.record_errors[0].batch_index, 0);
                let message = p.error_message.as_deref().unwrap_or_default();
                assert!(message.contains("is out of range"), "{message}");
            } else {
                assert!(p.record_errors.is_empty() && p.error_message.is_none());
            }
        }
        assert_eq!(topic.partition(0).unwrap().high_watermark(), 0);
        let pending = append(
            &b,
            &crate::acl::Requester::broker(),
            9,
            request("ts", batch_at(now_ms(), Compression::Lz4)),
        );
        assert_eq!(partition(&pending).error_code, 0);
        assert_eq!(topic.partition(0).unwrap().high_watermark(), 1);
    }
}
