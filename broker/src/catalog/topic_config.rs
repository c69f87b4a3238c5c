//! Topic-level configs: the names we support, how each value is validated, and how a topic's
//! dynamic configs overlay the broker defaults to give a partition its [`LogConfig`].
//!
//! Everything here is a pure function of its inputs so it can be tested without opening a log.

use std::collections::BTreeMap;

use super::{ConfigEntry, ConfigOp, ConfigSource, TopicDefaults, TopicError};
use crate::log::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};

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
    /// The broker-level config this one defaults from (a DescribeConfigs synonym).
    pub(crate) broker_name: &'static str,
    /// DescribeConfigs documentation (v3+): says plainly when a value is only stored.
    pub(crate) doc: &'static str,
}

// Kafka's own lower bounds; a value below them is refused with the same message shape Kafka uses.
const MIN_SEGMENT_BYTES: i64 = 14;
const MIN_SEGMENT_INDEX_BYTES: i64 = 4;

/// Kafka's value for "no limit" in the `flush.*` and timestamp-difference configs.
const LONG_MAX: &str = "9223372036854775807";

/// The codecs Kafka accepts for `compression.type`.
const COMPRESSION_TYPES: [&str; 6] = ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config Sluice honours or stores, in the order DescribeConfigs lists them.
pub(crate) const CONFIG_DEFS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        broker_name: "log.cleanup.policy",
        doc: "How old log segments are discarded: delete (retention), compact (latest record per key), or both.",
    },
    ConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        broker_name: "compression.type",
        doc: "Stored as given; batches are always kept exactly as the producer compressed them.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.delete.retention.ms",
        doc: "How long a tombstone stays in a compacted topic after the cleaning that first saw it.",
    },
    ConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        broker_name: "log.flush.interval.messages",
        doc: "Stored for compatibility; durability is set by the broker's flush policy.",
    },
    ConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        broker_name: "log.flush.interval.ms",
        doc: "Stored for compatibility; durability is set by the broker's flush policy.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.index.interval.bytes",
        doc: "Bytes of log between two offset-index entries.",
    },
    ConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        broker_name: "message.max.bytes",
        doc: "The largest record batch the topic accepts.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.max.compaction.lag.ms",
        doc: "A record is compacted at the latest this long after it was written, whatever the dirty ratio.",
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        config_type: ConfigType::Long,
        broker_name: "log.message.timestamp.difference.max.ms",
        doc: "Stored for compatibility; not enforced.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        broker_name: "log.message.timestamp.type",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        broker_name: "log.cleaner.min.cleanable.ratio",
        doc: "The share of a compacted log that must be uncleaned before the cleaner runs on it.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.min.compaction.lag.ms",
        doc: "A record stays uncompacted at least this long after it was written.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        broker_name: "min.insync.replicas",
        doc: "Stored for compatibility; a single broker is always the only in-sync replica.",
    },
    ConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        broker_name: "log.retention.bytes",
        doc: "Oldest segments are deleted while a partition is larger than this; -1 is unlimited.",
    },
    ConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        broker_name: "log.retention.ms",
        doc: "Segments whose newest record is older than this are deleted; -1 keeps forever.",
    },
    ConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.segment.bytes",
        doc: "A partition rolls to a new segment once the active one reaches this size.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        broker_name: "log.index.size.max.bytes",
        doc: "The most an offset index may hold; a full index rolls the segment.",
    },
    ConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        broker_name: "log.roll.ms",
        doc: "A partition rolls to a new segment once the active one's first batch is this old.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        broker_name: "unclean.leader.election.enable",
        doc: "Stored for compatibility; meaningless on a single broker.",
    },
];

/// The definition of a supported topic config.
pub(crate) fn config_def(name: &str) -> Option<&'static ConfigDef> {
    CONFIG_DEFS.iter().find(|d| d.name == name)
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

/// The broker default of a topic config, as a string.
pub(crate) fn default_value(def: &ConfigDef, log: &LogConfig) -> String {
    match def.name {
        "cleanup.policy" => log.cleanup_policy.name().into(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio.to_string(),
        "compression.type" => "producer".into(),
        "flush.messages" | "flush.ms" | "message.timestamp.difference.max.ms" => LONG_MAX.into(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.timestamp.type" => timestamp_type_name(log.timestamp_type).into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "retention.ms" => log.retention_ms.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.index.bytes" => log.segment_index_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        // "unclean.leader.election.enable" and any later boolean.
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
    value
        .parse::<i32>()
        .map_err(|_| invalid(name, value, "Not a number of type INT"))?;
    parse_long(name, value, min, i64::from(i32::MAX))
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
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(value.to_owned()),
            _ => Err(invalid(
                name,
                value,
                "String must be one of: CreateTime, LogAppendTime",
            )),
        },
        "unclean.leader.election.enable" => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_owned()),
            _ => Err(invalid(
                name,
                value,
                "Expected value to be either true or false",
            )),
        },
        "flush.messages" | "segment.ms" => {
            parse_long(name, value, 1, i64::MAX).map(|n| n.to_string())
        }
        "flush.ms" | "message.timestamp.difference.max.ms" => {
            parse_long(name, value, 0, i64::MAX).map(|n| n.to_string())
        }
        "retention.ms" | "retention.bytes" => {
            parse_long(name, value, -1, i64::MAX).map(|n| n.to_string())
        }
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
/// resulting value. `log` supplies defaults for APPEND/SUBTRACT on a config not set on the topic.
pub(crate) fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
    log: &LogConfig,
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
                    .unwrap_or_else(|| default_value(def, log));
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
/// dynamic configs. Configs that are only stored (`compression.type`, `flush.*`, ...) leave it
/// unchanged.
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
            "retention.bytes" => log.retention_bytes = num(-1)?,
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

/// Describes a topic's configs: every supported one (or only those in `names`; unknown names
/// are skipped, as Kafka does), with its source.
pub(crate) fn describe(
    log: &LogConfig,
    dynamic: &BTreeMap<String, String>,
    names: Option<&[String]>,
) -> Vec<ConfigEntry> {
    CONFIG_DEFS
        .iter()
        .filter(|d| names.is_none_or(|n| n.iter().any(|x| x == d.name)))
        .map(|d| {
            let (value, source) = match dynamic.get(d.name) {
                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                None => (default_value(d, log), ConfigSource::Default),
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
    let fixed = [
        ("compression.type", "producer"),
        ("default.replication.factor", "1"),
        ("min.insync.replicas", "1"),
        ("unclean.leader.election.enable", "false"),
        ("delete.topic.enable", "true"),
    ];
    let entries = from_config
        .into_iter()
        .map(|(n, v)| (n, v, ConfigSource::StaticBroker))
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
        let log = kafka_default_log_config();
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
        let log = kafka_default_log_config();
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
        let log = kafka_default_log_config();
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
    fn every_default_value_validates() {
        let log = kafka_default_log_config();
        for def in CONFIG_DEFS {
            validate_config(def.name, &default_value(def, &log)).unwrap();
        }
    }
}
