//! Topics, their partitions and configs; durable across restarts.
//!
//! CONTRACT SKELETON — the bodies are filled in by the catalog work; the signatures are what the
//! API layer calls.

use std::path::PathBuf;
use std::sync::Arc;

use crate::log::{LogConfig, PartitionLog};

/// Broker-wide topic defaults (`num.partitions`, `log.segment.bytes`, ...), from the broker config.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    /// Every topic-level config's broker default, as Kafka names them at topic level
    /// (`retention.ms`, `segment.bytes`, ...), already validated.
    pub log: LogConfig,
}

/// Where a config value came from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (CreateTopics configs, AlterConfigs).
    DynamicTopic,
    /// Broker default.
    Default,
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// IncrementalAlterConfigs operations.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
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

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    _private: (),
}

impl Topic {
    pub fn name(&self) -> &str {
        todo!()
    }
    /// The topic id (Metadata v10+).
    pub fn id(&self) -> [u8; 16] {
        todo!()
    }
    pub fn partition_count(&self) -> i32 {
        todo!()
    }
    pub fn partition(&self, index: i32) -> Option<Arc<PartitionLog>> {
        let _ = index;
        todo!()
    }
    /// All partitions, index order.
    pub fn partitions(&self) -> Vec<Arc<PartitionLog>> {
        todo!()
    }
}

/// The set of topics.
#[derive(Debug)]
pub struct Catalog {
    _private: (),
}

impl Catalog {
    /// Loads every topic under `data_dir` and opens (recovering) their partitions.
    pub fn open(data_dir: PathBuf, defaults: TopicDefaults) -> Result<Catalog, TopicError> {
        let _ = (data_dir, defaults);
        todo!()
    }
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        let _ = name;
        todo!()
    }
    /// `get`, creating the topic with defaults when it is missing and auto-creation is on.
    pub fn get_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let _ = name;
        todo!()
    }
    pub fn list(&self) -> Vec<Arc<Topic>> {
        todo!()
    }
    /// `num_partitions` / `replication_factor` of -1 mean the broker default.
    pub fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let _ = (
            name,
            num_partitions,
            replication_factor,
            configs,
            validate_only,
        );
        todo!()
    }
    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _ = name;
        todo!()
    }
    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _ = (name, total, validate_only);
        todo!()
    }
    /// Every config of the topic (or only `names`), with where its value came from.
    pub fn describe_configs(
        &self,
        topic: &str,
        names: Option<&[String]>,
    ) -> Result<Vec<ConfigEntry>, TopicError> {
        let _ = (topic, names);
        todo!()
    }
    /// AlterConfigs: replaces the topic's whole set of dynamic configs.
    pub fn replace_configs(
        &self,
        topic: &str,
        configs: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _ = (topic, configs, validate_only);
        todo!()
    }
    /// IncrementalAlterConfigs.
    pub fn alter_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _ = (topic, ops, validate_only);
        todo!()
    }
    /// Runs retention over every partition.
    pub fn enforce_retention(&self, now_ms: i64) {
        let _ = now_ms;
        todo!()
    }
    /// Flushes every partition and marks a clean shutdown.
    pub fn close(&self) {
        todo!()
    }
}
