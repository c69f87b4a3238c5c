//! Metadata: the single broker, and the topics asked for (auto-creating them when allowed).
//! In cluster mode ([`handle_cluster`]): the live brokers and topics from the metadata database,
//! each partition's leader chosen by rendezvous hashing over the live brokers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{topic_error_code, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::catalog::Topic;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub(crate) fn handle(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // v0 has no null: an empty list means every topic. From v1 null means all, empty means none.
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(
            list.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 there is no flag and Kafka auto-creates.
    let auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        // Listing every topic shows only those the principal may describe.
        None => broker
            .catalog
            .list()
            .iter()
            .filter(|t| broker.authorize(who, Operation::Describe, Resource::topic(t.name())))
            .map(|t| describe(broker, version, t))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                let refused = |code: ResponseError| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                        .with_error_code(code.code())
                        .with_topic_authorized_operations(OPERATIONS_OMITTED)
                };
                if !broker.authorize(who, Operation::Describe, Resource::topic(name)) {
                    return refused(ResponseError::TopicAuthorizationFailed);
                }
                let may_create = || {
                    broker.authorize(who, Operation::Create, Resource::cluster())
                        || broker.authorize(who, Operation::Create, Resource::topic(name))
                };
                let found = if auto_create {
                    if broker.catalog.get(name).is_none() && !may_create() {
                        return refused(ResponseError::TopicAuthorizationFailed);
                    }
                    broker.catalog.get_or_auto_create(name)
                } else {
                    broker.catalog.get(name).ok_or_else(|| {
                        crate::catalog::TopicError::UnknownTopicOrPartition(name.clone())
                    })
                };
                match found {
                    Ok(topic) => describe(broker, version, &topic),
                    Err(e) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                        .with_error_code(topic_error_code(&e))
                        .with_topic_authorized_operations(OPERATIONS_OMITTED),
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(StrBytes::from_string(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_OMITTED)
}

fn describe(broker: &Broker, version: i16, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id);
    let partitions = (0..topic.partition_count())
        .map(|index| {
            MetadataResponsePartition::default()
                .with_error_code(0)
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name().to_string(),
        ))))
        .with_topic_id(uuid::Uuid::from_bytes(topic.id()))
        .with_is_internal(false)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

/// [`handle`] in cluster mode. Any broker serves any partition, so the leaders shown only
/// spread clients over the brokers; a client with a stale view keeps working.
pub(crate) async fn handle_cluster(
    broker: &Broker,
    cluster: &crate::cluster::node::Cluster,
    who: &Requester,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    use crate::cluster::types::TopicMeta;
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(
            list.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create = (version < 4 || request.allow_auto_topic_creation)
        && cluster.settings.topics.auto_create_topics;
    let me = cluster.node_id();
    let brokers = match cluster.live_brokers().await {
        Ok(brokers) => brokers,
        Err(e) => {
            tracing::warn!("cannot list the live brokers: {e}");
            vec![crate::cluster::types::BrokerInfo {
                node_id: me,
                host: broker.advertised_host.clone(),
                port: broker.advertised_port,
                rack: cluster.settings.rack.clone(),
            }]
        }
    };
    let live: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
    let placed: Vec<crate::cluster::placement::Placed<'_>> = brokers
        .iter()
        .map(|b| (b.node_id, b.rack.as_deref()))
        .collect();
    let named = |name: &str, code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_error_code(code)
            .with_topic_authorized_operations(OPERATIONS_OMITTED)
    };
    let describe = |meta: &TopicMeta| {
        let partitions = (0..meta.partitions)
            .map(|index| {
                // The leader first, then one replica per other rack: a consumer with
                // `client.rack` accepts a preferred read replica only among these (KIP-392).
                let mut replicas: Vec<BrokerId> =
                    crate::cluster::placement::replicas(&meta.name, index, &placed)
                        .into_iter()
                        .map(BrokerId)
                        .collect();
                if replicas.is_empty() {
                    replicas.push(BrokerId(me));
                }
                MetadataResponsePartition::default()
                    .with_error_code(0)
                    .with_partition_index(index)
                    .with_leader_id(replicas[0])
                    .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                    .with_replica_nodes(replicas.clone())
                    .with_isr_nodes(replicas)
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
            .with_topic_id(meta.topic_id)
            .with_is_internal(false)
            .with_partitions(partitions)
            .with_topic_authorized_operations(OPERATIONS_OMITTED)
    };
    let unavailable = |name: &str, e: &crate::cluster::db::DbError| {
        tracing::warn!(topic = name, "cannot look the topic up: {e}");
        named(name, ResponseError::LeaderNotAvailable.code())
    };
    let mut topics = Vec::new();
    match requested {
        None => match cluster.all_topics().await {
            Ok(all) => topics.extend(
                all.iter()
                    .filter(|t| {
                        broker.authorize(who, Operation::Describe, Resource::topic(&t.name))
                    })
                    .map(describe),
            ),
            Err(e) => tracing::warn!("cannot list topics: {e}"),
        },
        Some(names) => {
            for name in &names {
                if !broker.authorize(who, Operation::Describe, Resource::topic(name)) {
                    topics.push(named(name, ResponseError::TopicAuthorizationFailed.code()));
                    continue;
                }
                let found = match cluster.topic(name).await {
                    Ok(found) => found,
                    Err(e) => {
                        topics.push(unavailable(name, &e));
                        continue;
                    }
                };
                let may_create = broker.authorize(who, Operation::Create, Resource::cluster())
                    || broker.authorize(who, Operation::Create, Resource::topic(name));
                topics.push(match found {
                    Some(meta) => describe(&meta),
                    None if !auto_create => {
                        named(name, ResponseError::UnknownTopicOrPartition.code())
                    }
                    None if !may_create => {
                        named(name, ResponseError::TopicAuthorizationFailed.code())
                    }
                    None if crate::catalog::validate_topic_name(name).is_err() => {
                        named(name, ResponseError::InvalidTopicException.code())
                    }
                    None => match cluster.topic_or_create(name).await {
                        Ok(meta) => describe(&meta),
                        Err(e) => unavailable(name, &e),
                    },
                });
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(StrBytes::from_string(b.host.clone()))
                        .with_port(b.port)
                        .with_rack(b.rack.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(live.first().copied().unwrap_or(me)))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_OMITTED)
}
