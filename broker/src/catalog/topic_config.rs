//! Topic-level configs: every name Kafka 3.9 defines, how each value is validated (Kafka's rules
//! and messages), and how a topic's dynamic configs overlay the broker defaults to give a
//! partition its [`LogConfig`] and the write path its [`BatchRules`].
//!
//! Everything here is a pure function of its inputs so it can be tested without opening a log.

use std::collections::BTreeMap;

use super::{ConfigEntry, ConfigOp, ConfigSource, TopicDefaults, TopicError};
use crate::log::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
use crate::records::compression::level;
use crate::records::{BatchRules, Codec, Compression, CompressionType, TimestampBounds};

/// Kafka's `ConfigEntry.ConfigType` codes, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    /// The wire code (`config_type` in DescribeConfigs v3+).
    pub(crate) fn code(self) -> i8 {
        self as i8
    }
}

/// One supported topic config.
#[derive(Debug)]
pub(crate) struct ConfigDef {
    /// The topic-level name Kafka uses.
    pub(crate) name: &'static str,
    /// Reported by DescribeConfigs v3+; also decides whether APPEND/SUBTRACT apply.
    pub(crate) config_type: ConfigType,
    /// The broker-level config this one defaults from (a DescribeConfigs synonym); Kafka has
    /// none for a few (the replication throttles, the tiered-storage switches).
    pub(crate) broker_name: Option<&'static str>,
    /// DescribeConfigs documentation (v3+): says plainly when a value is only stored.
    pub(crate) doc: &'static str,
}

// Kafka's own lower bounds; a value below them is refused with the same message shape Kafka uses.
const MIN_SEGMENT_BYTES: i64 = 14;
const MIN_SEGMENT_INDEX_BYTES: i64 = 4;

/// Kafka's value for "no limit" in the `flush.*` and timestamp-difference configs.
const LONG_MAX: &str = "9223372036854775807";

/// The codecs Kafka accepts for `compression.type`, in the order its error message lists them.
const COMPRESSION_TYPES: [&str; 6] = ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// `message.format.version`'s default since Kafka 3.0 (which ignores the config).
const DEFAULT_MESSAGE_FORMAT_VERSION: &str = "3.0-IV1";

/// Kafka 3.9's metadata versions by release, with how many `-IVn` variants each has (0: only
/// the plain release name). `message.format.version` must name one of them.
const METADATA_VERSIONS: &[(&str, u8)] = &[
    ("0.8.0", 0),
    ("0.8.1", 0),
    ("0.8.2", 0),
    ("0.9.0", 0),
    ("0.10.0", 2),
    ("0.10.1", 3),
    ("0.10.2", 1),
    ("0.11.0", 3),
    ("1.0", 1),
    ("1.1", 1),
    ("2.0", 2),
    ("2.1", 3),
    ("2.2", 2),
    ("2.3", 2),
    ("2.4", 2),
    ("2.5", 1),
    ("2.6", 1),
    ("2.7", 3),
    ("2.8", 2),
    ("3.0", 2),
    ("3.1", 1),
    ("3.2", 1),
    ("3.3", 4),
    ("3.4", 1),
    ("3.5", 3),
    ("3.6", 3),
    ("3.7", 5),
    ("3.8", 1),
    ("3.9", 1),
];

/// Kafka's refusal of `remote.storage.enable=true` on a broker without tiered storage.
const NO_TIERED_STORAGE: &str =
    "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.";

