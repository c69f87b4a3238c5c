//! `sluice topic ...`: create, list, describe, alter-config, add-partitions and delete topics
//! with Kafka's admin APIs; produce lines from stdin and consume records (see `produce.rs`
//! and `consume.rs`).

use std::collections::BTreeMap;

use anyhow::bail;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use serde_json::{json, Value};

use super::consume::ConsumeArgs;
use super::kafka::{check, error_name, str_bytes, topic_name, ClusterArgs, KafkaError};
use super::offsets::{leaders_of, partition_leaders, topic_metadata, watermarks};
use super::output::{emit, summary, Format, Table};
use super::produce::ProduceArgs;

/// DescribeConfigs / AlterConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// Kafka's config sources, by DescribeConfigs id.
const CONFIG_SOURCES: [&str; 9] = [
    "UNKNOWN",
    "DYNAMIC_TOPIC_CONFIG",
    "DYNAMIC_BROKER_CONFIG",
    "DYNAMIC_DEFAULT_BROKER_CONFIG",
    "STATIC_BROKER_CONFIG",
    "DEFAULT_CONFIG",
    "DYNAMIC_BROKER_LOGGER_CONFIG",
    "CLIENT_METRICS_CONFIG",
    "GROUP_CONFIG",
];

/// `sluice topic` and the cluster flags its subcommands share.
#[derive(Debug, clap::Args)]
pub(super) struct TopicArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicCommand {
    /// Create topics.
    Create {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic [default: the broker's num.partitions].
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replication factor [default: the broker's].
        #[arg(short, long)]
        replicas: Option<i16>,
        /// A topic config KEY=VALUE (repeatable), e.g. -c retention.ms=60000.
        #[arg(short = 'c', long = "config", value_parser = parse_pair)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List,
    /// Show a topic's partitions, watermarks and configs.
    Describe { topic: String },
    /// Set or remove topic configs (IncrementalAlterConfigs).
    AlterConfig {
        topic: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "set", value_parser = parse_pair)]
        set: Vec<(String, String)>,
        /// KEY to reset to the broker default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic.
    AddPartitions {
        topic: String,
        /// How many partitions to add.
        #[arg(short, long)]
        num: i32,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Produce stdin's lines as records.
    Produce(ProduceArgs),
    /// Print a topic's records.
    Consume(ConsumeArgs),
}

/// `KEY=VALUE`.
pub(super) fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

pub(super) fn run(args: TopicArgs) -> anyhow::Result<()> {
    let cluster = args.cluster;
    match args.command {
        TopicCommand::Create {
            topics,
            partitions,
            replicas,
            configs,
        } => create(&cluster, &topics, partitions, replicas, &configs),
        TopicCommand::List => list(&cluster),
        TopicCommand::Describe { topic } => describe(&cluster, &topic),
        TopicCommand::AlterConfig { topic, set, delete } => {
            alter_config(&cluster, &topic, &set, &delete)
        }
        TopicCommand::AddPartitions { topic, num } => add_partitions(&cluster, &topic, num),
        TopicCommand::Delete { topics } => delete(&cluster, &topics),
        TopicCommand::Produce(produce) => super::produce::run(&cluster, produce),
        TopicCommand::Consume(consume) => super::consume::run(&cluster, consume),
    }
}

fn timeout_ms(cluster: &ClusterArgs) -> i32 {
    i32::try_from(cluster.timeout.as_millis()).unwrap_or(i32::MAX)
}

/// The outcome of an admin call per topic: the table shows each; the command fails with the
/// first error (one line) after printing what succeeded.
struct Outcomes {
    table: Table,
    json: Vec<Value>,
    first_error: Option<KafkaError>,
}

impl Outcomes {
    fn new() -> Outcomes {
        Outcomes {
            table: Table::new(&["topic", "status"]),
            json: Vec::new(),
            first_error: None,
        }
    }

    fn add(&mut self, topic: &str, code: i16, message: Option<String>) {
        let status = if code == 0 {
            "OK".to_string()
        } else {
            error_name(code)
        };
        self.table.row(vec![topic.to_string(), status.clone()]);
        self.json.push(
            json!({"topic": topic, "error": (code != 0).then_some(&status), "message": message}),
        );
        if code != 0 && self.first_error.is_none() {
            self.first_error = Some(KafkaError::Code {
                subject: format!("topic {topic:?}"),
                code,
                message,
            });
        }
    }

    fn finish(self, format: Format) -> anyhow::Result<()> {
        let json = self.json;
        emit(format, &self.table, || Value::Array(json));
        match self.first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn create(
    cluster: &ClusterArgs,
    topics: &[String],
    partitions: Option<i32>,
    replicas: Option<i16>,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms(cluster))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(t))
                        .with_num_partitions(partitions.unwrap_or(-1))
                        .with_replication_factor(replicas.unwrap_or(-1))
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(str_bytes(k))
                                        .with_value(Some(str_bytes(v)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let mut client = cluster.client()?;
    // -1 partitions or replicas ("the broker's default") needs v4+, which Sluice serves.
    let response = client.controller()?.call(&request, 7)?;
    let mut outcomes = Outcomes::new();
    for t in &response.topics {
        outcomes.add(
            t.name.as_str(),
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
        );
    }
    outcomes.finish(cluster.format)
}

fn list(cluster: &ClusterArgs) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let metadata = client.metadata(None)?;
    let mut topics: Vec<(String, usize, usize, bool)> = metadata
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            let replicas = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
            (
                t.name.as_deref().map(|n| n.to_string()).unwrap_or_default(),
                t.partitions.len(),
                replicas,
                t.is_internal,
            )
        })
        .collect();
    topics.sort();
    let mut table = Table::new(&["name", "partitions", "replicas"]);
    for (name, partitions, replicas, _) in &topics {
        table.row(vec![
            name.clone(),
            partitions.to_string(),
            replicas.to_string(),
        ]);
    }
    emit(cluster.format, &table, || {
        topics
            .iter()
            .map(|(name, partitions, replicas, internal)| {
                json!({"name": name, "partitions": partitions, "replicas": replicas, "internal": internal})
            })
            .collect()
    });
    Ok(())
}

/// A topic's configs from DescribeConfigs: name -> (value, source name).
fn describe_configs(
    client: &mut super::kafka::Client,
    topic: &str,
) -> Result<BTreeMap<String, (Option<String>, String)>, KafkaError> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(str_bytes(topic))
            .with_configuration_keys(None)]);
    let response = client.controller()?.call(&request, 4)?;
    let mut out = BTreeMap::new();
    for result in &response.results {
        check(
            result.error_code,
            format!("topic {topic:?}"),
            result.error_message.as_ref(),
        )?;
        for c in &result.configs {
            let source = usize::try_from(c.config_source)
                .ok()
                .and_then(|i| CONFIG_SOURCES.get(i))
                .unwrap_or(&"UNKNOWN");
            let value = if c.is_sensitive {
                Some("(sensitive)".to_string())
            } else {
                c.value.as_ref().map(|v| v.to_string())
            };
            out.insert(c.name.to_string(), (value, source.to_string()));
        }
    }
    Ok(out)
}

