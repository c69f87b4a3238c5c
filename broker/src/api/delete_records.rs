//! DeleteRecords: raise a partition's log start offset; fetch and ListOffsets honour it at once.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_error_code, Broker};

pub(crate) fn handle(
    broker: &Broker,
    _version: i16,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.catalog.get(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    match found.as_ref().and_then(|t| t.partition(p.partition_index)) {
                        None => {
                            result.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
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
