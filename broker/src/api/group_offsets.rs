//! Committed offsets: OffsetCommit (answered once durable), OffsetFetch (single group, and the
//! multi-group form of v8+), OffsetDelete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{now_ms, Broker};
use crate::acl::{Operation, Requester, Resource};
use crate::group::{code, Committed, GroupOffsets, State};

/// A topic, the error code answered for each of its partitions (0, or
/// TOPIC_AUTHORIZATION_FAILED), and its partitions with their committed offset, if any.
type TopicOffsets = (String, i16, Vec<(i32, Option<Committed>)>);

/// `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

pub(crate) async fn offset_commit(
    broker: Arc<Broker>,
    who: Requester,
    _version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let generation = request.generation_id_or_member_epoch;
    // Who may commit: members of the current generation, or anyone ("simple" / admin commits,
    // generation -1 and no member id) while the group has no members, as Kafka allows.
    let group_error = if !broker.authorize(&who, Operation::Read, Resource::group(&group_id)) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if let Err(e) = broker.groups.claim(&group_id).await {
        Some(e)
    } else if generation >= 0 && broker.groups.existing(&group_id).is_none() {
        // A generation of a group we do not know is from before it was deleted: as Kafka.
        Some(ResponseError::IllegalGeneration)
    } else {
        let group = broker.groups.group(&group_id);
        let g = group.lock();
        let instance = request.group_instance_id.as_deref();
        if g.state == State::Dead {
            // Deleted while we looked it up; the client finds the coordinator again and retries.
            Some(ResponseError::CoordinatorNotAvailable)
        } else if g.members.is_empty() {
            // A commit naming a member or generation must come from a current member, and an
            // empty group has none (Kafka: UNKNOWN_MEMBER_ID, or FENCED_INSTANCE_ID).
            (generation >= 0 || !member.is_empty() || instance.is_some()).then(|| {
                g.fenced(&member, instance)
                    .unwrap_or(ResponseError::UnknownMemberId)
            })
        } else {
            match g.check_member(&member, instance, generation) {
                Err(code) => Some(code),
                Ok(()) if g.state == State::CompletingRebalance => {
                    Some(ResponseError::RebalanceInProgress)
                }
                Ok(()) => None,
            }
        }
    };
    let now = now_ms();
    // In cluster mode the cluster's store checks the partition, in the commit's transaction.
    let in_cluster = broker.groups.remote().is_some();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut accepted = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.as_str();
        let authorized = broker.authorize(&who, Operation::Read, Resource::topic(name));
        let found = broker.catalog.get(name);
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let outcome = if let Some(code) = group_error {
                    Err(code)
                } else if !authorized {
                    Err(ResponseError::TopicAuthorizationFailed)
                } else if !in_cluster
                    && !found.as_ref().is_some_and(|t| {
                        p.partition_index >= 0 && p.partition_index < t.partition_count()
                    })
                {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > MAX_METADATA)
                {
                    Err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    accepted.push((
                        topic.name.0.to_string(),
                        p.partition_index,
                        Committed {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_timestamp: now,
                        },
                    ));
                    Ok(())
                };
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code(outcome))
            })
            .collect();
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    if !accepted.is_empty() {
        // The accepted entries are, in order, the partitions answered 0 so far.
        let outcome = broker.groups.commit_offsets(&group_id, accepted).await;
        let mut stored = outcome.as_ref().ok().map(|s| s.iter());
        for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if p.error_code != 0 {
                continue;
            }
            p.error_code = match (&outcome, stored.as_mut().and_then(|s| s.next())) {
                (Err(e), _) => e.code(),
                (Ok(_), Some(true)) => 0,
                (Ok(_), _) => ResponseError::UnknownTopicOrPartition.code(),
            };
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's answer: `(topic, [(partition, committed)])`, all the group's offsets when
/// `topics` is `None`.
/// Topics the principal may not describe are answered TOPIC_AUTHORIZATION_FAILED when named and
/// left out when all are asked for, as Kafka does.
fn fetch_group(
    broker: &Broker,
    who: &Requester,
    stored: GroupOffsets,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<TopicOffsets> {
    let may_describe = |t: &str| broker.authorize(who, Operation::Describe, Resource::topic(t));
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                if !may_describe(&t) {
                    let parts = parts.into_iter().map(|p| (p, None)).collect();
                    return (t, ResponseError::TopicAuthorizationFailed.code(), parts);
                }
                let parts = parts
                    .into_iter()
                    .map(|p| (p, stored.get(&(t.clone(), p)).cloned()))
                    .collect();
                (t, 0, parts)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
            for ((t, p), c) in stored {
                by_topic.entry(t).or_default().push((p, Some(c)));
            }
            by_topic
                .into_iter()
                .filter(|(t, _)| may_describe(t))
                .map(|(t, parts)| (t, 0, parts))
                .collect()
        }
    }
}

pub(crate) fn offset_fetch(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    offset_fetch_from(broker, who, version, request, &|group| {
        Ok(broker.groups.offsets.group(group))
    })
}

