//! Producer state of one partition: per producer id, its epoch, last sequence and the last few
//! batches, so a retried batch is recognised (and answered with its original offsets) and a gap
//! or reordering is refused, as Kafka does; and each producer's open transaction here (the offset
//! of its first batch), which holds the last stable offset back until a marker ends it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::records::BatchHeader;

use super::AppendError;

/// Batches remembered per producer for duplicate detection (Kafka's `max.in.flight` ceiling).
const REMEMBERED: usize = 5;

/// A stored batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Max timestamp of the producer's last batch or marker (DescribeProducers).
    last_timestamp: i64,
    /// Coordinator epoch of the last marker written for it (-1: none yet).
    coordinator_epoch: i32,
    /// First offset of its open transaction on this partition, if one is open.
    txn_first_offset: Option<i64>,
}

impl Default for Producer {
    fn default() -> Producer {
        Producer {
            epoch: 0,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of its last stored record (-1: none).
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of its open transaction here (-1: none).
    pub current_txn_start_offset: i64,
}

/// Whether a marker has anything to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkerCheck {
    /// Write it: a transaction is open, or it carries an epoch this partition has not seen.
    Write,
    /// The transaction is already ended here (a retried marker): nothing to write.
    AlreadyEnded,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Append,
    /// Already stored at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// All producers of a partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, Producer>,
    /// First offset -> producer id of every open transaction: the first key is what holds the
    /// last stable offset back.
    ongoing: BTreeMap<i64, i64>,
}

/// The sequence after `seq` (sequences wrap from i32::MAX to 0).
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Decides whether `header` may be appended, given everything already stored.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<Check, AppendError> {
        if !header.is_idempotent() {
            return Ok(Check::Append);
        }
        let pid = header.producer_id;
        let Some(p) = self.producers.get(&pid) else {
            if header.base_sequence != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(Check::Append);
        };
        if header.producer_epoch < p.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id: pid,
                epoch: header.producer_epoch,
                current: p.epoch,
            });
        }
        // A producer inside a transaction writes only transactional batches until it ends.
        if !header.is_transactional()
            && header.producer_epoch == p.epoch
            && p.txn_first_offset.is_some()
        {
            return Err(AppendError::InvalidTxnState(format!(
                "producer {pid} sent a non-transactional batch while its transaction is open"
            )));
        }
        if header.producer_epoch > p.epoch {
            if header.base_sequence != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(Check::Append);
        }
        let last_seq = header.last_sequence();
        // A retry ends at the same sequence as the batch it repeats. Its first sequence is not
        // compared: a batch an in-place transform shortened is stored with its base sequence
        // moved up (so that it still ends where the producer's batch ended), and a producer never
        // sends two different batches ending at one sequence within an epoch.
        if let Some(b) = p.batches.iter().find(|b| b.last_seq == last_seq) {
            return Ok(Check::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = p.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if header.base_sequence != expected {
            return Err(AppendError::OutOfOrderSequence {
                producer_id: pid,
                expected,
                got: header.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// The sequence the next batch of `producer_id` must start at (0 for a producer this
    /// partition does not know).
    pub(crate) fn next_sequence(&self, producer_id: i64) -> i32 {
        self.producers
            .get(&producer_id)
            .and_then(|p| p.batches.back())
            .map_or(0, |b| next_seq(b.last_seq))
    }

    /// The base offset of each producer's last stored batch: the log cleaner keeps that batch
    /// (emptied if need be) so the producer's sequence survives a rebuild from the log.
    pub(crate) fn last_batches(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(pid, p)| p.batches.back().map(|b| (*pid, b.base_offset)))
            .collect()
    }

    /// Records a stored batch (its header carries the assigned base offset).
    pub(crate) fn record(&mut self, header: &BatchHeader) {
        self.record_stored(header, header.base_offset, header.last_offset());
    }

    /// Records that the batch a producer sent as `header` was stored at `base..=last`.
    pub(crate) fn record_stored(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
    ) {
        if !header.is_idempotent() || header.is_control() {
            return;
        }
        let pid = header.producer_id;
        let p = self.producers.entry(pid).or_default();
        if header.producer_epoch != p.epoch {
            p.epoch = header.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset,
            last_offset,
        });
        while p.batches.len() > REMEMBERED {
            p.batches.pop_front();
        }
        p.last_timestamp = header.max_timestamp;
        // A batch without records (what the cleaner leaves of one) holds nothing uncommitted.
        if header.is_transactional() && header.records_count > 0 && p.txn_first_offset.is_none() {
            p.txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, pid);
        }
    }

    /// Judges a marker for `producer_id` at `epoch`: an older epoch is fenced.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
    ) -> Result<MarkerCheck, AppendError> {
        let Some(p) = self.producers.get(&producer_id) else {
            return Ok(MarkerCheck::Write);
        };
        if epoch < p.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: p.epoch,
            });
        }
        if p.txn_first_offset.is_some() || epoch > p.epoch {
            Ok(MarkerCheck::Write)
        } else {
            Ok(MarkerCheck::AlreadyEnded)
        }
    }

    /// Records a stored marker: the producer's open transaction (if any) ends; returns its first
    /// offset. A marker at a newer epoch (the coordinator fenced the producer, or KIP-890's
    /// per-transaction bump) starts the producer's sequences over.
    pub(crate) fn end_transaction(
        &mut self,
        header: &BatchHeader,
        coordinator_epoch: i32,
    ) -> Option<i64> {
        let p = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > p.epoch {
            p.epoch = header.producer_epoch;
            p.batches.clear();
        }
        p.coordinator_epoch = coordinator_epoch;
        p.last_timestamp = header.max_timestamp;
        let first = p.txn_first_offset.take()?;
        self.ongoing.remove(&first);
        Some(first)
    }

    /// The first offset of the earliest open transaction.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Every open transaction: `(producer id, first offset)`, by first offset.
    pub(crate) fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.ongoing
            .iter()
            .map(|(&first, &pid)| (pid, first))
            .collect()
    }

    /// Every producer this partition knows, by producer id.
    pub(crate) fn views(&self) -> Vec<ProducerView> {
        let mut out: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(&producer_id, p)| ProducerView {
                producer_id,
                producer_epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: p.last_timestamp,
                coordinator_epoch: p.coordinator_epoch,
                current_txn_start_offset: p.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|v| v.producer_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn a_retry_is_a_duplicate_with_the_original_offsets() {
        let mut state = ProducerState::default();
        let first = header(7, 0, 0, 3, 100);
        assert_eq!(state.check(&first).unwrap(), Check::Append);
        state.record(&first);
        let retry = header(7, 0, 0, 3, -1);
        assert_eq!(
            state.check(&retry).unwrap(),
            Check::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert_eq!(state.check(&header(7, 0, 3, 1, -1)).unwrap(), Check::Append);
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut state = ProducerState::default();
        state.record(&header(7, 1, 0, 2, 0));
        assert!(matches!(
            state.check(&header(7, 1, 5, 1, -1)),
            Err(AppendError::OutOfOrderSequence {
                expected: 2,
                got: 5,
                ..
            })
        ));
        assert!(matches!(
            state.check(&header(7, 0, 2, 1, -1)),
            Err(AppendError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            state.check(&header(8, 0, 3, 1, -1)),
            Err(AppendError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(state.check(&header(7, 2, 0, 1, -1)).unwrap(), Check::Append);
    }

    #[test]
    fn sequences_wrap_around() {
        let mut state = ProducerState::default();
        state.record(&header(1, 0, 0, 1, 0));
        // Pretend the producer is near the top of the sequence space.
        let near_top = header(1, 0, i32::MAX - 1, 2, 1);
        state
            .producers
            .get_mut(&1)
            .unwrap()
            .batches
            .back_mut()
            .unwrap()
            .last_seq = i32::MAX - 2;
        assert_eq!(state.check(&near_top).unwrap(), Check::Append);
        state.record(&near_top);
        assert_eq!(state.check(&header(1, 0, 0, 1, 3)).unwrap(), Check::Append);
    }
}
