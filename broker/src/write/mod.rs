//! The one write path. Every writer of records goes through [`append`]: the Produce API,
//! transform outputs, the file source connector, dead-letter copies; transaction markers go
//! through [`control::append_marker`].
//!
//! 1. Each batch is validated once ([`validate`]), compressed ones decompressed once.
//! 2. Without transforms on the topic, the batches are appended as received.
//! 3. With transforms ([`transformed`]), the partition's transformed writes are serialized: each
//!    deployment's guest runs on each validated batch's records area as it is, at the offsets
//!    it will be stored at ([`crate::transform::run`] says what to write), in-place outputs
//!    replace the input, the input is stored, then every other deployment's outputs are written
//!    ([`outputs`]) as idempotent-producer streams, recursing through this same path for chained
//!    transforms. Output batches are built straight from the guest's sections (one copy out of
//!    guest memory) and appended as batches the broker built ([`append_built`]: not validated
//!    again).
//!    A transactional input's outputs are transactional too ([`outputs`]): they join the
//!    input's transaction in the coordinator before anything is stored, and its markers end
//!    them with it; in-place outputs keep the input's producer fields and transaction.
//! 4. What was written is returned with everything that must be durable before an `acks=-1`
//!    produce is answered.
//!
//! A deployment with state appends its store's changes of each write to its changelog topic
//! after its outputs ([`changelog`]), so the store rebuilt at start agrees with them.
//!
//! After a crash, [`recovery`] re-runs inputs past each deployment's checkpoint; a deployment
//! deployed `--from` an earlier offset catches up the same way, in the background.

mod changelog;
pub mod cluster;
mod cluster_transformed;
pub mod control;
pub(crate) mod internal;
mod outputs;
pub mod recovery;
mod transformed;
pub(crate) mod validate;

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::Broker;
use crate::log::{AppendError, AppendOutcome, PartitionLog};
use crate::records::Compression;

pub use control::{append_marker, verify_transactional_write, Marker};
pub use internal::append_records;
pub use recovery::{recover, spawn_backfill, spawn_backfills};

/// Transform chains deeper than this are refused (deploy-time cycle checks keep them finite).
const MAX_DEPTH: usize = 8;

/// Most bytes a compressed batch the broker built inflates to when its records are read again
/// (it was built from at most a guest's memory).
const BUILT_INFLATE_LIMIT: usize = 256 << 20;

/// A log position that must be durable before an `acks=-1` write is acknowledged.
#[derive(Debug, Clone)]
pub struct Durable {
    pub log: Arc<PartitionLog>,
    pub last_offset: i64,
}

/// What a write did.
#[derive(Debug)]
pub struct Appended {
    /// Where the records went in the partition written to (what a producer is answered).
    pub outcome: AppendOutcome,
    /// Every append this write made — the partition's own and those of transform outputs.
    pub durable: Vec<Durable>,
}

/// Validates and appends `records` (one or more v2 batches, as a producer sends them) to
/// `topic`/`partition`, running the transforms deployed on the topic.
///
/// Guests may run here: async callers use [`append_async`], which runs it on the guest pool.
pub fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Appended, AppendError> {
    append_produced(broker, None, topic, partition, records, now)
}

/// [`append`] for a Produce request, which names the producer's `transactional_id` (if any):
/// transactional batches are checked against the coordinator before they are stored.
pub fn append_produced(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Appended, AppendError> {
    let mut durable = Vec::new();
    let outcome = append_at(
        broker,
        Producer {
            transactional_id,
            txn: None,
        },
        topic,
        partition,
        records,
        now,
        0,
        &mut durable,
    )?;
    Ok(Appended { outcome, durable })
}

/// Who writes: what the write path needs to know of a producer beyond its batches.
#[derive(Debug, Clone, Copy, Default)]
struct Producer<'a> {
    /// The Produce request's `transactional_id`.
    transactional_id: Option<&'a str>,
    /// For batches the broker built in a transaction (transform outputs): the transaction,
    /// which holds their partitions already, so they are not verified as a client's are.
    txn: Option<TxnOwner<'a>>,
}

/// The transaction a transactional write belongs to, as the coordinator knows it: the
/// transactional id and its producer id and epoch. Transform outputs of the write join it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnOwner<'a> {
    pub(crate) id: &'a str,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
}

/// Whether a write to `topic` runs guests (and so belongs on the guest pool).
pub fn runs_guests(broker: &Broker, topic: &str) -> bool {
    broker.transforms.has_topic(topic)
}

/// [`append`] from an async task: on the guest pool when the topic has transforms, so that a
/// guest using its whole CPU cap never holds up the workers serving connections.
pub async fn append_async(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    records: Bytes,
    now: i64,
) -> Result<Appended, AppendError> {
    if !runs_guests(broker, topic) {
        return append(broker, topic, partition, records, now);
    }
    let b = broker.clone();
    let t = topic.to_string();
    broker
        .guests
        .run(move || append(&b, &t, partition, records, now))
        .await
        .map_err(|e| AppendError::Io(std::io::Error::other(e.to_string())))?
}

