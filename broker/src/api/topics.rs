//! TEMPORARY until the catalog work merges.
use super::Broker;
use kafka_protocol::messages::*;
pub(crate) fn create_topics(_b: &Broker, _v: i16, _r: CreateTopicsRequest) -> CreateTopicsResponse {
    CreateTopicsResponse::default()
}
pub(crate) fn delete_topics(_b: &Broker, _v: i16, _r: DeleteTopicsRequest) -> DeleteTopicsResponse {
    DeleteTopicsResponse::default()
}
pub(crate) fn create_partitions(
    _b: &Broker,
    _v: i16,
    _r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    CreatePartitionsResponse::default()
}
