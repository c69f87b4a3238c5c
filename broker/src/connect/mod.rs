//! Connectors that run inside the broker, managed through a Kafka Connect-compatible REST API
//! (`crate::http`): the built-in file source and sink.
//!
//! - [`config`]: connector configs, class names and their validation.
//! - [`file_source`]: `FileStreamSource`, lines appended to a file become records.
//! - [`file_sink`]: `FileStreamSink`, a topic's values written to a file, a line each, consuming as
//!   group `connect-<name>` so lag tools see its progress.
//! - [`wasm_sink`]: `sluice.WasmSink`, a sink module with granted capabilities.
//!
//! - [`io`]: the seam a task reads partitions, writes records and keeps progress through: the
//!   local log, or the cluster.
//! - [`leases`]: cluster mode: connectors in PostgreSQL, each task under a fenced lease.
//!
//! On a single node connectors and their target states persist in `__sluice/connectors.json`; a
//! source's file position in `__sluice/connect-offsets/`. In cluster mode both live in
//! PostgreSQL and every broker sees the same connectors. Each connector runs one task.

pub mod config;
pub mod file_sink;
pub mod file_source;
pub(crate) mod io;
pub mod leases;
pub mod wasm_sink;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::broker::Broker;
use crate::meta::MetaDir;
pub use config::{Class, Config, ConfigIssue};
use io::TaskIo;

/// What the operator asked a connector to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Target {
    Running,
    Paused,
    Stopped,
}

/// A task's state as Connect reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// RUNNING, PAUSED, STOPPED, FAILED or UNASSIGNED.
    pub state: &'static str,
    pub trace: Option<String>,
}

