//! Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! DescribeGroups, ListGroups, DeleteGroups. The state machine lives in [`crate::group`]; this
//! file translates requests and responses.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::time::{Duration, Instant};

use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::group::{code, JoinParams, JoinResult, State, SyncParams, SyncResult};

/// "Authorized operations not requested".
const OPERATIONS_OMITTED: i32 = i32::MIN;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn opt(text: &Option<StrBytes>) -> Option<&str> {
    text.as_deref()
}

pub(crate) fn find_coordinator(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let answer = |key: &StrBytes| {
        // This broker coordinates every group (key type 0) and transactional id (key type 1).
        let error = if request.key_type == 1 {
            if broker.authorize(who, Operation::Describe, Resource::transactional_id(key)) {
                None
            } else {
                Some(ResponseError::TransactionalIdAuthorizationFailed)
            }
        } else if request.key_type != 0 {
            Some(ResponseError::CoordinatorNotAvailable)
        } else if !broker.authorize(who, Operation::Describe, Resource::group(key)) {
            Some(ResponseError::GroupAuthorizationFailed)
        } else {
            None
        };
        let ok = error.is_none();
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(if ok { broker.node_id } else { -1 }))
            .with_host(s(if ok { &broker.advertised_host } else { "" }))
            .with_port(if ok { broker.advertised_port } else { -1 })
            .with_error_code(error.map_or(0, |e| e.code()))
    };
    if version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(request.coordinator_keys.iter().map(answer).collect());
    }
    let c = answer(&request.key);
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 && c.error_code == ResponseError::CoordinatorNotAvailable.code() {
        response.error_message = Some(s("unknown coordinator key type"));
    }
    response
}

pub(crate) async fn join_group(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: JoinGroupRequest,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let config = broker.groups.config;
    let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    let result = if !broker.authorize(&who, Operation::Read, Resource::group(&group_id)) {
        JoinResult::error(ResponseError::GroupAuthorizationFailed, &member_id)
    } else if group_id.is_empty() {
        JoinResult::error(ResponseError::InvalidGroupId, &member_id)
    } else if session < config.min_session_timeout || session > config.max_session_timeout {
        JoinResult::error(ResponseError::InvalidSessionTimeout, &member_id)
    } else if let Err(e) = broker.groups.claim(&group_id).await {
        JoinResult::error(e, &member_id)
    } else {
        let params = JoinParams {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id,
            client_host,
            session_timeout: session,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout: if version >= 1 && request.rebalance_timeout_ms > 0 {
                Duration::from_millis(request.rebalance_timeout_ms as u64)
            } else {
                session
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let group = broker.groups.group(&group_id);
        let outcome = group.lock().join(params, Instant::now());
        match outcome {
            Ok(result) => result,
            Err(rx) => rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::CoordinatorNotAvailable, &member_id)
            }),
        }
    };
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_protocol_name(
            result
                .protocol_name
                .map(|p| s(&p))
                .or_else(|| (version < 7).then(StrBytes::default)),
        )
        .with_leader(s(&result.leader))
        .with_member_id(s(&result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let mut m = JoinGroupResponseMember::default()
                        .with_member_id(s(&id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        m.group_instance_id = instance.map(|i| s(&i));
                    }
                    m
                })
                .collect(),
        );
    if version >= 7 {
        response.protocol_type = result.protocol_type.map(|t| s(&t));
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response
}

