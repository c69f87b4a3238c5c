//! Configs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.
//!
//! Topic configs are dynamic and stored in the catalog (in cluster mode, in the metadata
//! database: the `*_in_cluster` handlers); broker configs are static (set by flag, env or TOML
//! at start) and can only be described.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_request, alter_configs_response, incremental_alter_configs_request,
    incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::error::ResponseError;

use super::topics::{
    db_failure, failure, invalid_request, occurrences, topic_authorization_failed, Failure,
};
use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::catalog::{
    broker_config_type, config_def, topic_config, validate_topic_name, ConfigEntry, ConfigOp,
    ConfigSource, TopicError,
};
use crate::cluster::node::Cluster;
use crate::cluster::topic_rules;

/// Kafka's `ConfigResource.Type` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's `DescribeConfigsResponse.ConfigSource` code for a config source.
pub(crate) fn source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::DynamicTopic => 1,
        ConfigSource::StaticBroker => 4,
        ConfigSource::Default => 5,
    }
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Checks a BROKER resource names this broker (`""` means "whichever broker answers").
fn check_broker_name(broker: &Broker, name: &str) -> Result<(), Failure> {
    if name.is_empty() || name == broker.node_id.to_string() {
        Ok(())
    } else {
        Err(invalid_request(format!(
            "Unexpected broker id, expected {} or empty string, but received {name}",
            broker.node_id
        )))
    }
}

fn unsupported_resource(resource_type: i8, action: &str) -> Failure {
    match resource_type {
        RESOURCE_BROKER_LOGGER => invalid_request(format!("{action} BROKER_LOGGER configs is not supported by Sluice")),
        t => invalid_request(format!("{action} configs of resource type {t} is not supported; only TOPIC (2) and BROKER (4) are")),
    }
}

/// DescribeConfigs / AlterConfigs on the topic, or on the cluster for broker configs.
fn authorized(
    broker: &Broker,
    who: &Requester,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), Failure> {
    match resource_type {
        RESOURCE_TOPIC if !broker.authorize(who, op, Resource::topic(name)) => {
            Err(topic_authorization_failed())
        }
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER
            if !broker.authorize(who, op, Resource::cluster()) =>
        {
            Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                "Cluster authorization failed.".into(),
            ))
        }
        _ => Ok(()),
    }
}

fn topic_name(name: &str) -> Result<&str, Failure> {
    validate_topic_name(name).map_err(|e| failure(&e))?;
    Ok(name)
}

/// What one DescribeConfigs resource asks for, once its checks passed.
enum DescribeTarget<'a> {
    /// A topic's configs: from the catalog, or in cluster mode from the metadata database.
    Topic(&'a str),
    /// Entries known already (this broker's configs).
    Entries(Vec<ConfigEntry>),
}

/// The config names a DescribeConfigs resource asks for; `None` is every one (Kafka reads an
/// empty key list like null).
fn requested_names(r: &DescribeConfigsResource) -> Option<Vec<String>> {
    r.configuration_keys
        .as_ref()
        .filter(|keys| !keys.is_empty())
        .map(|keys| keys.iter().map(|k| k.to_string()).collect())
}

/// The checks every DescribeConfigs resource passes first: authorization, a valid topic name,
/// this broker's id, a supported resource type.
fn describe_target<'a>(
    broker: &Broker,
    who: &Requester,
    r: &'a DescribeConfigsResource,
    names: Option<&[String]>,
) -> Result<DescribeTarget<'a>, Failure> {
    authorized(
        broker,
        who,
        Operation::DescribeConfigs,
        r.resource_type,
        r.resource_name.as_str(),
    )?;
    match r.resource_type {
        RESOURCE_TOPIC => topic_name(r.resource_name.as_str()).map(DescribeTarget::Topic),
        RESOURCE_BROKER => check_broker_name(broker, r.resource_name.as_str())
            .map(|()| DescribeTarget::Entries(broker.catalog.describe_broker_configs(names))),
        t => Err(unsupported_resource(t, "Describing")),
    }
}

