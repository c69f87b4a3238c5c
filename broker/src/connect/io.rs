//! Where a connector's task reads partitions, writes records and keeps its progress: the
//! broker's local log and `__sluice/` (single node), or the cluster — reads through
//! [`crate::cluster::read`] as Fetch does, writes through the upload buffer as Produce does, and
//! progress (sink offsets, source positions) in PostgreSQL, written only under the task's lease.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Unconsumed;
use crate::broker::{now_ms, Broker};
use crate::cluster::db::connectors::ConnectorDbError;
use crate::cluster::node::Cluster;
use crate::cluster::types::BatchOutcome;
use crate::group::offsets::GroupOffsets;
use crate::group::Committed;
use crate::records::record::{build_batch, BatchMeta};
use crate::records::{Compression, NewRecord};

/// How long a write waits for a database that is briefly unavailable before it tries again.
const RETRY: Duration = Duration::from_millis(200);
/// How long a write waits for the task lease to be renewed (the renewal runs beside the task)
/// before giving up on it.
const LEASE_WAIT: Duration = Duration::from_secs(1);
/// What a task that lost its lease reports: it stops, and the broker holding the lease now
/// runs the connector.
pub(crate) const LEASE_LOST: &str = "this broker lost the connector's task lease";

/// Until when this broker may believe it holds a connector's task lease: a little before the
/// database would let another broker take it, so a task here stops first.
#[derive(Debug, Default)]
pub(crate) struct TaskLease {
    until: Mutex<Option<Instant>>,
}

impl TaskLease {
    pub(crate) fn hold_until(&self, until: Instant) {
        *self.until.lock() = Some(until);
    }

    pub(crate) fn is_held(&self) -> bool {
        self.until.lock().is_some_and(|u| u > Instant::now())
    }

    /// Waits briefly for a renewal if the belief ran out; `Err` when the lease is lost.
    async fn ensure(&self) -> Result<(), String> {
        let deadline = Instant::now() + LEASE_WAIT;
        while !self.is_held() {
            if Instant::now() >= deadline {
                return Err(LEASE_LOST.into());
            }
            tokio::time::sleep(RETRY).await;
        }
        Ok(())
    }
}

/// A connector task's way to the data.
pub(crate) enum TaskIo {
    /// The local log; a source's position in `offsets` (a file under `__sluice/`).
    Local {
        broker: Arc<Broker>,
        offsets: PathBuf,
    },
    /// The cluster, under the task lease of connector `name`.
    Cluster {
        broker: Arc<Broker>,
        cluster: Arc<Cluster>,
        name: String,
        lease: Arc<TaskLease>,
    },
}

/// The saved position of a file source, keyed by file name as Connect keys source offsets.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    filename: String,
    position: u64,
}

impl TaskIo {
    pub(crate) fn broker(&self) -> &Arc<Broker> {
        match self {
            TaskIo::Local { broker, .. } | TaskIo::Cluster { broker, .. } => broker,
        }
    }

    /// Before anything leaves the broker (a line into a sink's file): `Err` unless this broker
    /// may run the task.
    pub(crate) async fn ensure_held(&self) -> Result<(), String> {
        match self {
            TaskIo::Local { .. } => Ok(()),
            TaskIo::Cluster { lease, .. } => lease.ensure().await,
        }
    }

    /// The topics a sink reads: a comma-separated list, or every topic matching a regex.
    pub(crate) async fn sink_topics(
        &self,
        list: &Option<String>,
        regex: &Option<regex_lite::Regex>,
    ) -> Result<Vec<String>, String> {
        match (self, list, regex) {
            (TaskIo::Cluster { cluster, .. }, None, Some(re)) => Ok(cluster
                .all_topics()
                .await
                .map_err(|e| format!("listing topics: {e}"))?
                .into_iter()
                .map(|t| t.name)
                .filter(|n| re.is_match(n))
                .collect()),
            _ => Ok(super::sink_topics(self.broker(), list, regex)),
        }
    }