pub(crate) async fn sync_group(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let authorized = broker.authorize(&who, Operation::Read, Resource::group(&group_id));
    let claimed = if authorized {
        broker.groups.claim(&group_id).await
    } else {
        Ok(())
    };
    let result = match broker.groups.existing(&group_id) {
        _ if !authorized => SyncResult::error(ResponseError::GroupAuthorizationFailed),
        _ if claimed.is_err() => {
            SyncResult::error(claimed.err().unwrap_or(ResponseError::NotCoordinator))
        }
        None => SyncResult::error(ResponseError::UnknownMemberId),
        Some(group) => {
            let params = SyncParams {
                member_id: &request.member_id,
                group_instance_id: opt(&request.group_instance_id),
                generation: request.generation_id,
                protocol_type: opt(&request.protocol_type),
                protocol_name: opt(&request.protocol_name),
                assignments: request
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect(),
            };
            let outcome = group.lock().sync(params, Instant::now());
            match outcome {
                Ok(r) => r,
                Err(rx) => rx
                    .await
                    .unwrap_or_else(|_| SyncResult::error(ResponseError::CoordinatorNotAvailable)),
            }
        }
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if version >= 5 {
        response.protocol_type = result.protocol_type.map(|t| s(&t));
        response.protocol_name = result.protocol_name.map(|t| s(&t));
    }
    response
}

pub(crate) fn heartbeat(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let authorized = broker.authorize(who, Operation::Read, Resource::group(&request.group_id.0));
    let held = broker.groups.holds(&request.group_id.0);
    let outcome = match broker.groups.existing(&request.group_id.0) {
        _ if !authorized => Err(ResponseError::GroupAuthorizationFailed),
        _ if held.is_err() => held,
        None => Err(ResponseError::UnknownMemberId),
        Some(group) => group.lock().heartbeat(
            &request.member_id,
            opt(&request.group_instance_id),
            request.generation_id,
            Instant::now(),
        ),
    };
    HeartbeatResponse::default().with_error_code(code(outcome))
}

pub(crate) fn leave_group(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if !broker.authorize(who, Operation::Read, Resource::group(&request.group_id.0)) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if let Err(e) = broker.groups.holds(&request.group_id.0) {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let now = Instant::now();
    // An unknown group knows none of the members: each is UNKNOWN_MEMBER_ID (v3+ answer per
    // member, as Kafka does, with no error for the request as a whole).
    let codes: Vec<i16> = match broker.groups.existing(&request.group_id.0) {
        None => vec![ResponseError::UnknownMemberId.code(); leaving.len()],
        Some(group) => {
            let mut g = group.lock();
            leaving
                .iter()
                .map(|(id, instance)| code(g.leave(id, instance.as_deref(), now)))
                .collect()
        }
    };
    if version >= 3 {
        LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    MemberResponse::default()
                        .with_member_id(s(&id))
                        .with_group_instance_id(instance.map(|i| s(&i)))
                        .with_error_code(code)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
    }
}

pub(crate) fn describe_groups(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let mut described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(OPERATIONS_OMITTED);
            if !broker.authorize(who, Operation::Describe, Resource::group(&id.0)) {
                return described
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_group_state(StrBytes::default());
            }
            if let Err(e) = broker.groups.holds(&id.0) {
                return described
                    .with_error_code(e.code())
                    .with_group_state(StrBytes::default());
            }
            let Some(group) = broker.groups.existing(&id.0) else {
                return described.with_group_state(s(State::Dead.name()));
            };
            let g = group.lock();
            described.group_state = s(g.state.name());
            described.protocol_type = s(g.protocol_type.as_deref().unwrap_or("consumer"));
            // As Kafka: the protocol, metadata and assignments only of a Stable group; while it
            // rebalances they are in flux, so members are listed without them.
            let stable = g.state == State::Stable;
            described.protocol_data = s(if stable {
                g.protocol.as_deref().unwrap_or("")
            } else {
                ""
            });
            described.members = g
                .describe_members()
                .into_iter()
                .map(|m| {
                    let (metadata, assignment) = if stable {
                        (g.member_metadata(m), m.assignment.clone())
                    } else {
                        (Bytes::new(), Bytes::new())
                    };
                    let mut d = DescribedGroupMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_client_id(s(&m.client_id))
                        .with_client_host(s(&m.client_host))
                        .with_member_metadata(metadata)
                        .with_member_assignment(assignment);
                    if version >= 4 {
                        d.group_instance_id = m.group_instance_id.as_ref().map(|i| s(i));
                    }
                    d
                })
                .collect();
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) fn list_groups(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    list_groups_of(broker, who, version, request, broker.groups.list())
}

/// ListGroups in cluster mode: the groups this broker coordinates, in their state here, and
/// of the groups no broker coordinates now (Empty: no members anywhere) those rendezvous
/// hashing places here. A group is listed by one broker only, so the union over brokers (what
/// admin clients gather) names every group of the cluster once, with its true state.
pub(crate) async fn list_groups_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let Some(remote) = broker.groups.remote() else {
        return list_groups(&broker, &who, version, request);
    };
    let known = match remote.list().await {
        Ok(known) => known,
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code().code()),
    };
    // Kafka's ListGroups is answered per coordinator, and every stock admin client asks every
    // broker and concatenates the answers: each group is listed by exactly one broker, its
    // coordinator, or for a group no broker coordinates (committed offsets only, Empty) the
    // broker FindCoordinator would name for it.
    let live: Vec<i32> = match &broker.cluster {
        Some(cluster) => match cluster.live_brokers().await {
            Ok(brokers) => brokers.iter().map(|b| b.node_id).collect(),
            Err(e) => {
                tracing::warn!("cannot list the live brokers: {e}");
                vec![broker.node_id]
            }
        },
        None => vec![broker.node_id],
    };
    let placed_here = |group: &str| {
        crate::cluster::placement::group_coordinator(group, &live) == Some(broker.node_id)
    };
    let mut listed: Vec<(String, String, State)> = known
        .into_iter()
        .filter(|g| g.here || (!g.coordinated && placed_here(&g.group_id)))
        .map(|g| {
            let protocol_type = g.protocol_type.unwrap_or_else(|| "consumer".into());
            let state = if g.here {
                broker
                    .groups
                    .existing(&g.group_id)
                    .map_or(State::Empty, |group| group.lock().state)
            } else {
                State::Empty
            };
            (g.group_id, protocol_type, state)
        })
        .collect();
    listed.retain(|(_, _, state)| *state != State::Dead);
    list_groups_of(&broker, &who, version, request, listed)
}