/// OffsetFetch in cluster mode: each group claimed, then its offsets read from the cluster.
pub(crate) async fn offset_fetch_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let ids: Vec<String> = if version >= 8 {
        request
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect()
    } else {
        vec![request.group_id.0.to_string()]
    };
    let mut found: HashMap<String, Result<GroupOffsets, ResponseError>> = HashMap::new();
    for id in ids {
        if !broker.authorize(&who, Operation::Describe, Resource::group(&id)) {
            continue;
        }
        let offsets = match broker.groups.claim(&id).await {
            Ok(()) => broker.groups.fetch_offsets(&id).await,
            Err(e) => Err(e),
        };
        found.insert(id, offsets);
    }
    offset_fetch_from(&broker, &who, version, request, &|group| {
        found
            .get(group)
            .cloned()
            .unwrap_or(Err(ResponseError::NotCoordinator))
    })
}

/// OffsetFetch over `stored`: each group's offsets, or the error the group is answered with.
fn offset_fetch_from(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: OffsetFetchRequest,
    stored: &dyn Fn(&str) -> Result<GroupOffsets, ResponseError>,
) -> OffsetFetchResponse {
    let may_describe =
        |group: &str| broker.authorize(who, Operation::Describe, Resource::group(group));
    // KIP-447: with require_stable, an offset an unfinished transaction is committing is not
    // answered yet (the client retries).
    let require_stable = request.require_stable;
    let stable = |group: &str, topic: &str, p: i32, error: i16| {
        if error == 0 && require_stable && broker.transactions.has_pending_offset(group, topic, p) {
            ResponseError::UnstableOffsetCommit.code()
        } else {
            error
        }
    };
    let epoch = |c: &Option<Committed>| c.as_ref().map_or(-1, |c| c.leader_epoch);
    let offset = |c: &Option<Committed>| c.as_ref().map_or(-1, |c| c.offset);
    let metadata = |c: &Option<Committed>| {
        Some(StrBytes::from_string(
            c.as_ref()
                .and_then(|c| c.metadata.clone())
                .unwrap_or_default(),
        ))
    };
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                if !may_describe(&g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let offsets = match stored(&g.group_id.0) {
                    Ok(offsets) => offsets,
                    Err(e) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(e.code());
                    }
                };
                let answer = fetch_group(broker, who, offsets, topics);
                let group_id = g.group_id.0.to_string();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        answer
                            .into_iter()
                            .map(|(t, error, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(t.clone())))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, c)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_error_code(stable(
                                                        &group_id, &t, p, error,
                                                    ))
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset(&c))
                                                    .with_committed_leader_epoch(epoch(&c))
                                                    .with_metadata(metadata(&c))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let offsets = if may_describe(&request.group_id.0) {
        stored(&request.group_id.0)
    } else {
        Err(ResponseError::GroupAuthorizationFailed)
    };
    let offsets = match offsets {
        Ok(offsets) => offsets,
        Err(e) => {
            return group_error(e, topics);
        }
    };
    let answer = fetch_group(broker, who, offsets, topics);
    OffsetFetchResponse::default().with_topics(
        answer
            .into_iter()
            .map(|(t, error, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, c)| {
                                let mut r = OffsetFetchResponsePartition::default()
                                    .with_error_code(stable(&request.group_id.0, &t, p, error))
                                    .with_partition_index(p)
                                    .with_committed_offset(offset(&c))
                                    .with_metadata(metadata(&c));
                                if version >= 5 {
                                    r.committed_leader_epoch = epoch(&c);
                                }
                                r
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// A pre-v8 OffsetFetch refused for the whole group.
fn group_error(e: ResponseError, topics: Option<Vec<(String, Vec<i32>)>>) -> OffsetFetchResponse {
    // v0-1 have no top-level error code: the partitions asked for carry it.
    let code = e.code();
    OffsetFetchResponse::default()
        .with_error_code(code)
        .with_topics(
            topics
                .unwrap_or_default()
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

pub(crate) async fn offset_delete(
    broker: Arc<Broker>,
    who: Requester,
    _version: i16,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    if !broker.authorize(&who, Operation::Delete, Resource::group(&group_id)) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if let Err(e) = broker.groups.claim(&group_id).await {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    let in_cluster = broker.groups.remote().is_some();
    let Some(group) = broker.groups.existing(&group_id) else {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    };
    // As Kafka: an Empty group's offsets may all go; a consumer group with members keeps those
    // of topics a member subscribes to; a group of another protocol with members keeps all.
    let subscribed: HashSet<String> = {
        let g = group.lock();
        if g.state == State::Dead {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupIdNotFound.code());
        }
        if !g.members.is_empty() && g.protocol_type.as_deref() != Some("consumer") {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::NonEmptyGroup.code());
        }
        g.subscribed_topics()
    };
    let mut deletions = Vec::new();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let authorized = broker.authorize(&who, Operation::Read, Resource::topic(&name));
            let found = broker.catalog.get(&name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = if !authorized {
                        Err(ResponseError::TopicAuthorizationFailed)
                    } else if !in_cluster
                        && !found.as_ref().is_some_and(|t| {
                            p.partition_index >= 0 && p.partition_index < t.partition_count()
                        })
                    {
                        Err(ResponseError::UnknownTopicOrPartition)
                    } else if subscribed.contains(&name) {
                        Err(ResponseError::GroupSubscribedToTopic)
                    } else {
                        deletions.push((name.clone(), p.partition_index));
                        Ok(())
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code(outcome))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = OffsetDeleteResponse::default().with_topics(topics);
    if !deletions.is_empty() {
        if let Err(e) = broker.groups.delete_offsets(&group_id, deletions).await {
            response.error_code = e.code();
        }
    }
    response
}