    /// The committed offsets of `group`.
    pub(crate) async fn committed(&self, group: &str) -> Result<GroupOffsets, String> {
        match self {
            TaskIo::Local { broker, .. } => Ok(broker.groups.offsets.group(group)),
            TaskIo::Cluster { cluster, .. } => {
                let client = cluster
                    .db
                    .group_connection()
                    .await
                    .map_err(|e| format!("reading offsets of {group}: {e}"))?;
                crate::cluster::db::groups::fetch_offsets(&client, group)
                    .await
                    .map_err(|e| format!("reading offsets of {group}: {e}"))
            }
        }
    }

    /// For every partition of `topics`: the records after the committed offset (from the log
    /// start if none), up to about 1 MiB and at most `limit` records per partition.
    pub(crate) async fn unconsumed(
        &self,
        topics: Vec<String>,
        committed: GroupOffsets,
        limit: usize,
    ) -> Result<Vec<Unconsumed>, String> {
        match self {
            TaskIo::Local { broker, .. } => {
                let b = broker.clone();
                tokio::task::spawn_blocking(move || {
                    super::unconsumed(&b, &topics, &committed, limit)
                })
                .await
                .map_err(|e| e.to_string())?
            }
            TaskIo::Cluster { cluster, .. } => {
                cluster_unconsumed(cluster, &topics, &committed, limit).await
            }
        }
    }

    /// Commits a sink's positions as `group`'s offsets (in cluster mode only under the lease).
    pub(crate) async fn commit(
        &self,
        group: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<(), String> {
        let failed = |e: &dyn std::fmt::Display| format!("cannot commit offsets of {group}: {e}");
        match self {
            TaskIo::Local { broker, .. } => broker
                .groups
                .offsets
                .commit(group, offsets)
                .await
                .map_err(|e| failed(&e)),
            TaskIo::Cluster {
                cluster,
                name,
                lease,
                ..
            } => loop {
                lease.ensure().await?;
                match cluster
                    .db
                    .commit_sink_offsets(name, cluster.lease(), group, &offsets)
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(ConnectorDbError::LeaseLost) => return Err(LEASE_LOST.into()),
                    Err(ConnectorDbError::Db(e)) if e.is_retriable() => {
                        tracing::warn!(connector = %name, "{}; retrying", failed(&e));
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(e) => return Err(failed(&e)),
                }
            },
        }
    }

    /// Writes `records` to partition 0 of `topic` in batches of `batch_size` and returns once
    /// they are durable (single node: fsynced; cluster: committed).
    pub(crate) async fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
        batch_size: usize,
    ) -> Result<(), String> {
        match self {
            TaskIo::Local { broker, .. } => {
                let (b, t) = (broker.clone(), topic.to_string());
                let durable = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    let mut durable = Vec::new();
                    for chunk in records.chunks(batch_size.max(1)) {
                        let appended = crate::write::append_records(&b, &t, 0, chunk, now)
                            .map_err(|e| format!("producing to {t}: {e}"))?;
                        durable
                            .extend(appended.durable.into_iter().map(|d| (d.log, d.last_offset)));
                    }
                    Ok::<_, String>(durable)
                })
                .await
                .map_err(|e| e.to_string())??;
                for (log, last) in durable {
                    log.wait_durable(last).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            TaskIo::Cluster {
                broker,
                cluster,
                lease,
                ..
            } => {
                let failed = |e: &dyn std::fmt::Display| format!("producing to {topic}: {e}");
                lease.ensure().await?;
                let meta = cluster
                    .topic_or_create(topic)
                    .await
                    .map_err(|e| failed(&e))?;
                let now = now_ms();
                let mut answers = Vec::new();
                for chunk in records.chunks(batch_size.max(1)) {
                    let batch = build_batch(chunk, Compression::None, &BatchMeta::default());
                    answers.push(
                        crate::write::cluster::submit_produced(
                            broker,
                            cluster,
                            None,
                            &meta,
                            0,
                            Bytes::from(batch),
                            now,
                        )
                        .map_err(|e| failed(&e))?,
                    );
                }
                for answer in answers {
                    let outcomes = answer
                        .await
                        .map_err(|_| failed(&"the upload buffer closed"))?
                        .map_err(|e| failed(&e))?;
                    if let Some(BatchOutcome::Refused(why)) = outcomes
                        .iter()
                        .find(|o| matches!(o, BatchOutcome::Refused(_)))
                    {
                        return Err(failed(&format!("refused: {why:?}")));
                    }
                }
                Ok(())
            }
        }
    }

