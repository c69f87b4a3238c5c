//! TEMPORARY until the catalog work merges.
use super::Broker;
use kafka_protocol::messages::*;
pub(crate) fn describe_configs(
    _b: &Broker,
    _v: i16,
    _r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    DescribeConfigsResponse::default()
}
pub(crate) fn alter_configs(_b: &Broker, _v: i16, _r: AlterConfigsRequest) -> AlterConfigsResponse {
    AlterConfigsResponse::default()
}
pub(crate) fn incremental_alter_configs(
    _b: &Broker,
    _v: i16,
    _r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    IncrementalAlterConfigsResponse::default()
}
