//! Topics, their partitions and configs; durable across restarts.
//!
//! # On disk
//!
//! Under the data dir `D`:
//!
//! - `D/<topic>-<partition>/` holds one partition's log (Kafka's layout), owned by
//!   [`PartitionLog`].
//! - `D/__sluice/topics.json` is the catalog: each topic's name, id (a v4 UUID), partition count
//!   and dynamic configs (only those set on the topic; defaults come from the broker config at
//!   each start). It is rewritten whole on every change, atomically (temp file, fsync, rename,
//!   fsync dir): the rename is the commit point of every topic change.
//! - `D/<topic>-<partition>.<topic id hex>-delete/` is a partition being deleted.
//!
//! # Crash safety
//!
//! - Creating a topic (or partitions) commits the catalog first and opens the partitions after;
//!   a crash in between is completed at the next [`Catalog::open`], which creates missing
//!   partition directories.
//! - Deleting a topic renames its partition directories to `...-delete`, commits the catalog
//!   without the topic, then removes them. At open, a `-delete` directory whose topic is still in
//!   the catalog (the commit never happened) is renamed back; any other is removed.
//! - A partition directory no topic in the catalog owns is left alone with a warning; should a
//!   topic of that name be created later, the stray directory is moved aside (not reused, not
//!   deleted).
//!
//! # Concurrency
//!
//! [`Catalog`] is shared by every connection. Lookups take a read lock on the topic map; every
//! change (create, delete, configs) is serialized by one admin mutex held across the catalog
//! write, so concurrent creates of one topic create it once and the file always matches memory.

mod store;
pub(crate) mod topic_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::log::{LogConfig, PartitionLog};
use crate::records::{BatchRules, CompressionType};

pub(crate) use topic_config::{broker_config_type, config_def};
pub use topic_config::{
    kafka_default_log_config, parse_cleanup_policy, topic_config_defaulted_by,
    topic_config_of_broker_setting,
};

/// The effective log config and batch rules of a topic known only by its configs (a cluster-mode
/// topic, stored in the metadata database): `configs` over the broker `defaults`.
pub fn rules_of(
    defaults: &TopicDefaults,
    configs: &[(String, String)],
) -> Result<(LogConfig, BatchRules), TopicError> {
    let dynamic: BTreeMap<String, String> = configs.iter().cloned().collect();
    let log = topic_config::effective_log_config(&defaults.log, &dynamic)?;
    let rules = topic_config::batch_rules(defaults, &dynamic, &log)?;
    Ok((log, rules))
}