/// Every topic config of Kafka 3.x that Sluice honours or stores, in the order DescribeConfigs
/// lists them.
pub(crate) const CONFIG_DEFS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        broker_name: Some("log.cleanup.policy"),
        doc: "How old log segments are discarded: delete (retention), compact (latest record per key), or both.",
    },
    ConfigDef {
        name: "compression.gzip.level",
        config_type: ConfigType::Int,
        broker_name: Some("compression.gzip.level"),
        doc: "The level (1-9, or -1 for the codec's default) the broker compresses gzip batches at when compression.type is gzip.",
    },
    ConfigDef {
        name: "compression.lz4.level",
        config_type: ConfigType::Int,
        broker_name: Some("compression.lz4.level"),
        doc: "Validated and stored; Sluice's lz4 encoder has one level, lz4's fast mode (Kafka's default 9).",
    },
    ConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        broker_name: Some("compression.type"),
        doc: "The codec batches are stored in: producer keeps the producer's codec; uncompressed, gzip, snappy, lz4 or zstd recompress batches that arrive in another codec.",
    },
    ConfigDef {
        name: "compression.zstd.level",
        config_type: ConfigType::Int,
        broker_name: Some("compression.zstd.level"),
        doc: "The level (-131072 to 22) the broker compresses zstd batches at when compression.type is zstd.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.segment.delete.delay.ms"),
        doc: "Stored for compatibility; Sluice deletes a segment's files as soon as retention removes it.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.cleaner.delete.retention.ms"),
        doc: "How long a tombstone stays in a compacted topic after the cleaning that first saw it.",
    },
    ConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        broker_name: Some("log.flush.interval.messages"),
        doc: "Stored for compatibility; durability is set by the broker's flush policy.",
    },
    ConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.flush.interval.ms"),
        doc: "Stored for compatibility; durability is set by the broker's flush policy.",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        config_type: ConfigType::List,
        broker_name: None,
        doc: "Stored for compatibility; a single broker has no replication to throttle.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        broker_name: Some("log.index.interval.bytes"),
        doc: "Bytes of log between two offset-index entries.",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        config_type: ConfigType::List,
        broker_name: None,
        doc: "Stored for compatibility; a single broker has no replication to throttle.",
    },
    ConfigDef {
        name: "local.retention.bytes",
        config_type: ConfigType::Long,
        broker_name: Some("log.local.retention.bytes"),
        doc: "Stored for compatibility; without tiered storage every segment is local and retention.bytes applies.",
    },
    ConfigDef {
        name: "local.retention.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.local.retention.ms"),
        doc: "Stored for compatibility; without tiered storage every segment is local and retention.ms applies.",
    },
    ConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        broker_name: Some("message.max.bytes"),
        doc: "The largest record batch the topic accepts (checked as produced and as stored).",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        config_type: ConfigType::Boolean,
        broker_name: Some("log.message.downconversion.enable"),
        doc: "Stored for compatibility (deprecated in Kafka); Sluice serves only v2 record batches and never down-converts.",
    },
    ConfigDef {
        name: "message.format.version",
        config_type: ConfigType::String,
        broker_name: Some("log.message.format.version"),
        doc: "Stored for compatibility (deprecated; ignored since Kafka 3.0); batches are always stored in format v2.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.message.timestamp.after.max.ms"),
        doc: "Under CreateTime, a batch with a record timestamped more than this after the broker's clock is refused with INVALID_TIMESTAMP.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.message.timestamp.before.max.ms"),
        doc: "Under CreateTime, a batch with a record timestamped more than this before the broker's clock is refused with INVALID_TIMESTAMP.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.cleaner.max.compaction.lag.ms"),
        doc: "A record is compacted at the latest this long after it was written, whatever the dirty ratio.",
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.message.timestamp.difference.max.ms"),
        doc: "Deprecated: the bound message.timestamp.before.max.ms and after.max.ms take while they are unlimited.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        broker_name: Some("log.message.timestamp.type"),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        broker_name: Some("log.cleaner.min.cleanable.ratio"),
        doc: "The share of a compacted log that must be uncleaned before the cleaner runs on it.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.cleaner.min.compaction.lag.ms"),
        doc: "A record stays uncompacted at least this long after it was written.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        broker_name: Some("min.insync.replicas"),
        doc: "Stored for compatibility; a single broker is always the only in-sync replica.",
    },
    ConfigDef {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        broker_name: Some("log.preallocate"),
        doc: "Stored for compatibility; segment files grow as they are written.",
    },
    ConfigDef {
        name: "remote.log.copy.disable",
        config_type: ConfigType::Boolean,
        broker_name: None,
        doc: "Stored for compatibility; Sluice has no tiered storage.",
    },
    ConfigDef {
        name: "remote.log.delete.on.disable",
        config_type: ConfigType::Boolean,
        broker_name: None,
        doc: "Stored for compatibility; Sluice has no tiered storage.",
    },
    ConfigDef {
        name: "remote.storage.enable",
        config_type: ConfigType::Boolean,
        broker_name: None,
        doc: "Sluice has no tiered storage: only false is accepted, as on a Kafka broker with it disabled.",
    },
    ConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        broker_name: Some("log.retention.bytes"),
        doc: "Oldest segments are deleted while a partition is larger than this; a negative value is unlimited.",
    },
    ConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.retention.ms"),
        doc: "Segments whose newest record is older than this are deleted; -1 keeps forever.",
    },
    ConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        broker_name: Some("log.segment.bytes"),
        doc: "A partition rolls to a new segment once the active one reaches this size.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        broker_name: Some("log.index.size.max.bytes"),
        doc: "The most an offset index may hold; a full index rolls the segment.",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.roll.jitter.ms"),
        doc: "Stored for compatibility; segments roll exactly at segment.ms.",
    },
    ConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        broker_name: Some("log.roll.ms"),
        doc: "A partition rolls to a new segment once the active one's first batch is this old.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        broker_name: Some("unclean.leader.election.enable"),
        doc: "Stored for compatibility; meaningless on a single broker.",
    },
];

/// The definition of a supported topic config.
pub(crate) fn config_def(name: &str) -> Option<&'static ConfigDef> {
    CONFIG_DEFS.iter().find(|d| d.name == name)
}

/// The topic config a broker setting (TOML, Kafka's broker name) gives the default of, for the
/// topic configs whose broker default lives outside [`LogConfig`].
pub fn topic_config_of_broker_setting(broker_name: &str) -> Option<&'static str> {
    const OUTSIDE_LOG_CONFIG: [&str; 7] = [
        "compression.type",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
    ];
    CONFIG_DEFS
        .iter()
        .find(|d| d.broker_name == Some(broker_name) && OUTSIDE_LOG_CONFIG.contains(&d.name))
        .map(|d| d.name)
}

/// The topic config whose default a broker setting gives (Kafka's synonyms, hour and minute
/// variants included), for DescribeConfigs to name the setting.
pub fn topic_config_defaulted_by(broker_setting: &str) -> Option<&'static str> {
    match broker_setting {
        "log.roll.hours" => Some("segment.ms"),
        "log.retention.minutes" | "log.retention.hours" => Some("retention.ms"),
        name => CONFIG_DEFS
            .iter()
            .find(|d| d.broker_name == Some(name))
            .map(|d| d.name),
    }
}

/// Kafka's broker defaults, for a broker config that sets nothing.
pub fn kafka_default_log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024 * 1024 * 1024,
        segment_ms: 7 * 24 * 60 * 60 * 1000,
        retention_ms: 7 * 24 * 60 * 60 * 1000,
        retention_bytes: -1,
        index_interval_bytes: 4096,
        segment_index_bytes: 10 * 1024 * 1024,
        max_message_bytes: 1024 * 1024 + 12,
        timestamp_type: TimestampType::CreateTime,
        flush: FlushPolicy::PageCache,
        cleanup_policy: CleanupPolicy::DELETE,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        min_cleanable_dirty_ratio: 0.5,
        delete_retention_ms: 24 * 60 * 60 * 1000,
    }
}

