//! DeleteRecords: raise a partition's log start offset; fetch and ListOffsets honour it at once.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};

pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let authorized = broker.authorize(who, Operation::Delete, Resource::topic(name));
            let found = authorized.then(|| broker.catalog.get(name)).flatten();
            let partitions =
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        match found.as_ref().and_then(|t| t.partition(p.partition_index)) {
                            None if !authorized => result
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                            None => result
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                            Some(log) => match log.delete_records_before(p.offset) {
                                Ok(low) => result.with_low_watermark(low),
                                Err(e) => result.with_error_code(log_error_code(&e)),
                            },
                        }
                    })
                    .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
