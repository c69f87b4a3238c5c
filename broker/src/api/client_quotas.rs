//! AlterClientQuotas and DescribeClientQuotas: client quotas per user and/or client id (named or
//! `<default>`), as `kafka-configs --entity-type users|clients` and `sluice quota` manage them.
//! Changes are durable before the answer.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntityData as AlterEntity;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::quota::store::{valid_value, EntityName, QuotaEntity, CLIENT_ID, MAX_NAME_LEN, USER};

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The entity of an alter entry, or why it is not one.
fn entity_of(components: &[AlterEntity]) -> Result<QuotaEntity, String> {
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for c in components {
        let name = c.entity_name.as_deref();
        if name.is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(format!("entity names are at most {MAX_NAME_LEN} bytes"));
        }
        let slot = match &*c.entity_type {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            "ip" => return Err("ip quotas (connection_creation_rate) are not supported".into()),
            other => return Err(format!("unknown entity type '{other}'")),
        };
        if slot.is_some() {
            return Err(format!("entity type '{}' appears twice", c.entity_type));
        }
        *slot = Some(EntityName::from_wire(name));
    }
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err("an entity needs a user, a client-id or both".into());
    }
    Ok(entity)
}

fn altered_entity(components: &[AlterEntity]) -> Vec<AlteredEntity> {
    components
        .iter()
        .map(|c| {
            AlteredEntity::default()
                .with_entity_type(c.entity_type.clone())
                .with_entity_name(c.entity_name.clone())
        })
        .collect()
}

pub(crate) fn alter(
    broker: &Broker,
    who: &Requester,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    // Kafka asks AlterConfigs on the cluster.
    if !broker.authorize(who, Operation::AlterConfigs, Resource::cluster()) {
        return AlterClientQuotasResponse::default().with_entries(
            request
                .entries
                .iter()
                .map(|entry| {
                    AlteredEntry::default()
                        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                        .with_error_message(Some(s("Cluster authorization failed.")))
                        .with_entity(altered_entity(&entry.entity))
                })
                .collect(),
        );
    }
    let mut results = Vec::with_capacity(request.entries.len());
    let mut changes = Vec::new();
    let mut seen = HashSet::new();
    for entry in &request.entries {
        let checked = entity_of(&entry.entity).and_then(|entity| {
            if !seen.insert(entity.clone()) {
                return Err(format!("{entity} appears twice in the request"));
            }
            let mut ops = Vec::with_capacity(entry.ops.len());
            let mut keys = HashSet::new();
            for op in &entry.ops {
                let key = op.key.to_string();
                if !keys.insert(key.clone()) {
                    return Err(format!("quota key '{key}' appears twice for {entity}"));
                }
                if op.remove {
                    // An unknown key cannot be stored, so removing one is refused too.
                    valid_value(&key, 1.0)?;
                    ops.push((key, None));
                } else {
                    valid_value(&key, op.value)?;
                    ops.push((key, Some(op.value)));
                }
            }
            Ok((entity, ops))
        });
        match checked {
            Ok(change) => {
                results.push((entry, None));
                changes.push(change);
            }
            Err(message) => {
                results.push((entry, Some((ResponseError::InvalidRequest, message))));
            }
        }
    }
    let stored = if request.validate_only || changes.is_empty() {
        Ok(())
    } else {
        broker.quotas.store.alter(&changes)
    };
    if let Err(e) = &stored {
        tracing::error!("client quotas not saved: {e}");
    } else if !request.validate_only {
        for (entity, ops) in &changes {
            tracing::info!(%entity, ?ops, "client quotas altered");
        }
    }
    let entries = results
        .into_iter()
        .map(|(entry, refusal)| {
            let (code, message) = match (refusal, &stored) {
                (Some((code, message)), _) => (code.code(), Some(s(&message))),
                (None, Err(e)) => (
                    ResponseError::UnknownServerError.code(),
                    Some(s(&e.to_string())),
                ),
                (None, Ok(())) => (0, None),
            };
            AlteredEntry::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(altered_entity(&entry.entity))
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// One filter component: the entity type and what its name must be.
enum Filter {
    Exact(String),
    Default,
    Specified,
}

fn matches(filter: &Filter, name: Option<&EntityName>) -> bool {
    match (filter, name) {
        (_, None) => false,
        (Filter::Exact(want), Some(EntityName::Named(n))) => want == n,
        (Filter::Exact(_), Some(EntityName::Default)) => false,
        (Filter::Default, Some(n)) => *n == EntityName::Default,
        (Filter::Specified, Some(_)) => true,
    }
}

pub(crate) fn describe(
    broker: &Broker,
    who: &Requester,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !broker.authorize(who, Operation::DescribeConfigs, Resource::cluster()) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(s("Cluster authorization failed.")))
            .with_entries(None);
    }
    match describe_entries(broker, &request) {
        Ok(entries) => DescribeClientQuotasResponse::default().with_entries(Some(entries)),
        Err(message) => {
            let code = ResponseError::InvalidRequest.code();
            DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(&message)))
                .with_entries(None)
        }
    }
}

