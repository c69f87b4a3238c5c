//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first offset at or after a
//! timestamp (via the time index). Under read_committed, latest is the last stable offset and a
//! timestamp's answer at or past it is "not found", as in Kafka: that record may yet be aborted.
//! In cluster mode ([`handle_cluster`]) from the metadata database and the batches' objects.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{log_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::log::PartitionLog;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;

pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let committed = request.isolation_level == READ_COMMITTED;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let authorized = broker.authorize(who, Operation::Describe, Resource::topic(name));
            let found = authorized.then(|| broker.catalog.get(name)).flatten();
            let partitions =
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                        match found.as_ref().and_then(|t| t.partition(p.partition_index)) {
                            None if !authorized => response
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                            None => response
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                            Some(log) => match lookup(&log, p.timestamp, committed) {
                                Ok(Some((offset, timestamp))) => {
                                    response.with_offset(offset).with_timestamp(timestamp)
                                }
                                Ok(None) => response,
                                Err(code) => response.with_error_code(code),
                            },
                        }
                    })
                    .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)` answering `timestamp`, `None` when no record qualifies.
fn lookup(log: &PartitionLog, timestamp: i64, committed: bool) -> Result<Option<(i64, i64)>, i16> {
    match timestamp {
        LATEST if committed => Ok(Some((log.last_stable_offset(), -1))),
        LATEST => Ok(Some((log.high_watermark(), -1))),
        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
        MAX_TIMESTAMP => Ok(log.max_timestamp().map(|(ts, offset)| (offset, ts))),
        ts if ts < 0 => Err(ResponseError::InvalidRequest.code()),
        ts => {
            let found = log
                .offset_for_timestamp(ts)
                .map_err(|e| log_error_code(&e))?;
            let stable = log.last_stable_offset();
            Ok(found.filter(|(offset, _)| !committed || *offset < stable))
        }
    }
}

/// [`handle`] in cluster mode (no transactions there: latest is the high watermark either way).
pub(crate) async fn handle_cluster(
    broker: &Broker,
    cluster: &crate::cluster::node::Cluster,
    who: &Requester,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    use crate::cluster::read;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let authorized = broker.authorize(who, Operation::Describe, Resource::topic(&name));
        let found = if authorized {
            cluster.topic(&name).await
        } else {
            Ok(None)
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let meta = match &found {
                _ if !authorized => {
                    partitions.push(
                        response.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(topic = %name, "cannot look the topic up: {e}");
                    partitions
                        .push(response.with_error_code(ResponseError::KafkaStorageError.code()));
                    continue;
                }
                Ok(Some(meta)) if p.partition_index >= 0 && p.partition_index < meta.partitions => {
                    meta
                }
                Ok(_) => {
                    partitions.push(
                        response.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    );
                    continue;
                }
            };
            let (id, index) = (meta.topic_id, p.partition_index);
            let found: Result<Option<(i64, i64)>, read::ReadError> = match p.timestamp {
                LATEST | EARLIEST => match cluster.refresh_offsets(id, index).await {
                    Ok(Some(o)) if p.timestamp == LATEST => Ok(Some((o.high_watermark, -1))),
                    Ok(Some(o)) => Ok(Some((o.log_start_offset, -1))),
                    Ok(None) => Err(read::ReadError::UnknownTopicOrPartition),
                    Err(e) => Err(e.into()),
                },
                MAX_TIMESTAMP => read::max_timestamp(cluster, id, index).await,
                ts if ts < 0 => {
                    partitions.push(response.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
                ts => read::offset_for_timestamp(cluster, id, index, ts).await,
            };
            partitions.push(match found {
                Ok(Some((offset, timestamp))) => {
                    response.with_offset(offset).with_timestamp(timestamp)
                }
                Ok(None) => response,
                Err(read::ReadError::UnknownTopicOrPartition) => {
                    response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                }
                Err(e) => {
                    tracing::warn!(topic = %name, partition = index, "list offsets failed: {e}");
                    response.with_error_code(ResponseError::KafkaStorageError.code())
                }
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::tests::{config, transactional};

    #[test]
    fn read_committed_answers_nothing_at_or_past_the_last_stable_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        // The test batches carry timestamp 1; the only record is in an open transaction.
        log.append(transactional(8, 0, &["open"]), 0).unwrap(); // 0
        assert_eq!(log.last_stable_offset(), 0);
        assert_eq!(
            lookup(&log, 1, true).unwrap(),
            None,
            "it may yet be aborted"
        );
        assert_eq!(lookup(&log, 1, false).unwrap(), Some((0, 1)));
        assert_eq!(lookup(&log, LATEST, true).unwrap(), Some((0, -1)));
        assert_eq!(lookup(&log, LATEST, false).unwrap(), Some((1, -1)));

        log.append_marker(8, 0, true, 0, 0).unwrap(); // 1
        log.append(transactional(9, 0, &["later"]), 0).unwrap(); // 2, open
        assert_eq!(log.last_stable_offset(), 2);
        assert_eq!(
            lookup(&log, 1, true).unwrap(),
            Some((0, 1)),
            "committed now"
        );
        assert_eq!(lookup(&log, LATEST, true).unwrap(), Some((2, -1)));
        assert_eq!(lookup(&log, LATEST, false).unwrap(), Some((3, -1)));
    }
}
