//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions; in cluster mode (the
//! `*_in_cluster` handlers) on the metadata database.
//!
//! Each topic in a request is answered on its own; one bad topic never fails the others.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::configs::source_code;
use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::catalog::TopicError;

/// A Kafka error code and the message that goes with it.
pub(crate) type Failure = (i16, String);

/// The Kafka error code and message for a catalog error.
pub(crate) fn failure(e: &TopicError) -> Failure {
    use TopicError as E;
    match e {
        E::TopicAlreadyExists(name) => (
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{name}' already exists."),
        ),
        E::UnknownTopicOrPartition(name) => (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("This server does not host topic '{name}'."),
        ),
        E::InvalidTopic(m) => (ResponseError::InvalidTopicException.code(), m.clone()),
        E::InvalidPartitions(m) => (ResponseError::InvalidPartitions.code(), m.clone()),
        E::InvalidReplicationFactor(m) => {
            (ResponseError::InvalidReplicationFactor.code(), m.clone())
        }
        E::InvalidConfig(m) => (ResponseError::InvalidConfig.code(), m.clone()),
        E::Io(_) | E::Log(_) => {
            tracing::error!(error = %e, "topic administration failed");
            (ResponseError::UnknownServerError.code(), e.to_string())
        }
    }
}

/// TOPIC_AUTHORIZATION_FAILED with Kafka's message.
pub(crate) fn topic_authorization_failed() -> Failure {
    (
        ResponseError::TopicAuthorizationFailed.code(),
        "Topic authorization failed.".into(),
    )
}

pub(crate) fn invalid_request(message: impl Into<String>) -> Failure {
    (ResponseError::InvalidRequest.code(), message.into())
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// How many times each key occurs, so duplicates can be refused as Kafka does (all copies fail).
pub(crate) fn occurrences<K: std::hash::Hash + Eq>(
    keys: impl Iterator<Item = K>,
) -> HashMap<K, usize> {
    let mut counts = HashMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

/// Manual assignments are accepted only when they describe what a single node does anyway.
fn check_create_assignments(broker: &Broker, t: &CreatableTopic) -> Result<i32, Failure> {
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err(invalid_request(
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
        ));
    }
    let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
    indexes.sort_unstable();
    let consecutive = indexes.iter().zip(0..).all(|(i, want)| *i == want);
    let bad = (
        ResponseError::InvalidReplicaAssignment.code(),
        String::new(),
    );
    if !consecutive {
        return Err((
            bad.0,
            "Partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    if let Some(a) = t
        .assignments
        .iter()
        .find(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>() != [broker.node_id])
    {
        return Err((
            bad.0,
            format!(
                "Partition {} is assigned to brokers {:?}; this cluster has 1 broker, node {}, so every partition must be assigned to exactly it",
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
                broker.node_id
            ),
        ));
    }
    i32::try_from(t.assignments.len())
        .map_err(|_| invalid_request("too many partition assignments"))
}

/// CreateTopics (v2–7 as decoded by kafka-protocol).
pub(crate) fn create_topics(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let on_cluster = broker.authorize(who, Operation::Create, Resource::cluster());
    let counts = occurrences(req.topics.iter().map(|t| t.name.as_str()));
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let mut result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_message(None)
                .with_configs(None);
            if counts.get(t.name.as_str()).copied().unwrap_or(0) > 1 {
                let (code, msg) = invalid_request("Found multiple entries for this topic.");
                return result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(msg)));
            }
            if !on_cluster && !broker.authorize(who, Operation::Create, Resource::topic(&t.name)) {
                let (code, msg) = topic_authorization_failed();
                return result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(msg)));
            }
            match create_one(broker, t, req.validate_only) {
                Ok(r) => {
                    result.topic_id = r.0;
                    result.num_partitions = r.1;
                    result.replication_factor = 1;
                    if version >= 5 {
                        result.configs = Some(r.2);
                    }
                    result
                }
                Err((code, msg)) => result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(msg))),
            }
        })
        .collect();
    CreateTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
}