/// The most partitions a topic may have; far beyond what one node serves well, low enough that
/// a typo cannot create a million directories.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Kafka's longest topic name (a partition directory name must fit the file-name limit).
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks that a topic of `current` partitions may grow to `total` (CreatePartitions):
/// partitions are only added, up to [`MAX_PARTITIONS`]; refused with Kafka's messages.
pub fn check_partition_growth(current: i32, total: i32) -> Result<(), TopicError> {
    if total == current {
        return Err(TopicError::InvalidPartitions(format!(
            "Topic already has {current} partitions."
        )));
    }
    if total < current {
        return Err(TopicError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {total}; partitions can only be added."
        )));
    }
    if total > MAX_PARTITIONS {
        return Err(TopicError::InvalidPartitions(format!(
            "Number of partitions {total} is more than the maximum of {MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

/// Broker-wide topic defaults (`num.partitions`, `log.segment.bytes`, ...), from the broker config.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    /// `num.partitions`: used when a create asks for -1 and by auto-creation.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`: whether Metadata/Produce for a missing topic creates it.
    pub auto_create_topics: bool,
    /// Every topic-level config's broker default, as Kafka names them at topic level
    /// (`retention.ms`, `segment.bytes`, ...), already validated.
    pub log: LogConfig,
    /// The broker defaults of topic configs outside [`LogConfig`] that the broker's config file
    /// sets (`compression.type`, `compression.zstd.level`, `message.timestamp.before.max.ms`,
    /// ...), by topic-level name, validated and normalised. Absent ones are Kafka's defaults.
    pub configs: BTreeMap<String, String>,
    /// The broker settings of the config file that give a topic config its default, by
    /// topic-level name: `(setting name, value)` as written (`log.roll.hours`, `"1"`). Only for
    /// DescribeConfigs, which reports them as the static broker synonym.
    pub static_settings: BTreeMap<String, (String, String)>,
}

impl TopicDefaults {
    /// Sets the broker default of topic config `name` (one [`topic_config_of_broker_setting`]
    /// names) after validating it with the topic config's own rules.
    pub fn set_config_default(&mut self, name: &str, value: &str) -> Result<(), TopicError> {
        let value = topic_config::validate_config(name, value)?;
        self.configs.insert(name.to_owned(), value);
        Ok(())
    }
}

impl Default for TopicDefaults {
    /// Kafka's own defaults.
    fn default() -> Self {
        TopicDefaults {
            num_partitions: 1,
            auto_create_topics: true,
            log: kafka_default_log_config(),
            configs: BTreeMap::new(),
            static_settings: BTreeMap::new(),
        }
    }
}

/// Where a config value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (CreateTopics configs, AlterConfigs).
    DynamicTopic,
    /// Broker default.
    Default,
    /// Set by the broker's own config (flags, env, TOML); broker resources only.
    StaticBroker,
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    /// Kafka's name for the config (`retention.ms`, `log.segment.bytes`, ...).
    pub name: String,
    /// The effective value; `None` only for a sensitive value that must not be shown.
    pub value: Option<String>,
    /// Where `value` came from.
    pub source: ConfigSource,
    /// Broker configs are static: clients must not be offered to change them.
    pub read_only: bool,
    /// Passwords and the like, which clients must not display.
    pub sensitive: bool,
}

/// IncrementalAlterConfigs operations.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigOp {
    /// Set the config on the topic (name, value).
    Set(String, String),
    /// Remove the topic's value, falling back to the broker default.
    Delete(String),
    /// Add items to a list config (name, comma-separated items).
    Append(String, String),
    /// Remove items from a list config (name, comma-separated items).
    Subtract(String, String),
}

/// Why a catalog operation failed; maps one-to-one onto a Kafka error code at the API edge.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopicOrPartition(String),
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    #[error("invalid number of partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

/// Kafka's topic name rules: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// `.` and `_` map to the same metric name, so Kafka refuses topics differing only by them.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// The mutable part of a topic.
#[derive(Debug)]
struct TopicState {
    /// Open partitions, index order. Empty for a `validate_only` preview.
    partitions: Vec<Arc<PartitionLog>>,
    /// Equals `partitions.len()` for a live topic; kept apart so a preview can report it.
    partition_count: i32,
    /// Configs set on the topic (validated, normalised).
    configs: BTreeMap<String, String>,
    /// What produced batches are stored under, derived from `configs` and the broker defaults
    /// whenever either is set.
    rules: BatchRules,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// Unique in the catalog; also the prefix of its partition directories.
    name: String,
    /// Tells this topic from an earlier one of the same name (Metadata v10+, DeleteTopics v6).
    id: [u8; 16],
    /// What CreatePartitions and the config APIs change after creation.
    state: RwLock<TopicState>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The topic id (Metadata v10+).
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
    pub fn partition_count(&self) -> i32 {
        self.state.read().partition_count
    }
    pub fn partition(&self, index: i32) -> Option<Arc<PartitionLog>> {
        let i = usize::try_from(index).ok()?;
        self.state.read().partitions.get(i).cloned()
    }
    /// All partitions, index order.
    pub fn partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.state.read().partitions.clone()
    }
    /// The configs set on this topic (not the defaults).
    pub fn dynamic_configs(&self) -> BTreeMap<String, String> {
        self.state.read().configs.clone()
    }
    /// The topic's `compression.type` (with its codec's level): what the write path stores
    /// batches in, produced or written by a transform.
    pub fn compression(&self) -> CompressionType {
        self.state.read().rules.compression
    }
    /// Everything the write path applies to a batch before appending it to this topic
    /// ([`crate::records::conform`]).
    pub fn batch_rules(&self) -> BatchRules {
        self.state.read().rules
    }

    fn record(&self) -> store::TopicRecord {
        let state = self.state.read();
        store::TopicRecord {
            name: self.name.clone(),
            id: uuid::Uuid::from_bytes(self.id),
            partitions: state.partition_count,
            configs: state.configs.clone(),
        }
    }
}

