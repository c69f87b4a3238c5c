//! Connectors in cluster mode: PostgreSQL holds every connector's config and target state
//! ([`crate::cluster::db::connectors`]), and each broker mirrors it into its [`Connect`] every
//! [`TICK`] and before each REST call answers, so every broker lists and shows the same ones.
//!
//! Each connector's one task runs on the broker holding its task lease (a fenced lease bound to
//! the broker's registration epoch, see [`crate::cluster::db::lease`]). When no broker holds it,
//! the live broker that rendezvous hashing picks for the connector's group `connect-<name>` takes
//! it (see [`crate::cluster::placement`]); the holder keeps it while it lives and renews it every
//! tick, reporting its task's status with the renewal. A holder stops believing in its lease a
//! margin before the database would let another broker take it, and its task writes nothing
//! past that belief (see [`super::io::TaskLease`]), so a paused or fenced holder stops before the
//! next one starts; what it still tries to commit is refused by the database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::io::{TaskIo, TaskLease, LEASE_LOST};
use super::{Connect, Connector, Target};
use crate::broker::Broker;
use crate::cluster::db::connectors::TaskReport;
use crate::cluster::db::DbError;
use crate::cluster::node::Cluster;
use crate::cluster::placement::group_coordinator;

/// How long a task lease lasts unless renewed (it also ends with its holder's registration).
pub const TASK_LEASE_TTL: Duration = Duration::from_secs(10);
/// How often each broker mirrors the connectors and renews its task leases.
const TICK: Duration = Duration::from_millis(500);
/// This much before the database's expiry, the holder stops believing it holds the lease.
const SAFETY_MARGIN: Duration = Duration::from_millis(500);

/// This broker's part in running the cluster's connectors.
pub(crate) struct ClusterConnect {
    pub(crate) cluster: Arc<Cluster>,
    /// This broker's REST address, Connect's worker id.
    pub(crate) worker_id: String,
    /// The tasks running here, by connector; one reconciliation at a time.
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

/// A task running on this broker.
struct Running {
    /// The connector's generation it was started for: a new one restarts it.
    generation: i64,
    lease: Arc<TaskLease>,
}

impl std::fmt::Debug for ClusterConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnect")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

fn target_of(text: &str) -> Target {
    match text {
        "PAUSED" => Target::Paused,
        "STOPPED" => Target::Stopped,
        _ => Target::Running,
    }
}

pub(crate) fn target_name(target: Target) -> &'static str {
    match target {
        Target::Running => "RUNNING",
        Target::Paused => "PAUSED",
        Target::Stopped => "STOPPED",
    }
}

/// A state another broker reported, as one of Connect's.
fn state_of(text: &str) -> &'static str {
    match text {
        "RUNNING" => "RUNNING",
        "PAUSED" => "PAUSED",
        "STOPPED" => "STOPPED",
        "FAILED" => "FAILED",
        _ => "UNASSIGNED",
    }
}