/// Parses a `cleanup.policy` list (Kafka's items `compact` and `delete`, at least one).
pub fn parse_cleanup_policy(value: &str) -> Option<CleanupPolicy> {
    let items = list_items(value);
    if items.is_empty() || items.iter().any(|i| i != "compact" && i != "delete") {
        return None;
    }
    Some(CleanupPolicy {
        delete: items.iter().any(|i| i == "delete"),
        compact: items.iter().any(|i| i == "compact"),
    })
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// The broker default of a topic config, as a string: the broker's own setting when it has one,
/// else Kafka's default.
pub(crate) fn default_value(def: &ConfigDef, defaults: &TopicDefaults) -> String {
    if let Some(v) = defaults.configs.get(def.name) {
        return v.clone();
    }
    let log = &defaults.log;
    match def.name {
        "cleanup.policy" => log.cleanup_policy.name().into(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio.to_string(),
        "compression.type" => "producer".into(),
        "compression.gzip.level" => level::GZIP_DEFAULT.to_string(),
        "compression.lz4.level" => level::LZ4_DEFAULT.to_string(),
        "compression.zstd.level" => level::ZSTD_DEFAULT.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages"
        | "flush.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => LONG_MAX.into(),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            String::new()
        }
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        // -2: "the same as retention.*", Kafka's marker.
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.downconversion.enable" => "true".into(),
        "message.format.version" => DEFAULT_MESSAGE_FORMAT_VERSION.into(),
        "message.timestamp.type" => timestamp_type_name(log.timestamp_type).into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "retention.ms" => log.retention_ms.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.index.bytes" => log.segment_index_bytes.to_string(),
        "segment.jitter.ms" => "0".into(),
        "segment.ms" => log.segment_ms.to_string(),
        // The booleans that default to false: preallocate, remote.*, unclean.leader.election.enable.
        _ => "false".into(),
    }
}

fn invalid(name: &str, value: &str, why: &str) -> TopicError {
    TopicError::InvalidConfig(format!(
        "Invalid value {value} for configuration {name}: {why}"
    ))
}

fn parse_long(name: &str, value: &str, min: i64, max: i64) -> Result<i64, TopicError> {
    let n: i64 = value
        .parse()
        .map_err(|_| invalid(name, value, "Not a number of type LONG"))?;
    if n < min {
        return Err(invalid(
            name,
            value,
            &format!("Value must be at least {min}"),
        ));
    }
    if n > max {
        return Err(invalid(
            name,
            value,
            &format!("Value must be no more than {max}"),
        ));
    }
    Ok(n)
}

fn parse_int(name: &str, value: &str, min: i64) -> Result<i64, TopicError> {
    parse_int_in(name, value, min, i64::from(i32::MAX))
}

fn parse_int_in(name: &str, value: &str, min: i64, max: i64) -> Result<i64, TopicError> {
    value
        .parse::<i32>()
        .map_err(|_| invalid(name, value, "Not a number of type INT"))?;
    parse_long(name, value, min, max)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, TopicError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            name,
            value,
            "Expected value to be either true or false",
        )),
    }
}

/// The items of a list-type value, as Kafka splits them (comma-separated, blanks dropped).
fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Kafka's `MetadataVersion.fromVersionString`: the release (`2.8`, `0.10.2`), or an exact
/// `-IVn` variant of it; later segments (`2.8.1`) are ignored.
fn is_metadata_version(value: &str) -> bool {
    let segments: Vec<&str> = value.split('.').collect();
    let wanted = if value.starts_with("0.") { 3 } else { 2 };
    let key = if wanted >= segments.len() {
        value.to_owned()
    } else {
        segments[..wanted].join(".")
    };
    METADATA_VERSIONS.iter().any(|&(release, variants)| {
        key == release || (0..variants).any(|n| key == format!("{release}-IV{n}"))
    })
}

/// Validates one config and returns its value normalised the way it is stored and described.
pub(crate) fn validate_config(name: &str, value: &str) -> Result<String, TopicError> {
    let Some(def) = config_def(name) else {
        return Err(TopicError::InvalidConfig(format!(
            "Unknown topic config name: {name}"
        )));
    };
    let value = value.trim();
    match def.name {
        "cleanup.policy" => parse_cleanup_policy(value)
            .map(|p| p.name().to_owned())
            .ok_or_else(|| invalid(name, value, "String must be one of: compact, delete")),
        "min.cleanable.dirty.ratio" => {
            let ratio: f64 = value
                .parse()
                .map_err(|_| invalid(name, value, "Not a number of type DOUBLE"))?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(invalid(name, value, "Value must be between 0 and 1"));
            }
            Ok(ratio.to_string())
        }
        "min.compaction.lag.ms" | "delete.retention.ms" => {
            parse_long(name, value, 0, i64::MAX).map(|n| n.to_string())
        }
        "max.compaction.lag.ms" => parse_long(name, value, 1, i64::MAX).map(|n| n.to_string()),
        "compression.type" => {
            let lower = value.to_ascii_lowercase();
            if !COMPRESSION_TYPES.contains(&lower.as_str()) {
                return Err(invalid(
                    name,
                    value,
                    &format!("String must be one of: {}", COMPRESSION_TYPES.join(", ")),
                ));
            }
            Ok(lower)
        }
        "compression.gzip.level" => {
            let n: i32 = value
                .parse()
                .map_err(|_| invalid(name, value, "Not a number of type INT"))?;
            if n > level::GZIP_MAX || (n < level::GZIP_MIN && n != level::GZIP_DEFAULT) {
                return Err(invalid(
                    name,
                    value,
                    &format!(
                        "Value must be between {} and {} or equal to {}",
                        level::GZIP_MIN,
                        level::GZIP_MAX,
                        level::GZIP_DEFAULT
                    ),
                ));
            }
            Ok(n.to_string())
        }
        "compression.lz4.level" => {
            parse_int_in(name, value, level::LZ4_MIN.into(), level::LZ4_MAX.into())
                .map(|n| n.to_string())
        }
        "compression.zstd.level" => {
            parse_int_in(name, value, level::ZSTD_MIN.into(), level::ZSTD_MAX.into())
                .map(|n| n.to_string())
        }
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            let replica = |s: &&str| {
                s.is_empty()
                    || s.split_once(':').is_some_and(|(p, b)| {
                        [p, b]
                            .iter()
                            .all(|x| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit()))
                    })
            };
            if !(items.iter().all(replica) || items.concat() == "*") {
                return Err(invalid(
                    name,
                    value,
                    &format!("{name} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
                ));
            }
            Ok(list_items(value).join(","))
        }
        "message.format.version" => {
            if !is_metadata_version(value) {
                return Err(invalid(
                    name,
                    value,
                    &format!("Version {value} is not a valid version"),
                ));
            }
            Ok(value.to_owned())
        }
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(value.to_owned()),
            _ => Err(invalid(
                name,
                value,
                "String must be one of: CreateTime, LogAppendTime",
            )),
        },
        "remote.storage.enable" => match parse_bool(name, value)? {
            true => Err(TopicError::InvalidConfig(NO_TIERED_STORAGE.into())),
            false => Ok("false".into()),
        },
        "message.downconversion.enable"
        | "preallocate"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "unclean.leader.election.enable" => parse_bool(name, value).map(|b| b.to_string()),
        "flush.messages" | "segment.ms" => {
            parse_long(name, value, 1, i64::MAX).map(|n| n.to_string())
        }
        "file.delete.delay.ms"
        | "flush.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms"
        | "segment.jitter.ms" => parse_long(name, value, 0, i64::MAX).map(|n| n.to_string()),
        "local.retention.bytes" | "local.retention.ms" => {
            parse_long(name, value, -2, i64::MAX).map(|n| n.to_string())
        }
        "retention.ms" => parse_long(name, value, -1, i64::MAX).map(|n| n.to_string()),
        // Kafka gives retention.bytes no lower bound: every negative value means unlimited.
        "retention.bytes" => parse_long(name, value, i64::MIN, i64::MAX).map(|n| n.to_string()),
        "segment.bytes" => parse_int(name, value, MIN_SEGMENT_BYTES).map(|n| n.to_string()),
        "segment.index.bytes" => {
            parse_int(name, value, MIN_SEGMENT_INDEX_BYTES).map(|n| n.to_string())
        }
        "min.insync.replicas" => parse_int(name, value, 1).map(|n| n.to_string()),
        // "index.interval.bytes", "max.message.bytes"
        _ => parse_int(name, value, 0).map(|n| n.to_string()),
    }
}