/// One connector.
#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub config: Mutex<Config>,
    pub target: watch::Sender<Target>,
    pub status: Mutex<TaskStatus>,
    /// Who created or last configured it (`User:NAME`): its reads and writes are bounded by
    /// that principal's ACLs. `None` for connectors saved before Sluice recorded it.
    pub deployer: Mutex<Option<String>>,
    /// In cluster mode, the worker id of the broker running the task (`None`: unassigned).
    pub worker: Mutex<Option<String>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Connector {
    fn new(name: &str, config: Config, target: Target, deployer: Option<String>) -> Connector {
        Connector {
            name: name.to_string(),
            config: Mutex::new(config),
            target: watch::Sender::new(target),
            status: Mutex::new(TaskStatus {
                state: "UNASSIGNED",
                trace: None,
            }),
            deployer: Mutex::new(deployer),
            worker: Mutex::new(None),
            task: Mutex::new(None),
        }
    }

    /// Stops the task, if one runs here.
    fn abort_task(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }

    /// Whether the task here has ended (failed, or its connector went away).
    fn task_finished(&self) -> bool {
        self.task
            .lock()
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    pub fn class(&self) -> Option<Class> {
        self.config
            .lock()
            .get("connector.class")
            .and_then(|c| Class::parse(c))
    }

    pub(crate) fn set_status(&self, state: &'static str, trace: Option<String>) {
        *self.status.lock() = TaskStatus { state, trace };
    }

    /// The first right its deployer lacks now (tasks check it on every pass, so a revoked ACL
    /// stops the connector).
    pub(crate) fn refused(&self, broker: &Broker) -> Option<String> {
        let deployer = self.deployer.lock().clone()?;
        let config = self.config.lock().clone();
        refusal(broker, &self.name, &config, &deployer)
    }
}

/// Why `deployer` may not run connector `name` with `config`: sources need Write on their topic;
/// sinks Read on their topics and on their group `connect-<name>`, and Write on a dead-letter
/// topic. `None` while ACLs are off. Checked with host `*`: connectors run in the broker.
pub(crate) fn refusal(
    broker: &Broker,
    name: &str,
    config: &Config,
    deployer: &str,
) -> Option<String> {
    use crate::acl::{Operation, Requester, Resource};
    if !broker.authorizer.is_enabled() {
        return None;
    }
    let who = Requester {
        principal: deployer.to_string(),
        host: "*".to_string(),
    };
    let refused = |what: String| {
        Some(format!(
            "deployer {deployer} of connector {name} is not authorized to {what}"
        ))
    };
    let topic_right =
        |op: Operation, topic: &str| broker.authorize(&who, op, Resource::topic(topic));
    match config.get("connector.class").and_then(|c| Class::parse(c)) {
        None => None,
        Some(Class::FileStreamSource) => {
            let topic = config.get("topic").cloned().unwrap_or_default();
            if topic_right(Operation::Write, &topic) {
                None
            } else {
                refused(format!("write topic {topic}"))
            }
        }
        Some(Class::FileStreamSink | Class::WasmSink) => {
            let list = config
                .get("topics")
                .cloned()
                .filter(|t| !t.trim().is_empty());
            let regex = config
                .get("topics.regex")
                .filter(|r| !r.trim().is_empty())
                .and_then(|r| regex_lite::Regex::new(r).ok());
            for topic in sink_topics(broker, &list, &regex) {
                if !topic_right(Operation::Read, &topic) {
                    return refused(format!("read topic {topic}"));
                }
            }
            let group = format!("connect-{name}");
            if !broker.authorize(&who, Operation::Read, Resource::group(&group)) {
                return refused(format!("read group {group}"));
            }
            match config.get("errors.deadletterqueue.topic.name") {
                Some(dlq) if !dlq.is_empty() && !topic_right(Operation::Write, dlq) => {
                    refused(format!("write topic {dlq}"))
                }
                _ => None,
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    name: String,
    config: Config,
    target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deployer: Option<String>,
}

/// Why a connector operation was refused (mapped to Connect's HTTP statuses).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Connector {0} not found")]
    NotFound(String),
    #[error("Connector {0} already exists")]
    Exists(String),
    #[error("Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`", .0.len(), .0.iter().map(|i| format!("{}: {}", i.key, i.message)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
    #[error("{0}")]
    BadRequest(String),
    /// The deployer may not read or write what the connector would.
    #[error("{0}")]
    Forbidden(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster's metadata database could not be read or written.
    #[error("{0}")]
    Unavailable(String),
}

/// All connectors.
#[derive(Debug)]
pub struct Connect {
    /// Where connectors and source positions are kept.
    meta: MetaDir,
    connectors: Mutex<BTreeMap<String, Arc<Connector>>>,
    /// In cluster mode: where connectors are kept and how their tasks are placed.
    cluster: Option<Arc<leases::ClusterConnect>>,
}

impl Connect {
    /// Loads saved connectors (not started: see [`Connect::start_all`]).
    pub fn open(meta: &MetaDir) -> std::io::Result<Connect> {
        std::fs::create_dir_all(meta.connect_offsets())?;
        let path = meta.connectors();
        let saved: Vec<Saved> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let connectors = saved
            .into_iter()
            .map(|s| {
                let c = Arc::new(Connector::new(&s.name, s.config, s.target, s.deployer));
                (s.name, c)
            })
            .collect();
        Ok(Connect {
            meta: meta.clone(),
            connectors: Mutex::new(connectors),
            cluster: None,
        })
    }

    /// The connectors of the cluster `cluster` (none loaded yet: [`leases::spawn`] mirrors them
    /// from its database); this broker's REST address is `worker_id`.
    pub fn in_cluster(
        meta: &MetaDir,
        cluster: Arc<crate::cluster::node::Cluster>,
        worker_id: String,
    ) -> Connect {
        Connect {
            meta: meta.clone(),
            connectors: Mutex::new(BTreeMap::new()),
            cluster: Some(Arc::new(leases::ClusterConnect::new(cluster, worker_id))),
        }
    }

    /// Whether connectors are the cluster's (kept in its database).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// In cluster mode, this broker's worker id (its REST address).
    pub fn worker_id(&self) -> Option<String> {
        self.cluster.as_ref().map(|l| l.worker_id.clone())
    }

    /// Brings the connectors here in line with the cluster's at once (a no-op on a single node).
    async fn reconcile(&self, broker: &Arc<Broker>) -> Result<(), ConnectError> {
        let Some(link) = &self.cluster else {
            return Ok(());
        };
        link.reconcile(self, broker)
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))
    }

    /// In cluster mode, brings this broker's view up to date before it answers a read, so a
    /// connector created or changed through another broker is seen at once. When the database
    /// cannot be read, the view of the last reconciliation is answered.
    pub async fn refresh(&self, broker: &Arc<Broker>) {
        if let Err(e) = self.reconcile(broker).await {
            tracing::warn!("answering the connectors as last seen: {e}");
        }
    }

    /// In cluster mode: stops every task here and gives their leases up.
    pub async fn leave(&self) {
        if let Some(link) = &self.cluster {
            link.leave(self).await;
        }
    }

    /// Starts every saved connector's task.
    pub fn start_all(&self, broker: &Arc<Broker>) {
        for c in self.list() {
            start(&c, self.local_io(broker, &c.name));
        }
    }

    /// A single-node task's way to the data.
    fn local_io(&self, broker: &Arc<Broker>, name: &str) -> TaskIo {
        TaskIo::Local {
            broker: broker.clone(),
            offsets: self.offsets_path(name),
        }
    }

    /// Stops every task (shutdown): nothing is written after the log is closed.
    pub fn stop_all(&self) {
        for c in self.list() {
            c.abort_task();
        }
    }

    pub fn list(&self) -> Vec<Arc<Connector>> {
        self.connectors.lock().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Result<Arc<Connector>, ConnectError> {
        self.connectors
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))
    }

    /// Creates (`create_only`) or creates-or-updates a connector; `true` if it was created.
    pub async fn put(
        &self,
        broker: &Arc<Broker>,
        name: &str,
        mut config: Config,
        create_only: bool,
        deployer: &str,
    ) -> Result<(Arc<Connector>, bool), ConnectError> {
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
            return Err(ConnectError::BadRequest(format!(
                "Connector name '{name}' is invalid"
            )));
        }
        if let Some(n) = config.get("name") {
            if n != name {
                return Err(ConnectError::BadRequest(format!(
                    "Connector name configuration ({n}) doesn't match connector name in the URL ({name})"
                )));
            }
        }
        config.insert("name".into(), name.to_string());
        let issues = config::validate(&config);
        if !issues.is_empty() {
            return Err(ConnectError::Invalid(issues));
        }
        if let Some(message) = refusal(broker, name, &config, deployer) {
            return Err(ConnectError::Forbidden(message));
        }
        if let Some(link) = &self.cluster {
            if config.get("connector.class").and_then(|c| Class::parse(c)) == Some(Class::WasmSink)
            {
                return Err(ConnectError::BadRequest(
                    "sluice.WasmSink connectors are not supported in cluster mode yet".into(),
                ));
            }
            use crate::cluster::db::connectors::ConnectorDbError;
            let created = link
                .cluster
                .db
                .put_connector(name, &config, deployer, create_only)
                .await
                .map_err(|e| match e {
                    ConnectorDbError::Exists(n) => ConnectError::Exists(n),
                    e => ConnectError::Unavailable(e.to_string()),
                })?;
            self.reconcile(broker).await?;
            return Ok((self.get(name)?, created));
        }
        let existing = self.connectors.lock().get(name).cloned();
        let (connector, created) = match existing {
            Some(_) if create_only => return Err(ConnectError::Exists(name.to_string())),
            Some(c) => {
                *c.config.lock() = config;
                *c.deployer.lock() = Some(deployer.to_string());
                (c, false)
            }
            None => {
                let c = Arc::new(Connector::new(
                    name,
                    config,
                    Target::Running,
                    Some(deployer.to_string()),
                ));
                self.connectors.lock().insert(name.to_string(), c.clone());
                (c, true)
            }
        };
        self.save()?;
        // A new config means a new task, as Connect reconfigures.
        start(&connector, self.local_io(broker, &connector.name));
        Ok((connector, created))
    }

    pub async fn set_target(
        &self,
        broker: &Arc<Broker>,
        name: &str,
        target: Target,
    ) -> Result<(), ConnectError> {
        if let Some(link) = &self.cluster {
            let found = link
                .cluster
                .db
                .set_connector_target(name, leases::target_name(target))
                .await
                .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
            if !found {
                return Err(ConnectError::NotFound(name.to_string()));
            }
            return self.reconcile(broker).await;
        }
        let c = self.get(name)?;
        c.target.send_replace(target);
        self.save()?;
        Ok(())
    }

    pub async fn restart(&self, broker: &Arc<Broker>, name: &str) -> Result<(), ConnectError> {
        if let Some(link) = &self.cluster {
            let found = link
                .cluster
                .db
                .restart_connector(name)
                .await
                .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
            if !found {
                return Err(ConnectError::NotFound(name.to_string()));
            }
            return self.reconcile(broker).await;
        }
        let c = self.get(name)?;
        start(&c, self.local_io(broker, &c.name));
        Ok(())
    }

    pub async fn delete(&self, broker: &Arc<Broker>, name: &str) -> Result<(), ConnectError> {
        if let Some(link) = &self.cluster {
            let found = link
                .cluster
                .db
                .delete_connector(name)
                .await
                .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
            if !found {
                return Err(ConnectError::NotFound(name.to_string()));
            }
            return self.reconcile(broker).await;
        }
        let c = self
            .connectors
            .lock()
            .remove(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        c.abort_task();
        self.save()?;
        Ok(())
    }

    /// Where a source connector keeps its file position.
    pub(crate) fn offsets_path(&self, name: &str) -> PathBuf {
        self.meta.connect_offsets().join(format!("{name}.json"))
    }

    fn save(&self) -> std::io::Result<()> {
        let saved: Vec<Saved> = self
            .connectors
            .lock()
            .values()
            .map(|c| Saved {
                name: c.name.clone(),
                config: c.config.lock().clone(),
                target: *c.target.borrow(),
                deployer: c.deployer.lock().clone(),
            })
            .collect();
        let json = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
        crate::meta::write_atomically(&self.meta.connectors(), &json)
    }
}

/// The topics a sink reads: a comma-separated list, or every topic matching a regex.
pub(crate) fn sink_topics(
    broker: &Broker,
    list: &Option<String>,
    regex: &Option<regex_lite::Regex>,
) -> Vec<String> {
    match (list, regex) {
        (Some(list), _) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        (None, Some(re)) => broker
            .catalog
            .list()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| re.is_match(n))
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// Records of `topic`/`partition` a sink has not consumed.
pub(crate) type Unconsumed = (String, i32, Vec<crate::records::record::RecordView>);

/// For every partition of `topics`: the records after the group's committed offset (from the log
/// start if none), up to about 1 MiB and at most `limit` records per partition.
pub(crate) fn unconsumed(
    broker: &Broker,
    topics: &[String],
    committed: &crate::group::offsets::GroupOffsets,
    limit: usize,
) -> Result<Vec<Unconsumed>, String> {
    let mut out = Vec::new();
    for topic in topics {
        let Some(t) = broker.catalog.get(topic) else {
            continue;
        };
        for (p, log) in t.partitions().iter().enumerate() {
            let p = p as i32;
            let start = committed
                .get(&(topic.clone(), p))
                .map_or(log.log_start_offset(), |c| c.offset)
                .max(log.log_start_offset());
            if start >= log.high_watermark() {
                continue;
            }
            let slice = log
                .read(start, 1 << 20, true)
                .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
            let records = records_from(&slice.records, start, limit)
                .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
            if !records.is_empty() {
                out.push((topic.clone(), p, records));
            }
        }
    }
    Ok(out)
}

/// The records at or after `start` in `batches` (whole batches as read), at most `limit`;
/// transaction markers are not records to deliver.
pub(crate) fn records_from(
    batches: &[u8],
    start: i64,
    limit: usize,
) -> Result<Vec<crate::records::record::RecordView>, crate::records::batch::BatchError> {
    use crate::records::batch::BatchHeader;
    let mut rest = batches;
    let mut records = Vec::new();
    while let Some((_, size)) = BatchHeader::peek_size(rest) {
        let size = size.min(rest.len());
        let (header, recs) = crate::records::record::decode_records(&rest[..size], 256 << 20)?;
        rest = &rest[size..];
        if header.is_control() {
            continue;
        }
        records.extend(recs.into_iter().filter(|r| r.offset >= start));
        if records.len() >= limit {
            break;
        }
    }
    records.truncate(limit);
    Ok(records)
}

/// (Re)starts a connector's task, reading and writing through `io`.
fn start(c: &Arc<Connector>, io: TaskIo) {
    c.abort_task();
    let Some(class) = c.class() else {
        c.set_status("FAILED", Some("unknown connector.class".into()));
        return;
    };
    c.set_status("RUNNING", None);
    let conn = c.clone();
    let handle = tokio::spawn(async move {
        let result = match (class, &io) {
            (Class::FileStreamSource, _) => file_source::run(io, conn.clone()).await,
            (Class::FileStreamSink, _) => file_sink::run(io, conn.clone()).await,
            (Class::WasmSink, TaskIo::Local { broker, .. }) => {
                wasm_sink::run(broker.clone(), conn.clone()).await
            }
            (Class::WasmSink, TaskIo::Cluster { .. }) => {
                Err("sluice.WasmSink connectors are not supported in cluster mode yet".into())
            }
        };
        if let Err(e) = result {
            tracing::error!(connector = %conn.name, "task failed: {e}");
            conn.set_status("FAILED", Some(e));
        }
    });
    *c.task.lock() = Some(handle);
}

/// Waits while the connector is paused or stopped (reporting it), and returns `false` once the
/// task should exit because its connector went away.
pub(crate) async fn wait_until_running(
    c: &Connector,
    target: &mut watch::Receiver<Target>,
) -> bool {
    loop {
        let t = *target.borrow_and_update();
        match t {
            Target::Running => {
                if c.status.lock().state != "FAILED" {
                    c.set_status("RUNNING", None);
                }
                return true;
            }
            Target::Paused => c.set_status("PAUSED", None),
            Target::Stopped => c.set_status("STOPPED", None),
        }
        if target.changed().await.is_err() {
            return false;
        }
    }
}
