//! What cluster mode accepts of a topic's configs: exactly what the local catalog accepts
//! (its validation is reused), less `cleanup.policy=compact`, which cluster mode refuses by name
//! until compaction runs over the object store.

use std::collections::BTreeMap;

use crate::catalog::topic_config::{parse_cleanup_policy, validate_config_set};
use crate::catalog::TopicError;

/// Validates CreateTopics' or AlterConfigs' full set of topic configs for cluster mode; the
/// values as stored (normalized as the catalog normalizes them).
pub fn validate_topic_configs(
    configs: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, TopicError> {
    let configs = validate_config_set(configs)?;
    refuse_compaction(&configs)?;
    Ok(configs)
}

/// Refuses a config set (as it would be after an alteration) that asks for compaction.
pub fn refuse_compaction(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    let Some(policy) = configs.get("cleanup.policy") else {
        return Ok(());
    };
    if parse_cleanup_policy(policy).is_some_and(|p| p.compact) {
        return Err(TopicError::InvalidConfig(format!(
            "cleanup.policy={policy} is not supported in cluster mode (--metadata): compacted \
             topics need the single-node broker for now; use cleanup.policy=delete"
        )));
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
    }
}
