//! One transactional id's state in the coordinator: its producer id and epoch, where its
//! transaction stands, and what the transaction holds (partitions, groups, pending offsets).
//! Transitions are pure functions here; [`super::TransactionCoordinator`] makes them durable.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Where a transaction stands (Kafka's `TransactionState`, the names DescribeTransactions and
/// ListTransactions report).
///
/// Kafka's `PrepareEpochFence` is not a state of ours: fencing an ongoing transaction (a new
/// InitProducerId, a timeout) writes `PrepareAbort` with the bumped epoch in one durable step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// A producer id is assigned; no transaction has started since the last one ended.
    Empty,
    /// Partitions or groups were added: records and offsets may be written in the transaction.
    Ongoing,
    /// EndTxn(commit) is decided and durable; markers are being written.
    PrepareCommit,
    /// The transaction is being aborted (EndTxn(abort), a timeout, a fencing InitProducerId).
    PrepareAbort,
    /// Every partition has its commit marker and the offsets are in their groups.
    CompleteCommit,
    /// Every partition has its abort marker.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// The state named `name` (ListTransactions filters), if it is one.
    pub fn from_name(name: &str) -> Option<TxnState> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether an end is decided and markers may still be missing.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset committed inside a transaction: applied to `group` only if the transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Why a transactional request is refused; mapped to a Kafka code (by request version) at the API
/// edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnError {
    #[error("a previous transaction of this transactional id is still being completed")]
    ConcurrentTransactions,
    #[error("the request does not fit the transaction's state ({0})")]
    InvalidTxnState(&'static str),
    #[error("the producer was fenced by a newer epoch of its transactional id")]
    ProducerFenced,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("unknown transactional id")]
    TransactionalIdNotFound,
    #[error("transaction timeout {0} ms is not within 1..=transaction.max.timeout.ms")]
    InvalidTransactionTimeout(i32),
    #[error("the transaction log cannot be written: {0}")]
    Storage(String),
}

/// One transactional id, as kept in memory and written to the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the latest bump (-1 if none): a producer recovering with it (KIP-360)
    /// or retrying an InitProducerId whose answer it lost is not a zombie.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions the transaction wrote to (markers go to each).
    pub partitions: BTreeSet<(String, i32)>,
    /// Partitions transforms wrote the transaction's outputs to, each with the producer id the
    /// outputs were written under (see `crate::write`): markers go to each, under that id.
    /// Recorded before the outputs are appended, so no output exists that its end misses.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub derived: BTreeSet<DerivedPartition>,
    /// Groups added with AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    /// Offsets committed with TxnOffsetCommit, one per (group, topic, partition).
    pub offsets: Vec<PendingOffset>,
    /// When the transaction started (first partition or group added), -1 outside one. Kept
    /// across restarts, so a transaction's timeout counts from its real start.
    pub start_ms: i64,
    pub updated_ms: i64,
}

/// A partition a transform wrote a transaction's outputs to: `(topic, partition, producer id)`.
/// The outputs carry the transaction's producer epoch, so its markers carry it too.
pub type DerivedPartition = (String, i32, i64);

/// Producer epochs stop here: the next bump takes a new producer id (KIP-360), so an epoch
/// never wraps back to one a zombie holds.
pub const MAX_EPOCH: i16 = i16::MAX - 1;

/// A transaction whose end is decided: what the markers and offset commits need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The epoch the markers carry (the bumped one when the coordinator fenced the producer).
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
    /// Transform outputs of the transaction: markers under their own producer ids.
    pub derived: Vec<DerivedPartition>,
    pub offsets: Vec<PendingOffset>,
}

impl TxnMeta {
    /// A new transactional id's metadata (epoch -1: the first InitProducerId bumps it to 0).
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMeta {
        TxnMeta {
            producer_id,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            derived: BTreeSet::new(),
            groups: BTreeSet::new(),
            offsets: Vec::new(),
            start_ms: -1,
            updated_ms: now,
        }
    }

    /// Whether the request's producer id and epoch are this transactional id's current ones.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// The next epoch; `None` when the epoch is exhausted and a new producer id is needed.
    pub fn bumped_epoch(&self) -> Option<i16> {
        (self.producer_epoch < MAX_EPOCH).then_some(self.producer_epoch + 1)
    }

    /// What ending this transaction needs, once it is in a prepare state.
    pub fn ending(&self, transactional_id: &str) -> Ending {
        Ending {
            transactional_id: transactional_id.to_string(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            commit: self.state == TxnState::PrepareCommit,
            partitions: self.partitions.iter().cloned().collect(),
            derived: self.derived.iter().cloned().collect(),
            offsets: self.offsets.clone(),
        }
    }

    /// Starts a transaction if none is ongoing (clearing what the last one held), refusing while
    /// the previous end is still being completed.
    pub fn begin(&mut self, now: i64) -> Result<(), TxnError> {
        match self.state {
            TxnState::Ongoing => Ok(()),
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                self.clear();
                self.state = TxnState::Ongoing;
                self.start_ms = now;
                Ok(())
            }
        }
    }

