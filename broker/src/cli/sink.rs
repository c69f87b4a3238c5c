//! `sluice sink ...`: deploy a WebAssembly sink as a connector (`sluice.WasmSink`) and manage it,
//! through the broker's HTTP API (module upload, then the Kafka Connect REST API).

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use super::admin::{call, Admin};
use super::transform::{parse_env, print};

/// `sluice sink` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(super) enum SinkCommand {
    /// Upload a sink module and create (or reconfigure) its connector.
    Deploy {
        /// The module file (built from a `#[sink]` crate).
        module: PathBuf,
        #[arg(long)]
        name: String,
        /// Comma-separated topics to deliver.
        #[arg(long, conflicts_with = "topics_regex")]
        topics: Option<String>,
        /// Deliver every topic matching this regex.
        #[arg(long)]
        topics_regex: Option<String>,
        /// Grant: the one directory the sink may create and append files in.
        #[arg(long)]
        file_dir: Option<PathBuf>,
        /// Grant: a base URL the sink may send HTTP requests under (repeatable).
        #[arg(long = "http-allow")]
        http_allow: Vec<String>,
        /// KEY=VALUE the sink reads with sluice_sdk::config::get (repeatable).
        #[arg(long = "env", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// none (fail the task on a permanent error) or all (skip or dead-letter).
        #[arg(long, default_value = "none")]
        errors_tolerance: String,
        /// Dead-letter topic for records that fail permanently (with --errors-tolerance all).
        #[arg(long)]
        dead_letter_topic: Option<String>,
        #[command(flatten)]
        admin: Admin,
    },
    /// Show a sink connector's status.
    Status {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Remove a sink connector.
    Remove {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
}

pub(super) fn run(command: SinkCommand) -> anyhow::Result<()> {
    match command {
        SinkCommand::Deploy {
            module,
            name,
            topics,
            topics_regex,
            file_dir,
            http_allow,
            env,
            errors_tolerance,
            dead_letter_topic,
            admin,
        } => {
            let http = admin.connect()?;
            let bytes = std::fs::read(&module)
                .with_context(|| format!("cannot read {}", module.display()))?;
            let a = &http.agent;
            let uploaded = call(
                a.post(format!("{}/v1/modules", http.base))
                    .header("content-type", "application/wasm")
                    .send(&bytes[..]),
                "upload",
            )?;
            let hash = uploaded
                .get("module")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut config = json!({
                "connector.class": "sluice.WasmSink",
                "wasm.module": hash,
                "errors.tolerance": errors_tolerance,
            });
            let set = |config: &mut Value, k: &str, v: String| {
                config[k] = Value::String(v);
            };
            if let Some(t) = topics {
                set(&mut config, "topics", t);
            }
            if let Some(r) = topics_regex {
                set(&mut config, "topics.regex", r);
            }
            if let Some(d) = file_dir {
                let d = std::path::absolute(&d).unwrap_or(d);
                set(&mut config, "sink.file.dir", d.display().to_string());
            }
            if !http_allow.is_empty() {
                set(&mut config, "sink.http.allow", http_allow.join(","));
            }
            if let Some(t) = dead_letter_topic {
                set(&mut config, "errors.deadletterqueue.topic.name", t);
            }
            for (k, v) in env {
                set(&mut config, &format!("env.{k}"), v);
            }
            call(
                a.put(format!("{}/connectors/{name}/config", http.base))
                    .send_json(config),
                "deploy",
            )?;
            println!(
                "deployed sink {name} (connector sluice.WasmSink, consumer group connect-{name})"
            );
            Ok(())
        }
        SinkCommand::Status { name, admin } => {
            let http = admin.connect()?;
            print(&call(
                http.agent
                    .get(format!("{}/connectors/{name}/status", http.base))
                    .call(),
                "status",
            )?);
            Ok(())
        }
        SinkCommand::Remove { name, admin } => {
            let http = admin.connect()?;
            call(
                http.agent
                    .delete(format!("{}/connectors/{name}", http.base))
                    .call(),
                "remove",
            )?;
            println!("removed sink {name}");
            Ok(())
        }
    }
}