    /// A file source's saved position in `file` (0 when none, or saved for another file).
    pub(crate) async fn position(&self, file: &str) -> Result<u64, String> {
        match self {
            TaskIo::Local { offsets, .. } => Ok(std::fs::read(offsets)
                .ok()
                .and_then(|b| serde_json::from_slice::<Position>(&b).ok())
                .filter(|p| p.filename == file)
                .map_or(0, |p| p.position)),
            TaskIo::Cluster { cluster, name, .. } => Ok(cluster
                .db
                .source_position(name)
                .await
                .map_err(|e| format!("cannot read the file position: {e}"))?
                .filter(|(f, _)| f == file)
                .map_or(0, |(_, p)| p)),
        }
    }

    /// Saves a file source's position (in cluster mode only under the lease).
    pub(crate) async fn save_position(&self, file: &str, position: u64) -> Result<(), String> {
        let failed = |e: &dyn std::fmt::Display| format!("cannot save the file position: {e}");
        match self {
            TaskIo::Local { offsets, .. } => {
                let saved = serde_json::to_vec(&Position {
                    filename: file.to_string(),
                    position,
                })
                .map_err(|e| e.to_string())?;
                crate::meta::write_atomically(offsets, &saved).map_err(|e| failed(&e))
            }
            TaskIo::Cluster {
                cluster,
                name,
                lease,
                ..
            } => loop {
                lease.ensure().await?;
                match cluster
                    .db
                    .save_source_position(name, cluster.lease(), file, position)
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(ConnectorDbError::LeaseLost) => return Err(LEASE_LOST.into()),
                    Err(ConnectorDbError::Db(e)) if e.is_retriable() => {
                        tracing::warn!(connector = %name, "{}; retrying", failed(&e));
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(e) => return Err(failed(&e)),
                }
            },
        }
    }
}

/// [`TaskIo::unconsumed`] in cluster mode. A partition that cannot be read now (the database
/// or object store is briefly away, retention moved its start) is skipped until the next poll.
async fn cluster_unconsumed(
    cluster: &Cluster,
    topics: &[String],
    committed: &GroupOffsets,
    limit: usize,
) -> Result<Vec<Unconsumed>, String> {
    use crate::cluster::read::read;
    let mut out = Vec::new();
    for topic in topics {
        let meta = match cluster.topic(topic).await {
            Ok(Some(meta)) => meta,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(topic, "connector cannot look the topic up: {e}");
                continue;
            }
        };
        for p in 0..meta.partitions {
            let offsets = match cluster.offsets(meta.topic_id, p).await {
                Ok(Some(o)) => o,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(topic, partition = p, "connector cannot read offsets: {e}");
                    continue;
                }
            };
            let start = committed
                .get(&(topic.clone(), p))
                .map_or(offsets.log_start_offset, |c| c.offset)
                .max(offsets.log_start_offset);
            if start >= offsets.high_watermark {
                continue;
            }
            let slice = match read(cluster, meta.topic_id, p, start, 1 << 20, true).await {
                Ok(slice) => slice,
                Err(e) => {
                    tracing::warn!(topic, partition = p, "connector read failed: {e}");
                    continue;
                }
            };
            let records = super::records_from(&slice.records, start, limit)
                .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
            if !records.is_empty() {
                out.push((topic.clone(), p, records));
            }
        }
    }
    Ok(out)
}