impl ClusterConnect {
    pub(crate) fn new(cluster: Arc<Cluster>, worker_id: String) -> ClusterConnect {
        ClusterConnect {
            cluster,
            worker_id,
            running: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Brings `connect` in line with the database: connectors added, changed and removed; task
    /// leases taken, renewed or lost, and tasks started or stopped with them; the status of
    /// tasks running elsewhere as their holders report it.
    pub(crate) async fn reconcile(
        &self,
        connect: &Connect,
        broker: &Arc<Broker>,
    ) -> Result<(), DbError> {
        let mut running = self.running.lock().await;
        let rows = self.cluster.db.connectors().await?;
        let live: Vec<i32> = self
            .cluster
            .live_brokers()
            .await?
            .iter()
            .map(|b| b.node_id)
            .collect();
        let me = self.cluster.lease();
        let names: HashSet<String> = rows.iter().map(|r| r.name.clone()).collect();
        let mirrored: Vec<_> = {
            let mut map = connect.connectors.lock();
            map.retain(|name, c| {
                let keep = names.contains(name);
                if !keep {
                    c.abort_task();
                }
                keep
            });
            rows.into_iter()
                .map(|row| {
                    let target = target_of(&row.target);
                    let c = map
                        .entry(row.name.clone())
                        .or_insert_with(|| {
                            Arc::new(Connector::new(
                                &row.name,
                                row.config.clone(),
                                target,
                                row.deployer.clone(),
                            ))
                        })
                        .clone();
                    {
                        let mut config = c.config.lock();
                        if *config != row.config {
                            *config = row.config.clone();
                        }
                    }
                    *c.deployer.lock() = row.deployer.clone();
                    c.target.send_if_modified(|t| {
                        let changed = *t != target;
                        *t = target;
                        changed
                    });
                    (row, c)
                })
                .collect()
        };
        running.retain(|name, _| names.contains(name));
        for (row, c) in mirrored {
            let here = running
                .get(&row.name)
                .map(|r| (r.generation, r.lease.clone()));
            let holder_is_me = row.task.as_ref().is_some_and(|t| t.node_id == me.node_id);
            let preferred =
                group_coordinator(&format!("connect-{}", row.name), &live) == Some(me.node_id);
            if here.is_some() || holder_is_me || (row.task.is_none() && preferred) {
                let status = c.status.lock().clone();
                let state = match here {
                    Some(_) => status.state,
                    None => target_name(*c.target.borrow()),
                };
                let report = TaskReport {
                    worker_id: &self.worker_id,
                    state,
                    trace: status.trace.as_deref().filter(|_| here.is_some()),
                };
                let started = Instant::now();
                match self
                    .cluster
                    .db
                    .acquire_task(&row.name, me, TASK_LEASE_TTL, report)
                    .await
                {
                    Ok(Some(left)) => {
                        let until = started + left.saturating_sub(SAFETY_MARGIN);
                        let fresh = match here {
                            None => true,
                            Some((generation, _)) => {
                                generation != row.generation
                                    || (c.task_finished()
                                        && status.trace.as_deref() == Some(LEASE_LOST))
                            }
                        };
                        if fresh {
                            let lease = Arc::new(TaskLease::default());
                            lease.hold_until(until);
                            super::start(
                                &c,
                                TaskIo::Cluster {
                                    broker: broker.clone(),
                                    cluster: self.cluster.clone(),
                                    name: row.name.clone(),
                                    lease: lease.clone(),
                                },
                            );
                            tracing::info!(connector = %row.name, "task started here under its lease");
                            running.insert(
                                row.name.clone(),
                                Running {
                                    generation: row.generation,
                                    lease,
                                },
                            );
                        } else if let Some((_, lease)) = &here {
                            lease.hold_until(until);
                        }
                        *c.worker.lock() = Some(self.worker_id.clone());
                        continue;
                    }
                    Ok(None) => {
                        if running.remove(&row.name).is_some() {
                            tracing::warn!(connector = %row.name, "task lease taken over: task stopped here");
                            c.abort_task();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(connector = %row.name, "cannot renew the task lease: {e}");
                        if here.as_ref().is_some_and(|(_, lease)| lease.is_held()) {
                            continue;
                        }
                        if running.remove(&row.name).is_some() {
                            c.abort_task();
                        }
                    }
                }
            }
            // Not running here: show what its holder reports.
            match &row.task {
                Some(t) if t.node_id != me.node_id => {
                    c.set_status(state_of(&t.state), t.trace.clone());
                    *c.worker.lock() = Some(t.worker_id.clone());
                }
                _ => {
                    c.set_status("UNASSIGNED", None);
                    *c.worker.lock() = None;
                }
            }
        }
        Ok(())
    }

    /// Stops every task here (shutdown) and gives their leases up, so other brokers take them
    /// at once.
    pub(crate) async fn leave(&self, connect: &Connect) {
        let mut running = self.running.lock().await;
        for c in connect.list() {
            c.abort_task();
        }
        let me = self.cluster.lease();
        for name in std::mem::take(&mut *running).into_keys() {
            if let Err(e) = self.cluster.db.release_task(&name, me).await {
                tracing::warn!(connector = %name, "cannot give the task lease up: {e}");
            }
        }
    }
}

/// Reconciles every [`TICK`] until `stop` (REST calls reconcile at once besides).
pub(crate) fn spawn(
    connect: Arc<Connect>,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(link) = connect.cluster.clone() else {
            return;
        };
        loop {
            if let Err(e) = link.reconcile(&connect, &broker).await {
                tracing::warn!("cannot read the cluster's connectors: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}