fn create_one(
    broker: &Broker,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<(Uuid, i32, Vec<CreatableTopicConfigs>), Failure> {
    let (partitions, replication) = if t.assignments.is_empty() {
        (t.num_partitions, t.replication_factor)
    } else {
        (check_create_assignments(broker, t)?, 1)
    };
    let configs: Vec<(String, Option<String>)> = t
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
        .collect();
    let topic = broker
        .catalog
        .create_topic(
            t.name.as_str(),
            partitions,
            replication,
            &configs,
            validate_only,
        )
        .map_err(|e| failure(&e))?;
    let configs = broker
        .catalog
        .describe_topic(&topic, None)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(e.name))
                .with_value(e.value.map(str_bytes))
                .with_read_only(e.read_only)
                .with_config_source(source_code(e.source))
                .with_is_sensitive(e.sensitive)
        })
        .collect();
    // A validate_only preview's id names nothing that exists, so it is not handed out.
    let id = if validate_only {
        Uuid::nil()
    } else {
        Uuid::from_bytes(topic.id())
    };
    Ok((id, topic.partition_count(), configs))
}

/// DeleteTopics (v1–6). v6 may name a topic by id instead of by name.
/// Drops every group's committed offsets of a deleted topic, so a topic created again under the
/// name starts without stale positions (as Kafka does). Runs in the background: the deletion
/// itself is already durable.
fn forget_offsets(broker: &Broker, topic: &str) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let groups = broker.groups.clone();
    let topic = topic.to_string();
    runtime.spawn(async move {
        let outcome = match groups.remote() {
            Some(remote) => remote.delete_topic(&topic).await.map_err(|e| e.to_string()),
            None => groups
                .offsets
                .delete_topic(&topic)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = outcome {
            tracing::warn!(%topic, "cannot forget committed offsets of a deleted topic: {e}");
        }
    });
}

pub(crate) fn delete_topics(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let _ = version;
    let targets: Vec<(Option<TopicName>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.clone()), Uuid::nil()))
        .chain(req.topics.iter().map(|t| (t.name.clone(), t.topic_id)))
        .collect();
    let names = occurrences(
        targets
            .iter()
            .filter_map(|(n, _)| n.as_ref().map(|n| n.as_str())),
    );
    let ids = occurrences(targets.iter().map(|(_, id)| *id).filter(|id| !id.is_nil()));
    let responses = targets
        .iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(*id)
                .with_error_message(None);
            let outcome = match (name, id.is_nil()) {
                (Some(_), false) => Err(invalid_request(
                    "You may not specify both topic name and topic id.",
                )),
                (None, true) => Err(invalid_request("Neither topic name nor id were specified.")),
                (Some(n), true) if names.get(n.as_str()).copied().unwrap_or(0) > 1 => {
                    Err(invalid_request("Duplicate topic name."))
                }
                (None, false) if ids.get(id).copied().unwrap_or(0) > 1 => {
                    Err(invalid_request("Duplicate topic id."))
                }
                (Some(n), true)
                    if !broker.authorize(who, Operation::Delete, Resource::topic(n)) =>
                {
                    Err(topic_authorization_failed())
                }
                (Some(n), true) => match broker.catalog.get(n.as_str()) {
                    Some(t) => {
                        result.topic_id = Uuid::from_bytes(t.id());
                        broker
                            .catalog
                            .delete_topic(n.as_str())
                            .map(|()| forget_offsets(broker, n.as_str()))
                            .map_err(|e| failure(&e))
                    }
                    None => Err(failure(&TopicError::UnknownTopicOrPartition(n.to_string()))),
                },
                (None, false) => match broker.catalog.get_by_id(id.as_bytes()) {
                    Some(t)
                        if !broker.authorize(who, Operation::Delete, Resource::topic(t.name())) =>
                    {
                        Err(topic_authorization_failed())
                    }
                    Some(t) => {
                        result.name = Some(TopicName(str_bytes(t.name())));
                        broker
                            .catalog
                            .delete_topic(t.name())
                            .map(|()| forget_offsets(broker, t.name()))
                            .map_err(|e| failure(&e))
                    }
                    None => Err((
                        ResponseError::UnknownTopicId.code(),
                        "This server does not host this topic ID.".into(),
                    )),
                },
            };
            if let Err((code, msg)) = outcome {
                result.error_code = code;
                result.error_message = Some(str_bytes(msg));
            }
            result
        })
        .collect();
    DeleteTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