/// Validates a full set of dynamic configs as given by CreateTopics or AlterConfigs: every name
/// at most once, every value valid. `None` values are refused (Kafka does not support a null
/// value in a topic config); callers that give null a meaning filter those out first.
pub(crate) fn validate_config_set(
    configs: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut out = BTreeMap::new();
    for (name, value) in configs {
        let Some(value) = value else {
            return Err(TopicError::InvalidConfig(format!(
                "Null value not supported for topic config: {name}"
            )));
        };
        let value = validate_config(name, value)?;
        if out.insert(name.clone(), value).is_some() {
            return Err(TopicError::InvalidConfig(format!(
                "Config {name} is given more than once"
            )));
        }
    }
    Ok(out)
}

/// Applies IncrementalAlterConfigs operations to a topic's dynamic configs, validating each
/// resulting value. `defaults` supply the base of APPEND/SUBTRACT on a config not set on the topic.
pub(crate) fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
    defaults: &TopicDefaults,
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut next = current.clone();
    for op in ops {
        match op {
            ConfigOp::Set(name, value) => {
                let value = validate_config(name, value)?;
                next.insert(name.clone(), value);
            }
            ConfigOp::Delete(name) => {
                if config_def(name).is_none() {
                    return Err(TopicError::InvalidConfig(format!(
                        "Unknown topic config name: {name}"
                    )));
                }
                next.remove(name);
            }
            ConfigOp::Append(name, value) | ConfigOp::Subtract(name, value) => {
                let Some(def) = config_def(name) else {
                    return Err(TopicError::InvalidConfig(format!(
                        "Unknown topic config name: {name}"
                    )));
                };
                if def.config_type != ConfigType::List {
                    let verb = if matches!(op, ConfigOp::Append(..)) {
                        "append"
                    } else {
                        "subtract"
                    };
                    return Err(TopicError::InvalidConfig(format!(
                        "Config value {verb} is not allowed for config key: {name}"
                    )));
                }
                let base = next
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| default_value(def, defaults));
                let mut items = list_items(&base);
                for item in list_items(value) {
                    if matches!(op, ConfigOp::Append(..)) {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|i| *i != item);
                    }
                }
                let value = validate_config(name, &items.join(","))?;
                next.insert(name.clone(), value);
            }
        }
    }
    Ok(next)
}

