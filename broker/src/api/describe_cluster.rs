//! DescribeCluster (KIP-700): the cluster id, the brokers (with their racks) and the
//! controller, what admin clients ask instead of Metadata. In cluster mode ([`handle_cluster`])
//! the live brokers from the metadata database, and the cluster's one id.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::cluster::node::Cluster;
use crate::cluster::types::BrokerInfo;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// `endpoint_type` (v1): the brokers' endpoints, the only ones Sluice has.
const BROKERS_ENDPOINT: i8 = 1;

/// The answer when the request is refused as a whole, or `None` to answer it.
fn refused(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: &DescribeClusterRequest,
) -> Option<DescribeClusterResponse> {
    let (code, message) = if !broker.authorize(who, Operation::Describe, Resource::cluster()) {
        (
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        )
    } else if version >= 1 && req.endpoint_type != BROKERS_ENDPOINT {
        (
            ResponseError::UnsupportedEndpointType,
            "Sluice has no controller endpoints: ask for the brokers (endpoint type 1).",
        )
    } else {
        return None;
    };
    Some(
        DescribeClusterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_static_str(message)))
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(OPERATIONS_OMITTED),
    )
}

fn answer(
    broker: &Broker,
    req: &DescribeClusterRequest,
    brokers: &[BrokerInfo],
    controller: i32,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(StrBytes::from_string(b.host.clone()))
                        .with_port(b.port)
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(OPERATIONS_OMITTED)
}

/// DescribeCluster (v0–1) on a single node: this broker, its own controller.
pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    if let Some(refusal) = refused(broker, who, version, &req) {
        return refusal;
    }
    let me = BrokerInfo {
        node_id: broker.node_id,
        host: broker.advertised_host.clone(),
        port: broker.advertised_port,
        rack: None,
    };
    answer(broker, &req, &[me], broker.node_id)
}

/// DescribeCluster in cluster mode: the live brokers with their racks (the same list Metadata
/// gives); the controller shown is the lowest live node id, as in Metadata.
pub(crate) async fn handle_cluster(
    broker: &Broker,
    cluster: &Cluster,
    who: &Requester,
    version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    if let Some(refusal) = refused(broker, who, version, &req) {
        return refusal;
    }
    match cluster.live_brokers().await {
        Ok(brokers) => {
            let controller = brokers
                .first()
                .map_or_else(|| cluster.node_id(), |b| b.node_id);
            answer(broker, &req, &brokers, controller)
        }
        Err(e) => {
            tracing::warn!("cannot list the live brokers: {e}");
            DescribeClusterResponse::default()
                .with_error_code(ResponseError::RequestTimedOut.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
                .with_endpoint_type(req.endpoint_type)
                .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
                .with_controller_id(BrokerId(-1))
                .with_cluster_authorized_operations(OPERATIONS_OMITTED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn a_single_node_describes_itself_and_refuses_controller_endpoints() {
        let (_dir, b) = crate::broker::test_broker();
        let who = Requester::broker();
        for version in [0, 1] {
            let req = DescribeClusterRequest::default().with_endpoint_type(BROKERS_ENDPOINT);
            let resp = handle(&b, &who, version, req);
            assert_eq!(resp.error_code, 0);
            assert_eq!(resp.cluster_id.as_str(), b.cluster_id);
            assert_eq!(resp.brokers.len(), 1);
            assert_eq!(resp.brokers[0].broker_id, BrokerId(b.node_id));
            assert_eq!(resp.controller_id, BrokerId(b.node_id));
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, version).unwrap();
        }
        let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
        assert_eq!(
            handle(&b, &who, 1, controllers).error_code,
            ResponseError::UnsupportedEndpointType.code()
        );
    }
}
