//! `sluice group ...`: list consumer groups, describe one (members, committed offsets, log end
//! and lag per partition), seek its offsets for a topic, delete groups — through the group
//! coordinator, with the classic group APIs.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use bytes::Buf;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, Message};
use serde_json::{json, Value};

use super::kafka::{check, error_name, str_bytes, topic_name, Client, ClusterArgs, KafkaError};
use super::offsets::{list_offsets, parse_offset, partition_leaders, resolve, select, OffsetSpec};
use super::output::{emit, print_json, summary, Format, Table};

/// ListOffsets' "latest".
const LATEST: i64 = -1;
/// OffsetFetch v8 moves to a batch of groups; v7 is the newest single-group form.
const OFFSET_FETCH_MAX: i16 = 7;
/// OffsetCommit v9 is for KIP-848 groups.
const OFFSET_COMMIT_MAX: i16 = 8;

/// `sluice group` and the cluster flags its subcommands share.
#[derive(Debug, clap::Args)]
pub(super) struct GroupArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// Show a group's members and, per partition, committed offset, log end and lag.
    Describe { group: String },
    /// Set a group's committed offsets for a topic (the group must have no members).
    Seek {
        group: String,
        #[arg(long)]
        topic: String,
        /// beginning, end, N, -N (N before the end) or @TIMESTAMP (ms since the epoch).
        #[arg(long, value_parser = parse_offset, allow_hyphen_values = true)]
        to: OffsetSpec,
        /// Only these partitions (repeatable or comma-separated) [default: all].
        #[arg(short, long, value_delimiter = ',')]
        partition: Vec<i32>,
    },
    /// Delete groups (they must have no members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub(super) fn run(args: GroupArgs) -> anyhow::Result<()> {
    let cluster = args.cluster;
    match args.command {
        GroupCommand::List => list(&cluster),
        GroupCommand::Describe { group } => describe(&cluster, &group),
        GroupCommand::Seek {
            group,
            topic,
            to,
            partition,
        } => seek(&cluster, &group, &topic, to, &partition),
        GroupCommand::Delete { groups } => delete(&cluster, &groups),
    }
}

fn group_id(name: &str) -> GroupId {
    GroupId(str_bytes(name))
}

fn list(cluster: &ClusterArgs) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let ids: Vec<i32> = client.brokers().iter().map(|b| b.id).collect();
    let mut groups = BTreeMap::new();
    for id in ids {
        let response = client.broker(id)?.call(&ListGroupsRequest::default(), 4)?;
        check(response.error_code, "listing groups", None)?;
        for g in response.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    let mut table = Table::new(&["group", "state", "protocol-type"]);
    for (g, (state, kind)) in &groups {
        table.row(vec![g.clone(), state.clone(), kind.clone()]);
    }
    emit(cluster.format, &table, || {
        groups
            .iter()
            .map(|(g, (state, kind))| json!({"group": g, "state": state, "protocol_type": kind}))
            .collect()
    });
    Ok(())
}

/// A group member as DescribeGroups shows it.
struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    /// topic -> partitions, decoded from a consumer-protocol assignment.
    assignment: BTreeMap<String, Vec<i32>>,
}

struct Described {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
}

/// Decodes a consumer-protocol assignment; other protocols' bytes are not ours to read.
fn assignment(bytes: &bytes::Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return BTreeMap::new();
    }
    // Newer versions only append fields, so read them as the newest this crate knows.
    let version = buf
        .get_i16()
        .clamp(0, ConsumerProtocolAssignment::VERSIONS.max);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn describe_group(client: &mut Client, group: &str) -> Result<Described, KafkaError> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = client.coordinator(group)?.call(&request, 5)?;
    let described = response.groups.into_iter().next().ok_or_else(|| {
        KafkaError::Other(format!("group {group:?}: empty DescribeGroups answer"))
    })?;
    check(
        described.error_code,
        format!("group {group:?}"),
        described.error_message.as_ref(),
    )?;
    let consumer = described.protocol_type.as_str() == "consumer";
    Ok(Described {
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members: described
            .members
            .iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: if consumer {
                    assignment(&m.member_assignment)
                } else {
                    BTreeMap::new()
                },
            })
            .collect(),
    })
}

/// The group's committed offsets: (topic, partition) -> offset (-1: none). `topics` limits
/// the answer to those topics' `partitions`; `None` asks for every committed offset.
fn committed(
    client: &mut Client,
    group: &str,
    topic: Option<(&str, &[i32])>,
) -> Result<BTreeMap<(String, i32), i64>, KafkaError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topic.map(|(t, partitions)| {
            vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(t))
                .with_partition_indexes(partitions.to_vec())]
        }));
    let response = client
        .coordinator(group)?
        .call(&request, OFFSET_FETCH_MAX)?;
    check(response.error_code, format!("group {group:?}"), None)?;
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                format!(
                    "group {group:?} topic {:?} partition {}",
                    t.name.as_str(),
                    p.partition_index
                ),
                None,
            )?;
            out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
        }
    }
    Ok(out)
}

