//! Ending transactions the coordinator ([`crate::txn`]) has decided: a commit or abort marker on
//! every partition of the transaction through the write path, each durable (on the partitions
//! transforms wrote the transaction's outputs to as well, under the outputs' producer ids); for a commit, the
//! transaction's offsets into their groups; then the end recorded as complete.
//!
//! Called by EndTxn, by InitProducerId when it fences an ongoing transaction, by the background
//! task that aborts transactions past their timeout, and at start for ends a crash interrupted.
//! Each step is safe to repeat: a marker written twice closes nothing the second time, and the
//! offsets are the same values, so completing an end again after a crash between markers leaves
//! every partition ended the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::group::Committed;
use crate::log::AppendError;
use crate::txn::Ending;
use crate::write::control::{append_marker, Marker};

/// A single broker is the only coordinator there has ever been.
const COORDINATOR_EPOCH: i32 = 0;

/// Why an end could not be completed now (it stays prepared and is retried).
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("marker on {topic}/{partition}: {message}")]
    Marker {
        topic: String,
        partition: i32,
        message: String,
    },
    #[error("committing the transaction's offsets: {0}")]
    Offsets(std::io::Error),
    #[error("recording the end: {0}")]
    Record(String),
}

/// Writes `ending`'s markers and offsets and records it complete. On failure the end stays
/// prepared (handed back to the background task, which retries).
pub async fn finish(broker: &Arc<Broker>, ending: Ending) -> Result<(), FinishError> {
    let result = write_markers_and_offsets(broker, &ending).await;
    let result = match result {
        Ok(()) => {
            let b = broker.clone();
            let e = ending.clone();
            tokio::task::spawn_blocking(move || b.transactions.complete(&e, now_ms()))
                .await
                .map_err(|e| FinishError::Record(e.to_string()))
                .and_then(|r| r.map_err(|e| FinishError::Record(e.to_string())))
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::warn!(
            transactional_id = %ending.transactional_id,
            "ending the transaction is postponed: {e}"
        );
        broker.transactions.release(&ending);
    }
    result
}

async fn write_markers_and_offsets(
    broker: &Arc<Broker>,
    ending: &Ending,
) -> Result<(), FinishError> {
    let marker = Marker {
        producer_id: ending.producer_id,
        producer_epoch: ending.producer_epoch,
        commit: ending.commit,
        coordinator_epoch: COORDINATOR_EPOCH,
    };
    let b = broker.clone();
    // The producer's own partitions under its id, then its transform outputs under theirs.
    let partitions: Vec<(String, i32, Marker)> = ending
        .partitions
        .iter()
        .map(|(t, p)| (t.clone(), *p, marker))
        .chain(ending.derived.iter().map(|(t, p, producer_id)| {
            (
                t.clone(),
                *p,
                Marker {
                    producer_id: *producer_id,
                    ..marker
                },
            )
        }))
        .collect();
    let durable = tokio::task::spawn_blocking(move || {
        let mut durable = Vec::new();
        for (topic, partition, marker) in &partitions {
            match append_marker(&b, topic, *partition, marker, now_ms()) {
                Ok(appended) => durable.extend(appended.durable),
                // Deleted since it was added: nothing of the transaction is left there to end.
                Err(AppendError::UnknownTopicOrPartition(_)) => {
                    tracing::warn!(%topic, partition, "no marker for a partition that is gone");
                }
                Err(e) => {
                    return Err(FinishError::Marker {
                        topic: topic.clone(),
                        partition: *partition,
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(durable)
    })
    .await
    .map_err(|e| FinishError::Record(e.to_string()))??;
    for d in durable {
        d.log
            .wait_durable(d.last_offset)
            .await
            .map_err(|e| FinishError::Marker {
                topic: d.log.dir().display().to_string(),
                partition: -1,
                message: e.to_string(),
            })?;
    }
    if ending.commit && !ending.offsets.is_empty() {
        let now = now_ms();
        let mut by_group: BTreeMap<&str, Vec<(String, i32, Committed)>> = BTreeMap::new();
        for o in &ending.offsets {
            by_group.entry(&o.group).or_default().push((
                o.topic.clone(),
                o.partition,
                Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: now,
                },
            ));
        }
        for (group, entries) in by_group {
            broker
                .groups
                .offsets
                .commit(group, entries)
                .await
                .map_err(FinishError::Offsets)?;
        }
    }
    Ok(())
}

/// Ends every transaction that is due: prepared ends nobody is completing (after a crash, after
/// a failed marker) and ongoing transactions past their timeout (aborted, producer fenced);
/// then forgets transactional ids idle past `transactional.id.expiration.ms`.
pub async fn complete_due(broker: &Arc<Broker>) {
    let b = broker.clone();
    let due = match tokio::task::spawn_blocking(move || b.transactions.due(now_ms())).await {
        Ok(due) => due,
        Err(e) => {
            tracing::error!("looking for transactions to end failed: {e}");
            return;
        }
    };
    for ending in due {
        // Failures are logged and retried by the next round.
        let _ = finish(broker, ending).await;
    }
    let b = broker.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || b.transactions.expire(now_ms())).await {
        tracing::error!("looking for idle transactional ids failed: {e}");
    }
}

/// Runs [`complete_due`] every `transaction.abort.timed.out.transaction.cleanup.interval.ms`
/// until `stop` turns true.
pub async fn run_timeouts(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(broker.transactions.config.abort_interval_ms.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The select only waits; the work runs after it, so no borrow of `stop` is held across
        // the completion's awaits.
        let stopped = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            return;
        }
        complete_due(&broker).await;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::broker::test_broker_at;
    use crate::records::record::{build_batch, BatchMeta};
    use crate::records::{Compression, NewRecord};
    use crate::txn::{InitOutcome, PendingOffset, TxnState};

    /// One transactional record of producer `pid` at `epoch`, sequence 0.
    fn transactional(pid: i64, epoch: i16, value: &str) -> Bytes {
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        };
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: 0,
        };
        let mut bytes = build_batch(&[record], Compression::None, &meta);
        bytes[22] |= 0x10; // attributes: transactional
        let crc = crate::records::batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes.into()
    }

    #[tokio::test]
    async fn an_end_interrupted_between_markers_is_completed_on_every_partition_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (pid, epoch) = {
            let broker = test_broker_at(dir.path());
            broker.catalog.create_topic("t", 2, 1, &[], false).unwrap();
            let Ok(InitOutcome::Ready { producer_id, epoch }) = broker
                .transactions
                .init_producer_id("tx", 60_000, None, &broker.producer_ids, 0)
            else {
                panic!("a producer id");
            };
            let partitions = [("t".to_string(), 0), ("t".to_string(), 1)];
            broker
                .transactions
                .add_partitions("tx", producer_id, epoch, &partitions, 0)
                .unwrap();
            broker
                .transactions
                .add_offsets("tx", producer_id, epoch, "g", 0)
                .unwrap();
            let offset = PendingOffset {
                group: "g".into(),
                topic: "in".into(),
                partition: 0,
                offset: 42,
                leader_epoch: -1,
                metadata: None,
            };
            broker
                .transactions
                .commit_offsets("tx", producer_id, epoch, "g", vec![offset], 0)
                .unwrap();
            for p in 0..2 {
                crate::write::append_produced(
                    &broker,
                    Some("tx"),
                    "t",
                    p,
                    transactional(producer_id, epoch, "v"),
                    0,
                )
                .unwrap();
            }
            broker
                .transactions
                .end("tx", producer_id, epoch, true, 0)
                .unwrap()
                .expect("an end to complete");
            // The crash comes after the first partition's marker.
            let marker = Marker {
                producer_id,
                producer_epoch: epoch,
                commit: true,
                coordinator_epoch: COORDINATOR_EPOCH,
            };
            append_marker(&broker, "t", 0, &marker, 0).unwrap();
            (producer_id, epoch)
        };

        let broker = Arc::new(test_broker_at(dir.path()));
        let log = |p| broker.catalog.get("t").unwrap().partition(p).unwrap();
        assert!(
            log(1).last_stable_offset() < log(1).high_watermark(),
            "open on the partition whose marker is missing"
        );
        assert!(broker.groups.offsets.group("g").is_empty());
        complete_due(&broker).await;
        for p in 0..2 {
            assert_eq!(
                log(p).last_stable_offset(),
                log(p).high_watermark(),
                "partition {p} ended"
            );
            assert!(log(p).aborted_transactions(0, i64::MAX).is_empty());
        }
        assert_eq!(log(0).high_watermark(), 2, "one record and one marker");
        assert_eq!(
            broker.groups.offsets.group("g")[&("in".to_string(), 0)].offset,
            42,
            "the transaction's offsets are committed with it"
        );
        let described = broker.transactions.describe(&["tx".to_string()]);
        let meta = described[0].1.as_ref().unwrap();
        assert_eq!(
            (meta.state, meta.producer_id, meta.producer_epoch),
            (TxnState::CompleteCommit, pid, epoch)
        );
    }

    /// A transaction of producer `tx` with one record in `in`/0 and one transform output in
    /// `out`/0 under `derived`, as the write path leaves it (output partition joined first).
    fn transformed_transaction(broker: &Broker, derived: i64) -> (i64, i16) {
        broker.catalog.create_topic("in", 1, 1, &[], false).unwrap();
        broker
            .catalog
            .create_topic("out", 1, 1, &[], false)
            .unwrap();
        let Ok(InitOutcome::Ready { producer_id, epoch }) =
            broker
                .transactions
                .init_producer_id("tx", 60_000, None, &broker.producer_ids, 0)
        else {
            panic!("a producer id");
        };
        broker
            .transactions
            .add_partitions("tx", producer_id, epoch, &[("in".to_string(), 0)], 0)
            .unwrap();
        crate::write::append_produced(
            broker,
            Some("tx"),
            "in",
            0,
            transactional(producer_id, epoch, "v"),
            0,
        )
        .unwrap();
        broker
            .transactions
            .add_derived(
                "tx",
                producer_id,
                epoch,
                &[("out".to_string(), 0, derived)],
                0,
            )
            .unwrap();
        let out = broker.catalog.get("out").unwrap().partition(0).unwrap();
        out.append(transactional(derived, epoch, "V"), 0).unwrap();
        (producer_id, epoch)
    }

    #[tokio::test]
    async fn a_commit_interrupted_before_the_outputs_marker_commits_them_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let derived = (1 << 61) | 5;
        {
            let broker = test_broker_at(dir.path());
            let (pid, epoch) = transformed_transaction(&broker, derived);
            broker
                .transactions
                .end("tx", pid, epoch, true, 0)
                .unwrap()
                .expect("an end to complete");
            // The crash comes after the input's marker, before the output's.
            let marker = Marker {
                producer_id: pid,
                producer_epoch: epoch,
                commit: true,
                coordinator_epoch: COORDINATOR_EPOCH,
            };
            append_marker(&broker, "in", 0, &marker, 0).unwrap();
        }
        let broker = Arc::new(test_broker_at(dir.path()));
        let log = |t| broker.catalog.get(t).unwrap().partition(0).unwrap();
        assert_eq!(log("in").last_stable_offset(), log("in").high_watermark());
        assert_eq!(
            log("out").last_stable_offset(),
            0,
            "the output is held back"
        );
        complete_due(&broker).await;
        for t in ["in", "out"] {
            assert_eq!(log(t).high_watermark(), 2, "{t}: a record and a marker");
            assert_eq!(log(t).last_stable_offset(), 2, "{t} committed");
            assert!(log(t).aborted_transactions(0, i64::MAX).is_empty(), "{t}");
        }
    }

    #[tokio::test]
    async fn a_fenced_transaction_aborts_its_transform_outputs_too() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(test_broker_at(dir.path()));
        let derived = (1 << 61) | 6;
        let (_, epoch) = transformed_transaction(&broker, derived);
        let Ok(InitOutcome::AbortFirst(ending)) =
            broker
                .transactions
                .init_producer_id("tx", 60_000, None, &broker.producer_ids, 1)
        else {
            panic!("the open transaction is aborted first");
        };
        finish(&broker, ending).await.unwrap();
        let out = broker.catalog.get("out").unwrap().partition(0).unwrap();
        assert_eq!(out.last_stable_offset(), out.high_watermark());
        let aborted = out.aborted_transactions(0, i64::MAX);
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            (aborted[0].producer_id, aborted[0].first_offset),
            (derived, 0)
        );
        // A late output of the fenced epoch is refused by the output partition.
        assert!(out
            .append(transactional(derived, epoch, "late"), 2)
            .is_err());
    }

    #[tokio::test]
    async fn a_fenced_transaction_is_aborted_with_the_new_epoch_on_its_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(test_broker_at(dir.path()));
        broker.catalog.create_topic("t", 1, 1, &[], false).unwrap();
        let init = || {
            broker
                .transactions
                .init_producer_id("tx", 60_000, None, &broker.producer_ids, 0)
                .unwrap()
        };
        let InitOutcome::Ready { producer_id, epoch } = init() else {
            panic!("a producer id");
        };
        broker
            .transactions
            .add_partitions("tx", producer_id, epoch, &[("t".to_string(), 0)], 0)
            .unwrap();
        crate::write::append_produced(
            &broker,
            Some("tx"),
            "t",
            0,
            transactional(producer_id, epoch, "zombie"),
            0,
        )
        .unwrap();
        let InitOutcome::AbortFirst(ending) = init() else {
            panic!("the open transaction is aborted first");
        };
        assert_eq!(ending.producer_epoch, epoch + 1);
        finish(&broker, ending).await.unwrap();
        let InitOutcome::Ready { epoch: fresh, .. } = init() else {
            panic!("a producer id once aborted");
        };
        assert_eq!(fresh, epoch + 2);
        let log = broker.catalog.get("t").unwrap().partition(0).unwrap();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(log.aborted_transactions(0, i64::MAX).len(), 1);
        // The zombie's late write is refused by verification.
        let late = crate::write::append_produced(
            &broker,
            Some("tx"),
            "t",
            0,
            transactional(producer_id, epoch, "late"),
            0,
        );
        assert!(late.is_err(), "{late:?}");
    }
}
