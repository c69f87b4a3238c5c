//! The `sluice` command line: `serve` runs the broker; `transform` and `sink` manage
//! WebAssembly deployments over the HTTP API; `topic`, `group`, `cluster` and `quota` talk Kafka
//! to a running broker, like `rpk`.
//!
//! - [`kafka`]: the blocking Kafka client (bootstrap, ApiVersions, timeouts, error names).
//! - [`offsets`]: `--offset` / `--to` positions resolved with ListOffsets.
//! - [`output`]: tables, JSON, and record formats for `topic consume`.
//! - `topic`, `produce`, `consume`, `group`, `cluster`, `quota`: one file per command family.

mod admin;
mod cluster;
mod consume;
mod group;
mod kafka;
mod offsets;
mod output;
mod produce;
mod quota;
mod serve;
mod sink;
mod topic;
mod transform;
mod user;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, Overrides};
use crate::log::FlushPolicy;

/// Sluice: a Kafka-protocol broker that runs WebAssembly transforms and sinks inline.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Write, build, deploy and manage WebAssembly transforms.
    #[command(subcommand)]
    Transform(transform::TransformCommand),
    /// Deploy and manage WebAssembly sinks (connectors of class sluice.WasmSink).
    #[command(subcommand)]
    Sink(sink::SinkCommand),
    /// Create, inspect, alter and delete topics; produce and consume records.
    Topic(topic::TopicArgs),
    /// List, describe, seek and delete consumer groups.
    Group(group::GroupArgs),
    /// Show the cluster's id, brokers and controller.
    Cluster(cluster::ClusterCommandArgs),
    /// Set, remove and list client quotas (per user and/or client id).
    Quota(quota::QuotaArgs),
    /// Add, list and remove SCRAM users in a data dir (before the broker starts).
    #[command(subcommand)]
    User(user::UserCommand),
}

/// `sluice serve` flags; each also reads a `SLUICE_*` environment variable.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML file with settings (Kafka broker names, e.g. "num.partitions" = 3).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka protocol listener [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_KAFKA_LISTEN")]
    kafka_listen: Option<SocketAddr>,
    /// HTTP listener (health, admin, Connect REST) [default: 127.0.0.1:8083].
    #[arg(long, env = "SLUICE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Log line format on stderr [default: text].
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// When an acks=-1 produce is answered: after fsync (default) or once in the page cache.
    #[arg(long, env = "SLUICE_FLUSH", value_parser = parse_flush)]
    flush: Option<FlushPolicy>,
    /// Host name given to clients in Metadata [default: the Kafka listener's address].
    #[arg(long, env = "SLUICE_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Keep the request, topic and transform counters of /metrics [default: true].
    #[arg(long, env = "SLUICE_METRICS_ENABLED")]
    metrics_enabled: Option<bool>,
    /// Cluster mode: the PostgreSQL database of metadata and offsets
    /// (postgres://USER:PASS@HOST[:PORT]/DB); needs --objects.
    #[arg(long, env = "SLUICE_METADATA")]
    metadata: Option<String>,
    /// Cluster mode: the object store of record batches (s3://BUCKET?endpoint=URL&region=R,
    /// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); needs --metadata.
    #[arg(long, env = "SLUICE_OBJECTS")]
    objects: Option<String>,
    /// Cluster mode: the rack (or zone) this broker is in (`cluster.rack`, Kafka's
    /// `broker.rack`), shown in Metadata; consumers with `client.rack` read from it.
    #[arg(long, env = "SLUICE_RACK")]
    rack: Option<String>,
}

fn parse_flush(text: &str) -> Result<FlushPolicy, String> {
    match text {
        "fsync" => Ok(FlushPolicy::Fsync),
        "page-cache" => Ok(FlushPolicy::PageCache),
        other => Err(format!("'{other}' is not fsync or page-cache")),
    }
}

/// Runs the parsed command; the error is printed by `main` as one line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                kafka_listen: args.kafka_listen,
                http_listen: args.http_listen,
                data_dir: args.data_dir,
                log_format: args.log_format,
                flush: args.flush,
                advertised_host: args.advertised_host,
                metrics_enabled: args.metrics_enabled,
                metadata: args.metadata,
                objects: args.objects,
                rack: args.rack,
            };
            serve::serve(args.config.as_deref(), overrides)
        }
        Command::Transform(command) => transform::run(command),
        Command::Sink(command) => sink::run(command),
        Command::Topic(args) => topic::run(args),
        Command::Group(args) => group::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Quota(args) => quota::run(args),
        Command::User(command) => user::run(command),
    }
}