fn describe(cluster: &ClusterArgs, group: &str) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let described = describe_group(&mut client, group)?;
    let offsets = committed(&mut client, group, None)?;
    if described.state == "Dead" && offsets.is_empty() {
        bail!("group {group:?} does not exist");
    }
    // Every partition the group commits to or is assigned, with its owner.
    let mut owner: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (i, m) in described.members.iter().enumerate() {
        for (t, parts) in &m.assignment {
            for p in parts {
                owner.insert((t.clone(), *p), i);
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = offsets.keys().chain(owner.keys()).cloned().collect();
    let topics: BTreeSet<&String> = keys.iter().map(|(t, _)| t).collect();
    let mut log_end: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        let leaders = match partition_leaders(&mut client, topic) {
            Ok(leaders) => leaders,
            // A topic deleted since the commit has no log end; its rows show none.
            Err(KafkaError::Code { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for (p, end) in list_offsets(&mut client, topic, &leaders, LATEST)? {
            log_end.insert((topic.clone(), p), end);
        }
    }
    struct Row<'a> {
        topic: &'a str,
        partition: i32,
        committed: Option<i64>,
        log_end: Option<i64>,
        lag: Option<i64>,
        member: Option<&'a Member>,
    }
    let rows: Vec<Row<'_>> = keys
        .iter()
        .map(|key| {
            let committed = offsets.get(key).copied().filter(|o| *o >= 0);
            let end = log_end.get(key).copied();
            Row {
                topic: &key.0,
                partition: key.1,
                committed,
                log_end: end,
                lag: committed.zip(end).map(|(c, e)| (e - c).max(0)),
                member: owner.get(key).and_then(|i| described.members.get(*i)),
            }
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r.lag).sum();
    match cluster.format {
        Format::Json => print_json(&json!({
            "group": group,
            "state": described.state,
            "protocol_type": described.protocol_type,
            "protocol": described.protocol,
            "members": described.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": m.assignment.iter().map(|(t, p)| json!({"topic": t, "partitions": p})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "offsets": rows.iter().map(|r| json!({
                "topic": r.topic,
                "partition": r.partition,
                "committed": r.committed,
                "log_end": r.log_end,
                "lag": r.lag,
                "member_id": r.member.map(|m| &m.member_id),
            })).collect::<Vec<_>>(),
            "total_lag": total_lag,
        })),
        Format::Table => {
            print!(
                "{}",
                summary(&[
                    ("group", group.to_string()),
                    ("state", described.state.clone()),
                    ("protocol-type", described.protocol_type.clone()),
                    (
                        "protocol",
                        Some(described.protocol.clone())
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "-".into())
                    ),
                    ("members", described.members.len().to_string()),
                    ("total-lag", total_lag.to_string()),
                ])
            );
            let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let mut table = Table::new(&[
                "topic",
                "partition",
                "committed",
                "log-end",
                "lag",
                "member-id",
                "client-id",
                "host",
            ]);
            for r in &rows {
                table.row(vec![
                    r.topic.to_string(),
                    r.partition.to_string(),
                    dash(r.committed),
                    dash(r.log_end),
                    dash(r.lag),
                    r.member.map_or("-".into(), |m| m.member_id.clone()),
                    r.member.map_or("-".into(), |m| m.client_id.clone()),
                    r.member.map_or("-".into(), |m| m.host.clone()),
                ]);
            }
            println!();
            print!("{}", table.render());
        }
    }
    Ok(())
}

fn seek(
    cluster: &ClusterArgs,
    group: &str,
    topic: &str,
    to: OffsetSpec,
    partitions: &[i32],
) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let described = describe_group(&mut client, group)?;
    if !described.members.is_empty() {
        // As Kafka's tools: offsets of a live group belong to its members.
        bail!(
            "group {group:?} has {} active member(s) (state {}); stop its consumers before seeking",
            described.members.len(),
            described.state
        );
    }
    let leaders = partition_leaders(&mut client, topic)?;
    let chosen = select(topic, &leaders, partitions)?;
    let targets = resolve(&mut client, topic, &chosen, to)?;
    let parts: Vec<i32> = targets.keys().copied().collect();
    let previous = committed(&mut client, group, Some((topic, &parts)))?;
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str_bytes(""))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                targets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let response = client
        .coordinator(group)?
        .call(&request, OFFSET_COMMIT_MAX)?;
    for t in &response.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                format!(
                    "group {group:?} topic {topic:?} partition {}",
                    p.partition_index
                ),
                None,
            )?;
        }
    }
    let before = |p: &i32| {
        previous
            .get(&(topic.to_string(), *p))
            .copied()
            .filter(|o| *o >= 0)
    };
    let mut table = Table::new(&["topic", "partition", "previous", "new"]);
    for (p, o) in &targets {
        table.row(vec![
            topic.to_string(),
            p.to_string(),
            before(p).map_or("-".into(), |o| o.to_string()),
            o.to_string(),
        ]);
    }
    emit(cluster.format, &table, || {
        targets
            .iter()
            .map(|(p, o)| json!({"topic": topic, "partition": p, "previous": before(p), "new": o}))
            .collect()
    });
    Ok(())
}

fn delete(cluster: &ClusterArgs, groups: &[String]) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let mut table = Table::new(&["group", "status"]);
    let mut json = Vec::new();
    let mut first_error = None;
    for group in groups {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response = client.coordinator(group)?.call(&request, 2)?;
        for r in &response.results {
            let name = r.group_id.0.to_string();
            let status = if r.error_code == 0 {
                "OK".to_string()
            } else {
                error_name(r.error_code)
            };
            table.row(vec![name.clone(), status.clone()]);
            json.push(json!({"group": name, "error": (r.error_code != 0).then_some(&status)}));
            if first_error.is_none() {
                first_error = check(r.error_code, format!("group {name:?}"), None).err();
            }
        }
    }
    emit(cluster.format, &table, || Value::Array(json));
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