/// One resource's answer from its entries (or why there are none).
fn describe_result(
    broker: &Broker,
    r: &DescribeConfigsResource,
    entries: Result<Vec<ConfigEntry>, Failure>,
    version: i16,
    req: &DescribeConfigsRequest,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone())
        .with_error_message(None);
    match entries {
        Ok(entries) => result.with_configs(
            entries
                .into_iter()
                .map(|e| describe_entry(broker, r.resource_type, e, version, req))
                .collect(),
        ),
        Err((code, msg)) => result
            .with_error_code(code)
            .with_error_message(Some(str_bytes(msg))),
    }
}

/// DescribeConfigs (v1–4 as decoded by kafka-protocol).
pub(crate) fn describe_configs(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let names = requested_names(r);
            let names = names.as_deref();
            let entries = describe_target(broker, who, r, names).and_then(|target| match target {
                DescribeTarget::Topic(name) => broker
                    .catalog
                    .describe_configs(name, names)
                    .map_err(|e| failure(&e)),
                DescribeTarget::Entries(entries) => Ok(entries),
            });
            describe_result(broker, r, entries, version, &req)
        })
        .collect();
    DescribeConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

/// DescribeConfigs in cluster mode: a topic's configs as the metadata database holds them (so
/// every broker answers the same), described with the same sources, synonyms and documentation
/// as on a single node; BROKER resources are this broker's.
pub(crate) async fn describe_configs_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return describe_configs(&broker, &who, version, req);
    };
    let mut results = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let names = requested_names(r);
        let names = names.as_deref();
        let entries = match describe_target(&broker, &who, r, names) {
            Ok(DescribeTarget::Topic(name)) => match cluster.db.topic(name).await {
                Ok(Some(meta)) => {
                    let dynamic: BTreeMap<String, String> = meta.configs.into_iter().collect();
                    Ok(topic_config::describe(
                        &cluster.settings.topics,
                        &dynamic,
                        names,
                    ))
                }
                Ok(None) => Err(failure(&TopicError::UnknownTopicOrPartition(
                    name.to_owned(),
                ))),
                Err(e) => Err(db_failure(&e)),
            },
            Ok(DescribeTarget::Entries(entries)) => Ok(entries),
            Err(refused) => Err(refused),
        };
        results.push(describe_result(&broker, r, entries, version, &req));
    }
    DescribeConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

fn describe_entry(
    broker: &Broker,
    resource_type: i8,
    e: ConfigEntry,
    version: i16,
    req: &DescribeConfigsRequest,
) -> DescribeConfigsResourceResult {
    let def = if resource_type == RESOURCE_TOPIC {
        config_def(&e.name)
    } else {
        None
    };
    let config_type = match def {
        Some(d) => d.config_type,
        None => broker_config_type(&e.name),
    };
    let mut synonyms = Vec::new();
    if req.include_synonyms {
        if e.source == ConfigSource::DynamicTopic || resource_type != RESOURCE_TOPIC {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(e.name.clone()))
                    .with_value(e.value.clone().map(str_bytes))
                    .with_source(source_code(e.source)),
            );
        }
        if let Some(d) = def {
            synonyms.extend(broker.catalog.config_synonyms(d.name).into_iter().map(
                |(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_source(source_code(source))
                },
            ));
        }
    }
    let documentation = match def {
        Some(d) if version >= 3 && req.include_documentation => {
            Some(StrBytes::from_static_str(d.doc))
        }
        _ => None,
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(e.value.map(str_bytes))
        .with_read_only(e.read_only)
        .with_config_source(source_code(e.source))
        .with_is_sensitive(e.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(config_type.code())
        .with_documentation(documentation)
}

fn broker_configs_are_static() -> Failure {
    invalid_request(
        "Broker configs are static in Sluice: set them by flag, SLUICE_* environment variable or the TOML file and restart",
    )
}

/// Kafka refuses every copy of a resource named twice in one request.
fn duplicate_resources<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> impl Fn(i8, &str) -> bool {
    let counts = occurrences(resources.map(|(t, n)| (t, n.to_owned())));
    move |t, n| counts.get(&(t, n.to_owned())).copied().unwrap_or(0) > 1
}

/// The checks every AlterConfigs / IncrementalAlterConfigs resource passes first: named once,
/// authorized, a TOPIC with a valid name (broker configs are static, other types unsupported).
/// The topic to alter.
fn topic_to_alter<'a>(
    broker: &Broker,
    who: &Requester,
    is_dup: &impl Fn(i8, &str) -> bool,
    resource_type: i8,
    name: &'a str,
) -> Result<&'a str, Failure> {
    if is_dup(resource_type, name) {
        return Err(invalid_request("Duplicate resource in request."));
    }
    authorized(broker, who, Operation::AlterConfigs, resource_type, name)?;
    match resource_type {
        RESOURCE_TOPIC => topic_name(name),
        RESOURCE_BROKER => {
            check_broker_name(broker, name).and_then(|()| Err(broker_configs_are_static()))
        }
        t => Err(unsupported_resource(t, "Altering")),
    }
}

