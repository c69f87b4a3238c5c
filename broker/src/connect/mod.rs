//! Connectors that run inside the broker, managed through a Kafka Connect-compatible REST API
//! (`crate::http`): the built-in file source and sink.
//!
//! - [`config`]: connector configs, class names and their validation.
//! - [`file_source`]: `FileStreamSource`, lines appended to a file become records.
//! - [`file_sink`]: `FileStreamSink`, a topic's values written to a file, a line each, consuming as
//!   group `connect-<name>` so lag tools see its progress.
//! - [`wasm_sink`]: `sluice.WasmSink`, a sink module with granted capabilities.
//!
//! Connectors and their target states persist in `__sluice/connectors.json`; a source's file
//! position in `__sluice/connect-offsets/`. Each connector runs one task.

pub mod config;
pub mod file_sink;
pub mod file_source;
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
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Connector {
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
}

/// All connectors.
#[derive(Debug)]
pub struct Connect {
    /// Where connectors and source positions are kept.
    meta: MetaDir,
    connectors: Mutex<BTreeMap<String, Arc<Connector>>>,
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
                let c = Arc::new(Connector {
                    name: s.name.clone(),
                    config: Mutex::new(s.config),
                    target: watch::Sender::new(s.target),
                    status: Mutex::new(TaskStatus {
                        state: "UNASSIGNED",
                        trace: None,
                    }),
                    deployer: Mutex::new(s.deployer),
                    task: Mutex::new(None),
                });
                (s.name, c)
            })
            .collect();
        Ok(Connect {
            meta: meta.clone(),
            connectors: Mutex::new(connectors),
        })
    }

    /// Starts every saved connector's task.
    pub fn start_all(&self, broker: &Arc<Broker>) {
        for c in self.list() {
            start(broker, &c, self.offsets_path(&c.name));
        }
    }

    /// Stops every task (shutdown): nothing is written after the log is closed.
    pub fn stop_all(&self) {
        for c in self.list() {
            if let Some(task) = c.task.lock().take() {
                task.abort();
            }
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
    pub fn put(
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
        let existing = self.connectors.lock().get(name).cloned();
        let (connector, created) = match existing {
            Some(_) if create_only => return Err(ConnectError::Exists(name.to_string())),
            Some(c) => {
                *c.config.lock() = config;
                *c.deployer.lock() = Some(deployer.to_string());
                (c, false)
            }
            None => {
                let c = Arc::new(Connector {
                    name: name.to_string(),
                    config: Mutex::new(config),
                    target: watch::Sender::new(Target::Running),
                    status: Mutex::new(TaskStatus {
                        state: "UNASSIGNED",
                        trace: None,
                    }),
                    deployer: Mutex::new(Some(deployer.to_string())),
                    task: Mutex::new(None),
                });
                self.connectors.lock().insert(name.to_string(), c.clone());
                (c, true)
            }
        };
        self.save()?;
        // A new config means a new task, as Connect reconfigures.
        start(broker, &connector, self.offsets_path(&connector.name));
        Ok((connector, created))
    }

    pub fn set_target(&self, name: &str, target: Target) -> Result<(), ConnectError> {
        let c = self.get(name)?;
        c.target.send_replace(target);
        self.save()?;
        Ok(())
    }

    pub fn restart(&self, broker: &Arc<Broker>, name: &str) -> Result<(), ConnectError> {
        let c = self.get(name)?;
        start(broker, &c, self.offsets_path(&c.name));
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), ConnectError> {
        let c = self
            .connectors
            .lock()
            .remove(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        if let Some(task) = c.task.lock().take() {
            task.abort();
        }
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
    use crate::records::batch::BatchHeader;
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
            let mut rest = &slice.records[..];
            let mut records = Vec::new();
            while let Some((_, size)) = BatchHeader::peek_size(rest) {
                let size = size.min(rest.len());
                let (header, recs) =
                    crate::records::record::decode_records(&rest[..size], 256 << 20)
                        .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
                rest = &rest[size..];
                // Transaction markers are not records to deliver.
                if header.is_control() {
                    continue;
                }
                records.extend(recs.into_iter().filter(|r| r.offset >= start));
                if records.len() >= limit {
                    break;
                }
            }
            records.truncate(limit);
            if !records.is_empty() {
                out.push((topic.clone(), p, records));
            }
        }
    }
    Ok(out)
}

/// (Re)starts a connector's task.
fn start(broker: &Arc<Broker>, c: &Arc<Connector>, offsets: PathBuf) {
    if let Some(old) = c.task.lock().take() {
        old.abort();
    }
    let Some(class) = c.class() else {
        c.set_status("FAILED", Some("unknown connector.class".into()));
        return;
    };
    c.set_status("RUNNING", None);
    let b = broker.clone();
    let conn = c.clone();
    let handle = tokio::spawn(async move {
        let result = match class {
            Class::FileStreamSource => file_source::run(b, conn.clone(), offsets).await,
            Class::FileStreamSink => file_sink::run(b, conn.clone()).await,
            Class::WasmSink => wasm_sink::run(b, conn.clone()).await,
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
