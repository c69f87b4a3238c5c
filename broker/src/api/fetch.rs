//! Fetch: whole record batches from each asked partition, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes. A read_committed fetch (`isolation_level` 1) stops at the
//! last stable offset and names the aborted transactions of what it returns, so the client drops
//! their records; control batches are returned as stored (clients skip them).
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which every client treats as
//! "send full fetch requests"; with one broker and no replicas they would save little.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::{log_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::log::PartitionLog;

/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;
/// A partition asked for: its log, or the error code answered for it.
type Target = Result<Arc<PartitionLog>, i16>;

/// The most a fetch long-poll waits, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn handle(
    broker: Arc<Broker>,
    who: Requester,
    _version: i16,
    request: FetchRequest,
) -> FetchResponse {
    if let Some(cluster) = broker.cluster.clone() {
        return counted(handle_cluster(&broker, &cluster, &who, request).await);
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = request.min_bytes.max(0) as usize;
    // Resolve the partitions once; the same logs are read on every pass of the long-poll.
    let targets: Vec<Target> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic.topic.0.as_str();
            let found = if broker.authorize(&who, Operation::Read, Resource::topic(name)) {
                broker
                    .catalog
                    .get(name)
                    .ok_or(ResponseError::UnknownTopicOrPartition)
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            };
            topic
                .partitions
                .iter()
                .map(move |p| match &found {
                    Ok(t) => t
                        .partition(p.partition)
                        .ok_or(ResponseError::UnknownTopicOrPartition.code()),
                    Err(e) => Err(e.code()),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut watchers: Vec<watch::Receiver<i64>> = targets
        .iter()
        .filter_map(|log| log.as_ref().ok().map(|l| l.subscribe()))
        .collect();
    loop {
        // Mark every watcher seen before reading, so an append racing this read still wakes us.
        for w in &mut watchers {
            w.borrow_and_update();
        }
        let (response, bytes, errors) = read_once(&request, &targets);
        if bytes >= min_bytes || errors || watchers.is_empty() {
            return counted(response);
        }
        if tokio::time::timeout_at(deadline, any_changed(&mut watchers))
            .await
            .is_err()
        {
            return counted(response);
        }
    }
}

/// A partition asked for in cluster mode: its topic id, or the error code answered for it.
type ClusterTarget = Result<uuid::Uuid, i16>;

/// KIP-392: for each partition of a fetch from a consumer in `rack_id`, the broker of its rack
/// it should read from instead of this one (`None`: read here). A consumer in this broker's
/// rack, or in a rack without a live broker, reads here.
async fn read_replicas(
    cluster: &crate::cluster::node::Cluster,
    request: &FetchRequest,
) -> Vec<Option<i32>> {
    let partitions = request.topics.iter().map(|t| t.partitions.len()).sum();
    let client_rack = request.rack_id.as_str();
    if client_rack.is_empty() || cluster.settings.rack.as_deref() == Some(client_rack) {
        return vec![None; partitions];
    }
    let brokers = match cluster.live_brokers().await {
        Ok(brokers) => brokers,
        Err(_) => return vec![None; partitions],
    };
    let placed: Vec<crate::cluster::placement::Placed<'_>> = brokers
        .iter()
        .map(|b| (b.node_id, b.rack.as_deref()))
        .collect();
    let me = cluster.node_id();
    request
        .topics
        .iter()
        .flat_map(|t| {
            let placed = &placed;
            t.partitions.iter().map(move |p| {
                crate::cluster::placement::preferred_read_replica(
                    t.topic.0.as_str(),
                    p.partition,
                    placed,
                    client_rack,
                )
                .filter(|node| *node != me)
            })
        })
        .collect()
}

/// [`handle`] in cluster mode: coordinates and bytes through [`crate::cluster::read`]; the
/// long poll waits on the partitions' watermark watches, which commit notices move.
async fn handle_cluster(
    broker: &Broker,
    cluster: &crate::cluster::node::Cluster,
    who: &Requester,
    request: FetchRequest,
) -> FetchResponse {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut targets: Vec<ClusterTarget> = Vec::new();
    let mut watchers = Vec::new();
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
        let found = if !broker.authorize(who, Operation::Read, Resource::topic(name)) {
            Err(ResponseError::TopicAuthorizationFailed.code())
        } else {
            match cluster.topic(name).await {
                Ok(Some(meta)) => Ok(meta),
                Ok(None) => Err(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => {
                    tracing::warn!(topic = name, "cannot look the topic up: {e}");
                    Err(ResponseError::KafkaStorageError.code())
                }
            }
        };
        for p in &topic.partitions {
            let target = match &found {
                Ok(meta) if p.partition >= 0 && p.partition < meta.partitions => Ok(meta.topic_id),
                Ok(_) => Err(ResponseError::UnknownTopicOrPartition.code()),
                Err(code) => Err(*code),
            };
            if let Ok(topic_id) = target {
                if let Ok(Some(w)) = cluster.watch(topic_id, p.partition).await {
                    watchers.push(w);
                }
            }
            targets.push(target);
        }
    }
    let elsewhere = read_replicas(cluster, &request).await;
    loop {
        for w in &mut watchers {
            w.borrow_and_update();
        }
        let (response, bytes, errors) =
            read_cluster_once(cluster, &request, &targets, &elsewhere).await;
        // A consumer sent to its rack's broker is told at once, not after a long poll.
        let redirected = elsewhere.iter().any(Option::is_some);
        if bytes >= min_bytes || errors || redirected || watchers.is_empty() {
            return response;
        }
        let changes = watchers.iter_mut().map(|w| Box::pin(w.changed()));
        if tokio::time::timeout_at(deadline, futures_util::future::select_all(changes))
            .await
            .is_err()
        {
            return response;
        }
    }
}

/// One pass over every partition in cluster mode, as [`read_once`].
async fn read_cluster_once(
    cluster: &crate::cluster::node::Cluster,
    request: &FetchRequest,
    targets: &[ClusterTarget],
    elsewhere: &[Option<i32>],
) -> (FetchResponse, usize, bool) {
    use crate::cluster::read::{read, ReadError};
    let mut budget = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errors = false;
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|t| FetchableTopicResponse::default().with_topic(t.topic.clone()))
        .collect();
    let mut next = targets.iter();
    let mut redirects = elsewhere.iter();
    for (t, topic) in request.topics.iter().enumerate() {
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            let redirect = redirects.next().copied().flatten();
            match (next.next(), redirect) {
                (Some(Ok(topic_id)), Some(node)) => {
                    // No records: the consumer reads them from the replica in its rack.
                    data.preferred_read_replica = BrokerId(node);
                    if let Ok(Some(offsets)) = cluster.offsets(*topic_id, p.partition).await {
                        data.high_watermark = offsets.high_watermark;
                        data.last_stable_offset = offsets.high_watermark;
                        data.log_start_offset = offsets.log_start_offset;
                    }
                    data.records = Some(bytes::Bytes::new());
                }
                (Some(Ok(topic_id)), None) => {
                    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                    match read(
                        cluster,
                        *topic_id,
                        p.partition,
                        p.fetch_offset,
                        limit,
                        total == 0,
                    )
                    .await
                    {
                        Ok(slice) => {
                            // No transactions in cluster mode: everything is stable.
                            data.high_watermark = slice.offsets.high_watermark;
                            data.last_stable_offset = slice.offsets.high_watermark;
                            data.log_start_offset = slice.offsets.log_start_offset;
                            total += slice.records.len();
                            budget = budget.saturating_sub(slice.records.len());
                            data.records = Some(slice.records);
                        }
                        Err(e) => {
                            errors = true;
                            data.error_code = match &e {
                                ReadError::UnknownTopicOrPartition => {
                                    ResponseError::UnknownTopicOrPartition
                                }
                                ReadError::OffsetOutOfRange {
                                    log_start_offset,
                                    high_watermark,
                                    ..
                                } => {
                                    data.high_watermark = *high_watermark;
                                    data.last_stable_offset = *high_watermark;
                                    data.log_start_offset = *log_start_offset;
                                    ResponseError::OffsetOutOfRange
                                }
                                ReadError::Db(_) | ReadError::Objects(_) => {
                                    tracing::warn!(topic = %topic.topic.0, partition = p.partition, "fetch failed: {e}");
                                    ResponseError::KafkaStorageError
                                }
                            }
                            .code();
                        }
                    }
                }
                (Some(Err(code)), _) => {
                    data.error_code = *code;
                    errors = true;
                }
                (None, _) => {
                    data.error_code = ResponseError::UnknownTopicOrPartition.code();
                    errors = true;
                }
            }
            if let Some(out) = topics.get_mut(t) {
                out.partitions.push(data);
            }
        }
    }
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (response, total, errors)
}

/// Counts what a fetch answers (records out per topic, error codes) in the metrics.
fn counted(response: FetchResponse) -> FetchResponse {
    if crate::metrics::enabled() {
        for topic in &response.responses {
            for p in &topic.partitions {
                crate::metrics::request_error(ApiKey::Fetch, p.error_code);
                if let Some(records) = &p.records {
                    crate::metrics::topic_out(topic.topic.0.as_str(), records);
                }
            }
        }
    }
    response
}

/// Resolves when any partition's high watermark moves.
async fn any_changed(watchers: &mut [watch::Receiver<i64>]) {
    let changes = watchers.iter_mut().map(|w| Box::pin(w.changed()));
    // A closed channel (partition deleted) also counts as a change: the next read reports it.
    let _ = futures_util::future::select_all(changes).await;
}

/// One pass over every partition: returns the response, its record bytes and whether any
/// partition carried an error (which is answered at once rather than waited on).
fn read_once(request: &FetchRequest, targets: &[Target]) -> (FetchResponse, usize, bool) {
    let mut budget = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errors = false;
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|t| FetchableTopicResponse::default().with_topic(t.topic.clone()))
        .collect();
    let mut next = targets.iter();
    let committed = request.isolation_level == READ_COMMITTED;
    for (t, topic) in request.topics.iter().enumerate() {
        for p in &topic.partitions {
            let log = match next.next() {
                Some(Ok(log)) => Ok(log),
                Some(Err(code)) => Err(*code),
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            match log {
                Err(code) => {
                    data.error_code = code;
                    errors = true;
                }
                Ok(log) => {
                    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                    // KIP-74: the first partition with data returns at least one whole batch so a
                    // batch larger than the limits can never stall a consumer.
                    match log.read_isolated(p.fetch_offset, limit, total == 0, committed) {
                        Ok(slice) => {
                            data.high_watermark = slice.high_watermark;
                            data.last_stable_offset = slice.last_stable_offset;
                            data.log_start_offset = slice.log_start_offset;
                            if committed {
                                data.aborted_transactions = Some(
                                    slice
                                        .aborted
                                        .iter()
                                        .map(|a| {
                                            AbortedTransaction::default()
                                                .with_producer_id(ProducerId(a.producer_id))
                                                .with_first_offset(a.first_offset)
                                        })
                                        .collect(),
                                );
                            }
                            total += slice.records.len();
                            budget = budget.saturating_sub(slice.records.len());
                            data.records = Some(slice.records);
                        }
                        Err(e) => {
                            data.error_code = log_error_code(&e);
                            data.high_watermark = log.high_watermark();
                            data.last_stable_offset = log.last_stable_offset();
                            data.log_start_offset = log.log_start_offset();
                            errors = true;
                        }
                    }
                }
            }
            if let Some(out) = topics.get_mut(t) {
                out.partitions.push(data);
            }
        }
    }
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (response, total, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker;
    use crate::records::record::{build_batch, decode_records, BatchMeta, NewRecord};
    use crate::records::{BatchHeader, Compression};
    use crate::write::{append_marker, append_produced, Marker};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn transactional(pid: i64, seq: i32, value: &str) -> bytes::Bytes {
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let mut bytes = build_batch(&[record], Compression::None, &meta);
        bytes[22] |= 0x10; // attributes: transactional
        let crc = crate::records::batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes.into()
    }

    fn fetch(isolation_level: i8) -> FetchRequest {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_isolation_level(isolation_level)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])])
    }

    /// What a client keeps of a fetched partition: user records, minus those of the aborted
    /// transactions the response names (librdkafka's and the Java client's rule).
    fn visible(data: &PartitionData) -> Vec<String> {
        let aborted = data.aborted_transactions.clone().unwrap_or_default();
        let mut out = Vec::new();
        let mut rest = &data.records.clone().unwrap_or_default()[..];
        while let Some(header) = BatchHeader::parse(rest) {
            let (_, records) = decode_records(&rest[..header.total_size()], 1 << 20).unwrap();
            rest = &rest[header.total_size()..];
            let dropped = header.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id.0 == header.producer_id && a.first_offset <= header.base_offset
                });
            if header.is_control() || dropped {
                continue;
            }
            out.extend(
                records
                    .into_iter()
                    .map(|r| String::from_utf8(r.value.unwrap()).unwrap()),
            );
        }
        out
    }

    #[tokio::test]
    async fn read_committed_sees_committed_transactions_only() {
        let (_dir, b) = test_broker();
        b.catalog.create_topic("t", 1, 1, &[], false).unwrap();
        let b = Arc::new(b);
        // Producers 1, 2 and 3, each with its transaction open on t-0 at the coordinator.
        let pids: Vec<i64> = (1..=3)
            .map(|n| {
                let id = format!("tx{n}");
                let ready = b
                    .transactions
                    .init_producer_id(&id, 60_000, None, &b.producer_ids, 0)
                    .unwrap();
                let crate::txn::InitOutcome::Ready { producer_id, epoch } = ready else {
                    panic!("{ready:?}");
                };
                b.transactions
                    .add_partitions(&id, producer_id, epoch, &[("t".into(), 0)], 0)
                    .unwrap();
                producer_id
            })
            .collect();
        let pid = |n: usize| pids[n - 1];
        let produce = |n: usize, seq, value: &str| {
            let id = format!("tx{n}");
            append_produced(&b, Some(&id), "t", 0, transactional(pid(n), seq, value), 0).unwrap();
        };
        let end = |n: usize, commit| {
            let marker = Marker {
                producer_id: pid(n),
                producer_epoch: 0,
                commit,
                coordinator_epoch: 0,
            };
            append_marker(&b, "t", 0, &marker, 0).unwrap()
        };
        crate::write::append(&b, "t", 0, transactional_free("plain"), 0).unwrap();
        produce(1, 0, "c1");
        produce(2, 0, "a1");
        produce(1, 1, "c2");
        produce(3, 0, "open");
        produce(2, 1, "a2");
        end(1, true);
        end(2, false);
        assert!(end(2, false).outcome.duplicate);

        let committed = handle(b.clone(), crate::acl::Requester::broker(), 12, fetch(1)).await;
        let data = &committed.responses[0].partitions[0];
        assert_eq!(data.high_watermark, 8);
        assert_eq!(data.last_stable_offset, 4, "producer 3's open transaction");
        assert_eq!(visible(data), vec!["plain", "c1", "c2"]);
        assert_eq!(data.aborted_transactions.as_ref().unwrap().len(), 1);

        let uncommitted = handle(b.clone(), crate::acl::Requester::broker(), 12, fetch(0)).await;
        let data = &uncommitted.responses[0].partitions[0];
        assert_eq!(data.last_stable_offset, 4);
        assert_eq!(visible(data), vec!["plain", "c1", "a1", "c2", "open", "a2"]);

        end(3, false);
        let committed = handle(b.clone(), crate::acl::Requester::broker(), 12, fetch(1)).await;
        let data = &committed.responses[0].partitions[0];
        assert_eq!(data.last_stable_offset, 9);
        assert_eq!(visible(data), vec!["plain", "c1", "c2"]);
        let aborted: Vec<(i64, i64)> = data
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect();
        assert_eq!(aborted, vec![(pid(2), 2), (pid(3), 4)]);
    }

    fn transactional_free(value: &str) -> bytes::Bytes {
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        build_batch(&[record], Compression::None, &BatchMeta::default()).into()
    }
}
