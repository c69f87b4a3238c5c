//! The consumer-group coordinator (Kafka's classic group protocol) and committed offsets.
//!
//! - [`state`]: one group's membership and rebalance state machine.
//! - [`offsets`]: committed offsets, stored durably in `__sluice/offsets.log` — an append-only,
//!   CRC-framed record file, fsynced (group commit) before an OffsetCommit is answered, replayed at
//!   start and compacted to a snapshot as it grows. Each group's protocol type and generation go in
//!   the same file when a rebalance completes, so after a restart the group is listed and
//!   described (Empty) and its generations keep counting up. Live membership is not persisted:
//!   after a broker restart members rejoin (their heartbeats get UNKNOWN_MEMBER_ID) and resume
//!   from the committed offsets, which are.
//!
//! - [`remote`]: the seam to a cluster: in cluster mode a group is coordinated here only under a
//!   lease, and its committed offsets live in the cluster's store; [`GroupCoordinator`]'s
//!   `claim`, `holds`, `commit_offsets` and `fetch_offsets` route to it or to [`offsets`].
//!
//! Each group has its own lock, never held across an `.await`; one background task ([`run_timers`])
//! expires sessions and ends overdue join and sync phases, so no group waits on another. Groups
//! with nothing left (no members, offsets or metadata) are dropped from memory by the same task.

pub mod offsets;
pub mod remote;
pub mod state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

pub use offsets::{Committed, GroupMeta, GroupOffsets, OffsetStore};
pub use remote::{RemoteError, RemoteGroups};
pub use state::{Group, JoinParams, JoinResult, State, SyncParams, SyncResult};

/// The Kafka error code of an outcome: 0 for success.
pub fn code(outcome: Result<(), kafka_protocol::error::ResponseError>) -> i16 {
    outcome.err().map_or(0, |e| e.code())
}

/// Coordinator settings (Kafka's broker names).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
        }
    }
}

/// All groups and their offsets.
#[derive(Debug)]
pub struct GroupCoordinator {
    /// Groups in memory; the map's lock is held only to find or insert one.
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Committed offsets and group metadata, shared with each group for its metadata records.
    pub offsets: Arc<OffsetStore>,
    pub config: GroupConfig,
    /// Cluster mode's coordination (set once at startup); unset, every group is ours and its
    /// offsets are in [`Self::offsets`].
    remote: OnceLock<Arc<dyn RemoteGroups>>,
}

