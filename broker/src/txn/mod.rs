//! The transaction coordinator (KIP-98): transactional ids, their producer ids and epochs, and the
//! state of each one's transaction, durable in the transaction log.
//!
//! - [`state`]: one transactional id's metadata and its state machine.
//! - [`store`]: `__sluice/transactions.log`, where every transition is fsynced before it counts.
//!
//! Every method that changes state appends the new metadata and fsyncs it before returning (so
//! call them from a blocking context), under one lock: transitions of all ids are serialized,
//! which keeps the log's order the order they happened in. Writing the markers that end a
//! transaction is not done here (this module sits below the write path): the caller gets an
//! [`Ending`], writes its markers and offsets (see `crate::txn_markers`), then calls
//! [`TransactionCoordinator::complete`].

pub mod state;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use parking_lot::Mutex;

use crate::producer_ids::ProducerIds;
pub use state::{DerivedPartition, Ending, PendingOffset, TxnError, TxnMeta, TxnState};
use store::TxnStore;

/// Coordinator settings (Kafka's broker names).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are looked for.
    pub abort_interval_ms: u64,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction in progress
    /// and no transition for this long is forgotten (its next InitProducerId starts afresh).
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            max_timeout_ms: 900_000,
            abort_interval_ms: 10_000,
            // Kafka's default: 7 days.
            id_expiration_ms: 604_800_000,
        }
    }
}

/// What InitProducerId gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The producer id and epoch to use.
    Ready { producer_id: i64, epoch: i16 },
    /// An ongoing transaction was fenced and decided as an abort: complete this, then ask again.
    AbortFirst(Ending),
}

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnView {
    pub transactional_id: String,
    pub meta: TxnMeta,
}

/// Every transactional id and its transaction.
#[derive(Debug)]
pub struct TransactionCoordinator {
    /// Live metadata by transactional id, and the log it is mirrored in (one lock for both, so
    /// memory and log never disagree on the order of transitions).
    inner: Mutex<Inner>,
    pub config: TxnConfig,
}

#[derive(Debug)]
struct Inner {
    txns: HashMap<String, TxnMeta>,
    store: TxnStore,
    /// Ids whose prepared end someone is completing now, so the background task does not start
    /// a second completion of the same one.
    completing: HashSet<String>,
}

impl Inner {
    /// Makes `meta` the durable state of `id`; on failure nothing changes.
    fn commit(&mut self, id: &str, meta: TxnMeta) -> Result<(), TxnError> {
        let previous = self.txns.insert(id.to_string(), meta.clone());
        if let Err(e) = self.store.append(id, &meta, &self.txns) {
            match previous {
                Some(p) => self.txns.insert(id.to_string(), p),
                None => self.txns.remove(id),
            };
            tracing::error!(
                transactional_id = id,
                "cannot write the transaction log: {e}"
            );
            return Err(TxnError::Storage(e.to_string()));
        }
        Ok(())
    }

    /// The id's metadata with the request's producer id and epoch checked.
    fn producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMeta, TxnError> {
        let meta = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        Ok(meta.clone())
    }
}

impl TransactionCoordinator {
    /// Opens the coordinator on its log at `path`.
    pub fn open(path: &Path, config: TxnConfig) -> std::io::Result<TransactionCoordinator> {
        let (store, txns) = TxnStore::open(path)?;
        Ok(TransactionCoordinator {
            inner: Mutex::new(Inner {
                txns,
                store,
                completing: HashSet::new(),
            }),
            config,
        })
    }