fn describe(cluster: &ClusterArgs, topic: &str) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let found = topic_metadata(&mut client, topic)?;
    let replicas: BTreeMap<i32, Vec<i32>> = found
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.replica_nodes.iter().map(|r| r.0).collect(),
            )
        })
        .collect();
    let internal = found.is_internal;
    let leaders = leaders_of(&found);
    let marks = watermarks(&mut client, topic, &leaders)?;
    let configs = describe_configs(&mut client, topic)?;
    let replication = replicas.values().next().map_or(0, Vec::len);
    match cluster.format {
        Format::Json => super::output::print_json(&json!({
            "name": topic,
            "internal": internal,
            "replicas": replication,
            "partitions": leaders.iter().map(|(p, leader)| {
                let (start, end) = marks.get(p).copied().unwrap_or((-1, -1));
                json!({"partition": p, "leader": leader, "replicas": replicas.get(p),
                       "log_start_offset": start, "high_watermark": end})
            }).collect::<Vec<_>>(),
            "configs": configs.iter().map(|(k, (v, source))| {
                json!({"name": k, "value": v, "source": source})
            }).collect::<Vec<_>>(),
        })),
        Format::Table => {
            print!(
                "{}",
                summary(&[
                    ("name", topic.to_string()),
                    ("partitions", leaders.len().to_string()),
                    ("replicas", replication.to_string()),
                    ("internal", internal.to_string()),
                ])
            );
            let mut parts = Table::new(&[
                "partition",
                "leader",
                "replicas",
                "log-start-offset",
                "high-watermark",
            ]);
            for (p, leader) in &leaders {
                let (start, end) = marks.get(p).copied().unwrap_or((-1, -1));
                let nodes = replicas
                    .get(p)
                    .map(|r| r.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                parts.row(vec![
                    p.to_string(),
                    leader.to_string(),
                    format!("[{nodes}]"),
                    start.to_string(),
                    end.to_string(),
                ]);
            }
            println!();
            print!("{}", parts.render());
            let mut table = Table::new(&["config", "value", "source"]);
            for (k, (v, source)) in &configs {
                table.row(vec![
                    k.clone(),
                    v.clone().unwrap_or_default(),
                    source.clone(),
                ]);
            }
            println!();
            print!("{}", table.render());
        }
    }
    Ok(())
}