impl GroupCoordinator {
    /// Opens the coordinator with its offsets file under `meta_dir`.
    pub fn open(meta_dir: &Path, config: GroupConfig) -> std::io::Result<GroupCoordinator> {
        Ok(GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            offsets: Arc::new(OffsetStore::open(&meta_dir.join("offsets.log"))?),
            config,
            remote: OnceLock::new(),
        })
    }

    /// Puts group coordination in the cluster's hands (cluster mode); once, at startup.
    pub fn set_remote(&self, remote: Arc<dyn RemoteGroups>) {
        if self.remote.set(remote).is_err() {
            tracing::warn!("group coordination was already handed to the cluster");
        }
    }

    /// The cluster's coordination, in cluster mode.
    pub fn remote(&self) -> Option<&Arc<dyn RemoteGroups>> {
        self.remote.get()
    }

    /// Makes sure this broker coordinates `id` before serving a request for it: always so on a
    /// single node; in cluster mode, takes or renews the group's lease (NOT_COORDINATOR when
    /// another broker holds it). A lease taken anew drops what memory kept of an earlier tenure.
    pub async fn claim(&self, id: &str) -> Result<(), kafka_protocol::error::ResponseError> {
        let Some(remote) = self.remote() else {
            return Ok(());
        };
        let claim = remote.claim(id).await.map_err(|e| e.code())?;
        if claim.fresh {
            let old = self.groups.lock().remove(id);
            if let Some(old) = old {
                // Its members belong to another coordinator's generations now; they rejoin.
                old.lock().kill();
            }
            if let Some(meta) = claim.meta {
                self.group(id).lock().restore(meta);
            }
        }
        Ok(())
    }

    /// [`Self::claim`] without I/O, for requests that only come from members already here
    /// (Heartbeat, LeaveGroup): in cluster mode, whether the lease is held.
    pub fn holds(&self, id: &str) -> Result<(), kafka_protocol::error::ResponseError> {
        match self.remote() {
            Some(remote) if !remote.holds(id) => {
                Err(kafka_protocol::error::ResponseError::NotCoordinator)
            }
            _ => Ok(()),
        }
    }

    /// Stores committed offsets durably (the local log, or in cluster mode the cluster's store
    /// under the group's lease). Per entry: stored, or `false` for a partition the cluster does
    /// not have.
    pub async fn commit_offsets(
        &self,
        id: &str,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<Vec<bool>, kafka_protocol::error::ResponseError> {
        match self.remote() {
            Some(remote) => remote.commit(id, entries).await.map_err(|e| {
                tracing::warn!(group = id, "offset commit not stored: {e}");
                e.code()
            }),
            None => {
                let n = entries.len();
                self.offsets.commit(id, entries).await.map_err(|e| {
                    tracing::error!(group = id, "offset commit failed: {e}");
                    kafka_protocol::error::ResponseError::KafkaStorageError
                })?;
                Ok(vec![true; n])
            }
        }
    }

    /// The group's committed offsets.
    pub async fn fetch_offsets(
        &self,
        id: &str,
    ) -> Result<GroupOffsets, kafka_protocol::error::ResponseError> {
        match self.remote() {
            Some(remote) => remote.fetch(id).await.map_err(|e| e.code()),
            None => Ok(self.offsets.group(id)),
        }
    }

    /// Deletes some of the group's offsets durably.
    pub async fn delete_offsets(
        &self,
        id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), kafka_protocol::error::ResponseError> {
        match self.remote() {
            Some(remote) => remote
                .delete_offsets(id, partitions)
                .await
                .map_err(|e| e.code()),
            None => self
                .offsets
                .delete_offsets(id, partitions)
                .await
                .map_err(|e| {
                    tracing::error!(group = id, "offset delete failed: {e}");
                    kafka_protocol::error::ResponseError::KafkaStorageError
                }),
        }
    }

    /// The group, created (Empty) if missing.
    pub fn group(&self, id: &str) -> Arc<Mutex<Group>> {
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get(id) {
            if g.lock().state != State::Dead {
                return g.clone();
            }
        }
        let mut group = Group::new(self.config.initial_rebalance_delay);
        if let Some(meta) = self.offsets.group_meta(id) {
            group.restore(meta);
        }
        group.journal = Some((id.to_string(), self.offsets.clone()));
        let g = Arc::new(Mutex::new(group));
        groups.insert(id.to_string(), g.clone());
        g
    }

    /// The group if it has members or offsets.
    pub fn existing(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        if let Some(g) = self.groups.lock().get(id) {
            if g.lock().state != State::Dead {
                return Some(g.clone());
            }
        }
        self.offsets.has_group(id).then(|| self.group(id))
    }

    /// Every known group id with its protocol type and state.
    pub fn list(&self) -> Vec<(String, String, State)> {
        let mut out: HashMap<String, (String, State)> = self
            .offsets
            .groups()
            .into_iter()
            .map(|(g, meta)| {
                // Offsets without metadata were committed by a consumer-protocol client.
                let protocol_type =
                    meta.map_or_else(|| "consumer".to_string(), |m| m.protocol_type);
                (g, (protocol_type, State::Empty))
            })
            .collect();
        for (id, g) in self.groups.lock().iter() {
            let g = g.lock();
            if g.state == State::Dead
                || (g.is_empty() && !out.contains_key(id) && g.protocol_type.is_none())
            {
                continue;
            }
            out.insert(
                id.clone(),
                (
                    g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                    g.state,
                ),
            );
        }
        let mut list: Vec<_> = out.into_iter().map(|(id, (t, s))| (id, t, s)).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Deletes an Empty group (DeleteGroups): marks it Dead and appends the deletion of its
    /// offsets under its lock, so no member can join or commit in between; then waits until the
    /// deletion is durable.
    pub async fn delete(&self, id: &str) -> Result<(), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        if let Some(remote) = self.remote() {
            return self.delete_remote(remote.as_ref(), id).await;
        }
        let Some(group) = self.existing(id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let seq = {
            let mut g = group.lock();
            if g.state == State::Dead {
                return Err(ResponseError::GroupIdNotFound);
            }
            if !g.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
            let seq = self.offsets.append_delete_group(id).map_err(|e| {
                tracing::error!(group = id, "deleting group offsets failed: {e}");
                ResponseError::KafkaStorageError
            })?;
            g.kill();
            seq
        };
        {
            let mut groups = self.groups.lock();
            if groups.get(id).is_some_and(|g| Arc::ptr_eq(g, &group)) {
                groups.remove(id);
            }
        }
        self.offsets.wait_durable(seq).await.map_err(|e| {
            tracing::error!(group = id, "deleting group offsets failed: {e}");
            ResponseError::KafkaStorageError
        })
    }

    /// DeleteGroups in cluster mode: refused while the group has members here; otherwise marked
    /// Dead in memory, then its offsets and lease deleted under the lease.
    async fn delete_remote(
        &self,
        remote: &dyn RemoteGroups,
        id: &str,
    ) -> Result<(), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        let known = remote.list().await.map_err(|e| e.code())?;
        if !known.iter().any(|g| g.group_id == id) && self.existing(id).is_none() {
            return Err(ResponseError::GroupIdNotFound);
        }
        let group = self.group(id);
        {
            let mut g = group.lock();
            if !g.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
            g.kill();
        }
        {
            let mut groups = self.groups.lock();
            if groups.get(id).is_some_and(|g| Arc::ptr_eq(g, &group)) {
                groups.remove(id);
            }
        }
        remote.delete_group(id).await.map_err(|e| e.code())
    }

    /// One step of the timers ([`run_timers`]): sessions, join and sync deadlines, idle groups.
    pub(crate) fn tick(&self, now: Instant) {
        let groups: Vec<(String, Arc<Mutex<Group>>)> = self
            .groups
            .lock()
            .iter()
            .map(|(id, g)| (id.clone(), g.clone()))
            .collect();
        let mut active = Vec::new();
        for (id, g) in groups {
            let mut g = g.lock();
            g.tick(now);
            if !g.is_empty() {
                let meta = g.protocol_type.clone().map(|protocol_type| GroupMeta {
                    protocol_type,
                    generation: g.generation,
                });
                active.push((id, meta));
            }
        }
        if let Some(remote) = self.remote() {
            remote.keep(active);
        }
        // Drop groups that hold nothing; `group()` rebuilds one from the store on demand. Only
        // ones no request holds (the map's is the only reference, and new references are only
        // taken under the map's lock), so a member never joins a group that is being dropped.
        self.groups.lock().retain(|_, g| {
            Arc::strong_count(g) > 1 || {
                let g = g.lock();
                !(g.is_empty() && matches!(g.state, State::Empty | State::Dead))
            }
        });
    }
}