    /// InitProducerId for a transactional id: a new producer id for a new id, else the epoch
    /// bumped (fencing older producers). `expected` is the producer id and epoch a recovering
    /// producer sends (KIP-360), `None` for a fresh start.
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        ids: &ProducerIds,
        now: i64,
    ) -> Result<InitOutcome, TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout(timeout_ms));
        }
        let allocate = || {
            ids.allocate()
                .map_err(|e| TxnError::Storage(format!("producer ids: {e}")))
        };
        let mut inner = self.inner.lock();
        let mut meta = match inner.txns.get(id) {
            None => TxnMeta::new(allocate()?, timeout_ms, now),
            Some(existing) => existing.clone(),
        };
        if let Some((producer_id, epoch)) = expected {
            if producer_id != meta.producer_id
                || (epoch != meta.producer_epoch && epoch != meta.last_producer_epoch)
            {
                return Err(TxnError::ProducerFenced);
            }
            if meta.state == TxnState::Empty
                && epoch == meta.last_producer_epoch
                && meta.producer_epoch >= 0
            {
                // A retry of an InitProducerId that was answered but whose answer was lost.
                return Ok(InitOutcome::Ready {
                    producer_id: meta.producer_id,
                    epoch: meta.producer_epoch,
                });
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                meta.fence_and_abort();
                meta.updated_ms = now;
                let ending = meta.ending(id);
                inner.commit(id, meta)?;
                inner.completing.insert(id.to_string());
                return Ok(InitOutcome::AbortFirst(ending));
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        }
        match meta.bumped_epoch() {
            Some(next) => {
                meta.last_producer_epoch = meta.producer_epoch;
                meta.producer_epoch = next;
            }
            None => {
                meta.producer_id = allocate()?;
                meta.producer_epoch = 0;
                meta.last_producer_epoch = -1;
            }
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.updated_ms = now;
        let outcome = InitOutcome::Ready {
            producer_id: meta.producer_id,
            epoch: meta.producer_epoch,
        };
        inner.commit(id, meta)?;
        Ok(outcome)
    }

    /// AddPartitionsToTxn: the partitions join the transaction (starting one if needed).
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let mut meta = inner.producer(id, producer_id, epoch)?;
        if meta.state == TxnState::Ongoing && partitions.iter().all(|p| meta.partitions.contains(p))
        {
            return Ok(());
        }
        meta.begin(now)?;
        meta.partitions.extend(partitions.iter().cloned());
        meta.updated_ms = now;
        inner.commit(id, meta)
    }

    /// AddOffsetsToTxn: the group joins the transaction (starting one if needed).
    pub fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now: i64,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let mut meta = inner.producer(id, producer_id, epoch)?;
        if meta.state == TxnState::Ongoing && meta.groups.contains(group) {
            return Ok(());
        }
        meta.begin(now)?;
        meta.groups.insert(group.to_string());
        meta.updated_ms = now;
        inner.commit(id, meta)
    }

    /// TxnOffsetCommit: offsets kept with the transaction, for its group, until it ends.
    pub fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<PendingOffset>,
        now: i64,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let mut meta = inner.producer(id, producer_id, epoch)?;
        match meta.state {
            TxnState::Ongoing if meta.groups.contains(group) => {}
            TxnState::Ongoing => {
                return Err(TxnError::InvalidTxnState(
                    "the group was not added with AddOffsetsToTxn",
                ))
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            _ => return Err(TxnError::InvalidTxnState("no transaction is ongoing")),
        }
        meta.add_offsets(offsets);
        meta.updated_ms = now;
        inner.commit(id, meta)
    }

    /// KIP-890: whether a transactional write of this producer to `topic`/`partition` belongs to
    /// its ongoing transaction (the partition was added). Changes nothing.
    pub fn verify_write(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let inner = self.inner.lock();
        let meta = inner
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state != TxnState::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(TxnError::InvalidTxnState(
                "the partition was not added to the ongoing transaction",
            ));
        }
        Ok(())
    }

    /// A transform is about to write outputs of the ongoing transaction of `id` (whose producer
    /// id and epoch are `producer_id`/`epoch`) to the `derived` partitions, under their own
    /// producer ids: they join the transaction, durably, before anything is appended, so its
    /// end (commit, abort, timeout, completion after a crash) writes markers on them too.
    ///
    /// Once the end is decided nothing may join; a prepared commit still admits partitions it
    /// already holds (a re-run after a crash writes what the first run registered).
    pub fn add_derived(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        derived: &[DerivedPartition],
        now: i64,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let meta = inner
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        let known = derived.iter().all(|d| meta.derived.contains(d));
        match meta.state {
            TxnState::Ongoing if known => return Ok(()),
            TxnState::Ongoing => {}
            TxnState::PrepareCommit if known => return Ok(()),
            _ => {
                return Err(TxnError::InvalidTxnState(
                    "the transaction of the transformed write is no longer ongoing",
                ))
            }
        }
        let mut meta = meta.clone();
        meta.derived.extend(derived.iter().cloned());
        meta.updated_ms = now;
        inner.commit(id, meta)
    }

    /// The transaction a producer id writes in now, as `(transactional id, its producer id,
    /// epoch, state)`: the id's own producer id, or one a transform wrote the id's outputs
    /// under. For re-running stored transactional inputs, which carry no transactional id.
    pub fn owner_of(&self, producer_id: i64) -> Option<(String, i64, i16, TxnState)> {
        let inner = self.inner.lock();
        inner
            .txns
            .iter()
            .find(|(_, m)| {
                m.producer_id == producer_id || m.derived.iter().any(|d| d.2 == producer_id)
            })
            .map(|(id, m)| (id.clone(), m.producer_id, m.producer_epoch, m.state))
    }

    /// EndTxn: decides the end durably and returns what completing it needs; `Ok(None)` for a
    /// retry of an end already completed. The caller then writes the markers and calls
    /// [`TransactionCoordinator::complete`].
    pub fn end(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<Option<Ending>, TxnError> {
        let mut inner = self.inner.lock();
        let mut meta = inner.producer(id, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(None),
            _ => meta.prepare_end(commit)?,
        }
        meta.updated_ms = now;
        let ending = meta.ending(id);
        inner.commit(id, meta)?;
        inner.completing.insert(id.to_string());
        Ok(Some(ending))
    }

    /// Records that `ending`'s markers (and, for a commit, its offsets) are all written. A
    /// no-op if the id has moved on (another completion got there first).
    pub fn complete(&self, ending: &Ending, now: i64) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        inner.completing.remove(&ending.transactional_id);
        let Some(meta) = inner.txns.get(&ending.transactional_id) else {
            return Ok(());
        };
        let prepared = if ending.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if meta.state != prepared
            || meta.producer_id != ending.producer_id
            || meta.producer_epoch != ending.producer_epoch
        {
            return Ok(());
        }
        let mut meta = meta.clone();
        meta.complete();
        meta.updated_ms = now;
        inner.commit(&ending.transactional_id, meta)
    }

    /// Gives up completing `ending` for now (a marker could not be written); the background task
    /// tries again.
    pub fn release(&self, ending: &Ending) {
        self.inner
            .lock()
            .completing
            .remove(&ending.transactional_id);
    }

    /// Transactions to end now: ongoing ones past their timeout (fenced, decided as aborts) and
    /// prepared ones nobody is completing (interrupted by a crash or a failed marker write).
    /// Each returned one is marked as being completed.
    pub fn due(&self, now: i64) -> Vec<Ending> {
        let mut inner = self.inner.lock();
        let mut due = Vec::new();
        let ids: Vec<String> = inner
            .txns
            .iter()
            .filter(|(id, m)| {
                !inner.completing.contains(*id)
                    && (m.state.is_preparing()
                        || (m.state == TxnState::Ongoing
                            && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(mut meta) = inner.txns.get(&id).cloned() else {
                continue;
            };
            if meta.state == TxnState::Ongoing {
                tracing::info!(
                    transactional_id = %id,
                    producer_id = meta.producer_id,
                    epoch = meta.producer_epoch,
                    "aborting a transaction past its timeout of {} ms",
                    meta.timeout_ms
                );
                meta.fence_and_abort();
                meta.updated_ms = now;
                if inner.commit(&id, meta.clone()).is_err() {
                    continue;
                }
            }
            inner.completing.insert(id.clone());
            due.push(meta.ending(&id));
        }
        due
    }

    /// Forgets, durably, the transactional ids idle past `transactional.id.expiration.ms`:
    /// no transaction ongoing or being ended, no transition for that long. Returns them.
    pub fn expire(&self, now: i64) -> Vec<String> {
        let mut inner = self.inner.lock();
        let expiration = self.config.id_expiration_ms;
        let mut idle: Vec<String> = inner
            .txns
            .iter()
            .filter(|(id, m)| {
                !inner.completing.contains(*id)
                    && matches!(
                        m.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                    && m.updated_ms.saturating_add(expiration) < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        idle.retain(|id| {
            let Some(meta) = inner.txns.remove(id) else {
                return false;
            };
            if let Err(e) = inner.store.remove(id, &inner.txns) {
                tracing::error!(transactional_id = %id, "cannot write the transaction log: {e}");
                inner.txns.insert(id.clone(), meta);
                return false;
            }
            tracing::info!(
                transactional_id = %id,
                "forgetting a transactional id idle for more than {expiration} ms"
            );
            true
        });
        idle
    }

    /// KIP-447: whether a transaction not yet complete holds an offset for `group`'s
    /// `topic`/`partition` (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT
    /// until it ends, so a new consumer does not start from the offset before it).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        let inner = self.inner.lock();
        inner.txns.values().any(|m| {
            (m.state == TxnState::Ongoing || m.state.is_preparing())
                && m.offsets
                    .iter()
                    .any(|o| o.group == group && o.topic == topic && o.partition == partition)
        })
    }

    /// Everything about the ids asked for; `None` for an unknown one.
    pub fn describe(&self, ids: &[String]) -> Vec<(String, Option<TxnMeta>)> {
        let inner = self.inner.lock();
        ids.iter()
            .map(|id| (id.clone(), inner.txns.get(id).cloned()))
            .collect()
    }

    /// Every transactional id, sorted.
    pub fn list(&self) -> Vec<TxnView> {
        let inner = self.inner.lock();
        let mut all: Vec<TxnView> = inner
            .txns
            .iter()
            .map(|(id, meta)| TxnView {
                transactional_id: id.clone(),
                meta: meta.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        ids: ProducerIds,
        c: TransactionCoordinator,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transactions.log");
        let ids = ProducerIds::open(&dir.path().join("producer-ids")).unwrap();
        let c = TransactionCoordinator::open(&path, TxnConfig::default()).unwrap();
        Fixture {
            _dir: dir,
            path,
            ids,
            c,
        }
    }

    fn ready(outcome: InitOutcome) -> (i64, i16) {
        match outcome {
            InitOutcome::Ready { producer_id, epoch } => (producer_id, epoch),
            InitOutcome::AbortFirst(_) => panic!("expected a producer id"),
        }
    }

    fn t(name: &str, p: i32) -> (String, i32) {
        (name.to_string(), p)
    }

    #[test]
    fn a_second_init_bumps_the_epoch_and_fences_the_first_producer() {
        let f = fixture();
        let (pid, e0) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        assert_eq!(e0, 0);
        let (pid2, e1) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 1).unwrap());
        assert_eq!((pid2, e1), (pid, 1));
        assert_eq!(
            f.c.add_partitions("tx", pid, e0, &[t("a", 0)], 2),
            Err(TxnError::ProducerFenced)
        );
        f.c.add_partitions("tx", pid, e1, &[t("a", 0)], 2).unwrap();
    }

    #[test]
    fn timeouts_outside_the_maximum_are_refused() {
        let f = fixture();
        for bad in [0, -5, 900_001] {
            assert_eq!(
                f.c.init_producer_id("tx", bad, None, &f.ids, 0),
                Err(TxnError::InvalidTransactionTimeout(bad))
            );
        }
    }

    #[test]
    fn init_during_a_transaction_fences_aborts_then_hands_out_a_fresh_epoch() {
        let f = fixture();
        let (pid, e0) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        f.c.add_partitions("tx", pid, e0, &[t("a", 0), t("b", 1)], 1)
            .unwrap();
        let Ok(InitOutcome::AbortFirst(ending)) =
            f.c.init_producer_id("tx", 60_000, None, &f.ids, 2)
        else {
            panic!("an ongoing transaction is aborted first");
        };
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, None, &f.ids, 2),
            Err(TxnError::ConcurrentTransactions),
            "while the abort is not complete"
        );
        assert!(
            f.c.due(3).is_empty(),
            "the abort is being completed already"
        );
        f.c.release(&ending);
        let due = f.c.due(3);
        assert_eq!(due, vec![ending.clone()], "due again once released");
        let ending = &due[0];
        assert!(!ending.commit);
        assert_eq!(
            ending.producer_epoch,
            e0 + 1,
            "markers carry the fencing epoch"
        );
        assert_eq!(ending.partitions, vec![t("a", 0), t("b", 1)]);
        assert!(f.c.due(3).is_empty(), "not handed out twice");
        f.c.complete(ending, 4).unwrap();
        let (_, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 5).unwrap());
        assert_eq!(e, e0 + 2, "an epoch no marker was written with");
    }

    #[test]
    fn end_commit_keeps_offsets_until_complete_and_a_retry_succeeds() {
        let f = fixture();
        let (pid, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        f.c.add_partitions("tx", pid, e, &[t("out", 0)], 1).unwrap();
        let offset = PendingOffset {
            group: "g".into(),
            topic: "in".into(),
            partition: 0,
            offset: 10,
            leader_epoch: -1,
            metadata: None,
        };
        assert!(matches!(
            f.c.commit_offsets("tx", pid, e, "g", vec![offset.clone()], 1),
            Err(TxnError::InvalidTxnState(_))
        ));
        f.c.add_offsets("tx", pid, e, "g", 1).unwrap();
        f.c.commit_offsets("tx", pid, e, "g", vec![offset.clone()], 1)
            .unwrap();
        assert!(f.c.has_pending_offset("g", "in", 0));
        assert!(!f.c.has_pending_offset("g", "in", 1));
        let ending = f.c.end("tx", pid, e, true, 2).unwrap().expect("an ending");
        assert_eq!(ending.offsets, vec![offset]);
        assert!(
            f.c.has_pending_offset("g", "in", 0),
            "until the commit completes"
        );
        assert_eq!(
            f.c.end("tx", pid, e, true, 2),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            f.c.add_partitions("tx", pid, e, &[t("out", 0)], 2),
            Err(TxnError::ConcurrentTransactions)
        );
        f.c.complete(&ending, 3).unwrap();
        assert!(!f.c.has_pending_offset("g", "in", 0));
        assert_eq!(f.c.end("tx", pid, e, true, 4), Ok(None), "a retry");
        assert!(matches!(
            f.c.end("tx", pid, e, false, 4),
            Err(TxnError::InvalidTxnState(_))
        ));
    }

    #[test]
    fn a_prepared_end_survives_a_restart_and_is_due_at_once() {
        let f = fixture();
        let (pid, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        f.c.add_partitions("tx", pid, e, &[t("a", 0)], 1).unwrap();
        let before = f.c.end("tx", pid, e, true, 2).unwrap().unwrap();
        drop(f.c);
        let c = TransactionCoordinator::open(&f.path, TxnConfig::default()).unwrap();
        let due = c.due(3);
        assert_eq!(due, vec![before]);
    }

    #[test]
    fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
        let f = fixture();
        let (pid, e) = ready(f.c.init_producer_id("tx", 1000, None, &f.ids, 0).unwrap());
        f.c.add_partitions("tx", pid, e, &[t("a", 0)], 100).unwrap();
        assert!(f.c.due(1100).is_empty(), "not yet");
        let due = f.c.due(1101);
        assert_eq!(due.len(), 1);
        f.c.complete(&due[0], 1102).unwrap();
        assert_eq!(
            f.c.end("tx", pid, e, true, 1103),
            Err(TxnError::ProducerFenced)
        );
        // KIP-360: the producer recovers with its old epoch and gets a newer one.
        let (pid2, e2) = ready(
            f.c.init_producer_id("tx", 1000, Some((pid, e)), &f.ids, 1104)
                .unwrap(),
        );
        assert_eq!((pid2, e2), (pid, e + 2));
    }

    #[test]
    fn idle_ids_expire_durably_but_never_with_a_transaction_in_progress() {
        let f = fixture();
        let config = TxnConfig {
            id_expiration_ms: 1000,
            ..TxnConfig::default()
        };
        let c = TransactionCoordinator::open(&f.path, config).unwrap();
        let (idle, _) = ready(c.init_producer_id("idle", 60_000, None, &f.ids, 0).unwrap());
        let (pid, e) = ready(c.init_producer_id("busy", 60_000, None, &f.ids, 0).unwrap());
        c.add_partitions("busy", pid, e, &[t("a", 0)], 500).unwrap();
        assert!(c.expire(1000).is_empty(), "not idle long enough yet");
        // "busy" has been quiet as long, but its transaction is ongoing.
        assert_eq!(c.expire(1600), vec!["idle".to_string()]);
        assert_eq!(
            c.list()
                .iter()
                .map(|v| v.transactional_id.as_str())
                .collect::<Vec<_>>(),
            vec!["busy"]
        );
        // Durable: a restart does not bring it back, and its next init starts afresh.
        drop(c);
        let c = TransactionCoordinator::open(&f.path, config).unwrap();
        assert!(c.describe(&["idle".to_string()])[0].1.is_none());
        let (fresh, epoch) = ready(
            c.init_producer_id("idle", 60_000, None, &f.ids, 2000)
                .unwrap(),
        );
        assert_ne!(fresh, idle, "a new producer id");
        assert_eq!(epoch, 0);
        assert!(c.describe(&["busy".to_string()])[0].1.is_some());
    }

    #[test]
    fn verification_admits_only_partitions_added_to_the_ongoing_transaction() {
        let f = fixture();
        let (pid, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        assert!(matches!(
            f.c.verify_write("tx", pid, e, "a", 0),
            Err(TxnError::InvalidTxnState(_))
        ));
        f.c.add_partitions("tx", pid, e, &[t("a", 0)], 1).unwrap();
        f.c.verify_write("tx", pid, e, "a", 0).unwrap();
        assert!(f.c.verify_write("tx", pid, e, "a", 1).is_err());
        assert_eq!(
            f.c.verify_write("tx", pid, e + 1, "a", 0),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn derived_partitions_join_only_an_ongoing_transaction_and_end_with_it() {
        let f = fixture();
        let (pid, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        let out = ("out".to_string(), 0, 1_i64 << 61);
        assert!(
            f.c.add_derived("tx", pid, e, std::slice::from_ref(&out), 1)
                .is_err(),
            "no transaction is ongoing"
        );
        f.c.add_partitions("tx", pid, e, &[t("in", 0)], 1).unwrap();
        f.c.add_derived("tx", pid, e, std::slice::from_ref(&out), 1)
            .unwrap();
        assert_eq!(
            f.c.add_derived("tx", pid, e + 1, std::slice::from_ref(&out), 1),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(f.c.owner_of(out.2).map(|o| o.0), Some("tx".to_string()));
        assert_eq!(f.c.owner_of(pid).map(|o| (o.1, o.2)), Some((pid, e)));
        // Durable before any output is appended: a restart keeps it.
        let c = TransactionCoordinator::open(&f.path, TxnConfig::default()).unwrap();
        let ending = c.end("tx", pid, e, true, 2).unwrap().expect("an end");
        assert_eq!(ending.derived, vec![out.clone()]);
        c.add_derived("tx", pid, e, std::slice::from_ref(&out), 2)
            .unwrap();
        assert!(
            c.add_derived("tx", pid, e, &[("out".to_string(), 1, 5)], 2)
                .is_err(),
            "nothing new joins a decided commit"
        );
        c.complete(&ending, 3).unwrap();
        assert_eq!(c.owner_of(out.2), None, "cleared with the transaction");
    }

    #[test]
    fn epochs_never_wrap_a_new_producer_id_is_taken() {
        let f = fixture();
        let (pid, _) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 0).unwrap());
        {
            let mut inner = f.c.inner.lock();
            let mut m = inner.txns["tx"].clone();
            m.producer_epoch = state::MAX_EPOCH;
            inner.commit("tx", m).unwrap();
        }
        let (pid2, e) = ready(f.c.init_producer_id("tx", 60_000, None, &f.ids, 1).unwrap());
        assert_ne!(pid2, pid);
        assert_eq!(e, 0);
    }
}
