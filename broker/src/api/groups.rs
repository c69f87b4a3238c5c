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
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let answer = |key: &StrBytes| {
        // Group coordinator only: transactions (key type 1) are not supported.
        let ok = request.key_type == 0;
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(if ok { broker.node_id } else { -1 }))
            .with_host(s(if ok { &broker.advertised_host } else { "" }))
            .with_port(if ok { broker.advertised_port } else { -1 })
            .with_error_code(if ok {
                0
            } else {
                ResponseError::CoordinatorNotAvailable.code()
            })
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
    if version >= 1 {
        response.error_message = (c.error_code != 0).then(|| s("transactions are not supported"));
    }
    response
}

pub(crate) async fn join_group(
    broker: Arc<Broker>,
    version: i16,
    request: JoinGroupRequest,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let config = broker.groups.config;
    let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    let result = if group_id.is_empty() {
        JoinResult::error(ResponseError::InvalidGroupId, &member_id)
    } else if session < config.min_session_timeout || session > config.max_session_timeout {
        JoinResult::error(ResponseError::InvalidSessionTimeout, &member_id)
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
    response
}

pub(crate) async fn sync_group(
    broker: Arc<Broker>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let result = match broker.groups.existing(&group_id) {
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
    _version: i16,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let outcome = match broker.groups.existing(&request.group_id.0) {
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
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
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
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let groups = broker
        .groups
        .list()
        .into_iter()
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
    _version: i16,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let outcome = broker.groups.delete(&id.0).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(outcome)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