/// An AlterConfigs resource's configs. A null value in this legacy API means "not set", i.e.
/// back to the default.
fn legacy_configs(
    r: &alter_configs_request::AlterConfigsResource,
) -> Vec<(String, Option<String>)> {
    r.configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), Some(v.to_string())))
        })
        .collect()
}

fn alter_response(
    r: &alter_configs_request::AlterConfigsResource,
    outcome: Result<(), Failure>,
) -> alter_configs_response::AlterConfigsResourceResponse {
    let (code, msg) = split(outcome);
    alter_configs_response::AlterConfigsResourceResponse::default()
        .with_error_code(code)
        .with_error_message(msg)
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone())
}

/// AlterConfigs (v0–2): replaces a topic's whole set of dynamic configs.
pub(crate) fn alter_configs(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let _ = version;
    let is_dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let responses = req
        .resources
        .iter()
        .map(|r| {
            let outcome = topic_to_alter(
                broker,
                who,
                &is_dup,
                r.resource_type,
                r.resource_name.as_str(),
            )
            .and_then(|name| {
                broker
                    .catalog
                    .replace_configs(name, &legacy_configs(r), req.validate_only)
                    .map_err(|e| failure(&e))
            });
            alter_response(r, outcome)
        })
        .collect();
    AlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

/// AlterConfigs in cluster mode: the topic's configs in the metadata database are replaced
/// (validated as on a single node, then for what cluster mode refuses), and every broker is
/// told.
pub(crate) async fn alter_configs_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return alter_configs(&broker, &who, version, req);
    };
    let is_dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let outcome = match topic_to_alter(
            &broker,
            &who,
            &is_dup,
            r.resource_type,
            r.resource_name.as_str(),
        ) {
            Ok(name) => match topic_config::validate_config_set(&legacy_configs(r)) {
                Ok(set) => {
                    let defaults = &cluster.settings.topics;
                    change_in_cluster(&cluster, name, req.validate_only, |_| {
                        topic_rules::check_altered(defaults, set)
                    })
                    .await
                }
                Err(e) => Err(failure(&e)),
            },
            Err(refused) => Err(refused),
        };
        responses.push(alter_response(r, outcome));
    }
    AlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

/// Changes a topic's configs in the metadata database with `change` (its current configs in,
/// the whole new set out), then drops it from this broker's cache (the others hear the
/// notice).
async fn change_in_cluster(
    cluster: &Cluster,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(BTreeMap<String, String>) -> Result<Vec<(String, String)>, TopicError>,
) -> Result<(), Failure> {
    let outcome = cluster
        .db
        .change_configs(name, !validate_only, |current| {
            change(current.configs.iter().cloned().collect())
        })
        .await
        .map_err(|e| db_failure(&e))?;
    outcome.map_err(|e| failure(&e))?;
    if !validate_only {
        cluster.forget_topic(name);
    }
    Ok(())
}

