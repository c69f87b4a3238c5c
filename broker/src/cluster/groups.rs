//! Consumer groups in cluster mode: this broker's side of the group leases. It implements the
//! coordinator's seam ([`crate::group::RemoteGroups`]) on PostgreSQL ([`super::db::groups`]):
//! a group is served here only while this broker holds its lease, membership stays in memory
//! (the classic state machine), and committed offsets are written to PostgreSQL under the lease.
//!
//! FindCoordinator answers the lease holder, or when no broker holds the group, the live broker
//! rendezvous hashing picks ([`super::placement`]); that broker takes the lease on the group's
//! first request. [`run_renewals`] keeps the leases of groups with members renewed; a group
//! with none is let go when its lease runs out. When a coordinator dies its broker registration
//! lapses, which frees its leases, so the next FindCoordinator places the group elsewhere and
//! its members rejoin there, resuming from the committed offsets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::db::groups::{self as db, GroupDbError};
use super::db::Db;
use super::placement::group_coordinator;
use super::types::BrokerInfo;
use crate::group::remote::{Claim, CoordinatorAddress, RemoteError, RemoteGroup};
use crate::group::{Committed, GroupCoordinator, GroupMeta, GroupOffsets, RemoteGroups};

/// How long a group lease lasts unless renewed.
pub const GROUP_LEASE_TTL: Duration = Duration::from_secs(10);
/// This much before the database's expiry, this broker stops believing it holds a lease, so a
/// slow renewal never lets two brokers think they coordinate one group (commits are fenced in
/// the database regardless).
const SAFETY_MARGIN: Duration = Duration::from_secs(2);

/// This broker's group leases.
pub struct ClusterGroups {
    db: Db,
    /// This broker's current registration (it changes when the broker registers again after
    /// its own lease lapsed): every group lease is bound to its epoch.
    broker: LeaseSource,
    ttl: Duration,
    /// Groups whose lease this broker holds: until when it may believe so, under which epoch.
    held: Mutex<HashMap<String, (Instant, i64)>>,
    /// The groups with members here (from the coordinator's timer), renewed by [`run_renewals`].
    active: Mutex<Vec<(String, Option<GroupMeta>)>>,
    /// The metadata last written per group, so a rebalance is recorded once.
    recorded: Mutex<HashMap<String, GroupMeta>>,
    /// Until when this broker's own registration is surely current: the database frees a
    /// lapsed broker's group leases, so none is believed held past it (a paused broker
    /// answers NOT_COORDINATOR instead of serving a group another broker may have taken).
    registered_until: RegistrationBound,
}

/// Where [`ClusterGroups`] reads until when this broker's registration is surely current.
pub type RegistrationBound = Arc<dyn Fn() -> Instant + Send + Sync>;

pub use super::types::LeaseSource;

impl std::fmt::Debug for ClusterGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterGroups")
            .field("broker", &(self.broker)())
            .field("held", &self.held.lock().len())
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Unavailable(e.to_string())
}

impl From<GroupDbError> for RemoteError {
    fn from(e: GroupDbError) -> RemoteError {
        match e {
            GroupDbError::LeaseLost => RemoteError::NotCoordinator,
            GroupDbError::Db(e) => unavailable(e),
            GroupDbError::Unavailable(e) => unavailable(e),
        }
    }
}

impl ClusterGroups {
    pub fn new(db: Db, broker: LeaseSource) -> ClusterGroups {
        ClusterGroups::with_ttl(db, broker, GROUP_LEASE_TTL)
    }

    pub fn with_ttl(db: Db, broker: LeaseSource, ttl: Duration) -> ClusterGroups {
        ClusterGroups {
            db,
            broker,
            ttl,
            held: Mutex::new(HashMap::new()),
            active: Mutex::new(Vec::new()),
            recorded: Mutex::new(HashMap::new()),
            // Until told otherwise ([`ClusterGroups::bounded_by`]), the group lease's own
            // length is the only bound.
            registered_until: Arc::new(|| Instant::now() + Duration::from_secs(3600)),
        }
    }