/// CreatePartitions (v0–3): partitions can only be added.
pub(crate) fn create_partitions(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let _ = version;
    let counts = occurrences(req.topics.iter().map(|t| t.name.as_str()));
    let results = req
        .topics
        .iter()
        .map(|t| {
            let outcome = if counts.get(t.name.as_str()).copied().unwrap_or(0) > 1 {
                Err(invalid_request("Duplicate topic in request."))
            } else if !broker.authorize(who, Operation::Alter, Resource::topic(&t.name)) {
                Err(topic_authorization_failed())
            } else {
                check_partition_assignments(
                    broker,
                    t.name.as_str(),
                    t.count,
                    t.assignments.as_deref(),
                )
                .and_then(|()| {
                    broker
                        .catalog
                        .create_partitions(t.name.as_str(), t.count, req.validate_only)
                        .map_err(|e| failure(&e))
                })
            };
            partitions_result(t.name.as_str(), outcome)
        })
        .collect();
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

fn partitions_result(name: &str, outcome: Result<(), Failure>) -> CreatePartitionsTopicResult {
    let (code, msg) = match outcome {
        Ok(()) => (0, None),
        Err((code, msg)) => (code, Some(str_bytes(msg))),
    };
    CreatePartitionsTopicResult::default()
        .with_name(TopicName(str_bytes(name)))
        .with_error_code(code)
        .with_error_message(msg)
}

/// CreatePartitions in cluster mode: the topic grows in the metadata database (validated as on
/// a single node), and every broker is told; the new partitions are served at once everywhere.
pub(crate) async fn create_partitions_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return create_partitions(&broker, &who, version, req);
    };
    let counts = occurrences(req.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.as_str();
        let outcome: Result<(), Failure> = async {
            if counts.get(name).copied().unwrap_or(0) > 1 {
                return Err(invalid_request("Duplicate topic in request."));
            }
            if !broker.authorize(&who, Operation::Alter, Resource::topic(name)) {
                return Err(topic_authorization_failed());
            }
            if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "manual replica assignments are not supported in cluster mode: every broker \
                     serves every partition"
                        .into(),
                ));
            }
            let meta = cluster
                .db
                .topic(name)
                .await
                .map_err(|e| db_failure(&e))?
                .ok_or_else(|| failure(&TopicError::UnknownTopicOrPartition(name.to_owned())))?;
            crate::catalog::check_partition_growth(meta.partitions, t.count)
                .map_err(|e| failure(&e))?;
            if req.validate_only {
                return Ok(());
            }
            cluster
                .db
                .create_partitions(name, t.count)
                .await
                .map_err(|e| db_failure(&e))?;
            cluster.forget_topic(name);
            Ok(())
        }
        .await;
        results.push(partitions_result(name, outcome));
    }
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