/// The set of topics.
#[derive(Debug)]
pub struct Catalog {
    /// Where partition directories and the catalog file live.
    data_dir: PathBuf,
    /// Broker-wide defaults that topic configs overlay.
    defaults: TopicDefaults,
    /// Every live topic by name; read by every request, written only under `admin`.
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes every change so that the catalog file, written outside the map's write lock
    /// (an fsync must not block lookups), always matches the map.
    admin: Mutex<()>,
}

/// `D/<topic>-<partition>`.
fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

fn delete_suffix(id: &[u8; 16]) -> String {
    format!(".{}-delete", uuid::Uuid::from_bytes(*id).simple())
}

/// Splits a directory name `<topic>-<partition>` (topic names may contain `-`).
fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    let p: i32 = p.parse().ok()?;
    (p >= 0 && validate_topic_name(topic).is_ok()).then_some((topic, p))
}

impl Catalog {
    /// Loads every topic under `data_dir` and opens (recovering) their partitions.
    pub fn open(data_dir: PathBuf, defaults: TopicDefaults) -> Result<Catalog, TopicError> {
        if defaults.num_partitions < 1 || defaults.num_partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "num.partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                defaults.num_partitions
            )));
        }
        std::fs::create_dir_all(&data_dir)?;
        let records = store::load(&data_dir)?;
        finish_deletes(&data_dir, &records)?;
        warn_stray_dirs(&data_dir, &records)?;

        let mut topics = BTreeMap::new();
        for r in records {
            let log = topic_config::effective_log_config(&defaults.log, &r.configs)?;
            let rules = topic_config::batch_rules(&defaults, &r.configs, &log)?;
            let mut partitions = Vec::new();
            for p in 0..r.partitions {
                let dir = partition_dir(&data_dir, &r.name, p);
                partitions.push(Arc::new(PartitionLog::open(&dir, log.clone())?));
            }
            let topic = Topic {
                name: r.name.clone(),
                id: *r.id.as_bytes(),
                state: RwLock::new(TopicState {
                    partitions,
                    partition_count: r.partitions,
                    configs: r.configs,
                    rules,
                }),
            };
            topics.insert(r.name, Arc::new(topic));
        }
        tracing::info!(topics = topics.len(), dir = %data_dir.display(), "topic catalog loaded");
        Ok(Catalog {
            data_dir,
            defaults,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
        })
    }

    /// The broker-wide defaults the catalog was opened with.
    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The topic with this id (DeleteTopics v6, Fetch v13+).
    pub fn get_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == *id).cloned()
    }

    /// `get`, creating the topic with defaults when it is missing and auto-creation is on.
    pub fn get_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        if !self.defaults.auto_create_topics {
            return Err(TopicError::UnknownTopicOrPartition(name.to_owned()));
        }
        match self.create_topic(name, -1, -1, &[], false) {
            Ok(t) => {
                tracing::info!(topic = name, "auto-created topic");
                Ok(t)
            }
            // Another connection created it between our lookup and our create.
            Err(TopicError::TopicAlreadyExists(_)) => self
                .get(name)
                .ok_or_else(|| TopicError::UnknownTopicOrPartition(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Every topic as it would be stored, with `change` applied to the named one (or removed).
    fn records_with(
        &self,
        name: &str,
        change: Option<store::TopicRecord>,
    ) -> Vec<store::TopicRecord> {
        let topics = self.topics.read();
        let mut out: Vec<_> = topics
            .values()
            .filter(|t| t.name != name)
            .map(|t| t.record())
            .collect();
        out.extend(change);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `num_partitions` / `replication_factor` of -1 mean the broker default.
    ///
    /// With `validate_only` nothing is created; the returned topic is a preview with no open
    /// partitions (its `partition_count` is what would have been created).
    pub fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let count = match num_partitions {
            -1 => self.defaults.num_partitions,
            n if n < 1 => {
                return Err(TopicError::InvalidPartitions(format!(
                    "Number of partitions was set to an invalid non-positive value: {n}"
                )))
            }
            n if n > MAX_PARTITIONS => {
                return Err(TopicError::InvalidPartitions(format!(
                    "Number of partitions {n} is more than the maximum of {MAX_PARTITIONS}"
                )))
            }
            n => n,
        };
        if replication_factor != -1 && replication_factor != 1 {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {replication_factor} time(s): this cluster has 1 broker, so the replication factor must be 1 (or -1 for the default)"
            )));
        }
        let configs = topic_config::validate_config_set(configs)?;
        let log = topic_config::effective_log_config(&self.defaults.log, &configs)?;
        let rules = topic_config::batch_rules(&self.defaults, &configs, &log)?;

        let _admin = self.admin.lock();
        {
            let topics = self.topics.read();
            if topics.contains_key(name) {
                return Err(TopicError::TopicAlreadyExists(name.to_owned()));
            }
            let key = collision_key(name);
            if let Some(other) = topics.keys().find(|t| collision_key(t) == key) {
                return Err(TopicError::InvalidTopic(format!(
                    "Topic '{name}' collides with existing topic: {other}"
                )));
            }
        }
        let id = *uuid::Uuid::new_v4().as_bytes();
        if validate_only {
            let state = TopicState {
                partitions: Vec::new(),
                partition_count: count,
                configs,
                rules,
            };
            return Ok(Arc::new(Topic {
                name: name.to_owned(),
                id,
                state: RwLock::new(state),
            }));
        }

        for p in 0..count {
            self.move_stray_aside(name, p, &id)?;
        }
        let record = store::TopicRecord {
            name: name.to_owned(),
            id: uuid::Uuid::from_bytes(id),
            partitions: count,
            configs: configs.clone(),
        };
        store::save(&self.data_dir, &self.records_with(name, Some(record)))?;

        let partitions = match self.open_partitions(name, 0..count, &log) {
            Ok(p) => p,
            Err(e) => {
                // Undo the commit so the topic does not come back half-made at the next start.
                if let Err(undo) = store::save(&self.data_dir, &self.records_with(name, None)) {
                    tracing::error!(topic = name, error = %undo, "could not roll back a failed topic creation");
                }
                self.remove_partition_dirs(name, 0..count, &id);
                return Err(e);
            }
        };
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            id,
            state: RwLock::new(TopicState {
                partitions,
                partition_count: count,
                configs,
                rules,
            }),
        });
        self.topics
            .write()
            .insert(name.to_owned(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions = count, "created topic");
        Ok(topic)
    }

    fn open_partitions(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
        log: &LogConfig,
    ) -> Result<Vec<Arc<PartitionLog>>, TopicError> {
        range
            .map(|p| {
                Ok(Arc::new(PartitionLog::open(
                    &partition_dir(&self.data_dir, name, p),
                    log.clone(),
                )?))
            })
            .collect()
    }

    /// A directory left by something that is not in the catalog must neither be adopted as
    /// the new topic's data nor destroyed.
    fn move_stray_aside(
        &self,
        name: &str,
        partition: i32,
        id: &[u8; 16],
    ) -> Result<(), TopicError> {
        let dir = partition_dir(&self.data_dir, name, partition);
        if dir.exists() {
            let aside = self.data_dir.join(format!(
                "{name}-{partition}.{}-stray",
                uuid::Uuid::from_bytes(*id).simple()
            ));
            tracing::warn!(from = %dir.display(), to = %aside.display(), "moving a stray partition directory aside");
            std::fs::rename(&dir, &aside)?;
        }
        Ok(())
    }

    fn remove_partition_dirs(&self, name: &str, range: std::ops::Range<i32>, id: &[u8; 16]) {
        for p in range {
            let dir = partition_dir(&self.data_dir, name, p);
            let doomed = self
                .data_dir
                .join(format!("{name}-{p}{}", delete_suffix(id)));
            if let Err(e) =
                std::fs::rename(&dir, &doomed).and_then(|()| std::fs::remove_dir_all(&doomed))
            {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove partition directory");
                }
            }
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::UnknownTopicOrPartition(name.to_owned()))?;
        let count = topic.partition_count();
        let suffix = delete_suffix(&topic.id);
        let doomed: Vec<PathBuf> = (0..count)
            .map(|p| self.data_dir.join(format!("{name}-{p}{suffix}")))
            .collect();
        for (p, to) in (0..count).zip(&doomed) {
            match std::fs::rename(partition_dir(&self.data_dir, name, p), to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Put back what was already moved: the topic stays whole and usable.
                    for (q, from) in (0..p).zip(&doomed) {
                        if let Err(undo) =
                            std::fs::rename(from, partition_dir(&self.data_dir, name, q))
                        {
                            tracing::error!(dir = %from.display(), error = %undo, "could not restore a partition directory; restored at next start");
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        crate::meta::sync_dir(&self.data_dir)?;
        store::save(&self.data_dir, &self.records_with(name, None))?;
        self.topics.write().remove(name);
        // In-flight requests may still hold the partitions; Unix lets them finish on the
        // unlinked files.
        for dir in doomed {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove deleted partition; retried at next start");
                }
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::UnknownTopicOrPartition(name.to_owned()))?;
        let current = topic.partition_count();
        check_partition_growth(current, total)?;
        if validate_only {
            return Ok(());
        }
        let log = topic_config::effective_log_config(&self.defaults.log, &topic.dynamic_configs())?;
        for p in current..total {
            self.move_stray_aside(name, p, &topic.id)?;
        }
        let mut record = topic.record();
        record.partitions = total;
        store::save(&self.data_dir, &self.records_with(name, Some(record)))?;
        let added = match self.open_partitions(name, current..total, &log) {
            Ok(p) => p,
            Err(e) => {
                if let Err(undo) = store::save(
                    &self.data_dir,
                    &self.records_with(name, Some(topic.record())),
                ) {
                    tracing::error!(topic = name, error = %undo, "could not roll back a failed partition creation");
                }
                self.remove_partition_dirs(name, current..total, &topic.id);
                return Err(e);
            }
        };
        let mut state = topic.state.write();
        state.partitions.extend(added);
        state.partition_count = total;
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(())
    }

    /// Every config of the topic (or only `names`), with where its value came from.
    pub fn describe_configs(
        &self,
        topic: &str,
        names: Option<&[String]>,
    ) -> Result<Vec<ConfigEntry>, TopicError> {
        let t = self
            .get(topic)
            .ok_or_else(|| TopicError::UnknownTopicOrPartition(topic.to_owned()))?;
        Ok(self.describe_topic(&t, names))
    }

    /// Like [`Catalog::describe_configs`], for a topic already in hand (e.g. a `validate_only`
    /// preview that is not registered).
    pub fn describe_topic(&self, topic: &Topic, names: Option<&[String]>) -> Vec<ConfigEntry> {
        topic_config::describe(&self.defaults, &topic.state.read().configs, names)
    }

    /// The broker-level configs (DescribeConfigs on a BROKER resource); all read-only.
    pub fn describe_broker_configs(&self, names: Option<&[String]>) -> Vec<ConfigEntry> {
        topic_config::describe_broker(&self.defaults, names)
    }

    /// The broker-level synonyms of a topic config (DescribeConfigs `include_synonyms`), most
    /// precedent first: `(broker config name, value, source)`.
    pub fn config_synonyms(&self, name: &str) -> Vec<(String, String, ConfigSource)> {
        config_def(name).map_or_else(Vec::new, |d| {
            topic_config::broker_synonyms(d, &self.defaults)
        })
    }

    /// AlterConfigs: replaces the topic's whole set of dynamic configs.
    pub fn replace_configs(
        &self,
        topic: &str,
        configs: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let configs = topic_config::validate_config_set(configs)?;
        self.change_configs(topic, validate_only, |_| Ok(configs))
    }

    /// IncrementalAlterConfigs.
    pub fn alter_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let defaults = &self.defaults;
        self.change_configs(topic, validate_only, |current| {
            topic_config::apply_ops(current, ops, defaults)
        })
    }

    fn change_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::UnknownTopicOrPartition(name.to_owned()))?;
        let next = change(&topic.dynamic_configs())?;
        let log = topic_config::effective_log_config(&self.defaults.log, &next)?;
        let rules = topic_config::batch_rules(&self.defaults, &next, &log)?;
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record();
        record.configs = next.clone();
        store::save(&self.data_dir, &self.records_with(name, Some(record)))?;
        let partitions = {
            let mut state = topic.state.write();
            state.configs = next;
            state.rules = rules;
            state.partitions.clone()
        };
        for p in partitions {
            p.update_config(log.clone());
        }
        tracing::info!(topic = name, "updated topic configs");
        Ok(())
    }

    /// Runs retention over every partition.
    pub fn enforce_retention(&self, now_ms: i64) {
        for topic in self.list() {
            for (i, p) in topic.partitions().iter().enumerate() {
                match p.enforce_retention(now_ms) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(
                        topic = topic.name(),
                        partition = i,
                        segments = n,
                        "retention deleted segments"
                    ),
                    Err(e) => {
                        tracing::error!(topic = topic.name(), partition = i, error = %e, "retention failed")
                    }
                }
            }
        }
    }

    /// Flushes every partition and marks a clean shutdown.
    pub fn close(&self) {
        for topic in self.list() {
            for (i, p) in topic.partitions().iter().enumerate() {
                if let Err(e) = p.close() {
                    tracing::error!(topic = topic.name(), partition = i, error = %e, "closing partition failed");
                }
            }
        }
    }
}