/// Expires sessions and ends join phases until `stop` turns true.
pub async fn run_timers(coordinator: Arc<GroupCoordinator>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => coordinator.tick(Instant::now()),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn join_params(member: &str) -> JoinParams {
        JoinParams {
            member_id: member.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    fn no_delay() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        }
    }

    /// Joins a one-member group; returns the member id and generation.
    fn join_alone(c: &GroupCoordinator, group: &str) -> (String, i32) {
        let g = c.group(group);
        let mut g = g.lock();
        let mut rx = g
            .join(join_params(""), Instant::now())
            .expect_err("waits for the join phase");
        let joined = rx.try_recv().expect("a lone member completes the phase");
        (joined.member_id, joined.generation)
    }

    #[tokio::test]
    async fn groups_come_back_empty_after_a_restart_with_their_offsets_and_generation() {
        let dir = tempfile::tempdir().unwrap();
        let c = GroupCoordinator::open(dir.path(), no_delay()).unwrap();
        let (_, generation) = join_alone(&c, "g");
        assert_eq!(generation, 1);
        let committed = Committed {
            offset: 42,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 0,
        };
        c.offsets
            .commit("g", vec![("t".into(), 0, committed)])
            .await
            .unwrap();
        drop(c);

        let c = GroupCoordinator::open(dir.path(), no_delay()).unwrap();
        assert_eq!(
            c.list(),
            vec![("g".to_string(), "consumer".to_string(), State::Empty)]
        );
        assert_eq!(c.offsets.group("g")[&("t".to_string(), 0)].offset, 42);
        let (_, generation) = join_alone(&c, "g");
        assert_eq!(generation, 2, "generations keep counting across restarts");
    }

    #[tokio::test]
    async fn groups_holding_nothing_are_dropped_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let c = GroupCoordinator::open(dir.path(), no_delay()).unwrap();
        for i in 0..100 {
            // Looked up (e.g. by a heartbeat or a refused commit) but never joined.
            let _ = c.group(&format!("probe-{i}"));
        }
        let (member, _) = join_alone(&c, "live");
        c.tick(Instant::now());
        assert_eq!(
            c.groups.lock().len(),
            1,
            "only the group with a member stays"
        );
        assert!(c.group("live").lock().members.contains_key(&member));
    }
}
