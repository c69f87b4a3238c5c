//! A stateful deployment's changelog: the store's changes of each input batch appended to the
//! compacted topic `__sluice-state-<deployment>` (partition = input partition) as one more
//! idempotent output stream, after the batch's other outputs, with the partition's progress
//! record (see [`crate::transform::state`]). Written last, a changelog batch means the input
//! and every output before it are stored: so after `kill -9` the store rebuilt from the
//! changelog, the outputs and the progress agree, and re-run inputs start exactly where the
//! store stopped.

use std::sync::Arc;

use bytes::Bytes;

use super::outputs::stream_producer_id;
use super::{append_at, codec_for, partition_log, Durable};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::record::{build_batch, BatchMeta};
use crate::records::{Compression, NewRecord};
use crate::transform::state::{changelog_topic, Marker, PROGRESS_HEADER, PROGRESS_KEY};
use crate::transform::Running;

/// The deployments whose stores a write to one input partition is changing: whatever was not
/// written to the changelog when this is dropped (a rejected batch, a failed append) is taken
/// back.
pub(super) struct Changing {
    partition: i32,
    deployments: Vec<Arc<Running>>,
}

impl Changing {
    pub(super) fn new(partition: i32) -> Changing {
        Changing {
            partition,
            deployments: Vec::new(),
        }
    }

    /// Makes `running`'s store ready for input `partition` (restored from the changelog the
    /// first time, tables caught up) before its guest runs, and tracks its changes.
    pub(super) fn prepare(
        &mut self,
        broker: &Broker,
        running: &Arc<Running>,
    ) -> Result<(), AppendError> {
        prepare(broker, running, self.partition)?;
        if running.state.stateful {
            self.deployments.push(running.clone());
        }
        Ok(())
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        for running in &self.deployments {
            running.state.rollback(self.partition);
        }
    }
}

fn prepare(broker: &Broker, running: &Running, partition: i32) -> Result<(), AppendError> {
    if running.state.stateful && !running.state.is_loaded(partition) {
        restore(broker, running, partition)
            .map_err(|e| AppendError::Io(std::io::Error::other(e)))?;
    }
    for table in running.state.table_names() {
        let Some(topic) = broker.catalog.get(&table) else {
            continue;
        };
        for (p, log) in topic.partitions().iter().enumerate() {
            running
                .state
                .catch_up_table(&table, p as i32, log)
                .map_err(|e| {
                    AppendError::Io(std::io::Error::other(format!("table {table}: {e}")))
                })?;
        }
    }
    Ok(())
}

/// Rebuilds `running`'s store for input `partition` from its changelog and, if the changelog's
/// progress record is ahead of the checkpoint, takes its progress: the store already holds
/// those inputs' changes. The caller holds the input partition's lock (or runs before clients
/// are served).
pub(crate) fn restore(broker: &Broker, running: &Running, partition: i32) -> Result<(), String> {
    let (name, input) = {
        let d = running.deployment.read();
        (d.name.clone(), d.input.clone())
    };
    let topic = changelog_topic(&name);
    let Some(changelog) = broker.catalog.get(&topic) else {
        return Err(format!(
            "the changelog topic {topic} of transform '{name}' is missing"
        ));
    };
    if changelog.partition(partition).is_none() {
        // The input gained partitions since the deployment was made.
        let wanted = broker
            .catalog
            .get(&input)
            .map_or(partition + 1, |t| t.partition_count())
            .max(partition + 1);
        broker
            .catalog
            .create_partitions(&topic, wanted, false)
            .map_err(|e| format!("{topic}: {e}"))?;
    }
    let log = broker
        .catalog
        .get(&topic)
        .and_then(|t| t.partition(partition))
        .ok_or_else(|| format!("{topic} has no partition {partition}"))?;
    let marker = running.state.restore(partition, &log)?;
    if let Some(m) = marker {
        let behind = running
            .progress
            .lock()
            .get(&partition)
            .is_none_or(|p| p.next_input < m.next_input);
        if behind {
            running.update_progress(partition, |p| {
                p.next_input = m.next_input;
                p.seqs = m.seqs;
            });
        }
    }
    Ok(())
}

/// Appends what `running`'s guest changed in input `partition`'s store during this write, with
/// the progress record saying the inputs before `next_input` are in; then the changes are kept.
/// Nothing is appended for a write that changed nothing.
pub(super) fn emit(
    broker: &Broker,
    running: &Running,
    partition: i32,
    next_input: i64,
    now: i64,
    depth: usize,
    durable: &mut Vec<Durable>,
) -> Result<(), AppendError> {
    if !running.state.stateful {
        return Ok(());
    }
    let changes = running.state.changes(partition);
    if changes.is_empty() {
        return Ok(());
    }
    let name = running.name();
    let topic = changelog_topic(&name);
    let seqs = running
        .progress
        .lock()
        .get(&partition)
        .map(|p| p.seqs.clone())
        .unwrap_or_default();
    let marker = serde_json::to_vec(&Marker { next_input, seqs })
        .map_err(|e| AppendError::Io(std::io::Error::other(e)))?;
    let mut records: Vec<NewRecord> = changes
        .into_iter()
        .map(|(key, value)| NewRecord {
            timestamp: now,
            key: Some(key),
            value,
            headers: Vec::new(),
        })
        .collect();
    records.push(NewRecord {
        timestamp: now,
        key: Some(PROGRESS_KEY.to_vec()),
        value: Some(marker),
        headers: vec![(PROGRESS_HEADER.to_string(), None)],
    });
    let producer_id = stream_producer_id(&name, partition, &format!("{topic}/{partition}"));
    // Nothing past the last progress record was ever stored for this stream (it is restored
    // from there), so the log's own next sequence is this batch's.
    let base_sequence = partition_log(broker, &topic, partition)?.next_sequence(producer_id);
    let meta = BatchMeta {
        base_offset: 0,
        producer_id,
        producer_epoch: 0,
        base_sequence,
    };
    let batch = Bytes::from(build_batch(
        &records,
        codec_for(broker, &topic, Compression::None),
        &meta,
    ));
    append_at(
        broker,
        super::Producer::default(),
        &topic,
        partition,
        batch,
        now,
        depth + 1,
        durable,
    )?;
    running.state.take_changes(partition);
    Ok(())
}