/// Completes deletions a crash interrupted, or undoes those whose catalog commit never happened.
fn finish_deletes(data_dir: &Path, records: &[store::TopicRecord]) -> Result<(), TopicError> {
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = name.strip_suffix("-delete") else {
            continue;
        };
        let Some((dir_name, id_hex)) = rest.rsplit_once('.') else {
            continue;
        };
        let Some((topic, p)) = parse_partition_dir(dir_name) else {
            continue;
        };
        let live = records
            .iter()
            .any(|r| r.name == topic && r.id.simple().to_string() == id_hex && p < r.partitions);
        let original = partition_dir(data_dir, topic, p);
        if live && !original.exists() {
            tracing::warn!(dir = %entry.path().display(), "restoring a partition whose deletion was not committed");
            std::fs::rename(entry.path(), &original)?;
        } else {
            tracing::info!(dir = %entry.path().display(), "finishing an interrupted topic deletion");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    crate::meta::sync_dir(data_dir)?;
    Ok(())
}

fn warn_stray_dirs(data_dir: &Path, records: &[store::TopicRecord]) -> Result<(), TopicError> {
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let file_name = entry.file_name();
        let Some((topic, p)) = file_name.to_str().and_then(parse_partition_dir) else {
            continue;
        };
        if !records.iter().any(|r| r.name == topic && p < r.partitions) {
            tracing::warn!(dir = %entry.path().display(), "partition directory not in the topic catalog; leaving it alone");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Catalog {
        Catalog::open(dir.to_path_buf(), TopicDefaults::default()).unwrap()
    }

    fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn catalog_can_be_shared_across_connections() {
        fn shared<T: Send + Sync>() {}
        shared::<Catalog>();
        shared::<Arc<Topic>>();
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "A-b_c.9", "__consumer_offsets", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", "a:b", &"x".repeat(250)] {
            assert!(
                matches!(validate_topic_name(bad), Err(TopicError::InvalidTopic(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn partition_dir_names_split_at_the_last_dash() {
        assert_eq!(parse_partition_dir("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(parse_partition_dir("__sluice"), None);
        assert_eq!(parse_partition_dir("t-0.abc-delete"), None);
        assert_eq!(parse_partition_dir("t--1"), Some(("t-", 1)));
        assert_eq!(parse_partition_dir("t-x"), None);
    }

    #[test]
    fn opening_an_empty_dir_gives_an_empty_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(&dir.path().join("data"));
        assert!(catalog.list().is_empty());
        assert!(catalog.get("t").is_none());
    }

    #[test]
    fn corrupt_catalog_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(crate::meta::META_DIR)).unwrap();
        std::fs::write(store::catalog_path(dir.path()), b"garbage").unwrap();
        let err = Catalog::open(dir.path().to_path_buf(), TopicDefaults::default()).unwrap_err();
        assert!(err.to_string().contains("topics.json"), "{err}");
    }

    #[test]
    fn create_refuses_bad_names_partitions_replication_and_configs() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        assert!(matches!(
            c.create_topic("a/b", 1, 1, &[], false),
            Err(TopicError::InvalidTopic(_))
        ));
        for n in [0, -2, MAX_PARTITIONS + 1] {
            assert!(matches!(
                c.create_topic("t", n, 1, &[], false),
                Err(TopicError::InvalidPartitions(_))
            ));
        }
        for rf in [0, 2, 3, -2] {
            match c.create_topic("t", 1, rf, &[], false) {
                Err(TopicError::InvalidReplicationFactor(m)) => {
                    assert!(m.contains("1 broker"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        let compact = cfg(&[("cleanup.policy", "compact,bogus")]);
        assert!(matches!(
            c.create_topic("t", 1, 1, &compact, false),
            Err(TopicError::InvalidConfig(_))
        ));
        assert!(c.list().is_empty());
        assert!(store::load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn validate_only_create_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let t = c
            .create_topic("t", -1, -1, &cfg(&[("retention.ms", "5")]), true)
            .unwrap();
        assert_eq!(t.partition_count(), 1);
        assert_eq!(
            t.dynamic_configs().get("retention.ms").map(String::as_str),
            Some("5")
        );
        assert!(c.get("t").is_none());
        assert!(!dir.path().join("t-0").exists());
        assert!(!store::catalog_path(dir.path()).exists());
    }

    #[test]
    fn auto_create_off_or_invalid_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = TopicDefaults {
            auto_create_topics: false,
            ..TopicDefaults::default()
        };
        let c = Catalog::open(dir.path().to_path_buf(), defaults).unwrap();
        assert!(matches!(
            c.get_or_auto_create("t"),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
        let c = open(dir.path());
        assert!(matches!(
            c.get_or_auto_create("bad name"),
            Err(TopicError::InvalidTopic(_))
        ));
    }

    #[test]
    fn unknown_topic_operations_report_unknown_topic() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        assert!(matches!(
            c.delete_topic("t"),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
        assert!(matches!(
            c.create_partitions("t", 2, false),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
        assert!(matches!(
            c.describe_configs("t", None),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
        assert!(matches!(
            c.replace_configs("t", &[], false),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
        assert!(matches!(
            c.alter_configs("t", &[], false),
            Err(TopicError::UnknownTopicOrPartition(_))
        ));
    }

    #[test]
    fn interrupted_delete_is_finished_and_stray_dirs_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let id = *uuid::Uuid::new_v4().as_bytes();
        let doomed = dir.path().join(format!("gone-0{}", delete_suffix(&id)));
        std::fs::create_dir_all(&doomed).unwrap();
        std::fs::write(doomed.join("00000000000000000000.log"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("stray-0")).unwrap();
        let c = open(dir.path());
        assert!(!doomed.exists());
        assert!(dir.path().join("stray-0").exists());
        assert!(c.get("stray").is_none());
    }

    #[test]
    fn broker_configs_are_read_only_and_reflect_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = TopicDefaults {
            num_partitions: 3,
            ..TopicDefaults::default()
        };
        let c = Catalog::open(dir.path().to_path_buf(), defaults).unwrap();
        let all = c.describe_broker_configs(None);
        assert!(all.iter().all(|e| e.read_only));
        let np = c.describe_broker_configs(Some(&["num.partitions".to_string()]));
        assert_eq!(np.len(), 1);
        assert_eq!(np[0].value.as_deref(), Some("3"));
        assert_eq!(np[0].source, ConfigSource::StaticBroker);
    }

    // The tests below open real partitions.

    #[test]
    fn catalog_survives_reopen_with_ids_counts_and_configs() {
        let dir = tempfile::tempdir().unwrap();
        let (a_id, b_id) = {
            let c = open(dir.path());
            let a = c
                .create_topic("a", 3, 1, &cfg(&[("retention.ms", "1000")]), false)
                .unwrap();
            let b = c.create_topic("b", -1, -1, &[], false).unwrap();
            c.create_partitions("b", 2, false).unwrap();
            c.alter_configs(
                "b",
                &[ConfigOp::Set("segment.bytes".into(), "1048576".into())],
                false,
            )
            .unwrap();
            c.create_topic("gone", 2, 1, &[], false).unwrap();
            c.delete_topic("gone").unwrap();
            c.close();
            (a.id(), b.id())
        };
        assert!(dir.path().join("a-2").is_dir());
        assert!(!dir.path().join("gone-0").exists());
        let c = open(dir.path());
        let names: Vec<_> = c.list().iter().map(|t| t.name().to_owned()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = c.get("a").unwrap();
        assert_eq!(
            (a.id(), a.partition_count(), a.partitions().len()),
            (a_id, 3, 3)
        );
        assert_eq!(
            a.dynamic_configs().get("retention.ms").map(String::as_str),
            Some("1000")
        );
        let b = c.get("b").unwrap();
        assert_eq!((b.id(), b.partition_count()), (b_id, 2));
        assert!(b.partition(1).is_some() && b.partition(2).is_none());
        assert_eq!(
            b.dynamic_configs().get("segment.bytes").map(String::as_str),
            Some("1048576")
        );
        assert_eq!(
            c.get_by_id(&a_id).map(|t| t.name().to_owned()).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn creating_one_topic_from_many_threads_creates_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| c.create_topic("t", 2, 1, &[], false)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(TopicError::TopicAlreadyExists(_)))));
        let auto: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| c.get_or_auto_create("auto").map(|t| t.id())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(auto.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(store::load(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn partitions_can_only_grow_and_colliding_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        c.create_topic("a.b", 2, 1, &[], false).unwrap();
        assert!(matches!(
            c.create_topic("a.b", 1, 1, &[], false),
            Err(TopicError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            c.create_topic("a_b", 1, 1, &[], false),
            Err(TopicError::InvalidTopic(_))
        ));
        assert!(matches!(
            c.create_partitions("a.b", 2, false),
            Err(TopicError::InvalidPartitions(_))
        ));
        assert!(matches!(
            c.create_partitions("a.b", 1, false),
            Err(TopicError::InvalidPartitions(_))
        ));
        c.create_partitions("a.b", 4, true).unwrap();
        assert_eq!(c.get("a.b").unwrap().partition_count(), 2);
        c.create_partitions("a.b", 4, false).unwrap();
        assert_eq!(c.get("a.b").unwrap().partitions().len(), 4);
    }

    #[test]
    fn config_changes_replace_or_patch_and_validate_only_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        c.create_topic(
            "t",
            1,
            1,
            &cfg(&[("retention.ms", "1000"), ("segment.ms", "5000")]),
            false,
        )
        .unwrap();
        c.replace_configs("t", &cfg(&[("retention.bytes", "10")]), true)
            .unwrap();
        assert_eq!(c.get("t").unwrap().dynamic_configs().len(), 2);
        c.replace_configs("t", &cfg(&[("retention.bytes", "10")]), false)
            .unwrap();
        let d = c.get("t").unwrap().dynamic_configs();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["retention.bytes"]);
        c.alter_configs("t", &[ConfigOp::Delete("retention.bytes".into())], false)
            .unwrap();
        assert!(c.get("t").unwrap().dynamic_configs().is_empty());
        let entries = c.describe_configs("t", None).unwrap();
        assert!(entries.iter().all(|e| e.source == ConfigSource::Default));
    }

    #[test]
    fn compression_follows_the_topic_config_through_alter_and_reopen() {
        use crate::records::{Codec, Compression};
        let dir = tempfile::tempdir().unwrap();
        let zstd9 = CompressionType::Broker(Codec {
            compression: Compression::Zstd,
            level: 9,
        });
        {
            let c = open(dir.path());
            let t = c.create_topic("t", 1, 1, &[], false).unwrap();
            assert_eq!(t.compression(), CompressionType::Producer);
            c.alter_configs(
                "t",
                &[
                    ConfigOp::Set("compression.type".into(), "zstd".into()),
                    ConfigOp::Set("compression.zstd.level".into(), "9".into()),
                ],
                false,
            )
            .unwrap();
            assert_eq!(t.compression(), zstd9);
            let lz4 = c
                .create_topic("lz4", 1, 1, &cfg(&[("compression.type", "lz4")]), false)
                .unwrap();
            assert_eq!(
                lz4.compression(),
                CompressionType::Broker(Codec::new(Compression::Lz4))
            );
            c.close();
        }
        let c = open(dir.path());
        assert_eq!(c.get("t").unwrap().compression(), zstd9);
        // A broker default applies to topics that set nothing.
        let mut defaults = TopicDefaults::default();
        defaults
            .set_config_default("compression.type", "gzip")
            .unwrap();
        c.close();
        let c = Catalog::open(dir.path().to_path_buf(), defaults).unwrap();
        let auto = c.get_or_auto_create("auto").unwrap();
        assert_eq!(
            auto.compression(),
            CompressionType::Broker(Codec::new(Compression::Gzip))
        );
        assert_eq!(c.get("t").unwrap().compression(), zstd9);
    }

    #[test]
    fn a_delete_not_committed_to_the_catalog_is_undone_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let c = open(dir.path());
            let t = c.create_topic("t", 1, 1, &[], false).unwrap();
            c.close();
            t.id()
        };
        // As if a crash hit between the rename and the catalog commit.
        std::fs::rename(
            dir.path().join("t-0"),
            dir.path().join(format!("t-0{}", delete_suffix(&id))),
        )
        .unwrap();
        let c = open(dir.path());
        assert!(dir.path().join("t-0").is_dir());
        assert_eq!(c.get("t").unwrap().id(), id);
    }
}
