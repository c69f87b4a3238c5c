//! The write path in cluster mode: a produced partition's batches are validated once (as on
//! a single node: framing, CRC, sizes against the topic's `max.message.bytes`, then the topic's
//! `compression.type` and timestamp bounds), described as [`BatchAppend`]s and handed to the
//! broker's upload buffer, which answers once they are committed.
//!
//! A topic with transforms: [`submit_transformed`] ([`super::cluster_transformed`]) runs them
//! and submits the input with its outputs as one submission, committed together.
//!
//! Not in cluster mode yet, and refused by name rather than half done: transactional produce,
//! compacted topics, `message.timestamp.type=LogAppendTime`.

use std::sync::Arc;

use bytes::Bytes;

use super::validate;
use crate::broker::Broker;
use crate::cluster::node::Cluster;
use crate::cluster::types::{BatchAppend, TopicMeta};
use crate::cluster::upload::{Answer, Submission};
use crate::log::AppendError;

pub use super::cluster_transformed::submit_transformed;

/// A produce in cluster mode: through the topic's transforms when it has any
/// ([`submit_transformed`]), else straight to the upload buffer ([`submit_produced`]).
pub async fn submit(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    transactional_id: Option<&str>,
    topic: &TopicMeta,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Answer, AppendError> {
    if super::runs_guests(broker, &topic.name) {
        submit_transformed(
            broker,
            cluster,
            transactional_id,
            topic,
            partition,
            records,
            now,
        )
        .await
    } else {
        submit_produced(
            broker,
            cluster,
            transactional_id,
            topic,
            partition,
            records,
            now,
        )
    }
}

/// Validates `records` for `topic`/`partition` and submits them to the upload buffer; the
/// answer arrives after the commit. Called in the order a connection sent its produces. A topic
/// with transforms goes through [`submit_transformed`] instead.
pub fn submit_produced(
    broker: &Broker,
    cluster: &Cluster,
    transactional_id: Option<&str>,
    topic: &TopicMeta,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Answer, AppendError> {
    if broker.transforms.has_topic(&topic.name) {
        return Err(unsupported(
            "writes to a topic with transforms from inside the broker",
        ));
    }
    let (records, batches) = prepare(cluster, transactional_id, topic, partition, records, now)?;
    let appends = appends(topic, partition, &batches);
    count_in(&topic.name, &records, &batches);
    Ok(cluster
        .uploads
        .submit(Submission::produced(records, appends)))
}

/// What cluster mode checks of a produced partition's batches before anything runs on them:
/// the partition exists, the topic's rules are ones cluster mode keeps, the batches are valid
/// and conformed to the topic (codec, timestamp bounds).
pub(super) fn prepare(
    cluster: &Cluster,
    transactional_id: Option<&str>,
    topic: &TopicMeta,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<(Bytes, Vec<validate::Batch>), AppendError> {
    if partition < 0 || partition >= topic.partitions {
        return Err(AppendError::UnknownTopicOrPartition(format!(
            "{}/{partition}",
            topic.name
        )));
    }
    if transactional_id.is_some() {
        return Err(unsupported("transactional produce"));
    }
    let (log, rules) = crate::catalog::rules_of(&cluster.settings.topics, &topic.configs)
        .map_err(|e| AppendError::InvalidRecord(format!("topic {}: {e}", topic.name)))?;
    if log.cleanup_policy.compact {
        return Err(unsupported("compacted topics (cleanup.policy=compact)"));
    }
    if log.timestamp_type == crate::log::TimestampType::LogAppendTime {
        return Err(unsupported("message.timestamp.type=LogAppendTime"));
    }
    let batches = validate::validate(&records, log.max_message_bytes)?;
    if batches
        .iter()
        .any(|b| b.header.is_transactional() || b.header.is_control())
    {
        return Err(unsupported("transactional batches"));
    }
    validate::conform(records, batches, &rules, now)
}

/// The commit's description of validated batches of `topic`/`partition` (byte offsets relative
/// to their records).
pub(super) fn appends(
    topic: &TopicMeta,
    partition: i32,
    batches: &[validate::Batch],
) -> Vec<BatchAppend> {
    batches
        .iter()
        .map(|b| BatchAppend {
            topic_id: topic.topic_id,
            partition,
            byte_offset: b.range.start as u64,
            byte_length: b.range.len() as u32,
            record_count: b.header.last_offset_delta + 1,
            base_timestamp: b.header.base_timestamp,
            max_timestamp: b.header.max_timestamp,
            producer_id: if b.header.is_idempotent() {
                b.header.producer_id
            } else {
                -1
            },
            producer_epoch: b.header.producer_epoch,
            base_sequence: b.header.base_sequence,
            is_transactional: false,
            is_control: false,
            follows: None,
        })
        .collect()
}

/// Counts a produce in the topic's metrics.
pub(super) fn count_in(topic: &str, records: &Bytes, batches: &[validate::Batch]) {
    crate::metrics::topic_in(
        topic,
        records.len(),
        batches
            .iter()
            .map(|b| u64::try_from(b.header.records_count).unwrap_or(0))
            .sum(),
    );
}

pub(super) fn unsupported(what: &str) -> AppendError {
    AppendError::Unsupported(format!("{what}: not supported in cluster mode yet"))
}
