//! DescribeProducers (KIP-664): each asked partition's active producers as its log's producer
//! state knows them — epoch, last sequence and timestamp, coordinator epoch and the start of the
//! producer's open transaction there.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Broker;
use crate::acl::{Operation, Requester, Resource};

/// Kafka asks for Read on each topic.
pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            // Kafka asks Read on the topic.
            let authorized = broker.authorize(who, Operation::Read, Resource::topic(name));
            let found = authorized.then(|| broker.catalog.get(name)).flatten();
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    match found.as_ref().and_then(|t| t.partition(index)) {
                        None if !authorized => {
                            response.with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        }
                        None => {
                            response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                        Some(log) => response.with_active_producers(
                            log.producers()
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.producer_epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(p.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker;
    use crate::records::record::{build_batch, BatchMeta, NewRecord};
    use crate::records::Compression;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn producers_are_described_from_the_partition_state() {
        let (_dir, b) = test_broker();
        let topic = b.catalog.create_topic("p", 1, 1, &[], false).unwrap();
        let record = NewRecord {
            timestamp: 1234,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: 77,
            producer_epoch: 2,
            base_sequence: 0,
        };
        let batch = build_batch(&[record.clone(), record], Compression::None, &meta);
        crate::write::append(&b, "p", 0, batch.into(), 0).unwrap();
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(TopicName(StrBytes::from_static_str("p")))
                .with_partition_indexes(vec![0, 5])]);
        let response = handle(&b, &crate::acl::Requester::broker(), 0, request);
        let partitions = &response.topics[0].partitions;
        assert_eq!(partitions[0].error_code, 0);
        let p = &partitions[0].active_producers[0];
        assert_eq!(p.producer_id, ProducerId(77));
        assert_eq!((p.producer_epoch, p.last_sequence), (2, 1));
        assert_eq!((p.last_timestamp, p.current_txn_start_offset), (1234, -1));
        assert_eq!(
            partitions[1].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        drop(topic);
    }
}