    /// Believes no group lease held past `until` (this broker's registration's bound).
    pub fn bounded_by(mut self, until: RegistrationBound) -> ClusterGroups {
        self.registered_until = until;
        self
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, RemoteError> {
        self.db.group_connection().await.map_err(RemoteError::from)
    }

    /// Takes or renews the lease; `Some(fresh)` when held.
    async fn acquire(&self, group: &str) -> Result<Option<(bool, Claim)>, RemoteError> {
        let client = self.client().await?;
        // Measured before the request: the database's expiry is at least this late.
        let started = Instant::now();
        let broker = (self.broker)();
        let held = db::acquire_lease(&client, group, broker, self.ttl).await?;
        let mut leases = self.held.lock();
        match held {
            Some(lease) => {
                let fresh = leases
                    .get(group)
                    .is_none_or(|(until, epoch)| *until <= started || *epoch != broker.epoch);
                let until = (started + self.ttl.saturating_sub(SAFETY_MARGIN))
                    .min((self.registered_until)());
                leases.insert(group.to_string(), (until, broker.epoch));
                Ok(Some((
                    fresh,
                    Claim {
                        fresh,
                        meta: lease.meta,
                    },
                )))
            }
            None => {
                leases.remove(group);
                Ok(None)
            }
        }
    }

    /// A write under the lease failed for want of it: stop serving the group here.
    fn lost(&self, group: &str, e: &RemoteError) {
        if *e == RemoteError::NotCoordinator {
            self.held.lock().remove(group);
        }
    }

    /// Renews the leases of the groups with members here and records their new generations.
    async fn renew(&self) {
        let active = self.active.lock().clone();
        for (group, meta) in active {
            match self.acquire(&group).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(group, "group lease taken over by another broker");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(group, "renewing group lease failed: {e}");
                    continue;
                }
            }
            let Some(meta) = meta else { continue };
            if self.recorded.lock().get(&group) == Some(&meta) {
                continue;
            }
            let outcome = match self.client().await {
                Ok(mut client) => db::record_meta(&mut client, &group, (self.broker)(), &meta)
                    .await
                    .map_err(RemoteError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    self.recorded.lock().insert(group, meta);
                }
                Err(e) => tracing::warn!(group, "recording group generation failed: {e}"),
            }
        }
        let now = Instant::now();
        self.held.lock().retain(|_, (until, _)| *until > now);
    }
}

fn address(b: &BrokerInfo) -> CoordinatorAddress {
    CoordinatorAddress {
        node_id: b.node_id,
        host: b.host.clone(),
        port: b.port,
    }
}

impl RemoteGroups for ClusterGroups {
    fn claim<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Claim, RemoteError>> {
        async move {
            match self.acquire(group).await? {
                Some((_, claim)) => Ok(claim),
                None => Err(RemoteError::NotCoordinator),
            }
        }
        .boxed()
    }

    fn holds(&self, group: &str) -> bool {
        let now = Instant::now();
        if (self.registered_until)() <= now {
            return false;
        }
        self.held
            .lock()
            .get(group)
            .is_some_and(|(until, epoch)| *until > now && *epoch == (self.broker)().epoch)
    }

    fn keep(&self, active: Vec<(String, Option<GroupMeta>)>) {
        *self.active.lock() = active;
    }

    fn coordinator<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<CoordinatorAddress, RemoteError>> {
        async move {
            let client = self.client().await?;
            if let Some(holder) = db::lease_holder(&client, group).await? {
                return Ok(address(&holder));
            }
            drop(client);
            let live = self.db.live_brokers().await.map_err(unavailable)?;
            let ids: Vec<i32> = live.iter().map(|b| b.node_id).collect();
            group_coordinator(group, &ids)
                .and_then(|id| live.iter().find(|b| b.node_id == id))
                .map(address)
                .ok_or_else(|| unavailable("no live broker"))
        }
        .boxed()
    }