fn list_groups_of(
    broker: &Broker,
    who: &Requester,
    version: i16,
    request: ListGroupsRequest,
    listed: Vec<(String, String, State)>,
) -> ListGroupsResponse {
    // Describe on the cluster lists every group; otherwise only those the principal may describe.
    let every_group = broker.authorize(who, Operation::Describe, Resource::cluster());
    let groups = listed
        .into_iter()
        .filter(|(id, _, _)| {
            every_group || broker.authorize(who, Operation::Describe, Resource::group(id))
        })
        .filter(|(_, _, state)| {
            version < 4
                || request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(state.name()))
        })
        .filter(|_| {
            version < 5
                || request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
        })
        .map(|(id, protocol_type, state)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(s(&id)))
                .with_protocol_type(s(&protocol_type));
            if version >= 4 {
                listed.group_state = s(state.name());
            }
            if version >= 5 {
                listed.group_type = s("classic");
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete_groups(
    broker: Arc<Broker>,
    who: Requester,
    _version: i16,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let outcome = if broker.authorize(&who, Operation::Delete, Resource::group(&id.0)) {
            match broker.groups.claim(&id.0).await {
                Ok(()) => broker.groups.delete(&id.0).await,
                Err(e) => Err(e),
            }
        } else {
            Err(ResponseError::GroupAuthorizationFailed)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(outcome)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// DescribeGroups in cluster mode: each group is claimed first (a group nobody coordinates is
/// described by the broker FindCoordinator named), then described from memory.
pub(crate) async fn describe_groups_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    for id in &request.groups {
        if broker.authorize(&who, Operation::Describe, Resource::group(&id.0)) {
            // A refusal shows as NOT_COORDINATOR (or unavailable) for the group below.
            let _ = broker.groups.claim(&id.0).await;
        }
    }
    describe_groups(&broker, &who, version, request)
}

/// FindCoordinator in cluster mode: a group's coordinator is the broker holding its lease, or
/// when none does, the live broker rendezvous hashing picks for it. Transactional ids stay
/// with the broker asked, as on a single node.
pub(crate) async fn find_coordinator_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let key_type = request.key_type;
    let single = request.key.clone();
    let mut response = find_coordinator(&broker, &who, version, request);
    let Some(remote) = broker.groups.remote() else {
        return response;
    };
    if key_type != 0 {
        return response;
    }
    let place = |c: &mut Coordinator, found: Result<_, crate::group::RemoteError>| match found {
        Ok(crate::group::remote::CoordinatorAddress {
            node_id,
            host,
            port,
        }) => {
            c.node_id = BrokerId(node_id);
            c.host = s(&host);
            c.port = port;
        }
        Err(e) => {
            c.node_id = BrokerId(-1);
            c.host = StrBytes::default();
            c.port = -1;
            c.error_code = e.code().code();
            c.error_message = Some(s(&e.to_string()));
        }
    };
    if version >= 4 {
        for c in &mut response.coordinators {
            if c.error_code == 0 {
                let found = remote.coordinator(&c.key).await;
                place(c, found);
            }
        }
        return response;
    }
    if response.error_code == 0 {
        let mut c = Coordinator::default();
        place(&mut c, remote.coordinator(&single).await);
        response.error_code = c.error_code;
        response.node_id = c.node_id;
        response.host = c.host;
        response.port = c.port;
        if version >= 1 {
            response.error_message = c.error_message;
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::BytesMut;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::protocol::Encodable;
    use tokio::sync::watch;

    use super::*;
    use crate::api::group_offsets::{offset_commit, offset_delete, offset_fetch};
    use crate::group::{GroupConfig, GroupCoordinator};
    use crate::protocol::versions::served_range;

    const MEMBER_ID_REQUIRED: i16 = 79;

    /// A broker whose coordinator has no initial rebalance delay (so a join phase ends as soon as
    /// every member is in) and a topic `t` of two partitions.
    fn broker() -> (tempfile::TempDir, Arc<Broker>) {
        broker_with(Duration::ZERO)
    }

    fn broker_with(initial_delay: Duration) -> (tempfile::TempDir, Arc<Broker>) {
        let (dir, mut b) = crate::broker::test_broker();
        let meta = dir.path().join("groups");
        std::fs::create_dir_all(&meta).unwrap();
        let config = GroupConfig {
            initial_rebalance_delay: initial_delay,
            ..GroupConfig::default()
        };
        b.groups = Arc::new(GroupCoordinator::open(&meta, config).unwrap());
        b.catalog.create_topic("t", 2, 1, &[], false).unwrap();
        b.catalog.create_topic("u", 1, 1, &[], false).unwrap();
        (dir, Arc::new(b))
    }

    /// A consumer-protocol Subscription v0 for `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        Bytes::from(b)
    }

    fn join_req(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(&["t"]))])
    }

    async fn join(b: &Arc<Broker>, v: i16, req: JoinGroupRequest) -> JoinGroupResponse {
        join_group(
            b.clone(),
            crate::acl::Requester::broker(),
            v,
            req,
            "client".into(),
            "/127.0.0.1".into(),
        )
        .await
    }

    /// Joins `group` as a new member the way a v5 client does (MEMBER_ID_REQUIRED first).
    async fn join_new(b: &Arc<Broker>, group: &str) -> JoinGroupResponse {
        let first = join(b, 5, join_req(group, "", None)).await;
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        join(b, 5, join_req(group, &first.member_id, None)).await
    }

    fn sync_req(group: &str, member: &str, generation: i32) -> SyncGroupRequest {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_generation_id(generation)
    }

    fn assignment(member: &str, data: &'static [u8]) -> SyncGroupRequestAssignment {
        SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::from_static(data))
    }

    fn heartbeat_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_generation_id(generation)
    }

    /// One member in a Stable group: its member id and generation.
    async fn stable_member(b: &Arc<Broker>, group: &str) -> (String, i32) {
        let joined = join_new(b, group).await;
        assert_eq!(joined.error_code, 0);
        let req = sync_req(group, &joined.member_id, joined.generation_id)
            .with_assignments(vec![assignment(&joined.member_id, b"mine")]);
        assert_eq!(
            sync_group(b.clone(), crate::acl::Requester::broker(), 5, req)
                .await
                .error_code,
            0
        );
        (joined.member_id.to_string(), joined.generation_id)
    }

    fn commit_req(
        group: &str,
        member: &str,
        generation: i32,
        entries: &[(&str, i32, i64)],
    ) -> OffsetCommitRequest {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (t, p, o) in entries {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s("meta"))),
            );
        }
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
    }

    fn commit_codes(r: &OffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// `(topic, partition) → offset` of an OffsetFetch v7 for all of the group's offsets.
    fn fetched(b: &Broker, group: &str) -> BTreeMap<(String, i32), i64> {
        let r = offset_fetch(
            b,
            &crate::acl::Requester::broker(),
            7,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
        );
        r.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    )
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lone_member_is_asked_for_its_id_then_leads_generation_one() {
        let (_dir, b) = broker();
        let first = join(&b, 5, join_req("g", "", None)).await;
        assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
        assert!(first.member_id.starts_with("client-"));
        let joined = join(&b, 5, join_req("g", &first.member_id, None)).await;
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.member_id, first.member_id);
        assert_eq!(joined.leader, first.member_id);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(joined.members[0].metadata, subscription(&["t"]));
        let synced = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            5,
            sync_req("g", &joined.member_id, 1)
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(vec![assignment(&joined.member_id, b"a")]),
        )
        .await;
        assert_eq!(synced.error_code, 0);
        assert_eq!(synced.assignment, Bytes::from_static(b"a"));
        assert_eq!(synced.protocol_name.as_deref(), Some("range"));
        let hb = heartbeat(
            &b,
            &crate::acl::Requester::broker(),
            4,
            heartbeat_req("g", &joined.member_id, 1),
        );
        assert_eq!(hb.error_code, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn two_members_share_a_generation_and_each_gets_its_own_assignment() {
        // Both start within the initial delay, so they land in one generation.
        let (_dir, b) = broker_with(Duration::from_millis(500));
        let (stop_tx, stop_rx) = watch::channel(false);
        let timers = tokio::spawn(crate::group::run_timers(b.groups.clone(), stop_rx));
        let (x, y) = tokio::join!(join_new(&b, "h"), join_new(&b, "h"));
        assert_eq!(x.generation_id, y.generation_id, "one generation for both");
        let (leader, follower) = if x.leader == x.member_id {
            (x, y)
        } else {
            (y, x)
        };
        assert_eq!(follower.leader, leader.member_id);
        assert_eq!(
            leader.members.len(),
            2,
            "the leader gets everyone's metadata"
        );
        assert!(follower.members.is_empty());
        let generation = leader.generation_id;
        let follower_sync = tokio::spawn(sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            3,
            sync_req("h", &follower.member_id, generation),
        ));
        tokio::task::yield_now().await;
        let leader_sync = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            3,
            sync_req("h", &leader.member_id, generation).with_assignments(vec![
                assignment(&leader.member_id, b"L"),
                assignment(&follower.member_id, b"F"),
            ]),
        )
        .await;
        assert_eq!(leader_sync.assignment, Bytes::from_static(b"L"));
        let follower_sync = follower_sync.await.unwrap();
        assert_eq!(follower_sync.error_code, 0);
        assert_eq!(follower_sync.assignment, Bytes::from_static(b"F"));
        // A late SyncGroup of the same generation is answered at once.
        let again = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            3,
            sync_req("h", &follower.member_id, generation),
        )
        .await;
        assert_eq!(again.assignment, Bytes::from_static(b"F"));
        let stale = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            3,
            sync_req("h", &follower.member_id, 0),
        )
        .await;
        assert_eq!(stale.error_code, ResponseError::IllegalGeneration.code());
        let _ = stop_tx.send(true);
        timers.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_killed_members_session_expires_and_the_survivor_is_told_to_rebalance() {
        let (_dir, b) = broker();
        let (stop_tx, stop_rx) = watch::channel(false);
        let timers = tokio::spawn(crate::group::run_timers(b.groups.clone(), stop_rx));
        let (a, _) = stable_member(&b, "g").await;
        // b joins; a rejoins; both stable in generation 2.
        let b_join = tokio::spawn({
            let b = b.clone();
            async move { join_new(&b, "g").await }
        });
        tokio::task::yield_now().await;
        let hb = heartbeat(
            &b,
            &crate::acl::Requester::broker(),
            4,
            heartbeat_req("g", &a, 1),
        );
        assert_eq!(hb.error_code, ResponseError::RebalanceInProgress.code());
        let a2 = join(&b, 5, join_req("g", &a, None)).await;
        let b2 = b_join.await.unwrap();
        assert_eq!((a2.generation_id, b2.generation_id), (2, 2));
        let f = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            5,
            sync_req("g", &b2.member_id, 2),
        );
        let l = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            5,
            sync_req("g", &a, 2),
        );
        let (f, l) = tokio::join!(f, l);
        assert_eq!((f.error_code, l.error_code), (0, 0));

        // b is killed: no LeaveGroup, no heartbeats. a keeps heartbeating every 3 s.
        let killed = Instant::now();
        let outcome = loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let hb = heartbeat(
                &b,
                &crate::acl::Requester::broker(),
                4,
                heartbeat_req("g", &a, 2),
            );
            if hb.error_code != 0 || killed.elapsed() > Duration::from_secs(60) {
                break hb.error_code;
            }
        };
        assert_eq!(outcome, ResponseError::RebalanceInProgress.code());
        assert!(
            killed.elapsed() >= Duration::from_secs(10),
            "not before the session timeout"
        );
        let alone = join(&b, 5, join_req("g", &a, None)).await;
        assert_eq!(alone.generation_id, 3);
        assert_eq!(alone.members.len(), 1, "b is gone");
        let gone = heartbeat(
            &b,
            &crate::acl::Requester::broker(),
            4,
            heartbeat_req("g", &b2.member_id, 3),
        );
        assert_eq!(gone.error_code, ResponseError::UnknownMemberId.code());
        let _ = stop_tx.send(true);
        timers.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_initial_delay_lands_starting_members_in_one_generation() {
        let (_dir, b) = broker_with(Duration::from_secs(3));
        let (stop_tx, stop_rx) = watch::channel(false);
        let timers = tokio::spawn(crate::group::run_timers(b.groups.clone(), stop_rx));
        let started = Instant::now();
        let first = tokio::spawn({
            let b = b.clone();
            async move { join_new(&b, "g").await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = join_new(&b, "g").await;
        let first = first.await.unwrap();
        assert_eq!((first.generation_id, second.generation_id), (1, 1));
        assert!(started.elapsed() >= Duration::from_secs(3));
        let _ = stop_tx.send(true);
        timers.await.unwrap();
    }

    #[tokio::test]
    async fn a_restarted_static_member_keeps_its_assignment_and_fences_its_old_id() {
        let (_dir, b) = broker();
        let joined = join(&b, 5, join_req("g", "", Some("pod-1"))).await;
        assert_eq!(
            joined.error_code, 0,
            "static members skip MEMBER_ID_REQUIRED"
        );
        let old = joined.member_id.to_string();
        let req = sync_req("g", &old, 1)
            .with_group_instance_id(Some(s("pod-1")))
            .with_assignments(vec![assignment(&old, b"kept")]);
        assert_eq!(
            sync_group(b.clone(), crate::acl::Requester::broker(), 5, req)
                .await
                .error_code,
            0
        );

        let again = join(&b, 5, join_req("g", "", Some("pod-1"))).await;
        assert_eq!(again.error_code, 0);
        assert_eq!(again.generation_id, 1, "no rebalance");
        assert_ne!(again.member_id.as_str(), old);
        let synced = sync_group(
            b.clone(),
            crate::acl::Requester::broker(),
            5,
            sync_req("g", &again.member_id, 1).with_group_instance_id(Some(s("pod-1"))),
        )
        .await;
        assert_eq!(synced.assignment, Bytes::from_static(b"kept"));
        let fenced = heartbeat(
            &b,
            &crate::acl::Requester::broker(),
            4,
            heartbeat_req("g", &old, 1).with_group_instance_id(Some(s("pod-1"))),
        );
        assert_eq!(fenced.error_code, ResponseError::FencedInstanceId.code());
        let old_join = join(&b, 5, join_req("g", &old, Some("pod-1"))).await;
        assert_eq!(old_join.error_code, ResponseError::FencedInstanceId.code());
    }

    #[tokio::test]
    async fn leave_group_answers_each_member_of_a_batch() {
        let (_dir, b) = broker();
        let (a, _) = stable_member(&b, "g").await;
        let members = vec![
            MemberIdentity::default().with_member_id(s(&a)),
            MemberIdentity::default().with_member_id(s("stranger")),
        ];
        let r = leave_group(
            &b,
            &crate::acl::Requester::broker(),
            5,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(members.clone()),
        );
        assert_eq!(r.error_code, 0);
        let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code()]);
        let described = describe_groups(
            &b,
            &crate::acl::Requester::broker(),
            5,
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        );
        assert_eq!(described.groups[0].group_state.as_str(), "Empty");
        let unknown = leave_group(
            &b,
            &crate::acl::Requester::broker(),
            3,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nope")))
                .with_members(members),
        );
        assert_eq!(unknown.error_code, 0);
        assert!(unknown
            .members
            .iter()
            .all(|m| m.error_code == ResponseError::UnknownMemberId.code()));
    }

    #[tokio::test]
    async fn offsets_are_committed_checked_and_fetched() {
        let (_dir, b) = broker();
        // An admin ("simple") commit to a group without members.
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", "", -1, &[("t", 0, 5), ("t", 1, 7), ("missing", 0, 1)]),
        )
        .await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::UnknownTopicOrPartition.code(), 0, 0]
        );
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", "", -1, &[("t", 9, 1)]),
        )
        .await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::UnknownTopicOrPartition.code()]
        );
        // Naming a member of an empty group, or a generation of a group never seen.
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", "ghost", 3, &[("t", 0, 1)]),
        )
        .await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::UnknownMemberId.code()]
        );
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("new", "ghost", 3, &[("t", 0, 1)]),
        )
        .await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::IllegalGeneration.code()]
        );
        assert_eq!(
            fetched(&b, "g"),
            BTreeMap::from([(("t".into(), 0), 5), (("t".into(), 1), 7)])
        );

        // Once the group has a member, only it commits, in its generation.
        let (m, generation) = stable_member(&b, "g").await;
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", "", -1, &[("t", 0, 6)]),
        )
        .await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::UnknownMemberId.code()]
        );
        let stale = commit_req("g", &m, generation - 1, &[("t", 0, 6)]);
        let r = offset_commit(b.clone(), crate::acl::Requester::broker(), 8, stale).await;
        assert_eq!(
            commit_codes(&r),
            vec![ResponseError::IllegalGeneration.code()]
        );
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", &m, generation, &[("t", 0, 9)]),
        )
        .await;
        assert_eq!(commit_codes(&r), vec![0]);

        // Asked-for partitions, with -1 for what was never committed.
        let r = offset_fetch(
            &b,
            &crate::acl::Requester::broker(),
            7,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])])),
        );
        let offsets: Vec<i64> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(offsets, vec![9, 7]);
        // v8: several groups at once.
        let r = offset_fetch(
            &b,
            &crate::acl::Requester::broker(),
            8,
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("other")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0])])),
            ]),
        );
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].topics[0].partitions.len(), 2);
        assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
    }

    #[tokio::test]
    async fn a_group_is_deleted_only_when_empty_and_its_offsets_go_with_it() {
        let (_dir, b) = broker();
        let (m, generation) = stable_member(&b, "g").await;
        let r = offset_commit(
            b.clone(),
            crate::acl::Requester::broker(),
            8,
            commit_req("g", &m, generation, &[("t", 0, 3)]),
        )
        .await;
        assert_eq!(commit_codes(&r), vec![0]);
        let delete = || {
            delete_groups(
                b.clone(),
                crate::acl::Requester::broker(),
                2,
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            )
        };
        assert_eq!(
            delete().await.results[0].error_code,
            ResponseError::NonEmptyGroup.code()
        );
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(&m));
        assert_eq!(
            leave_group(&b, &crate::acl::Requester::broker(), 1, leave).error_code,
            0
        );
        assert_eq!(delete().await.results[0].error_code, 0);
        assert!(fetched(&b, "g").is_empty());
        assert_eq!(
            delete().await.results[0].error_code,
            ResponseError::GroupIdNotFound.code()
        );
        let listed = list_groups(
            &b,
            &crate::acl::Requester::broker(),
            4,
            ListGroupsRequest::default(),
        );
        assert!(listed.groups.iter().all(|g| g.group_id.0.as_str() != "g"));
    }

    #[tokio::test]
    async fn offset_delete_is_refused_for_topics_the_group_subscribes_to() {
        let (_dir, b) = broker();
        let (m, generation) = stable_member(&b, "g").await;
        let commit = commit_req("g", &m, generation, &[("t", 0, 3), ("u", 0, 4)]);
        assert_eq!(
            commit_codes(
                &offset_commit(b.clone(), crate::acl::Requester::broker(), 8, commit).await
            ),
            vec![0, 0]
        );
        let request = |topic: &str| {
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])])
        };
        let r = offset_delete(b.clone(), crate::acl::Requester::broker(), 0, request("t")).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::GroupSubscribedToTopic.code()
        );
        let r = offset_delete(b.clone(), crate::acl::Requester::broker(), 0, request("u")).await;
        assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
        assert_eq!(fetched(&b, "g"), BTreeMap::from([(("t".into(), 0), 3)]));
        let r = offset_delete(
            b.clone(),
            crate::acl::Requester::broker(),
            0,
            request("u").with_group_id(GroupId(s("none"))),
        )
        .await;
        assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());
    }

    #[tokio::test]
    async fn find_coordinator_answers_each_batched_key() {
        let (_dir, b) = broker();
        let r = find_coordinator(
            &b,
            &crate::acl::Requester::broker(),
            4,
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        );
        assert_eq!(r.coordinators.len(), 2);
        assert!(r
            .coordinators
            .iter()
            .all(|c| c.error_code == 0 && c.node_id.0 == 1 && c.port == 9092));
        let txn = find_coordinator(
            &b,
            &crate::acl::Requester::broker(),
            3,
            FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
        );
        assert_eq!(
            (txn.error_code, txn.node_id.0),
            (0, 1),
            "transaction coordinator"
        );
        let share = find_coordinator(
            &b,
            &crate::acl::Requester::broker(),
            3,
            FindCoordinatorRequest::default().with_key_type(2),
        );
        assert_eq!(
            share.error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
    }

    fn encodes<R: Encodable>(api: ApiKey, response: &R, version: i16) {
        let mut buf = BytesMut::new();
        if let Err(e) = response.encode(&mut buf, version) {
            panic!("{api:?} v{version}: {e}");
        }
    }

    fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (lo, hi) = served_range(api).expect("served");
        lo..=hi
    }

    /// Every response these handlers build, successful and failed, with members, instance ids,
    /// metadata and offsets filled in, encodes at every version we serve.
    #[tokio::test]
    async fn every_group_response_encodes_at_every_served_version() {
        let (_dir, b) = broker();
        let instance = Some("pod");
        let joined = join(&b, 5, join_req("g", "", instance)).await;
        let m = joined.member_id.to_string();
        let sync = sync_req("g", &m, 1)
            .with_group_instance_id(Some(s("pod")))
            .with_assignments(vec![assignment(&m, b"x")]);
        assert_eq!(
            sync_group(b.clone(), crate::acl::Requester::broker(), 5, sync)
                .await
                .error_code,
            0
        );
        let commit = commit_req("g", &m, 1, &[("t", 0, 1), ("nope", 0, 1)]);
        assert_eq!(
            offset_commit(
                b.clone(),
                crate::acl::Requester::broker(),
                8,
                commit.clone()
            )
            .await
            .topics
            .len(),
            2
        );

        for v in versions(ApiKey::FindCoordinator) {
            for key_type in [0, 1] {
                let req = FindCoordinatorRequest::default()
                    .with_key(s("g"))
                    .with_key_type(key_type)
                    .with_coordinator_keys(vec![s("g"), s("h")]);
                encodes(
                    ApiKey::FindCoordinator,
                    &find_coordinator(&b, &crate::acl::Requester::broker(), v, req),
                    v,
                );
            }
        }
        for v in versions(ApiKey::JoinGroup) {
            let group = format!("join-{v}");
            let inst = (v >= 5).then_some("i");
            let first = join(&b, v, join_req(&group, "", inst)).await;
            encodes(ApiKey::JoinGroup, &first, v);
            let done = if first.error_code == MEMBER_ID_REQUIRED {
                join(&b, v, join_req(&group, &first.member_id, inst)).await
            } else {
                first
            };
            assert_eq!(done.error_code, 0, "v{v}");
            assert_eq!(done.members.len(), 1);
            encodes(ApiKey::JoinGroup, &done, v);
            let refused = join(&b, v, join_req(&group, "stranger", None)).await;
            encodes(ApiKey::JoinGroup, &refused, v);
        }
        for v in versions(ApiKey::SyncGroup) {
            let ok = sync_group(
                b.clone(),
                crate::acl::Requester::broker(),
                v,
                sync_req("g", &m, 1),
            )
            .await;
            assert_eq!(ok.assignment, Bytes::from_static(b"x"));
            encodes(ApiKey::SyncGroup, &ok, v);
            let bad = sync_group(
                b.clone(),
                crate::acl::Requester::broker(),
                v,
                sync_req("none", &m, 1),
            )
            .await;
            encodes(ApiKey::SyncGroup, &bad, v);
        }
        for v in versions(ApiKey::Heartbeat) {
            encodes(
                ApiKey::Heartbeat,
                &heartbeat(
                    &b,
                    &crate::acl::Requester::broker(),
                    v,
                    heartbeat_req("g", &m, 1),
                ),
                v,
            );
        }
        for v in versions(ApiKey::OffsetCommit) {
            encodes(
                ApiKey::OffsetCommit,
                &offset_commit(
                    b.clone(),
                    crate::acl::Requester::broker(),
                    v,
                    commit.clone(),
                )
                .await,
                v,
            );
        }
        for v in versions(ApiKey::OffsetFetch) {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_groups(vec![
                    OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g"))),
                    OffsetFetchRequestGroup::default().with_group_id(GroupId(s("h"))),
                ]);
            encodes(
                ApiKey::OffsetFetch,
                &offset_fetch(&b, &crate::acl::Requester::broker(), v, req),
                v,
            );
        }
        for v in versions(ApiKey::DescribeGroups) {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("g")), GroupId(s("h"))]);
            let r = describe_groups(&b, &crate::acl::Requester::broker(), v, req);
            assert_eq!(r.groups[0].members.len(), 1);
            encodes(ApiKey::DescribeGroups, &r, v);
        }
        for v in versions(ApiKey::ListGroups) {
            let req = ListGroupsRequest::default().with_states_filter(vec![s("Stable")]);
            let r = list_groups(&b, &crate::acl::Requester::broker(), v, req);
            assert!(!r.groups.is_empty());
            encodes(ApiKey::ListGroups, &r, v);
        }
        for v in versions(ApiKey::OffsetDelete) {
            let req = OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]);
            encodes(
                ApiKey::OffsetDelete,
                &offset_delete(b.clone(), crate::acl::Requester::broker(), v, req).await,
                v,
            );
        }
        for v in versions(ApiKey::LeaveGroup) {
            let req = LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&format!("join-{v}"))))
                .with_member_id(s("stranger"))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(s("stranger"))
                    .with_group_instance_id(Some(s("i")))]);
            encodes(
                ApiKey::LeaveGroup,
                &leave_group(&b, &crate::acl::Requester::broker(), v, req),
                v,
            );
        }
        for v in versions(ApiKey::DeleteGroups) {
            let req = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s("g")), GroupId(s("x"))]);
            encodes(
                ApiKey::DeleteGroups,
                &delete_groups(b.clone(), crate::acl::Requester::broker(), v, req).await,
                v,
            );
        }
    }
}
