//! `sluice quota alter|describe`: client quotas per user and/or client id (named or the
//! `<default>` entity) with AlterClientQuotas and DescribeClientQuotas, like
//! `kafka-configs --entity-type users|clients`.

use anyhow::bail;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use serde_json::{json, Map, Value};

use super::kafka::{check, str_bytes, ClusterArgs};
use super::output::{emit, Table};
use super::topic::parse_pair;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;

/// `sluice quota` and the cluster flags its subcommands share.
#[derive(Debug, clap::Args)]
pub(super) struct QuotaArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: QuotaCommand,
}

/// Which quota entity: a user, a client id, or both; each named or the default.
#[derive(Debug, clap::Args)]
struct EntityArgs {
    /// The user (the principal's name; ANONYMOUS on PLAINTEXT listeners).
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user entity (every user without a quota of its own).
    #[arg(long)]
    user_default: bool,
    /// The client id.
    #[arg(long, conflicts_with = "client_id_default")]
    client_id: Option<String>,
    /// The default client-id entity (every client id without a quota of its own).
    #[arg(long)]
    client_id_default: bool,
}

/// One component as given: absent, default (`None`) or named.
type Component = Option<Option<String>>;

impl EntityArgs {
    fn user(&self) -> Component {
        component(&self.user, self.user_default)
    }
    fn client_id(&self) -> Component {
        component(&self.client_id, self.client_id_default)
    }
}

fn component(name: &Option<String>, default: bool) -> Component {
    match (name, default) {
        (Some(n), _) => Some(Some(n.clone())),
        (None, true) => Some(None),
        (None, false) => None,
    }
}

#[derive(Debug, clap::Subcommand)]
enum QuotaCommand {
    /// Set or remove quotas of one entity, e.g.
    /// `sluice quota alter --client-id app --add producer_byte_rate=1048576`.
    Alter {
        #[command(flatten)]
        entity: EntityArgs,
        /// KEY=VALUE to set (repeatable): producer_byte_rate, consumer_byte_rate (bytes per
        /// second), request_percentage (percent of one thread).
        #[arg(long = "add", value_parser = parse_pair)]
        add: Vec<(String, String)>,
        /// KEY to remove (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Check the change without applying it.
        #[arg(long)]
        validate_only: bool,
    },
    /// List quotas: all of them, or those of the entities the flags name.
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with exactly the components named (no other user or client id part).
        #[arg(long)]
        strict: bool,
    },
}

pub(super) fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let cluster = args.cluster;
    match args.command {
        QuotaCommand::Alter {
            entity,
            add,
            delete,
            validate_only,
        } => alter(&cluster, &entity, &add, &delete, validate_only),
        QuotaCommand::Describe { entity, strict } => describe(&cluster, &entity, strict),
    }
}

fn entity_label(kind: &str, name: &Option<String>) -> String {
    format!("{kind}={}", name.as_deref().unwrap_or("<default>"))
}

