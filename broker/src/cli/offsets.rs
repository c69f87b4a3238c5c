//! Where to start reading or seeking: `beginning`, `end`, `N`, `-N` (N before the end) or
//! `@timestamp`, resolved per partition with ListOffsets; and the partitions of a topic with
//! their leaders.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::ListOffsetsRequest;

use super::kafka::{check, topic_name, unknown_topic, Client, KafkaError};

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// v8 adds tiered-storage timestamps, nothing used here.
const LIST_OFFSETS_MAX: i16 = 7;

/// A position in each partition, as typed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetSpec {
    Beginning,
    End,
    /// An absolute offset.
    At(i64),
    /// This many records before the end (clamped to the log start).
    BeforeEnd(i64),
    /// The first record at or after this timestamp (ms since the epoch); the end if none.
    Time(i64),
}

/// The clap parser for `--offset` / `--to`.
pub(crate) fn parse_offset(text: &str) -> Result<OffsetSpec, String> {
    let bad = || format!("'{text}' is not beginning, end, N, -N or @timestamp (ms)");
    match text {
        "beginning" | "start" | "oldest" => Ok(OffsetSpec::Beginning),
        "end" | "newest" => Ok(OffsetSpec::End),
        _ => {
            if let Some(ts) = text.strip_prefix('@') {
                ts.parse::<i64>()
                    .ok()
                    .filter(|t| *t >= 0)
                    .map(OffsetSpec::Time)
                    .ok_or_else(bad)
            } else if let Some(n) = text.strip_prefix('-') {
                n.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(OffsetSpec::BeforeEnd)
                    .ok_or_else(bad)
            } else {
                text.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(OffsetSpec::At)
                    .ok_or_else(bad)
            }
        }
    }
}

/// A topic's Metadata, refused when the topic does not exist.
pub(crate) fn topic_metadata(
    client: &mut Client,
    topic: &str,
) -> Result<MetadataResponseTopic, KafkaError> {
    let metadata = client.metadata(Some(&[topic.to_string()]))?;
    let found = metadata
        .topics
        .into_iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| unknown_topic(topic))?;
    check(found.error_code, format!("topic {topic:?}"), None)?;
    Ok(found)
}

/// A topic's partitions and the broker leading each.
pub(crate) fn partition_leaders(
    client: &mut Client,
    topic: &str,
) -> Result<BTreeMap<i32, i32>, KafkaError> {
    Ok(leaders_of(&topic_metadata(client, topic)?))
}

/// partition -> leader of a topic's Metadata.
pub(crate) fn leaders_of(topic: &MetadataResponseTopic) -> BTreeMap<i32, i32> {
    topic
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect()
}

/// Picks `wanted` partitions of `leaders` (all when empty), refusing ones the topic lacks.
pub(crate) fn select(
    topic: &str,
    leaders: &BTreeMap<i32, i32>,
    wanted: &[i32],
) -> Result<BTreeMap<i32, i32>, KafkaError> {
    if wanted.is_empty() {
        return Ok(leaders.clone());
    }
    wanted
        .iter()
        .map(|p| {
            leaders.get(p).map(|l| (*p, *l)).ok_or_else(|| {
                KafkaError::Other(format!(
                    "topic {topic:?} has no partition {p} (it has {})",
                    leaders.len()
                ))
            })
        })
        .collect()
}

/// ListOffsets at `timestamp` for each partition, asked of its leader: partition -> offset.
pub(crate) fn list_offsets(
    client: &mut Client,
    topic: &str,
    partitions: &BTreeMap<i32, i32>,
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (p, leader) in partitions {
        by_leader.entry(*leader).or_default().push(*p);
    }
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response = client.broker(leader)?.call(&request, LIST_OFFSETS_MAX)?;
        for t in &response.topics {
            for p in &t.partitions {
                check(
                    p.error_code,
                    format!("topic {topic:?} partition {}", p.partition_index),
                    None,
                )?;
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    Ok(out)
}

/// Log start and high watermark of each partition.
pub(crate) fn watermarks(
    client: &mut Client,
    topic: &str,
    partitions: &BTreeMap<i32, i32>,
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let earliest = list_offsets(client, topic, partitions, EARLIEST)?;
    let latest = list_offsets(client, topic, partitions, LATEST)?;
    Ok(earliest
        .into_iter()
        .map(|(p, start)| (p, (start, latest.get(&p).copied().unwrap_or(start))))
        .collect())
}

/// The offset `spec` names in each partition; an absolute offset outside a partition's log is
/// refused rather than silently moved.
pub(crate) fn resolve(
    client: &mut Client,
    topic: &str,
    partitions: &BTreeMap<i32, i32>,
    spec: OffsetSpec,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let marks = watermarks(client, topic, partitions)?;
    let by_time = match spec {
        OffsetSpec::Time(ts) => Some(list_offsets(client, topic, partitions, ts)?),
        _ => None,
    };
    let mut out = BTreeMap::new();
    for (p, (start, end)) in marks {
        let offset = match spec {
            OffsetSpec::Beginning => start,
            OffsetSpec::End => end,
            OffsetSpec::At(n) if (start..=end).contains(&n) => n,
            OffsetSpec::At(n) => {
                return Err(KafkaError::Other(format!(
                    "offset {n} is outside topic {topic:?} partition {p} (log start {start}, high watermark {end})"
                )))
            }
            OffsetSpec::BeforeEnd(n) => end.saturating_sub(n).max(start),
            OffsetSpec::Time(_) => match by_time.as_ref().and_then(|m| m.get(&p)) {
                Some(&o) if o >= 0 => o,
                _ => end,
            },
        };
        out.insert(p, offset);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_every_form_and_refuse_the_rest() {
        assert_eq!(parse_offset("beginning"), Ok(OffsetSpec::Beginning));
        assert_eq!(parse_offset("end"), Ok(OffsetSpec::End));
        assert_eq!(parse_offset("42"), Ok(OffsetSpec::At(42)));
        assert_eq!(parse_offset("-3"), Ok(OffsetSpec::BeforeEnd(3)));
        assert_eq!(
            parse_offset("@1700000000000"),
            Ok(OffsetSpec::Time(1_700_000_000_000))
        );
        for bad in ["", "x", "--3", "@", "@-1", "1.5"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }
}
