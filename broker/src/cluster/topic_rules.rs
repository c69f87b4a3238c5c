//! What cluster mode accepts of a topic's configs: exactly what the local catalog accepts
//! (its validation is reused), less `cleanup.policy=compact` and
//! `message.timestamp.type=LogAppendTime`, which cluster mode refuses by name until compaction
//! runs over the object store and the commit stamps append times.

use std::collections::BTreeMap;

use crate::catalog::topic_config::{parse_cleanup_policy, validate_config_set};
use crate::catalog::{rules_of, TopicDefaults, TopicError};

/// Validates CreateTopics' or AlterConfigs' full set of topic configs for cluster mode; the
/// values as stored (normalized as the catalog normalizes them).
pub fn validate_topic_configs(
    configs: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, TopicError> {
    let configs = validate_config_set(configs)?;
    refuse_unsupported(&configs)?;
    Ok(configs)
}

/// Checks the configs a topic would have after an alteration as the catalog checks them (each
/// value, then together: the log config and batch rules they make over the broker `defaults`),
/// and refuses what cluster mode does not support. The set to store, by name.
pub fn check_altered(
    defaults: &TopicDefaults,
    configs: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, TopicError> {
    refuse_unsupported(&configs)?;
    let configs: Vec<(String, String)> = configs.into_iter().collect();
    rules_of(defaults, &configs)?;
    Ok(configs)
}

/// Refuses a config set (as it would be after an alteration) that asks for compaction or for
/// append-time timestamps.
pub fn refuse_unsupported(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    if let Some(policy) = configs.get("cleanup.policy") {
        if parse_cleanup_policy(policy).is_some_and(|p| p.compact) {
            return Err(TopicError::InvalidConfig(format!(
                "cleanup.policy={policy} is not supported in cluster mode (--metadata): \
                 compacted topics need the single-node broker for now; use cleanup.policy=delete"
            )));
        }
    }
    if let Some(kind) = configs.get("message.timestamp.type") {
        if kind.eq_ignore_ascii_case("LogAppendTime") {
            return Err(TopicError::InvalidConfig(format!(
                "message.timestamp.type={kind} is not supported in cluster mode (--metadata): \
                 records keep the producer's timestamps; use message.timestamp.type=CreateTime"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn configs_are_validated_as_the_catalog_does_and_compaction_is_refused_by_name() {
        let ok = validate_topic_configs(&set(&[("retention.ms", "1000")])).unwrap();
        assert_eq!(ok["retention.ms"], "1000");
        let unknown = validate_topic_configs(&set(&[("no.such", "1")])).unwrap_err();
        assert!(unknown.to_string().contains("no.such"), "{unknown}");
        let bad = validate_topic_configs(&set(&[("retention.ms", "soon")])).unwrap_err();
        assert!(matches!(bad, TopicError::InvalidConfig(_)));
        for policy in ["compact", "delete,compact"] {
            let refused = validate_topic_configs(&set(&[("cleanup.policy", policy)])).unwrap_err();
            assert!(
                matches!(&refused, TopicError::InvalidConfig(m) if m.contains("cluster mode")),
                "{refused}"
            );
        }
        assert!(validate_topic_configs(&set(&[("cleanup.policy", "delete")])).is_ok());
        let append = validate_topic_configs(&set(&[("message.timestamp.type", "LogAppendTime")]))
            .unwrap_err();
        assert!(
            matches!(&append, TopicError::InvalidConfig(m) if m.contains("cluster mode")),
            "{append}"
        );
        assert!(validate_topic_configs(&set(&[("message.timestamp.type", "CreateTime")])).is_ok());
    }

    #[test]
    fn altered_configs_are_checked_together_as_the_catalog_does() {
        let defaults = TopicDefaults::default();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            check_altered(&defaults, map(&[("max.message.bytes", "100")])).unwrap(),
            vec![("max.message.bytes".to_string(), "100".to_string())]
        );
        let compact = check_altered(&defaults, map(&[("cleanup.policy", "compact")])).unwrap_err();
        assert!(matches!(compact, TopicError::InvalidConfig(_)));
    }
}