fn check_partition_assignments(
    broker: &Broker,
    name: &str,
    total: i32,
    assignments: Option<
        &[kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment],
    >,
) -> Result<(), Failure> {
    // An empty list is what a client sends when it leaves placement to the broker, like null.
    let Some(assignments) = assignments.filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let Some(topic) = broker.catalog.get(name) else {
        return Err(failure(&TopicError::UnknownTopicOrPartition(
            name.to_owned(),
        )));
    };
    let added = i64::from(total) - i64::from(topic.partition_count());
    let code = ResponseError::InvalidReplicaAssignment.code();
    if added > 0 && i64::try_from(assignments.len()).ok() != Some(added) {
        return Err((
            code,
            format!(
                "Increasing the number of partitions by {added} but {} assignments provided.",
                assignments.len()
            ),
        ));
    }
    if assignments
        .iter()
        .any(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>() != [broker.node_id])
    {
        return Err((
            code,
            format!("This cluster has 1 broker, node {}; every new partition must be assigned to exactly it.", broker.node_id),
        ));
    }
    Ok(())
}

/// The Kafka error code and message for a metadata database error of topic administration.
pub(crate) fn db_failure(e: &crate::cluster::db::DbError) -> Failure {
    use crate::cluster::db::DbError as E;
    let code = match e {
        E::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        E::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        E::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        // Retriable: the client tries again once the database is back.
        _ if e.is_retriable() => ResponseError::RequestTimedOut,
        _ => {
            tracing::error!(error = %e, "topic administration failed");
            ResponseError::UnknownServerError
        }
    };
    (code.code(), e.to_string())
}

/// A topic created in the cluster: its id, partition count and configs as set.
type Created = (Uuid, i32, Vec<(String, String)>);

/// CreateTopics in cluster mode: the topic is created in the cluster's database, so every
/// broker serves it. Names and configs are checked exactly as on a single node (the catalog's
/// rules), and `cleanup.policy=compact` is refused by name (see [`crate::cluster::topic_rules`]).
pub(crate) async fn create_topics_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return create_topics(&broker, &who, version, req);
    };
    let on_cluster = broker.authorize(&who, Operation::Create, Resource::cluster());
    let counts = occurrences(req.topics.iter().map(|t| t.name.as_str()));
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_message(None)
            .with_configs(None);
        let outcome: Result<Created, Failure> = async {
            if counts.get(t.name.as_str()).copied().unwrap_or(0) > 1 {
                return Err(invalid_request("Found multiple entries for this topic."));
            }
            if !on_cluster && !broker.authorize(&who, Operation::Create, Resource::topic(&t.name)) {
                return Err(topic_authorization_failed());
            }
            crate::catalog::validate_topic_name(&t.name).map_err(|e| failure(&e))?;
            if !t.assignments.is_empty() {
                return Err(invalid_request(
                    "manual replica assignments are not supported in cluster mode: every broker \
                     serves every partition",
                ));
            }
            let partitions = match t.num_partitions {
                -1 => cluster.settings.topics.num_partitions.max(1),
                n if n < 1 => {
                    return Err(failure(&TopicError::InvalidPartitions(
                        "Number of partitions must be larger than 0.".into(),
                    )))
                }
                n => n,
            };
            if t.replication_factor == 0 || t.replication_factor < -1 {
                return Err(failure(&TopicError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0, or -1 to use the default.".into(),
                )));
            }
            let configs: Vec<(String, Option<String>)> = t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            let configs: Vec<(String, String)> =
                crate::cluster::topic_rules::validate_topic_configs(&configs)
                    .map_err(|e| failure(&e))?
                    .into_iter()
                    .collect();
            if req.validate_only {
                return Ok((Uuid::nil(), partitions, configs));
            }
            let created = cluster
                .db
                .create_topic(t.name.as_str(), partitions, &configs)
                .await
                .map_err(|e| db_failure(&e))?;
            cluster.forget_topic(&created.name);
            Ok((created.topic_id, created.partitions, created.configs))
        }
        .await;
        topics.push(match outcome {
            Ok((id, partitions, configs)) => {
                let mut result = result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
                if version >= 5 {
                    result.configs = Some(
                        configs
                            .into_iter()
                            .map(|(name, value)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(name))
                                    .with_value(Some(str_bytes(value)))
                                    .with_config_source(1)
                            })
                            .collect(),
                    );
                }
                result
            }
            Err((code, msg)) => result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg))),
        });
    }
    CreateTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics)
}