/// The [`LogConfig`] a partition runs with: the broker defaults overlaid with the topic's
/// dynamic configs. Configs applied before the log (`compression.*`, the timestamp bounds: see
/// [`batch_rules`]) and those only stored (`flush.*`, ...) leave it unchanged.
pub(crate) fn effective_log_config(
    defaults: &LogConfig,
    dynamic: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicError> {
    let mut log = defaults.clone();
    for (name, value) in dynamic {
        let value = validate_config(name, value)?;
        let num = |min: i64| parse_long(name, &value, min, i64::MAX);
        // Every bound below was already checked by `validate_config`; the conversions re-check
        // rather than cast so a future bound change cannot silently wrap.
        let to_u32 = |n: i64| u32::try_from(n).map_err(|_| invalid(name, &value, "out of range"));
        match name.as_str() {
            "retention.ms" => log.retention_ms = num(-1)?,
            "cleanup.policy" => {
                log.cleanup_policy = parse_cleanup_policy(&value)
                    .ok_or_else(|| invalid(name, &value, "not a cleanup policy"))?;
            }
            "min.compaction.lag.ms" => log.min_compaction_lag_ms = num(0)?,
            "max.compaction.lag.ms" => log.max_compaction_lag_ms = num(1)?,
            "delete.retention.ms" => log.delete_retention_ms = num(0)?,
            "min.cleanable.dirty.ratio" => {
                log.min_cleanable_dirty_ratio = value
                    .parse()
                    .map_err(|_| invalid(name, &value, "Not a number of type DOUBLE"))?;
            }
            "retention.bytes" => log.retention_bytes = num(i64::MIN)?,
            "segment.ms" => log.segment_ms = num(1)?,
            "segment.bytes" => {
                log.segment_bytes = u64::try_from(num(MIN_SEGMENT_BYTES)?)
                    .map_err(|_| invalid(name, &value, "out of range"))?;
            }
            "segment.index.bytes" => {
                log.segment_index_bytes = to_u32(num(MIN_SEGMENT_INDEX_BYTES)?)?
            }
            "index.interval.bytes" => log.index_interval_bytes = to_u32(num(0)?)?,
            "max.message.bytes" => log.max_message_bytes = to_u32(num(0)?)?,
            "message.timestamp.type" => {
                log.timestamp_type = if value == "LogAppendTime" {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                };
            }
            _ => {}
        }
    }
    Ok(log)
}

/// The rules produced batches are stored under (`compression.type` and its level, the timestamp
/// bounds, `max.message.bytes`): the topic's dynamic configs over the broker defaults, with
/// `log` the topic's effective [`LogConfig`].
pub(crate) fn batch_rules(
    defaults: &TopicDefaults,
    dynamic: &BTreeMap<String, String>,
    log: &LogConfig,
) -> Result<BatchRules, TopicError> {
    let value = |name: &str| -> Result<String, TopicError> {
        let raw = match dynamic.get(name) {
            Some(v) => v.clone(),
            None => config_def(name)
                .map(|d| default_value(d, defaults))
                .ok_or_else(|| TopicError::InvalidConfig(format!("no config {name}")))?,
        };
        validate_config(name, &raw)
    };
    let number = |name: &str| -> Result<i64, TopicError> {
        let v = value(name)?;
        v.parse()
            .map_err(|_| invalid(name, &v, "Not a number of type LONG"))
    };
    let level = |name: &str| -> Result<i32, TopicError> {
        let n = number(name)?;
        i32::try_from(n).map_err(|_| invalid(name, &n.to_string(), "Not a number of type INT"))
    };
    let compression = match value("compression.type")?.as_str() {
        "producer" => CompressionType::Producer,
        "gzip" => CompressionType::Broker(Codec {
            compression: Compression::Gzip,
            level: level("compression.gzip.level")?,
        }),
        "lz4" => CompressionType::Broker(Codec {
            compression: Compression::Lz4,
            level: level("compression.lz4.level")?,
        }),
        "zstd" => CompressionType::Broker(Codec {
            compression: Compression::Zstd,
            level: level("compression.zstd.level")?,
        }),
        "snappy" => CompressionType::Broker(Codec::new(Compression::Snappy)),
        // "uncompressed", the only other value validation lets through.
        _ => CompressionType::Broker(Codec::new(Compression::None)),
    };
    let timestamps = match log.timestamp_type {
        TimestampType::LogAppendTime => None,
        TimestampType::CreateTime => {
            // KIP-937: the deprecated difference bound stands in for a bound left unlimited.
            let difference = number("message.timestamp.difference.max.ms")?;
            let bound = |name: &str| -> Result<i64, TopicError> {
                let n = number(name)?;
                Ok(if n == i64::MAX { difference } else { n })
            };
            let bounds = TimestampBounds {
                before_max_ms: bound("message.timestamp.before.max.ms")?,
                after_max_ms: bound("message.timestamp.after.max.ms")?,
            };
            (bounds.before_max_ms != i64::MAX || bounds.after_max_ms != i64::MAX).then_some(bounds)
        }
    };
    Ok(BatchRules {
        compression,
        timestamps,
        max_message_bytes: log.max_message_bytes,
    })
}

/// Where a topic config's value comes from when the topic does not set it.
fn default_source(def: &ConfigDef, defaults: &TopicDefaults) -> ConfigSource {
    if defaults.configs.contains_key(def.name) || defaults.static_settings.contains_key(def.name) {
        ConfigSource::StaticBroker
    } else {
        ConfigSource::Default
    }
}

/// The broker-level synonyms of a topic config, most precedent first, as DescribeConfigs lists
/// them: the broker's config file setting (if it sets one), then Kafka's default.
pub(crate) fn broker_synonyms(
    def: &ConfigDef,
    defaults: &TopicDefaults,
) -> Vec<(String, String, ConfigSource)> {
    let Some(broker_name) = def.broker_name else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some((setting, value)) = defaults.static_settings.get(def.name) {
        out.push((setting.clone(), value.clone(), ConfigSource::StaticBroker));
    } else if let Some(value) = defaults.configs.get(def.name) {
        out.push((
            broker_name.to_owned(),
            value.clone(),
            ConfigSource::StaticBroker,
        ));
    }
    let kafka = default_value(def, &TopicDefaults::default());
    out.push((broker_name.to_owned(), kafka, ConfigSource::Default));
    out
}

/// Describes a topic's configs: every supported one (or only those in `names`; unknown names
/// are skipped, as Kafka does), with its source.
pub(crate) fn describe(
    defaults: &TopicDefaults,
    dynamic: &BTreeMap<String, String>,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    CONFIG_DEFS
        .iter()
        .filter(|d| names.is_none_or(|n| n.iter().any(|x| x == d.name)))
        .map(|d| {
            let (value, source) = match dynamic.get(d.name) {
                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                None => (default_value(d, defaults), default_source(d, defaults)),
            };
            ConfigEntry {
                name: d.name.to_owned(),
                value: Some(value),
                source,
                read_only: false,
                sensitive: false,
            }
        })
        .collect()
}

/// The type of a broker-level config listed by [`describe_broker`].
pub(crate) fn broker_config_type(name: &str) -> ConfigType {
    match name {
        "auto.create.topics.enable" | "unclean.leader.election.enable" | "delete.topic.enable" => {
            ConfigType::Boolean
        }
        "log.retention.ms"
        | "log.retention.bytes"
        | "log.roll.ms"
        | "log.message.timestamp.after.max.ms"
        | "log.message.timestamp.before.max.ms"
        | "log.message.timestamp.difference.max.ms"
        | "log.cleaner.delete.retention.ms"
        | "log.cleaner.min.compaction.lag.ms"
        | "log.cleaner.max.compaction.lag.ms" => ConfigType::Long,
        "log.cleaner.min.cleanable.ratio" => ConfigType::Double,
        "log.message.timestamp.type" | "sluice.flush.policy" | "compression.type" => {
            ConfigType::String
        }
        "log.cleanup.policy" => ConfigType::List,
        _ => ConfigType::Int,
    }
}

/// Broker-level configs a client may describe (resource type BROKER); all read-only.
pub(crate) fn describe_broker(
    defaults: &TopicDefaults,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    let log = &defaults.log;
    let flush = match log.flush {
        FlushPolicy::Fsync => "fsync",
        FlushPolicy::PageCache => "page-cache",
    };
    let from_config = [
        ("num.partitions", defaults.num_partitions.to_string()),
        (
            "auto.create.topics.enable",
            defaults.auto_create_topics.to_string(),
        ),
        ("log.retention.ms", log.retention_ms.to_string()),
        ("log.retention.bytes", log.retention_bytes.to_string()),
        ("log.segment.bytes", log.segment_bytes.to_string()),
        ("log.roll.ms", log.segment_ms.to_string()),
        (
            "log.index.interval.bytes",
            log.index_interval_bytes.to_string(),
        ),
        (
            "log.index.size.max.bytes",
            log.segment_index_bytes.to_string(),
        ),
        ("message.max.bytes", log.max_message_bytes.to_string()),
        (
            "log.message.timestamp.type",
            timestamp_type_name(log.timestamp_type).to_owned(),
        ),
        ("sluice.flush.policy", flush.to_owned()),
        ("log.cleanup.policy", log.cleanup_policy.name().to_owned()),
        (
            "log.cleaner.delete.retention.ms",
            log.delete_retention_ms.to_string(),
        ),
        (
            "log.cleaner.min.compaction.lag.ms",
            log.min_compaction_lag_ms.to_string(),
        ),
        (
            "log.cleaner.max.compaction.lag.ms",
            log.max_compaction_lag_ms.to_string(),
        ),
        (
            "log.cleaner.min.cleanable.ratio",
            log.min_cleanable_dirty_ratio.to_string(),
        ),
    ];
    // The topic configs' broker defaults kept outside LogConfig, by their broker names.
    let topic_level = CONFIG_DEFS.iter().filter_map(|d| {
        let broker_name = d.broker_name?;
        topic_config_of_broker_setting(broker_name)?;
        Some((
            broker_name,
            default_value(d, defaults),
            default_source(d, defaults),
        ))
    });
    let fixed = [
        ("default.replication.factor", "1"),
        ("min.insync.replicas", "1"),
        ("unclean.leader.election.enable", "false"),
        ("delete.topic.enable", "true"),
    ];
    let entries = from_config
        .into_iter()
        .map(|(n, v)| (n, v, ConfigSource::StaticBroker))
        .chain(topic_level)
        .chain(
            fixed
                .into_iter()
                .map(|(n, v)| (n, v.to_owned(), ConfigSource::Default)),
        );
    entries
        .filter(|(n, _, _)| names.is_none_or(|names| names.iter().any(|x| x == n)))
        .map(|(name, value, source)| ConfigEntry {
            name: name.to_owned(),
            value: Some(value),
            source,
            read_only: true,
            sensitive: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn invalid_message(r: Result<String, TopicError>) -> String {
        match r {
            Err(TopicError::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn good_values_are_accepted_and_normalised() {
        assert_eq!(validate_config("retention.ms", " 1000 ").unwrap(), "1000");
        assert_eq!(validate_config("retention.ms", "-1").unwrap(), "-1");
        assert_eq!(validate_config("retention.bytes", "-1").unwrap(), "-1");
        assert_eq!(validate_config("segment.bytes", "14").unwrap(), "14");
        assert_eq!(validate_config("segment.index.bytes", "4").unwrap(), "4");
        assert_eq!(validate_config("segment.ms", "1").unwrap(), "1");
        assert_eq!(validate_config("index.interval.bytes", "0").unwrap(), "0");
        assert_eq!(validate_config("max.message.bytes", "0").unwrap(), "0");
        assert_eq!(
            validate_config("cleanup.policy", "delete").unwrap(),
            "delete"
        );
        assert_eq!(validate_config("compression.type", "ZSTD").unwrap(), "zstd");
        assert_eq!(
            validate_config("message.timestamp.type", "LogAppendTime").unwrap(),
            "LogAppendTime"
        );
        assert_eq!(
            validate_config("unclean.leader.election.enable", "TRUE").unwrap(),
            "true"
        );
        assert_eq!(validate_config("min.insync.replicas", "2").unwrap(), "2");
        assert_eq!(validate_config("flush.ms", "0").unwrap(), "0");
    }

    #[test]
    fn out_of_range_and_malformed_values_are_refused() {
        for (name, value) in [
            ("retention.ms", "-2"),
            ("retention.bytes", "ten"),
            ("segment.bytes", "13"),
            ("segment.bytes", "4294967296"),
            ("segment.index.bytes", "3"),
            ("segment.ms", "0"),
            ("index.interval.bytes", "-1"),
            ("max.message.bytes", "1.5"),
            ("message.timestamp.type", "createtime"),
            ("min.insync.replicas", "0"),
            ("flush.messages", "0"),
            ("compression.type", "brotli"),
            ("unclean.leader.election.enable", "yes"),
            ("cleanup.policy", ""),
            ("cleanup.policy", "compact,none"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "half"),
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("delete.retention.ms", "-1"),
        ] {
            let msg = invalid_message(validate_config(name, value));
            assert!(msg.contains(name), "{name}={value}: {msg}");
        }
    }

    #[test]
    fn unknown_config_name_is_refused_like_kafka() {
        let msg = invalid_message(validate_config("retention.hours", "1"));
        assert_eq!(msg, "Unknown topic config name: retention.hours");
    }

    #[test]
    fn cleanup_policies_are_normalised_and_reach_the_log_config() {
        for (v, want) in [
            ("compact", "compact"),
            ("delete, compact", "compact,delete"),
            ("compact,delete", "compact,delete"),
            ("delete", "delete"),
        ] {
            assert_eq!(validate_config("cleanup.policy", v).unwrap(), want);
        }
        let defaults = kafka_default_log_config();
        let log = effective_log_config(
            &defaults,
            &set(&[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("min.compaction.lag.ms", "5"),
                ("max.compaction.lag.ms", "60000"),
                ("delete.retention.ms", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(
            log.cleanup_policy,
            CleanupPolicy {
                compact: true,
                delete: false
            }
        );
        assert_eq!(log.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(log.min_compaction_lag_ms, 5);
        assert_eq!(log.max_compaction_lag_ms, 60000);
        assert_eq!(log.delete_retention_ms, 100);
    }

    #[test]
    fn a_config_given_twice_or_null_is_refused() {
        let twice = [
            ("retention.ms".to_string(), Some("1".to_string())),
            ("retention.ms".to_string(), Some("2".to_string())),
        ];
        assert!(matches!(
            validate_config_set(&twice),
            Err(TopicError::InvalidConfig(_))
        ));
        let null = [("retention.ms".to_string(), None)];
        assert!(matches!(
            validate_config_set(&null),
            Err(TopicError::InvalidConfig(_))
        ));
    }

    #[test]
    fn effective_log_config_overlays_dynamic_configs_on_defaults() {
        let defaults = kafka_default_log_config();
        let dynamic = set(&[
            ("retention.ms", "60000"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "65536"),
            ("segment.ms", "1000"),
            ("segment.index.bytes", "4096"),
            ("index.interval.bytes", "128"),
            ("max.message.bytes", "2000000"),
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "gzip"),
        ]);
        let log = effective_log_config(&defaults, &dynamic).unwrap();
        assert_eq!(
            log,
            LogConfig {
                segment_bytes: 65536,
                segment_ms: 1000,
                retention_ms: 60000,
                retention_bytes: 1048576,
                index_interval_bytes: 128,
                segment_index_bytes: 4096,
                max_message_bytes: 2_000_000,
                timestamp_type: TimestampType::LogAppendTime,
                flush: defaults.flush,
                ..defaults.clone()
            }
        );
        assert_eq!(
            effective_log_config(&defaults, &BTreeMap::new()).unwrap(),
            defaults
        );
    }

    #[test]
    fn append_and_subtract_work_only_on_list_configs() {
        let log = TopicDefaults::default();
        let cur = BTreeMap::new();
        let next = apply_ops(
            &cur,
            &[ConfigOp::Append("cleanup.policy".into(), "delete".into())],
            &log,
        )
        .unwrap();
        assert_eq!(next, set(&[("cleanup.policy", "delete")]));
        let compact = apply_ops(
            &cur,
            &[ConfigOp::Append("cleanup.policy".into(), "compact".into())],
            &log,
        )
        .unwrap();
        assert_eq!(compact, set(&[("cleanup.policy", "compact,delete")]));
        let bogus = apply_ops(
            &cur,
            &[ConfigOp::Append("cleanup.policy".into(), "bogus".into())],
            &log,
        );
        assert!(matches!(bogus, Err(TopicError::InvalidConfig(_))));
        let emptied = apply_ops(
            &cur,
            &[ConfigOp::Subtract("cleanup.policy".into(), "delete".into())],
            &log,
        );
        assert!(matches!(emptied, Err(TopicError::InvalidConfig(_))));
        let not_list = apply_ops(
            &cur,
            &[ConfigOp::Append("retention.ms".into(), "1".into())],
            &log,
        );
        match not_list {
            Err(TopicError::InvalidConfig(m)) => {
                assert!(m.contains("append is not allowed"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_and_delete_change_only_the_named_configs() {
        let log = TopicDefaults::default();
        let cur = set(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
        let next = apply_ops(
            &cur,
            &[
                ConfigOp::Set("retention.bytes".into(), "10".into()),
                ConfigOp::Delete("segment.ms".into()),
            ],
            &log,
        )
        .unwrap();
        assert_eq!(
            next,
            set(&[("retention.ms", "1000"), ("retention.bytes", "10")])
        );
        let bad = apply_ops(&cur, &[ConfigOp::Delete("nope".into())], &log);
        assert!(matches!(bad, Err(TopicError::InvalidConfig(_))));
    }

    #[test]
    fn describe_lists_every_config_with_its_source() {
        let log = TopicDefaults::default();
        let entries = describe(&log, &set(&[("retention.ms", "1000")]), None);
        assert_eq!(entries.len(), CONFIG_DEFS.len());
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.source, ConfigSource::DynamicTopic);
        let segment = entries.iter().find(|e| e.name == "segment.bytes").unwrap();
        assert_eq!(segment.value.as_deref(), Some("1073741824"));
        assert_eq!(segment.source, ConfigSource::Default);
        let only = describe(
            &log,
            &BTreeMap::new(),
            Some(&["segment.ms".to_string(), "bogus".to_string()]),
        );
        assert_eq!(only.len(), 1);
    }

    #[test]
    fn kafka_3_topic_configs_are_accepted_with_kafkas_rules() {
        for (name, value, stored) in [
            ("compression.type", "lz4", "lz4"),
            ("compression.type", "uncompressed", "uncompressed"),
            ("compression.gzip.level", "-1", "-1"),
            ("compression.gzip.level", "9", "9"),
            ("compression.lz4.level", "17", "17"),
            ("compression.zstd.level", "-131072", "-131072"),
            ("compression.zstd.level", "22", "22"),
            ("file.delete.delay.ms", "0", "0"),
            ("follower.replication.throttled.replicas", "*", "*"),
            (
                "leader.replication.throttled.replicas",
                "0:1, 1:1",
                "0:1,1:1",
            ),
            ("leader.replication.throttled.replicas", "", ""),
            ("local.retention.bytes", "-2", "-2"),
            ("local.retention.ms", "86400000", "86400000"),
            ("message.downconversion.enable", "False", "false"),
            ("message.format.version", "2.8", "2.8"),
            ("message.format.version", "3.0-IV1", "3.0-IV1"),
            ("message.format.version", "0.10.2-IV0", "0.10.2-IV0"),
            ("message.format.version", "2.8.1", "2.8.1"),
            ("message.timestamp.after.max.ms", "0", "0"),
            ("message.timestamp.before.max.ms", "3600000", "3600000"),
            ("preallocate", "true", "true"),
            ("remote.log.copy.disable", "false", "false"),
            ("remote.log.delete.on.disable", "true", "true"),
            ("remote.storage.enable", "false", "false"),
            ("retention.bytes", "-5", "-5"),
            ("segment.jitter.ms", "1000", "1000"),
        ] {
            assert_eq!(
                validate_config(name, value).unwrap_or_else(|e| panic!("{name}={value}: {e}")),
                stored
            );
        }
    }

    #[test]
    fn kafka_3_topic_configs_are_refused_with_kafkas_messages() {
        for (name, value, message) in [
            (
                "compression.gzip.level",
                "0",
                "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1",
            ),
            (
                "compression.lz4.level",
                "18",
                "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17",
            ),
            (
                "compression.zstd.level",
                "-131073",
                "Invalid value -131073 for configuration compression.zstd.level: Value must be at least -131072",
            ),
            (
                "message.format.version",
                "2.9",
                "Invalid value 2.9 for configuration message.format.version: Version 2.9 is not a valid version",
            ),
            (
                "message.format.version",
                "3.0-IV2",
                "Invalid value 3.0-IV2 for configuration message.format.version: Version 3.0-IV2 is not a valid version",
            ),
            (
                "leader.replication.throttled.replicas",
                "0:1,x",
                "Invalid value 0:1,x for configuration leader.replication.throttled.replicas: leader.replication.throttled.replicas must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
            ),
            (
                "remote.storage.enable",
                "true",
                "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.",
            ),
            (
                "message.timestamp.before.max.ms",
                "-1",
                "Invalid value -1 for configuration message.timestamp.before.max.ms: Value must be at least 0",
            ),
            (
                "local.retention.ms",
                "-3",
                "Invalid value -3 for configuration local.retention.ms: Value must be at least -2",
            ),
            (
                "preallocate",
                "yes",
                "Invalid value yes for configuration preallocate: Expected value to be either true or false",
            ),
            (
                "compression.type",
                "brotli",
                "Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
            ),
        ] {
            assert_eq!(invalid_message(validate_config(name, value)), message);
        }
    }

    #[test]
    fn batch_rules_follow_compression_type_levels_and_timestamp_bounds() {
        let defaults = TopicDefaults::default();
        let rules = |pairs: &[(&str, &str)]| {
            let dynamic = set(pairs);
            let log = effective_log_config(&defaults.log, &dynamic).unwrap();
            batch_rules(&defaults, &dynamic, &log).unwrap()
        };
        let plain = rules(&[]);
        assert_eq!(plain.compression, CompressionType::Producer);
        assert_eq!(plain.timestamps, None);
        assert_eq!(plain.max_message_bytes, defaults.log.max_message_bytes);
        assert_eq!(
            rules(&[
                ("compression.type", "zstd"),
                ("compression.zstd.level", "9")
            ])
            .compression,
            CompressionType::Broker(Codec {
                compression: Compression::Zstd,
                level: 9
            })
        );
        assert_eq!(
            rules(&[("compression.type", "gzip")]).compression,
            CompressionType::Broker(Codec::new(Compression::Gzip))
        );
        assert_eq!(
            rules(&[("compression.type", "uncompressed")]).compression,
            CompressionType::Broker(Codec::new(Compression::None))
        );
        assert_eq!(
            rules(&[("message.timestamp.before.max.ms", "1000")]).timestamps,
            Some(TimestampBounds {
                before_max_ms: 1000,
                after_max_ms: i64::MAX
            })
        );
        // The deprecated difference bound fills in whichever bound is unlimited.
        assert_eq!(
            rules(&[
                ("message.timestamp.difference.max.ms", "500"),
                ("message.timestamp.after.max.ms", "20")
            ])
            .timestamps,
            Some(TimestampBounds {
                before_max_ms: 500,
                after_max_ms: 20
            })
        );
        // LogAppendTime replaces the producer's timestamps, so nothing is refused for them.
        assert_eq!(
            rules(&[
                ("message.timestamp.before.max.ms", "1000"),
                ("message.timestamp.type", "LogAppendTime")
            ])
            .timestamps,
            None
        );
    }

    #[test]
    fn broker_set_defaults_are_reported_as_static_with_kafkas_default_below() {
        let mut defaults = TopicDefaults::default();
        defaults
            .set_config_default("compression.type", "LZ4")
            .unwrap();
        let entries = describe(
            &defaults,
            &BTreeMap::new(),
            Some(&["compression.type".into()]),
        );
        assert_eq!(entries[0].value.as_deref(), Some("lz4"));
        assert_eq!(entries[0].source, ConfigSource::StaticBroker);
        let def = config_def("compression.type").unwrap();
        assert_eq!(
            broker_synonyms(def, &defaults),
            [
                (
                    "compression.type".to_string(),
                    "lz4".to_string(),
                    ConfigSource::StaticBroker
                ),
                (
                    "compression.type".to_string(),
                    "producer".to_string(),
                    ConfigSource::Default
                ),
            ]
        );
        // A LogConfig-backed default set in the file: its setting as written, then Kafka's.
        defaults.log.segment_bytes = 1_048_576;
        defaults.static_settings.insert(
            "segment.bytes".into(),
            ("log.segment.bytes".into(), "1048576".into()),
        );
        let segment = describe(&defaults, &BTreeMap::new(), Some(&["segment.bytes".into()]));
        assert_eq!(segment[0].value.as_deref(), Some("1048576"));
        assert_eq!(segment[0].source, ConfigSource::StaticBroker);
        assert_eq!(
            broker_synonyms(config_def("segment.bytes").unwrap(), &defaults),
            [
                (
                    "log.segment.bytes".to_string(),
                    "1048576".to_string(),
                    ConfigSource::StaticBroker
                ),
                (
                    "log.segment.bytes".to_string(),
                    "1073741824".to_string(),
                    ConfigSource::Default
                ),
            ]
        );
        let throttled = config_def("leader.replication.throttled.replicas").unwrap();
        assert!(broker_synonyms(throttled, &defaults).is_empty());
        let broker = describe_broker(&defaults, Some(&["compression.type".into()]));
        assert_eq!(broker[0].value.as_deref(), Some("lz4"));
        assert_eq!(broker[0].source, ConfigSource::StaticBroker);
        assert_eq!(
            topic_config_of_broker_setting("log.message.timestamp.before.max.ms"),
            Some("message.timestamp.before.max.ms")
        );
        assert_eq!(topic_config_of_broker_setting("log.segment.bytes"), None);
    }

    #[test]
    fn every_default_value_validates() {
        let log = TopicDefaults::default();
        for def in CONFIG_DEFS {
            validate_config(def.name, &default_value(def, &log)).unwrap();
        }
    }
}