    /// Decides the end of the ongoing transaction.
    pub fn prepare_end(&mut self, commit: bool) -> Result<(), TxnError> {
        match (self.state, commit) {
            (TxnState::Ongoing, true) => self.state = TxnState::PrepareCommit,
            (TxnState::Ongoing, false) => self.state = TxnState::PrepareAbort,
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(TxnError::ConcurrentTransactions)
            }
            (TxnState::PrepareCommit, false) => {
                return Err(TxnError::InvalidTxnState("a commit is being completed"))
            }
            (TxnState::PrepareAbort, true) => {
                return Err(TxnError::InvalidTxnState("an abort is being completed"))
            }
            (TxnState::CompleteCommit, false) => {
                return Err(TxnError::InvalidTxnState("the transaction was committed"))
            }
            (TxnState::CompleteAbort, true) => {
                return Err(TxnError::InvalidTxnState("the transaction was aborted"))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                return Err(TxnError::InvalidTxnState("already completed"))
            }
            (TxnState::Empty, _) => {
                return Err(TxnError::InvalidTxnState("no transaction is ongoing"))
            }
        }
        Ok(())
    }

    /// Fences the ongoing transaction's producer (bumps the epoch) and decides an abort. With the
    /// epoch exhausted it stays: the InitProducerId that follows takes a new producer id.
    pub fn fence_and_abort(&mut self) {
        if let Some(next) = self.bumped_epoch() {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch = next;
        }
        self.state = TxnState::PrepareAbort;
    }

    /// Records that every marker of the prepared end is written (and offsets applied).
    pub fn complete(&mut self) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.clear();
    }

    fn clear(&mut self) {
        self.partitions.clear();
        self.derived.clear();
        self.groups.clear();
        self.offsets.clear();
        self.start_ms = -1;
    }

    /// Adds offsets, each replacing an earlier one for the same group and partition.
    pub fn add_offsets(&mut self, offsets: Vec<PendingOffset>) {
        for o in offsets {
            match self
                .offsets
                .iter_mut()
                .find(|p| p.group == o.group && p.topic == o.topic && p.partition == o.partition)
            {
                Some(existing) => *existing = o,
                None => self.offsets.push(o),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMeta {
        let mut m = TxnMeta::new(7, 60_000, 0);
        m.producer_epoch = 3;
        m.begin(10).unwrap();
        m.partitions.insert(("t".into(), 0));
        m
    }

    #[test]
    fn a_commit_is_refused_while_an_abort_completes_and_retried_while_a_commit_does() {
        let mut m = ongoing();
        m.prepare_end(false).unwrap();
        assert!(matches!(
            m.prepare_end(true),
            Err(TxnError::InvalidTxnState(_))
        ));
        assert_eq!(m.begin(20), Err(TxnError::ConcurrentTransactions));
        let mut c = ongoing();
        c.prepare_end(true).unwrap();
        assert_eq!(c.prepare_end(true), Err(TxnError::ConcurrentTransactions));
    }

    #[test]
    fn completing_clears_the_transaction_and_a_new_one_starts_fresh() {
        let mut m = ongoing();
        m.add_offsets(vec![PendingOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
        }]);
        m.prepare_end(true).unwrap();
        let ending = m.ending("tx");
        assert!(ending.commit);
        assert_eq!(ending.partitions, vec![("t".to_string(), 0)]);
        assert_eq!(ending.offsets.len(), 1);
        m.complete();
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert!(m.partitions.is_empty() && m.offsets.is_empty());
        m.begin(30).unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 30));
    }

    #[test]
    fn fencing_bumps_the_epoch_and_remembers_the_old_one() {
        let mut m = ongoing();
        m.fence_and_abort();
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (4, 3));
        assert_eq!(m.state, TxnState::PrepareAbort);
        assert_eq!(m.check_producer(7, 3), Err(TxnError::ProducerFenced));
        assert_eq!(
            m.check_producer(8, 4),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert!(!m.ending("tx").commit);
    }

    #[test]
    fn a_later_offset_for_the_same_partition_replaces_the_earlier() {
        let mut m = ongoing();
        let at = |offset| PendingOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        };
        m.add_offsets(vec![at(1)]);
        m.add_offsets(vec![at(9)]);
        assert_eq!(m.offsets, vec![at(9)]);
    }

    #[test]
    fn state_names_round_trip() {
        for s in ["Empty", "Ongoing", "PrepareCommit", "CompleteAbort"] {
            assert_eq!(TxnState::from_name(s).map(TxnState::name), Some(s));
        }
        assert_eq!(TxnState::from_name("PrepareEpochFence"), None);
    }
}