fn split(outcome: Result<(), Failure>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, msg)) => (code, Some(str_bytes(msg))),
    }
}

/// Decodes one IncrementalAlterConfigs entry (operation codes: 0 SET, 1 DELETE, 2 APPEND,
/// 3 SUBTRACT).
fn config_op(name: &str, op: i8, value: Option<&str>) -> Result<ConfigOp, Failure> {
    let value = || {
        value
            .map(str::to_owned)
            .ok_or_else(|| invalid_request(format!("Null value not supported for : {name}")))
    };
    match op {
        0 => Ok(ConfigOp::Set(name.to_owned(), value()?)),
        1 => Ok(ConfigOp::Delete(name.to_owned())),
        2 => Ok(ConfigOp::Append(name.to_owned(), value()?)),
        3 => Ok(ConfigOp::Subtract(name.to_owned(), value()?)),
        other => Err(invalid_request(format!(
            "Unknown config operation {other} for config {name}"
        ))),
    }
}

/// An IncrementalAlterConfigs resource's operations; a config named twice is refused.
fn incremental_ops(
    r: &incremental_alter_configs_request::AlterConfigsResource,
) -> Result<Vec<ConfigOp>, Failure> {
    let names = occurrences(r.configs.iter().map(|c| c.name.as_str()));
    if names.values().any(|n| *n > 1) {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    r.configs
        .iter()
        .map(|c| config_op(c.name.as_str(), c.config_operation, c.value.as_deref()))
        .collect()
}

fn incremental_response(
    r: &incremental_alter_configs_request::AlterConfigsResource,
    outcome: Result<(), Failure>,
) -> incremental_alter_configs_response::AlterConfigsResourceResponse {
    let (code, msg) = split(outcome);
    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
        .with_error_code(code)
        .with_error_message(msg)
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone())
}

