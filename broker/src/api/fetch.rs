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
use crate::log::PartitionLog;

/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;

/// The most a fetch long-poll waits, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn handle(
    broker: Arc<Broker>,
    _version: i16,
    request: FetchRequest,
) -> FetchResponse {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = request.min_bytes.max(0) as usize;
    // Resolve the partitions once; the same logs are read on every pass of the long-poll.
    let targets: Vec<(usize, Option<Arc<PartitionLog>>)> = request
        .topics
        .iter()
        .enumerate()
        .flat_map(|(t, topic)| {
            let found = broker.catalog.get(topic.topic.0.as_str());
            topic
                .partitions
                .iter()
                .map(move |p| (t, found.as_ref().and_then(|f| f.partition(p.partition))))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut watchers: Vec<watch::Receiver<i64>> = targets
        .iter()
        .filter_map(|(_, log)| log.as_ref().map(|l| l.subscribe()))
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
fn read_once(
    request: &FetchRequest,
    targets: &[(usize, Option<Arc<PartitionLog>>)],
) -> (FetchResponse, usize, bool) {
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
            let log = next.next().and_then(|(_, log)| log.as_ref());
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            match log {
                None => {
                    data.error_code = ResponseError::UnknownTopicOrPartition.code();
                    errors = true;
                }
                Some(log) => {
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