    fn commit<'a>(
        &'a self,
        group: &'a str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> BoxFuture<'a, Result<Vec<bool>, RemoteError>> {
        async move {
            let mut client = self.client().await?;
            let outcome = db::commit_offsets(&mut client, group, (self.broker)(), &offsets)
                .await
                .map_err(RemoteError::from);
            if let Err(e) = &outcome {
                self.lost(group, e);
            }
            outcome
        }
        .boxed()
    }

    fn fetch<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupOffsets, RemoteError>> {
        async move {
            let client = self.client().await?;
            Ok(db::fetch_offsets(&client, group).await?)
        }
        .boxed()
    }

    fn delete_offsets<'a>(
        &'a self,
        group: &'a str,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        async move {
            let mut client = self.client().await?;
            let outcome = db::delete_offsets(&mut client, group, (self.broker)(), &partitions)
                .await
                .map_err(RemoteError::from);
            if let Err(e) = &outcome {
                self.lost(group, e);
            }
            outcome
        }
        .boxed()
    }

    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        async move {
            let mut client = self.client().await?;
            let outcome = db::delete_group(&mut client, group, (self.broker)())
                .await
                .map_err(RemoteError::from);
            self.held.lock().remove(group);
            self.recorded.lock().remove(group);
            outcome
        }
        .boxed()
    }

    fn delete_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        async move {
            let client = self.client().await?;
            Ok(db::delete_topic_offsets(&client, topic).await?)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteGroup>, RemoteError>> {
        async move {
            let client = self.client().await?;
            let known = db::list_groups(&client).await?;
            Ok(known
                .into_iter()
                .map(|g| RemoteGroup {
                    here: g.coordinator == Some((self.broker)().node_id) && self.holds(&g.group_id),
                    coordinated: g.coordinator.is_some(),
                    group_id: g.group_id,
                    protocol_type: g.protocol_type,
                })
                .collect())
        }
        .boxed()
    }
}

/// Hands `coordinator`'s groups to the cluster (leases and offsets in its database) and starts
/// the renewals; the returned task ends with `stop`.
pub fn start(
    cluster: &Arc<super::node::Cluster>,
    coordinator: &GroupCoordinator,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let lease: LeaseSource = {
        let cluster = cluster.clone();
        Arc::new(move || cluster.lease())
    };
    let registered_until: RegistrationBound = {
        let cluster = cluster.clone();
        Arc::new(move || cluster.registration_valid_until())
    };
    let groups =
        Arc::new(ClusterGroups::new(cluster.db.clone(), lease).bounded_by(registered_until));
    coordinator.set_remote(groups.clone());
    tokio::spawn(run_renewals(groups, stop))
}