/// IncrementalAlterConfigs (v0–1).
pub(crate) fn incremental_alter_configs(
    broker: &Broker,
    who: &Requester,
    version: i16,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let _ = version;
    let is_dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let responses = req
        .resources
        .iter()
        .map(|r| {
            let outcome = topic_to_alter(
                broker,
                who,
                &is_dup,
                r.resource_type,
                r.resource_name.as_str(),
            )
            .and_then(|name| {
                let ops = incremental_ops(r)?;
                broker
                    .catalog
                    .alter_configs(name, &ops, req.validate_only)
                    .map_err(|e| failure(&e))
            });
            incremental_response(r, outcome)
        })
        .collect();
    IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

/// IncrementalAlterConfigs in cluster mode: the operations apply to the configs the metadata
/// database holds (under its row lock, so concurrent alterations through other brokers are not
/// lost), validated as on a single node and for what cluster mode refuses; every broker is
/// told.
pub(crate) async fn incremental_alter_configs_in_cluster(
    broker: Arc<Broker>,
    who: Requester,
    version: i16,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let Some(cluster) = broker.cluster.clone() else {
        return incremental_alter_configs(&broker, &who, version, req);
    };
    let is_dup = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let checked = topic_to_alter(
            &broker,
            &who,
            &is_dup,
            r.resource_type,
            r.resource_name.as_str(),
        )
        .and_then(|name| Ok((name, incremental_ops(r)?)));
        let outcome = match checked {
            Ok((name, ops)) => {
                let defaults = &cluster.settings.topics;
                change_in_cluster(&cluster, name, req.validate_only, |current| {
                    let next = topic_config::apply_ops(&current, &ops, defaults)?;
                    topic_rules::check_altered(defaults, next)
                })
                .await
            }
            Err(refused) => Err(refused),
        };
        responses.push(incremental_response(r, outcome));
    }
    IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker as broker;
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::protocol::Encodable;

    fn describe_req(resources: Vec<(i8, &str)>) -> DescribeConfigsRequest {
        DescribeConfigsRequest::default().with_resources(
            resources
                .into_iter()
                .map(|(t, n)| {
                    DescribeConfigsResource::default()
                        .with_resource_type(t)
                        .with_resource_name(StrBytes::from_string(n.into()))
                        .with_configuration_keys(Some(Vec::new()))
                })
                .collect(),
        )
    }

    fn encodes_at(msg: &impl Encodable, versions: std::ops::RangeInclusive<i16>) {
        for v in versions {
            let mut buf = bytes::BytesMut::new();
            msg.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }

    #[test]
    fn describe_broker_configs_at_v1_and_v4() {
        let (_dir, b) = broker();
        for version in [1, 4] {
            let req = describe_req(vec![(RESOURCE_BROKER, ""), (RESOURCE_BROKER, "1")])
                .with_include_synonyms(true)
                .with_include_documentation(version >= 3);
            let resp = describe_configs(&b, &crate::acl::Requester::broker(), version, req);
            assert_eq!(resp.results.len(), 2);
            for r in &resp.results {
                assert_eq!(r.error_code, 0);
                let np = r
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == "num.partitions")
                    .unwrap();
                assert_eq!(np.value.as_deref(), Some("1"));
                assert_eq!(np.config_source, 4);
                assert!(np.read_only);
                assert_eq!(np.config_type, 3);
                assert_eq!(np.synonyms.len(), 1);
                assert!(np.documentation.is_none());
            }
            encodes_at(&resp, version..=version);
        }
    }

    #[test]
    fn describe_reports_unknown_topic_bad_name_other_broker_and_unsupported_types() {
        let (_dir, b) = broker();
        let req = describe_req(vec![
            (RESOURCE_TOPIC, "nope"),
            (RESOURCE_TOPIC, "bad/name"),
            (RESOURCE_BROKER, "2"),
            (RESOURCE_BROKER_LOGGER, "1"),
            (16, "x"),
        ]);
        let resp = describe_configs(&b, &crate::acl::Requester::broker(), 4, req);
        let got: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            got,
            [
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::InvalidTopicException.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
                ResponseError::InvalidRequest.code(),
            ]
        );
        assert!(resp.results[3]
            .error_message
            .as_ref()
            .unwrap()
            .contains("BROKER_LOGGER"));
        encodes_at(&resp, 1..=4);
    }

    #[test]
    fn altering_broker_configs_is_refused_as_static() {
        let (_dir, b) = broker();
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name("1".into())
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name("num.partitions".into())
                    .with_value(Some("3".into()))]),
        ]);
        let resp = alter_configs(&b, &crate::acl::Requester::broker(), 2, req);
        assert_eq!(
            resp.responses[0].error_code,
            ResponseError::InvalidRequest.code()
        );
        assert!(resp.responses[0]
            .error_message
            .as_ref()
            .unwrap()
            .contains("static"));
        encodes_at(&resp, 0..=2);

        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name("".into()),
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name("nope".into()),
        ]);
        let resp = incremental_alter_configs(&b, &crate::acl::Requester::broker(), 1, req);
        let got: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            got,
            [
                ResponseError::InvalidRequest.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
        encodes_at(&resp, 0..=1);
    }

    #[test]
    fn incremental_ops_are_decoded_and_bad_ones_refused() {
        assert_eq!(
            config_op("a", 0, Some("1")).unwrap(),
            ConfigOp::Set("a".into(), "1".into())
        );
        assert_eq!(
            config_op("a", 1, None).unwrap(),
            ConfigOp::Delete("a".into())
        );
        assert_eq!(
            config_op("a", 2, Some("x")).unwrap(),
            ConfigOp::Append("a".into(), "x".into())
        );
        assert_eq!(
            config_op("a", 3, Some("x")).unwrap(),
            ConfigOp::Subtract("a".into(), "x".into())
        );
        assert_eq!(
            config_op("a", 4, Some("x")).unwrap_err().0,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            config_op("a", 0, None).unwrap_err().0,
            ResponseError::InvalidRequest.code()
        );
    }

    #[test]
    fn topic_configs_round_trip_through_alter_and_describe() {
        let (_dir, b) = broker();
        b.catalog.create_topic("t", 1, 1, &[], false).unwrap();
        let set = |name: &str, value: &str| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_string(name.into()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(value.into())))
        };
        let resource = |configs| {
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name("t".into())
                .with_configs(configs)
        };
        let bad = incremental_alter_configs(
            &b,
            &crate::acl::Requester::broker(),
            1,
            IncrementalAlterConfigsRequest::default()
                .with_resources(vec![resource(vec![set("cleanup.policy", "compact,bogus")])]),
        );
        assert_eq!(
            bad.responses[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        let ok = incremental_alter_configs(
            &b,
            &crate::acl::Requester::broker(),
            1,
            IncrementalAlterConfigsRequest::default()
                .with_resources(vec![resource(vec![set("retention.ms", "1234")])]),
        );
        assert_eq!(ok.responses[0].error_code, 0);

        let req = describe_req(vec![(RESOURCE_TOPIC, "t")])
            .with_include_synonyms(true)
            .with_include_documentation(true);
        let resp = describe_configs(&b, &crate::acl::Requester::broker(), 4, req);
        let r = &resp.results[0];
        assert_eq!(r.error_code, 0);
        let retention = r
            .configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_deref(), retention.config_source),
            (Some("1234"), 1)
        );
        assert_eq!(retention.synonyms.len(), 2);
        assert_eq!(retention.config_type, 5);
        assert!(retention.documentation.is_some());
        let segment = r
            .configs
            .iter()
            .find(|c| c.name.as_str() == "segment.bytes")
            .unwrap();
        assert_eq!(segment.config_source, 5);
        assert!(!segment.read_only);
        encodes_at(&resp, 1..=4);
    }
    #[test]
    fn new_topic_configs_are_described_with_types_synonyms_and_docs_at_every_version() {
        let (_dir, b) = broker();
        let configs = [
            ("compression.type".to_string(), Some("zstd".to_string())),
            ("compression.zstd.level".to_string(), Some("12".to_string())),
        ];
        b.catalog.create_topic("t", 1, 1, &configs, false).unwrap();
        for version in 1..=4 {
            let req = describe_req(vec![(RESOURCE_TOPIC, "t")])
                .with_include_synonyms(true)
                .with_include_documentation(version >= 3);
            let resp = describe_configs(&b, &crate::acl::Requester::broker(), version, req);
            let r = &resp.results[0];
            assert_eq!(r.error_code, 0);
            let get = |name: &str| {
                r.configs
                    .iter()
                    .find(|c| c.name.as_str() == name)
                    .unwrap_or_else(|| panic!("{name} not described"))
            };
            let level = get("compression.zstd.level");
            assert_eq!(
                (level.value.as_deref(), level.config_source),
                (Some("12"), 1)
            );
            assert_eq!(level.config_type, 3);
            let synonyms: Vec<_> = level
                .synonyms
                .iter()
                .map(|s| {
                    (
                        s.name.to_string(),
                        s.value.as_deref().map(str::to_owned),
                        s.source,
                    )
                })
                .collect();
            assert_eq!(
                synonyms,
                [
                    ("compression.zstd.level".into(), Some("12".into()), 1),
                    ("compression.zstd.level".into(), Some("3".into()), 5),
                ]
            );
            assert_eq!(level.documentation.is_some(), version >= 3);
            let throttled = get("leader.replication.throttled.replicas");
            assert_eq!(
                (throttled.value.as_deref(), throttled.config_source),
                (Some(""), 5)
            );
            assert_eq!(throttled.config_type, 7);
            assert!(throttled.synonyms.is_empty());
            let format = get("message.format.version");
            assert_eq!(format.value.as_deref(), Some("3.0-IV1"));
            if version >= 3 {
                let doc = format.documentation.as_deref().unwrap_or_default();
                assert!(doc.contains("Stored for compatibility"), "{doc}");
            }
            encodes_at(&resp, version..=version);
        }
    }
}