/// DeleteTopics in cluster mode: the topic leaves the cluster's database (its partitions and
/// batch coordinates with it), and every group's committed offsets of it are forgotten.
pub(crate) async fn delete_topics_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return delete_topics(&broker, &who, version, req);
    };
    let targets: Vec<(Option<TopicName>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.clone()), Uuid::nil()))
        .chain(req.topics.iter().map(|t| (t.name.clone(), t.topic_id)))
        .collect();
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let outcome: Result<(String, Uuid), Failure> = async {
            let name = match &name {
                Some(n) => n.to_string(),
                None => cluster
                    .db
                    .topic_by_id(id)
                    .await
                    .map_err(|e| db_failure(&e))?
                    .map(|t| t.name)
                    .ok_or_else(|| {
                        (
                            ResponseError::UnknownTopicId.code(),
                            format!("no topic with id {id}"),
                        )
                    })?,
            };
            if !broker.authorize(&who, Operation::Delete, Resource::topic(&name)) {
                return Err(topic_authorization_failed());
            }
            let id = cluster
                .db
                .delete_topic(&name)
                .await
                .map_err(|e| db_failure(&e))?;
            cluster.forget_topic(&name);
            forget_offsets(&broker, &name);
            Ok((name, id))
        }
        .await;
        responses.push(match outcome {
            Ok((name, id)) => result
                .with_name(Some(TopicName(str_bytes(name))))
                .with_topic_id(id),
            Err((code, msg)) => result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker as broker;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::Encodable;
    use std::time::Duration;

    fn topic(name: &str, partitions: i32, replication: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
    }

    fn codes(resp: &CreateTopicsResponse) -> Vec<(String, i16)> {
        resp.topics
            .iter()
            .map(|t| (t.name.to_string(), t.error_code))
            .collect()
    }

    fn encodes_at(msg: &impl Encodable, versions: std::ops::RangeInclusive<i16>) {
        for v in versions {
            let mut buf = bytes::BytesMut::new();
            msg.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }

    #[test]
    fn create_topics_reports_errors_per_topic() {
        let (_dir, b) = broker();
        let req = CreateTopicsRequest::default()
            .with_validate_only(true)
            .with_topics(vec![
                topic("dup", 1, 1),
                topic("dup", 2, 1),
                topic("bad name", 1, 1),
                topic("rf3", 1, 3),
                topic("p0", 0, 1),
                topic("cfg", 1, 1).with_configs(vec![CreatableTopicConfig::default()
                    .with_name("cleanup.policy".into())
                    .with_value(Some("compact,bogus".into()))]),
                topic("unknown-cfg", 1, 1).with_configs(vec![CreatableTopicConfig::default()
                    .with_name("no.such".into())
                    .with_value(Some("1".into()))]),
                topic("assigned-elsewhere", -1, -1).with_assignments(vec![
                    CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(2)]),
                ]),
                topic("both", 3, -1).with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(1)])]),
                topic("ok", -1, -1),
            ]);
        let resp = create_topics(&b, &crate::acl::Requester::broker(), 7, req);
        let want = [
            ("dup", ResponseError::InvalidRequest.code()),
            ("dup", ResponseError::InvalidRequest.code()),
            ("bad name", ResponseError::InvalidTopicException.code()),
            ("rf3", ResponseError::InvalidReplicationFactor.code()),
            ("p0", ResponseError::InvalidPartitions.code()),
            ("cfg", ResponseError::InvalidConfig.code()),
            ("unknown-cfg", ResponseError::InvalidConfig.code()),
            (
                "assigned-elsewhere",
                ResponseError::InvalidReplicaAssignment.code(),
            ),
            ("both", ResponseError::InvalidRequest.code()),
            ("ok", 0),
        ];
        assert_eq!(
            codes(&resp),
            want.iter()
                .map(|(n, c)| (n.to_string(), *c))
                .collect::<Vec<_>>()
        );
        let rf = &resp.topics[3];
        assert!(rf.error_message.as_ref().unwrap().contains("1 broker"));
        let unknown = &resp.topics[6];
        assert_eq!(
            unknown.error_message.as_deref(),
            Some("Unknown topic config name: no.such")
        );
        let ok = &resp.topics[9];
        assert_eq!((ok.num_partitions, ok.replication_factor), (1, 1));
        assert!(ok.error_message.is_none());
        assert!(ok
            .configs
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.name.as_str() == "retention.ms" && c.config_source == 5));
        assert!(
            b.catalog.get("ok").is_none(),
            "validate_only must not create"
        );
        encodes_at(&resp, 2..=7);
    }

    #[test]
    fn create_topics_below_v5_leaves_out_configs() {
        let (_dir, b) = broker();
        let req = CreateTopicsRequest::default()
            .with_validate_only(true)
            .with_topics(vec![topic("t", 2, 1)]);
        let resp = create_topics(&b, &crate::acl::Requester::broker(), 4, req);
        assert_eq!(resp.topics[0].error_code, 0);
        assert!(resp.topics[0].configs.is_none());
    }

    #[test]
    fn create_then_create_again_is_already_exists() {
        let (_dir, b) = broker();
        let req = CreateTopicsRequest::default().with_topics(vec![topic("t", 2, 1)]);
        let first = create_topics(&b, &crate::acl::Requester::broker(), 7, req.clone());
        assert_eq!(first.topics[0].error_code, 0);
        assert_eq!(
            first.topics[0].topic_id,
            Uuid::from_bytes(b.catalog.get("t").unwrap().id())
        );
        let second = create_topics(&b, &crate::acl::Requester::broker(), 7, req);
        assert_eq!(
            second.topics[0].error_code,
            ResponseError::TopicAlreadyExists.code()
        );
    }

    #[test]
    fn delete_topics_reports_unknown_duplicate_and_ambiguous_entries() {
        let (_dir, b) = broker();
        let req = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName("nope".into()))),
            DeleteTopicState::default().with_name(Some(TopicName("twice".into()))),
            DeleteTopicState::default().with_name(Some(TopicName("twice".into()))),
            DeleteTopicState::default().with_topic_id(Uuid::new_v4()),
            DeleteTopicState::default()
                .with_name(Some(TopicName("both".into())))
                .with_topic_id(Uuid::new_v4()),
            DeleteTopicState::default(),
        ]);
        let resp = delete_topics(&b, &crate::acl::Requester::broker(), 6, req);
        let got: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            got,
            [
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::UnknownTopicId.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
            ]
        );
        encodes_at(&resp, 6..=6);
        let old = delete_topics(
            &b,
            &crate::acl::Requester::broker(),
            1,
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName("nope".into())]),
        );
        assert_eq!(
            old.responses[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        encodes_at(&old, 1..=6);
    }

    #[test]
    fn delete_by_id_removes_the_topic_and_names_it() {
        let (_dir, b) = broker();
        let t = b.catalog.create_topic("t", 1, 1, &[], false).unwrap();
        let req = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_topic_id(Uuid::from_bytes(t.id()))
        ]);
        let resp = delete_topics(&b, &crate::acl::Requester::broker(), 6, req);
        assert_eq!(resp.responses[0].error_code, 0);
        assert_eq!(
            resp.responses[0]
                .name
                .as_ref()
                .map(|n| n.to_string())
                .as_deref(),
            Some("t")
        );
        assert!(b.catalog.get("t").is_none());
    }

    #[test]
    fn create_partitions_refuses_unknown_and_duplicate_topics() {
        let (_dir, b) = broker();
        let t = |n: &str| {
            CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(n.into())))
                .with_count(2)
        };
        let req =
            CreatePartitionsRequest::default().with_topics(vec![t("nope"), t("dup"), t("dup")]);
        let resp = create_partitions(&b, &crate::acl::Requester::broker(), 3, req);
        let got: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            got,
            [
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code()
            ]
        );
        encodes_at(&resp, 0..=3);
    }

    #[test]
    fn create_partitions_only_grows_and_checks_assignments() {
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
        let (_dir, b) = broker();
        b.catalog.create_topic("t", 2, 1, &[], false).unwrap();
        let t = |count: i32| {
            CreatePartitionsTopic::default()
                .with_name(TopicName("t".into()))
                .with_count(count)
        };
        let shrink = create_partitions(
            &b,
            &crate::acl::Requester::broker(),
            3,
            CreatePartitionsRequest::default().with_topics(vec![t(1)]),
        );
        assert_eq!(
            shrink.results[0].error_code,
            ResponseError::InvalidPartitions.code()
        );
        let elsewhere = t(3).with_assignments(Some(vec![
            CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(7)])
        ]));
        let resp = create_partitions(
            &b,
            &crate::acl::Requester::broker(),
            3,
            CreatePartitionsRequest::default().with_topics(vec![elsewhere]),
        );
        assert_eq!(
            resp.results[0].error_code,
            ResponseError::InvalidReplicaAssignment.code()
        );
        let grow = create_partitions(
            &b,
            &crate::acl::Requester::broker(),
            3,
            CreatePartitionsRequest::default().with_topics(vec![t(4)]),
        );
        assert_eq!(grow.results[0].error_code, 0);
        assert_eq!(b.catalog.get("t").unwrap().partition_count(), 4);
    }

    /// A broker in cluster mode on a database of its own (objects in memory).
    async fn cluster_broker() -> (
        crate::cluster::db::testing::TestDb,
        tempfile::TempDir,
        Arc<Broker>,
    ) {
        let t = crate::cluster::db::testing::TestDb::new().await;
        let db = t.connect().await;
        let lease = db
            .register("127.0.0.1", 9092, None, Duration::from_secs(60))
            .await
            .unwrap();
        let settings = crate::cluster::node::Settings {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            rack: None,
            lease: Duration::from_secs(60),
            upload: crate::cluster::upload::Settings::new(Duration::from_millis(5), 1 << 20),
            topics: crate::catalog::TopicDefaults::default(),
        };
        let cluster = crate::cluster::node::Cluster::with(
            db,
            crate::cluster::objects::Objects::in_memory(1 << 20),
            lease,
            settings,
        );
        let (dir, mut broker) = crate::broker::test_broker();
        broker.cluster = Some(cluster);
        (t, dir, Arc::new(broker))
    }

    #[tokio::test]
    async fn in_cluster_mode_partitions_grow_in_the_database_and_configs_change_there() {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use kafka_protocol::messages::IncrementalAlterConfigsRequest;
        let (_t, _dir, b) = cluster_broker().await;
        let who = crate::acl::Requester::broker();
        let cluster = b.cluster.clone().unwrap();
        cluster.db.create_topic("t", 1, &[]).await.unwrap();
        let grow = |count: i32, validate_only: bool| {
            CreatePartitionsRequest::default()
                .with_validate_only(validate_only)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(TopicName(str_bytes("t")))
                    .with_count(count)])
        };
        let code = |r: &CreatePartitionsResponse| r.results[0].error_code;
        let preview = create_partitions_in_cluster(b.clone(), who.clone(), 3, grow(4, true)).await;
        assert_eq!(code(&preview), 0);
        assert_eq!(cluster.db.topic("t").await.unwrap().unwrap().partitions, 1);
        let grown = create_partitions_in_cluster(b.clone(), who.clone(), 3, grow(4, false)).await;
        assert_eq!(code(&grown), 0);
        assert_eq!(cluster.topic("t").await.unwrap().unwrap().partitions, 4);
        let same = create_partitions_in_cluster(b.clone(), who.clone(), 3, grow(4, false)).await;
        assert_eq!(code(&same), ResponseError::InvalidPartitions.code());
        let fewer = create_partitions_in_cluster(b.clone(), who.clone(), 3, grow(2, false)).await;
        assert_eq!(code(&fewer), ResponseError::InvalidPartitions.code());

        let set = |name: &str, value: &str| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes("t"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(str_bytes(name))
                        .with_config_operation(0)
                        .with_value(Some(str_bytes(value)))]),
            ])
        };
        let alter = |req| {
            crate::api::configs::incremental_alter_configs_in_cluster(
                b.clone(),
                who.clone(),
                1,
                req,
            )
        };
        assert_eq!(
            alter(set("retention.ms", "1000")).await.responses[0].error_code,
            0
        );
        // The cache was dropped: the next produce sees the new configs.
        assert_eq!(
            cluster.topic("t").await.unwrap().unwrap().configs,
            vec![("retention.ms".into(), "1000".into())]
        );
        for (name, value) in [
            ("retention.ms", "soon"),
            ("cleanup.policy", "compact"),
            ("message.timestamp.type", "LogAppendTime"),
        ] {
            let refused = alter(set(name, value)).await;
            assert_eq!(
                refused.responses[0].error_code,
                ResponseError::InvalidConfig.code(),
                "{name}={value}"
            );
        }
        assert_eq!(
            cluster.db.topic("t").await.unwrap().unwrap().configs,
            vec![("retention.ms".into(), "1000".into())]
        );
    }

    #[tokio::test]
    async fn in_cluster_mode_topics_are_created_in_the_database_and_compaction_is_refused() {
        let (_t, _dir, b) = cluster_broker().await;
        let who = crate::acl::Requester::broker();
        let create = |name: &str, configs: Vec<CreatableTopicConfig>| {
            CreateTopicsRequest::default()
                .with_topics(vec![topic(name, 3, 1).with_configs(configs)])
        };
        let cfg = |k: &str, v: &str| {
            CreatableTopicConfig::default()
                .with_name(str_bytes(k))
                .with_value(Some(str_bytes(v)))
        };
        let r = create_topics_in_cluster(
            b.clone(),
            who.clone(),
            7,
            create("orders", vec![cfg("retention.ms", "60000")]),
        )
        .await;
        assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
        let cluster = b.cluster.clone().unwrap();
        let stored = cluster.db.topic("orders").await.unwrap().unwrap();
        assert_eq!(stored.partitions, 3);
        assert_eq!(
            stored.configs,
            vec![("retention.ms".into(), "60000".into())]
        );
        assert_eq!(stored.topic_id, r.topics[0].topic_id);

        let again =
            create_topics_in_cluster(b.clone(), who.clone(), 7, create("orders", vec![])).await;
        assert_eq!(
            again.topics[0].error_code,
            ResponseError::TopicAlreadyExists.code()
        );
        let compact = create_topics_in_cluster(
            b.clone(),
            who.clone(),
            7,
            create("compacted", vec![cfg("cleanup.policy", "compact")]),
        )
        .await;
        assert_eq!(
            compact.topics[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        let message = compact.topics[0]
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("cluster mode"), "{message}");
        let invalid = create_topics_in_cluster(
            b.clone(),
            who.clone(),
            7,
            create("bad", vec![cfg("retention.ms", "soon")]),
        )
        .await;
        assert_eq!(
            invalid.topics[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        assert!(cluster.db.topic("compacted").await.unwrap().is_none());
        assert!(cluster.db.topic("bad").await.unwrap().is_none());

        let deleted = delete_topics_in_cluster(
            b.clone(),
            who.clone(),
            6,
            DeleteTopicsRequest::default().with_topic_names(vec![
                TopicName(str_bytes("orders")),
                TopicName(str_bytes("nope")),
            ]),
        )
        .await;
        assert_eq!(deleted.responses[0].error_code, 0);
        assert_eq!(
            deleted.responses[1].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(cluster.db.topic("orders").await.unwrap().is_none());
    }
}