/// Renews the leases of groups with members here, a few times per lease, until `stop`.
pub async fn run_renewals(groups: Arc<ClusterGroups>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(groups.ttl / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        groups.renew().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::error::ResponseError;

    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::BrokerLease;
    use crate::group::{GroupConfig, JoinParams};

    /// A broker's group coordinator in cluster mode: registered in `db`, its groups under
    /// leases there.
    struct Node {
        _dir: tempfile::TempDir,
        lease: BrokerLease,
        remote: Arc<ClusterGroups>,
        groups: GroupCoordinator,
    }

    async fn node(db: &Db, port: i32) -> Node {
        let lease = db
            .register("127.0.0.1", port, None, Duration::from_secs(60))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        };
        let groups = GroupCoordinator::open(dir.path(), config).unwrap();
        let remote = Arc::new(ClusterGroups::new(db.clone(), Arc::new(move || lease)));
        groups.set_remote(remote.clone());
        Node {
            _dir: dir,
            lease,
            remote,
            groups,
        }
    }

    /// A lone member joins `group` on `n`; its generation.
    async fn join(n: &Node, group: &str) -> i32 {
        n.groups.claim(group).await.unwrap();
        let g = n.groups.group(group);
        let mut rx = g
            .lock()
            .join(
                JoinParams {
                    member_id: String::new(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(10),
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::new())],
                    require_known_member_id: false,
                    supports_skip_assignment: false,
                },
                Instant::now(),
            )
            .expect_err("waits for the join phase");
        rx.try_recv()
            .expect("a lone member completes it")
            .generation
    }

    fn at(offset: i64) -> Vec<(String, i32, Committed)> {
        vec![(
            "t".into(),
            0,
            Committed {
                offset,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp: 0,
            },
        )]
    }

    #[tokio::test]
    async fn a_coordinator_whose_registration_may_have_lapsed_stops_serving_its_groups() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let lease = db
            .register("127.0.0.1", 9001, None, Duration::from_secs(60))
            .await
            .unwrap();
        let until = Arc::new(Mutex::new(Instant::now() + Duration::from_secs(60)));
        let bound: RegistrationBound = {
            let until = until.clone();
            Arc::new(move || *until.lock())
        };
        let remote =
            ClusterGroups::new(db.clone(), Arc::new(move || lease)).bounded_by(bound.clone());
        remote.claim("g").await.unwrap();
        assert!(remote.holds("g"));
        // Paused past its registration (SIGSTOP, a frozen VM): the database may have freed
        // the group for another broker, so it is not served here, though its own group
        // lease would still run for seconds.
        *until.lock() = Instant::now();
        assert!(!remote.holds("g"));
        // A lease taken near the registration's end is believed only until then.
        *until.lock() = Instant::now() + Duration::from_millis(200);
        remote.claim("g").await.unwrap();
        assert!(remote.holds("g"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while remote.holds("g") {
            assert!(Instant::now() < deadline, "held past the registration");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_dead_coordinators_group_moves_with_its_offsets_and_generation() {
        let t = TestDb::new().await;
        let db = t.connect().await;
        db.group_connection()
            .await
            .unwrap()
            .batch_execute(
                "INSERT INTO sluice_topics (topic_id, name, partitions)
                 VALUES ('00000000-0000-0000-0000-000000000001', 't', 1)",
            )
            .await
            .unwrap();
        let one = node(&db, 9001).await;
        let two = node(&db, 9002).await;

        // Whoever rendezvous hashing names first, the group's first request there takes it.
        let first = one.remote.coordinator("g").await.unwrap().node_id;
        let (owner, other) = if first == one.lease.node_id {
            (&one, &two)
        } else {
            (&two, &one)
        };
        assert_eq!(join(owner, "g").await, 1);
        assert_eq!(
            other.groups.claim("g").await,
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(other.groups.holds("g"), Err(ResponseError::NotCoordinator));
        assert_eq!(
            other.remote.coordinator("g").await.unwrap().node_id,
            owner.lease.node_id,
            "every broker names the lease holder"
        );
        assert_eq!(
            other.groups.commit_offsets("g", at(99)).await,
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            owner.groups.commit_offsets("g", at(5)).await,
            Ok(vec![true])
        );
        // The coordinator's timer reports the group active; the renewal records its generation.
        owner.groups.tick(Instant::now());
        owner.remote.renew().await;

        // The coordinator dies: its registration lapses.
        db.group_connection()
            .await
            .unwrap()
            .execute(
                "UPDATE sluice_brokers SET lease_expires = now() - interval '1 second'
                  WHERE node_id = $1",
                &[&owner.lease.node_id],
            )
            .await
            .unwrap();
        assert_eq!(
            other.remote.coordinator("g").await.unwrap().node_id,
            other.lease.node_id,
            "FindCoordinator now names the live broker"
        );
        assert_eq!(
            join(other, "g").await,
            2,
            "generations keep counting on the new coordinator"
        );
        assert_eq!(
            other.groups.fetch_offsets("g").await.unwrap()[&("t".into(), 0)].offset,
            5
        );
        // The old coordinator, a zombie now, commits nothing and stops serving the group.
        assert_eq!(
            owner.groups.commit_offsets("g", at(7)).await,
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(owner.groups.holds("g"), Err(ResponseError::NotCoordinator));
        assert_eq!(
            other.groups.commit_offsets("g", at(8)).await,
            Ok(vec![true])
        );
        assert_eq!(
            other.groups.fetch_offsets("g").await.unwrap()[&("t".into(), 0)].offset,
            8
        );
    }
}