fn describe_entries(
    broker: &Broker,
    request: &DescribeClientQuotasRequest,
) -> Result<Vec<DescribedEntry>, String> {
    let mut filters: BTreeMap<&str, Filter> = BTreeMap::new();
    for c in &request.components {
        let kind = match &*c.entity_type {
            USER => USER,
            CLIENT_ID => CLIENT_ID,
            other => return Err(format!("unknown entity type '{other}'")),
        };
        let filter = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Filter::Exact(name.to_string()),
            (MATCH_EXACT, None) => return Err("an exact match needs a name".into()),
            (MATCH_DEFAULT, _) => Filter::Default,
            (MATCH_SPECIFIED, _) => Filter::Specified,
            (other, _) => return Err(format!("unknown match type {other}")),
        };
        if filters.insert(kind, filter).is_some() {
            return Err(format!("entity type '{kind}' appears twice in the filter"));
        }
    }
    let mut out = Vec::new();
    for (entity, values) in broker.quotas.store.all() {
        let component = |kind: &str| match kind {
            USER => entity.user.as_ref(),
            _ => entity.client_id.as_ref(),
        };
        if !filters.iter().all(|(kind, f)| matches(f, component(kind))) {
            continue;
        }
        // Strict: the entity has no component the filter does not name.
        if request.strict
            && [USER, CLIENT_ID]
                .iter()
                .any(|k| component(k).is_some() && !filters.contains_key(k))
        {
            continue;
        }
        let mut described = Vec::new();
        for (kind, name) in [(USER, &entity.user), (CLIENT_ID, &entity.client_id)] {
            if let Some(name) = name {
                described.push(
                    DescribedEntity::default()
                        .with_entity_type(s(kind))
                        .with_entity_name(name.as_wire().map(s)),
                );
            }
        }
        out.push(
            DescribedEntry::default()
                .with_entity(described)
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(s(k)).with_value(*v))
                        .collect(),
                ),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_client_quotas_request::{EntryData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    use super::*;
    use crate::broker::test_broker;

    fn entity(kind: &str, name: Option<&str>) -> AlterEntity {
        AlterEntity::default()
            .with_entity_type(s(kind))
            .with_entity_name(name.map(s))
    }

    fn set(key: &str, value: f64) -> OpData {
        OpData::default().with_key(s(key)).with_value(value)
    }

    #[test]
    fn altered_quotas_are_described_and_bad_entries_refused_alone() {
        let (_dir, broker) = test_broker();
        let request = AlterClientQuotasRequest::default().with_entries(vec![
            EntryData::default()
                .with_entity(vec![entity(USER, Some("alice")), entity(CLIENT_ID, None)])
                .with_ops(vec![set("producer_byte_rate", 1024.0)]),
            EntryData::default()
                .with_entity(vec![entity(CLIENT_ID, Some("app"))])
                .with_ops(vec![set("request_percentage", 25.0)]),
            EntryData::default()
                .with_entity(vec![entity("ip", Some("127.0.0.1"))])
                .with_ops(vec![set("connection_creation_rate", 5.0)]),
            EntryData::default()
                .with_entity(vec![entity(USER, Some("bob"))])
                .with_ops(vec![set("producer_byte_rate", 1.5)]),
        ]);
        let response = alter(&broker, &crate::acl::Requester::broker(), request);
        let codes: Vec<i16> = response.entries.iter().map(|e| e.error_code).collect();
        assert_eq!(codes, vec![0, 0, 42, 42]);

        let all = describe(
            &broker,
            &crate::acl::Requester::broker(),
            DescribeClientQuotasRequest::default(),
        );
        assert_eq!(all.entries.as_ref().unwrap().len(), 2);

        let alice_default_client = DescribeClientQuotasRequest::default()
            .with_components(vec![
                ComponentData::default()
                    .with_entity_type(s(USER))
                    .with_match_type(MATCH_EXACT)
                    .with_match(Some(s("alice"))),
                ComponentData::default()
                    .with_entity_type(s(CLIENT_ID))
                    .with_match_type(MATCH_DEFAULT),
            ])
            .with_strict(true);
        let found = describe(
            &broker,
            &crate::acl::Requester::broker(),
            alice_default_client,
        )
        .entries
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].values[0].key, "producer_byte_rate");
        assert_eq!(found[0].values[0].value, 1024.0);

        // Strict on client-id alone excludes the user+client-id entity.
        let clients = DescribeClientQuotasRequest::default()
            .with_components(vec![ComponentData::default()
                .with_entity_type(s(CLIENT_ID))
                .with_match_type(MATCH_SPECIFIED)])
            .with_strict(true);
        let found = describe(&broker, &crate::acl::Requester::broker(), clients)
            .entries
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entity[0].entity_name.as_deref(), Some("app"));
    }

    #[test]
    fn removing_the_last_key_removes_the_entity_and_validate_only_changes_nothing() {
        let (_dir, broker) = test_broker();
        let app = || vec![entity(CLIENT_ID, Some("app"))];
        let dry = AlterClientQuotasRequest::default()
            .with_entries(vec![EntryData::default()
                .with_entity(app())
                .with_ops(vec![set("consumer_byte_rate", 4096.0)])])
            .with_validate_only(true);
        assert_eq!(
            alter(&broker, &crate::acl::Requester::broker(), dry).entries[0].error_code,
            0
        );
        assert!(broker.quotas.store.is_empty());
        let real = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(app())
            .with_ops(vec![set("consumer_byte_rate", 4096.0)])]);
        alter(&broker, &crate::acl::Requester::broker(), real);
        assert!(!broker.quotas.store.is_empty());
        let remove = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(app())
            .with_ops(vec![OpData::default()
                .with_key(s("consumer_byte_rate"))
                .with_remove(true)])]);
        assert_eq!(
            alter(&broker, &crate::acl::Requester::broker(), remove).entries[0].error_code,
            0
        );
        assert!(broker.quotas.store.is_empty());
    }

    #[test]
    fn malformed_filters_are_invalid_requests() {
        let (_dir, broker) = test_broker();
        let unknown =
            DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
                .with_entity_type(s("group"))
                .with_match_type(MATCH_SPECIFIED)]);
        let response = describe(&broker, &crate::acl::Requester::broker(), unknown);
        assert_eq!(response.error_code, 42);
        assert!(response.entries.is_none());
    }
}
