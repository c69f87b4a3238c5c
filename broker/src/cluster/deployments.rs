//! Transform deployments in cluster mode: the cluster's set lives in PostgreSQL
//! ([`crate::cluster::db::deployments`]) and its modules in the object store
//! ([`super::modules`]); every broker applies that set to its own [`TransformRegistry`] at
//! start, on each change notice and every [`RECONCILE_EVERY`] (a notice missed while the feed
//! was down is caught by the feed's resync or, at worst, by the timer). A deploy, pause,
//! resume or removal through any broker's admin API is written to the database first and then
//! applied locally at once, so the broker that answered already runs what it answered.
//!
//! Only stateless deployments starting at the latest offset run in cluster mode: state stores,
//! `--table` lookups, backfills and in-place rewrites are refused at deploy time, as are
//! chains (an output topic that is another deployment's input).
//!
//! [`TransformRegistry`]: crate::transform::TransformRegistry

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::db::deployments::{DeploymentDbError, StoredDeployment};
use super::db::DbError;
use super::modules::{self, ModuleShareError};
use super::node::Cluster;
use super::types::CommitEvent;
use crate::broker::Broker;
use crate::transform::{DeployError, Deployment, Running};

/// How often the cluster's deployments are re-read even without a notice.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Why a deployment change through this broker was not made.
#[derive(Debug, thiserror::Error)]
pub enum ClusterDeployError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// What cluster mode does not run (yet); the message names it.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Module(#[from] ModuleShareError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<DeploymentDbError> for ClusterDeployError {
    fn from(e: DeploymentDbError) -> Self {
        match e {
            DeploymentDbError::Exists(name) => DeployError::Exists(name).into(),
            DeploymentDbError::NotFound(name) => DeployError::NotFound(name).into(),
            DeploymentDbError::Db(e) => e.into(),
        }
    }
}

fn unsupported(what: &str) -> ClusterDeployError {
    ClusterDeployError::Unsupported(format!("{what}: not supported in cluster mode yet"))
}

/// Re-reads the cluster's deployments and applies them here.
pub async fn reconcile(broker: &Arc<Broker>, cluster: &Cluster) -> Result<(), DbError> {
    let _turn = cluster.deployments_turn.lock().await;
    let stored = cluster.db.deployments().await?;
    apply(broker, cluster, stored).await;
    Ok(())
}

/// Makes the local registry hold `stored`: deployments gone from the cluster (or replaced by
/// another of the same name) removed, paused states copied, new ones deployed once their
/// module is here. A deployment that cannot start here is logged and tried again next time.
async fn apply(broker: &Arc<Broker>, cluster: &Cluster, stored: Vec<StoredDeployment>) {
    for running in broker.transforms.list() {
        let local = running.deployment.read().clone();
        let wanted = stored.iter().find(|s| s.deployment.name == local.name);
        let change = match wanted {
            Some(s) if same_but_paused(&s.deployment, &local) => {
                if s.deployment.paused == local.paused {
                    continue;
                }
                Some(s.deployment.paused)
            }
            _ => None,
        };
        let b = broker.clone();
        let name = local.name.clone();
        let done = tokio::task::spawn_blocking(move || match change {
            Some(paused) => b.transforms.set_paused(&name, paused),
            None => b.transforms.remove(&name),
        })
        .await;
        match done {
            Ok(Ok(())) | Ok(Err(DeployError::NotFound(_))) => {}
            Ok(Err(e)) => {
                tracing::warn!(transform = %local.name, "cannot apply the cluster's change: {e}")
            }
            Err(e) => {
                tracing::warn!(transform = %local.name, "cannot apply the cluster's change: {e}")
            }
        }
    }
    for s in stored {
        let d = s.deployment;
        if broker.transforms.get(&d.name).is_some() {
            continue;
        }
        if let Err(e) = modules::ensure_local(&cluster.objects, broker, &d.module).await {
            tracing::warn!(transform = %d.name, "cannot fetch the module: {e}");
            continue;
        }
        let b = broker.clone();
        let name = d.name.clone();
        match tokio::task::spawn_blocking(move || b.transforms.deploy(d, Vec::new())).await {
            Ok(Ok(_)) => tracing::info!(transform = %name, "applied the cluster's deployment"),
            Ok(Err(DeployError::Exists(_))) => {}
            Ok(Err(e)) => {
                tracing::warn!(transform = %name, "cannot run the cluster's deployment here: {e}")
            }
            Err(e) => {
                tracing::warn!(transform = %name, "cannot run the cluster's deployment here: {e}")
            }
        }
    }
}