fn alter_config(
    cluster: &ClusterArgs,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_SET)
                .with_value(Some(str_bytes(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(str_bytes(k))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    }));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(str_bytes(topic))
            .with_configs(configs),
    ]);
    let mut client = cluster.client()?;
    let response = client.controller()?.call(&request, 1)?;
    for r in &response.responses {
        check(
            r.error_code,
            format!("topic {topic:?}"),
            r.error_message.as_ref(),
        )?;
    }
    let mut table = Table::new(&["config", "change"]);
    for (k, v) in set {
        table.row(vec![k.clone(), format!("set to {v}")]);
    }
    for k in delete {
        table.row(vec![k.clone(), "reset to default".into()]);
    }
    emit(cluster.format, &table, || {
        json!({
            "topic": topic,
            "set": set.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "deleted": delete,
        })
    });
    Ok(())
}

fn add_partitions(cluster: &ClusterArgs, topic: &str, num: i32) -> anyhow::Result<()> {
    if num < 1 {
        bail!("--num must be at least 1, not {num}");
    }
    let mut client = cluster.client()?;
    let current = partition_leaders(&mut client, topic)?.len();
    let total = i32::try_from(current)
        .ok()
        .and_then(|c| c.checked_add(num))
        .ok_or_else(|| anyhow::anyhow!("{current} + {num} partitions is too many"))?;
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(timeout_ms(cluster))
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(total)
            .with_assignments(None)]);
    let response = client.controller()?.call(&request, 3)?;
    for r in &response.results {
        check(
            r.error_code,
            format!("topic {topic:?}"),
            r.error_message.as_ref(),
        )?;
    }
    let mut table = Table::new(&["topic", "partitions"]);
    table.row(vec![topic.to_string(), total.to_string()]);
    emit(
        cluster.format,
        &table,
        || json!({"topic": topic, "partitions": total, "added": num}),
    );
    Ok(())
}

fn delete(cluster: &ClusterArgs, topics: &[String]) -> anyhow::Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(timeout_ms(cluster))
        .with_topic_names(topics.iter().map(|t| topic_name(t)).collect());
    let mut client = cluster.client()?;
    // v6 names topics in a struct array (with ids); v5 is the newest taking a list of names.
    let response = client.controller()?.call(&request, 5)?;
    let mut outcomes = Outcomes::new();
    for r in &response.responses {
        let name = r.name.as_deref().map(|n| n.to_string()).unwrap_or_default();
        outcomes.add(
            &name,
            r.error_code,
            r.error_message.as_ref().map(|m| m.to_string()),
        );
    }
    outcomes.finish(cluster.format)
}
