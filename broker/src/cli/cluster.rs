//! `sluice cluster info`: the cluster id, its brokers, the controller and the topic count, from
//! Metadata.

use serde_json::json;

use super::kafka::ClusterArgs;
use super::output::{print_json, summary, Format, Table};

/// `sluice cluster` and the cluster flags its subcommands share.
#[derive(Debug, clap::Args)]
pub(super) struct ClusterCommandArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Show the cluster id, brokers, controller and topic count.
    Info,
}

pub(super) fn run(args: ClusterCommandArgs) -> anyhow::Result<()> {
    let ClusterCommand::Info = args.command;
    let cluster = args.cluster;
    let mut client = cluster.client()?;
    let metadata = client.metadata(None)?;
    let topics = metadata.topics.iter().filter(|t| t.error_code == 0).count();
    let cluster_id = client.cluster_id().unwrap_or("").to_string();
    let controller = client.controller_id();
    let brokers = client.brokers().to_vec();
    match cluster.format {
        Format::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller_id": controller,
            "brokers": brokers,
            "topics": topics,
        })),
        Format::Table => {
            print!(
                "{}",
                summary(&[
                    ("cluster-id", cluster_id),
                    ("controller", controller.to_string()),
                    ("topics", topics.to_string()),
                ])
            );
            let mut table = Table::new(&["id", "host", "port", "rack"]);
            for b in &brokers {
                table.row(vec![
                    b.id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!();
            print!("{}", table.render());
        }
    }
    Ok(())
}