fn same_but_paused(a: &Deployment, b: &Deployment) -> bool {
    let mut a = a.clone();
    a.paused = b.paused;
    a == *b
}

/// Applies the cluster's deployments now (before clients are served), then on every change
/// notice, feed resync and [`RECONCILE_EVERY`], until `stop`.
pub async fn start(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut events = cluster.events();
    if let Err(e) = reconcile(&broker, &cluster).await {
        tracing::warn!("cannot read the cluster's transform deployments: {e}");
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(
                        CommitEvent::Commit(_)
                        | CommitEvent::TopicChanged(_)
                        | CommitEvent::LogStartMoved { .. },
                    ) => continue,
                    Ok(CommitEvent::Deployments | CommitEvent::Resync)
                    | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = reconcile(&broker, &cluster).await {
                tracing::debug!("cannot re-read the cluster's transform deployments: {e}");
            }
        }
    })
}

/// Deploys `d` cluster-wide through this broker: checked for what cluster mode runs, its
/// module stored in the object store, its topics created in the cluster, started here (so a
/// module that fails to start fails the deploy), then stored in the database. Returns the
/// local deployment and the topics created.
pub async fn deploy(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    d: Deployment,
) -> Result<(Arc<Running>, Vec<String>), ClusterDeployError> {
    if !d.tables.is_empty() {
        return Err(unsupported("table lookups (--table)"));
    }
    if d.in_place {
        return Err(unsupported("in-place transforms"));
    }
    if broker.transforms.module(&d.module)?.stateful {
        return Err(unsupported(
            "transforms with state (state stores and changelogs)",
        ));
    }
    let _turn = cluster.deployments_turn.lock().await;
    let writes = d.writes();
    for other in broker.transforms.list() {
        let o = other.deployment.read();
        if writes.contains(&o.input) || o.writes().contains(&d.input) {
            return Err(unsupported(&format!(
                "transform chains ('{}' and '{}' would chain through a topic)",
                d.name, o.name
            )));
        }
    }
    modules::publish(&cluster.objects, &broker.transforms, &d.module).await?;
    let mut created = Vec::new();
    let mut topics = vec![d.input.clone()];
    topics.extend(writes);
    for t in topics {
        if cluster.topic(&t).await?.is_none() {
            cluster.topic_or_create(&t).await?;
            created.push(t);
        }
    }
    let b = broker.clone();
    let local = d.clone();
    let running = tokio::task::spawn_blocking(move || b.transforms.deploy(local, Vec::new()))
        .await
        .map_err(|e| DeployError::Io(std::io::Error::other(e.to_string())))??;
    if let Err(e) = cluster.db.insert_deployment(&d).await {
        // Not the cluster's: this broker must not run it either.
        let b = broker.clone();
        let name = d.name.clone();
        let _ = tokio::task::spawn_blocking(move || b.transforms.remove(&name)).await;
        return Err(e.into());
    }
    Ok((running, created))
}

/// Removes the deployment `name` cluster-wide through this broker.
pub async fn remove(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    name: &str,
) -> Result<(), ClusterDeployError> {
    let _turn = cluster.deployments_turn.lock().await;
    cluster.db.delete_deployment(name).await?;
    let b = broker.clone();
    let name = name.to_string();
    match tokio::task::spawn_blocking(move || b.transforms.remove(&name)).await {
        Ok(Ok(())) | Ok(Err(DeployError::NotFound(_))) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(DeployError::Io(std::io::Error::other(e.to_string())).into()),
    }
}

/// Pauses or resumes the deployment `name` cluster-wide through this broker.
pub async fn set_paused(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    name: &str,
    paused: bool,
) -> Result<(), ClusterDeployError> {
    let _turn = cluster.deployments_turn.lock().await;
    cluster.db.set_deployment_paused(name, paused).await?;
    let b = broker.clone();
    let name = name.to_string();
    match tokio::task::spawn_blocking(move || b.transforms.set_paused(&name, paused)).await {
        Ok(Ok(())) | Ok(Err(DeployError::NotFound(_))) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(DeployError::Io(std::io::Error::other(e.to_string())).into()),
    }
}
