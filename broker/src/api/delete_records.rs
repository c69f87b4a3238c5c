//! DeleteRecords: raise a partition's log start offset; fetch and ListOffsets honour it at once.
//! In cluster mode ([`handle_cluster`]) the log start moves in the metadata database and every
//! broker is told; the maintenance job later deletes the objects nothing points at any more.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::cluster::db::DbError;

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

/// The Kafka error code for a metadata database error of DeleteRecords.
fn db_error_code(e: &DbError) -> i16 {
    match e {
        DbError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        DbError::UnknownPartition { .. } | DbError::UnknownTopic(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        // Retriable: the client tries again once the database is back.
        _ if e.is_retriable() => ResponseError::RequestTimedOut,
        _ => {
            tracing::error!(error = %e, "DeleteRecords failed");
            ResponseError::UnknownServerError
        }
    }
    .code()
}

/// [`handle`] in cluster mode: the partition's log start moves in the metadata database (never
/// back, never past the high watermark), with the same authorization as on a single node.
pub(crate) async fn handle_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return handle(&broker, &who, version, request);
    };
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str();
        let authorized = broker.authorize(&who, Operation::Delete, Resource::topic(name));
        let found = if authorized {
            cluster.topic(name).await
        } else {
            Ok(None)
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let code = match &found {
                _ if !authorized => ResponseError::TopicAuthorizationFailed.code(),
                Err(e) => db_error_code(e),
                Ok(None) => ResponseError::UnknownTopicOrPartition.code(),
                Ok(Some(meta)) if p.partition_index < 0 || p.partition_index >= meta.partitions => {
                    ResponseError::UnknownTopicOrPartition.code()
                }
                Ok(Some(meta)) => {
                    match cluster
                        .db
                        .delete_records_before(meta.topic_id, p.partition_index, p.offset)
                        .await
                    {
                        Ok(low) => {
                            // This broker's reads honour it at once; the others on the notice.
                            cluster.watermarks.advance_log_start(
                                meta.topic_id,
                                p.partition_index,
                                low,
                            );
                            partitions.push(result.with_low_watermark(low));
                            continue;
                        }
                        Err(e) => db_error_code(&e),
                    }
                }
            };
            partitions.push(result.with_error_code(code));
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
