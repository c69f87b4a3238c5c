//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first offset at or after a
//! timestamp (via the time index). Under read_committed, latest is the last stable offset.

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
        ts => log.offset_for_timestamp(ts).map_err(|e| log_error_code(&e)),
    }
}