fn alter(
    cluster: &ClusterArgs,
    entity: &EntityArgs,
    add: &[(String, String)],
    delete: &[String],
    validate_only: bool,
) -> anyhow::Result<()> {
    let components: Vec<(&str, Option<String>)> =
        [(USER, entity.user()), (CLIENT_ID, entity.client_id())]
            .into_iter()
            .filter_map(|(kind, c)| c.map(|name| (kind, name)))
            .collect();
    if components.is_empty() {
        bail!(
            "name an entity: --user NAME, --user-default, --client-id NAME or --client-id-default"
        );
    }
    if add.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --add KEY=VALUE or --delete KEY");
    }
    let mut ops = Vec::new();
    for (key, value) in add {
        let number: f64 = value
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}={value}: the value is not a number"))?;
        ops.push(
            OpData::default()
                .with_key(str_bytes(key))
                .with_value(number),
        );
    }
    for key in delete {
        ops.push(OpData::default().with_key(str_bytes(key)).with_remove(true));
    }
    let request = AlterClientQuotasRequest::default()
        .with_entries(vec![EntryData::default()
            .with_entity(
                components
                    .iter()
                    .map(|(kind, name)| {
                        EntityData::default()
                            .with_entity_type(str_bytes(kind))
                            .with_entity_name(name.as_deref().map(str_bytes))
                    })
                    .collect(),
            )
            .with_ops(ops)])
        .with_validate_only(validate_only);
    let label = components
        .iter()
        .map(|(kind, name)| entity_label(kind, name))
        .collect::<Vec<_>>()
        .join(",");
    let mut client = cluster.client()?;
    let response = client.controller()?.call(&request, 1)?;
    for entry in &response.entries {
        check(
            entry.error_code,
            label.clone(),
            entry.error_message.as_ref(),
        )?;
    }
    let verb = if validate_only { "would be" } else { "" };
    let mut table = Table::new(&["entity", "quota", "change"]);
    for (k, v) in add {
        table.row(vec![
            label.clone(),
            k.clone(),
            format!("{verb} set to {v}").trim().to_string(),
        ]);
    }
    for k in delete {
        table.row(vec![
            label.clone(),
            k.clone(),
            format!("{verb} removed").trim().to_string(),
        ]);
    }
    emit(cluster.format, &table, || {
        json!({
            "entity": entity_json(&components),
            "set": add.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
            "removed": delete,
            "validate_only": validate_only,
        })
    });
    Ok(())
}

/// `{"user": "alice", "client-id": null}`: null is the default entity.
fn entity_json(components: &[(&str, Option<String>)]) -> Value {
    Value::Object(
        components
            .iter()
            .map(|(kind, name)| {
                (
                    kind.to_string(),
                    name.clone().map(Value::String).unwrap_or(Value::Null),
                )
            })
            .collect(),
    )
}

fn describe(cluster: &ClusterArgs, entity: &EntityArgs, strict: bool) -> anyhow::Result<()> {
    let mut components = Vec::new();
    for (kind, c) in [(USER, entity.user()), (CLIENT_ID, entity.client_id())] {
        match c {
            None => {}
            Some(None) => components.push(
                ComponentData::default()
                    .with_entity_type(str_bytes(kind))
                    .with_match_type(MATCH_DEFAULT),
            ),
            Some(Some(name)) => components.push(
                ComponentData::default()
                    .with_entity_type(str_bytes(kind))
                    .with_match_type(MATCH_EXACT)
                    .with_match(Some(str_bytes(&name))),
            ),
        }
    }
    let request = DescribeClientQuotasRequest::default()
        .with_components(components)
        .with_strict(strict);
    let mut client = cluster.client()?;
    let response = client.controller()?.call(&request, 1)?;
    check(
        response.error_code,
        "describe client quotas",
        response.error_message.as_ref(),
    )?;
    let entries = response.entries.unwrap_or_default();
    let mut table = Table::new(&["user", "client-id", "quota", "value"]);
    let mut json_entries = Vec::new();
    for entry in &entries {
        let mut parts: Vec<(&str, Option<String>)> = Vec::new();
        for e in &entry.entity {
            let kind = if &*e.entity_type == USER {
                USER
            } else {
                CLIENT_ID
            };
            parts.push((kind, e.entity_name.as_ref().map(|n| n.to_string())));
        }
        let shown = |kind: &str| match parts.iter().find(|(k, _)| *k == kind) {
            None => "-".to_string(),
            Some((_, None)) => "<default>".to_string(),
            Some((_, Some(n))) => n.clone(),
        };
        let mut quotas = Map::new();
        for v in &entry.values {
            table.row(vec![
                shown(USER),
                shown(CLIENT_ID),
                v.key.to_string(),
                format_value(v.value),
            ]);
            quotas.insert(v.key.to_string(), json!(v.value));
        }
        json_entries.push(json!({"entity": entity_json(&parts), "quotas": quotas}));
    }
    emit(cluster.format, &table, || Value::Array(json_entries));
    Ok(())
}

/// Whole numbers without a fraction (byte rates), others as given.
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}