/// The partition's log, or the Kafka error for a missing topic or partition.
fn partition_log(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<Arc<PartitionLog>, AppendError> {
    broker
        .catalog
        .get(topic)
        .and_then(|t| t.partition(partition))
        .ok_or_else(|| AppendError::UnknownTopicOrPartition(format!("{topic}/{partition}")))
}

/// The codec batches the broker builds for `topic` are written in: the topic's
/// `compression.type`, or `fallback` (the input's codec) under `producer`.
fn codec_for(broker: &Broker, topic: &str, fallback: Compression) -> Compression {
    broker
        .catalog
        .get(topic)
        .and_then(|t| t.compression().target_for(fallback))
        .map_or(fallback, |codec| codec.compression)
}

#[allow(clippy::too_many_arguments)]
fn append_at(
    broker: &Broker,
    producer: Producer<'_>,
    topic: &str,
    partition: i32,
    records: Bytes,
    now: i64,
    depth: usize,
    durable: &mut Vec<Durable>,
) -> Result<AppendOutcome, AppendError> {
    let (handle, log) = topic_partition(broker, topic, partition)?;
    let batches = validate::validate(&records, log.max_message_bytes())?;
    append_checked(
        broker, producer, &handle, &log, topic, partition, records, batches, now, depth, durable,
    )
}

/// Appends one batch the broker built itself (a transform output, a dead-letter copy): well
/// framed, its CRC right and in the topic's codec by construction, so it is not validated
/// again. The topic's size limit, timestamp bounds and compaction key rule still apply, and the
/// transforms deployed on the topic run on it.
#[allow(clippy::too_many_arguments)]
fn append_built(
    broker: &Broker,
    topic: &str,
    partition: i32,
    batch: Vec<u8>,
    txn: Option<TxnOwner<'_>>,
    now: i64,
    depth: usize,
    durable: &mut Vec<Durable>,
) -> Result<AppendOutcome, AppendError> {
    use crate::records::batch::{BatchError, BatchHeader};
    let (handle, log) = topic_partition(broker, topic, partition)?;
    let max = log.max_message_bytes();
    if batch.len() > max as usize {
        return Err(BatchError::TooLarge {
            size: batch.len(),
            max,
        }
        .into());
    }
    let header = BatchHeader::parse(&batch)
        .ok_or_else(|| AppendError::CorruptMessage("a built batch has no header".into()))?;
    // Only what reads the records needs a compressed batch's records area.
    let rules = handle.batch_rules();
    // Built in the topic's codec, so recompressed only if `compression.type` changed since.
    let recompressed = header
        .compression()
        .is_some_and(|codec| rules.compression.target_for(codec).is_some());
    let reads_records = rules.timestamps.is_some()
        || recompressed
        || log.is_compacted()
        || broker.transforms.has_topic(topic);
    let decompressed = match header.compression() {
        Some(Compression::None) => None,
        _ if reads_records => Some(
            crate::records::record::records_area(&batch, &header, BUILT_INFLATE_LIMIT)
                .map_err(AppendError::from)?
                .into_owned(),
        ),
        _ => None,
    };
    let batches = vec![validate::Batch::built(header, 0..batch.len(), decompressed)];
    append_checked(
        broker,
        Producer {
            transactional_id: None,
            txn,
        },
        &handle,
        &log,
        topic,
        partition,
        Bytes::from(batch),
        batches,
        now,
        depth,
        durable,
    )
}

fn topic_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<(Arc<crate::catalog::Topic>, Arc<PartitionLog>), AppendError> {
    let handle = broker
        .catalog
        .get(topic)
        .ok_or_else(|| AppendError::UnknownTopicOrPartition(format!("{topic}/{partition}")))?;
    let log = handle
        .partition(partition)
        .ok_or_else(|| AppendError::UnknownTopicOrPartition(format!("{topic}/{partition}")))?;
    Ok((handle, log))
}

/// The rest of a write once its batches are known to be well formed.
#[allow(clippy::too_many_arguments)]
fn append_checked(
    broker: &Broker,
    producer: Producer<'_>,
    handle: &crate::catalog::Topic,
    log: &Arc<PartitionLog>,
    topic: &str,
    partition: i32,
    records: Bytes,
    batches: Vec<validate::Batch>,
    now: i64,
    depth: usize,
    durable: &mut Vec<Durable>,
) -> Result<AppendOutcome, AppendError> {
    if log.is_compacted() {
        validate::refuse_keyless(&records, &batches)?;
    }
    let transforms = broker.transforms.for_topic(topic);
    let mut txn = producer.txn;
    for b in batches.iter().filter(|b| b.header.is_transactional()) {
        if producer.txn.is_some() {
            // Built by the broker for a transaction that holds this partition already.
            continue;
        }
        control::verify_transactional_write(
            broker,
            producer.transactional_id,
            topic,
            partition,
            &b.header,
        )
        .map_err(|e| AppendError::TransactionRejected {
            code: e.code(),
            message: e.to_string(),
        })?;
        // Verified, so the Produce named it; the transforms' outputs join this transaction.
        if let Some(id) = producer.transactional_id {
            txn.get_or_insert(TxnOwner {
                id,
                producer_id: b.header.producer_id,
                epoch: b.header.producer_epoch,
            });
        }
    }
    let (records, batches) = validate::conform(records, batches, &handle.batch_rules(), now)?;
    let bytes = records.len();
    if transforms.is_empty() {
        let outcome = log.append_validated(&records, &validate::ranges(&batches), now, None)?;
        count_in(topic, bytes, &outcome);
        durable.push(Durable {
            log: log.clone(),
            last_offset: outcome.last_offset,
        });
        return Ok(outcome);
    }
    let outcome = transformed::append(
        broker,
        transformed::Input {
            topic,
            partition,
            log,
            records: &records,
            batches,
            txn,
        },
        &transforms,
        now,
        depth,
        durable,
    )?;
    count_in(topic, bytes, &outcome);
    Ok(outcome)
}

/// Counts a stored write in the topic's metrics (a duplicate retry stored nothing).
fn count_in(topic: &str, bytes: usize, outcome: &AppendOutcome) {
    if !outcome.duplicate {
        let records = (outcome.last_offset - outcome.base_offset + 1).max(0) as u64;
        crate::metrics::topic_in(topic, bytes, records);
    }
}
