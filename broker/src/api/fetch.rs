//! Fetch: whole record batches from each asked partition, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which every client treats as
//! "send full fetch requests"; with one broker and no replicas they would save little.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use tokio::sync::watch;

use super::{log_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::log::PartitionLog;

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
                    match log.read(p.fetch_offset, limit, total == 0) {
                        Ok(slice) => {
                            data.high_watermark = slice.high_watermark;
                            data.last_stable_offset = slice.high_watermark;
                            data.log_start_offset = slice.log_start_offset;
                            total += slice.records.len();
                            budget = budget.saturating_sub(slice.records.len());
                            data.records = Some(slice.records);
                        }
                        Err(e) => {
                            data.error_code = log_error_code(&e);
                            data.high_watermark = log.high_watermark();
                            data.last_stable_offset = data.high_watermark;
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
