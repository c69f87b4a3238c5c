//! CreateAcls, DescribeAcls, DeleteAcls (v1–3): the ACL bindings, changed durably before the
//! answer. They need Alter (create, delete) or Describe (describe) on the cluster, and answer
//! SECURITY_DISABLED while no authorizer is configured, as Kafka does.

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::acl::{AclBinding, AclFilter, Operation, Requester, Resource};

const SECURITY_DISABLED: &str = "No Authorizer is configured on the broker";
const CLUSTER_AUTHORIZATION_FAILED: &str = "Cluster authorization failed.";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Why a request is refused as a whole: no authorizer, or not allowed `op` on the cluster.
fn refusal(broker: &Broker, who: &Requester, op: Operation) -> Option<(i16, &'static str)> {
    if !broker.authorizer.is_enabled() {
        Some((ResponseError::SecurityDisabled.code(), SECURITY_DISABLED))
    } else if !broker.authorize(who, op, Resource::cluster()) {
        Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            CLUSTER_AUTHORIZATION_FAILED,
        ))
    } else {
        None
    }
}

pub(crate) fn create_acls(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let answer = |code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.map(|m| s(&m)))
    };
    if let Some((code, message)) = refusal(broker, who, Operation::Alter) {
        return CreateAclsResponse::default().with_results(
            request
                .creations
                .iter()
                .map(|_| answer(code, Some(message.to_string())))
                .collect(),
        );
    }
    let parsed: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::new(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        broker.authorizer.store().create(&valid)
    };
    if let Err(e) = &stored {
        tracing::error!("CreateAcls: {e}");
    } else if !valid.is_empty() {
        tracing::info!(principal = %who.principal, acls = ?valid, "ACLs created");
    }
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(message), _) => answer(ResponseError::InvalidRequest.code(), Some(message)),
            (Ok(_), Err(e)) => answer(
                ResponseError::UnknownServerError.code(),
                Some(e.to_string()),
            ),
            (Ok(_), Ok(())) => answer(0, None),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub(crate) fn describe_acls(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((code, message)) = refusal(broker, who, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)));
    }
    let filter = match AclFilter::new(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(&e.to_string())))
        }
    };
    // Grouped by resource pattern, in the order the bindings were created.
    let mut resources: IndexMap<(i8, String, i8), Vec<AclDescription>> = IndexMap::new();
    for b in broker.authorizer.store().describe(&filter) {
        resources
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(&b.principal))
                    .with_host(s(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((resource_type, name, pattern_type), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(s(&name))
                    .with_pattern_type(pattern_type)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub(crate) fn delete_acls(
    broker: &Broker,
    who: &Requester,
    _version: i16,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let answer = |code: i16, message: Option<String>| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message.map(|m| s(&m)))
    };
    if let Some((code, message)) = refusal(broker, who, Operation::Alter) {
        return DeleteAclsResponse::default().with_filter_results(
            request
                .filters
                .iter()
                .map(|_| answer(code, Some(message.to_string())))
                .collect(),
        );
    }
    let parsed: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::new(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        broker.authorizer.store().delete(&valid)
    };
    match &deleted {
        Err(e) => tracing::error!("DeleteAcls: {e}"),
        Ok(per_filter) if per_filter.iter().any(|d| !d.is_empty()) => {
            tracing::info!(principal = %who.principal, acls = ?per_filter, "ACLs deleted")
        }
        Ok(_) => {}
    }
    let mut removed = match &deleted {
        Ok(per_filter) => per_filter.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &deleted) {
            (Err(message), _) => answer(ResponseError::InvalidRequest.code(), Some(message)),
            (Ok(_), Err(e)) => answer(
                ResponseError::UnknownServerError.code(),
                Some(e.to_string()),
            ),
            (Ok(_), Ok(_)) => answer(0, None).with_matching_acls(
                removed
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(s(&b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(s(&b.principal))
                            .with_host(s(&b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;

    use super::*;
    use crate::acl::{Authorizer, AuthorizerSettings, ACCEPTED_CLASS_NAMES};
    use crate::auth::Principal;

    fn enabled(dir: &tempfile::TempDir, broker: &mut Broker) {
        broker.authorizer = Authorizer::open(
            &dir.path().join("acls.json"),
            &AuthorizerSettings {
                class_name: Some(ACCEPTED_CLASS_NAMES[0].into()),
                super_users: vec!["User:admin".into()],
                allow_everyone_if_no_acl_found: false,
            },
        )
        .expect("authorizer");
    }

    fn user(name: &str) -> Requester {
        Requester::new(&Principal::user(name), "127.0.0.1".parse().expect("ip"))
    }

    fn creation(name: &str, pattern: i8) -> AclCreation {
        AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_resource_pattern_type(pattern)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3)
    }

    fn everything() -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1)
    }

    #[test]
    fn acl_apis_answer_security_disabled_without_an_authorizer() {
        let (_dir, broker) = crate::broker::test_broker();
        let r = create_acls(
            &broker,
            &user("admin"),
            3,
            CreateAclsRequest::default().with_creations(vec![creation("t", 3)]),
        );
        assert_eq!(
            r.results[0].error_code,
            ResponseError::SecurityDisabled.code()
        );
        let d = describe_acls(&broker, &user("admin"), 3, everything());
        assert_eq!(d.error_code, ResponseError::SecurityDisabled.code());
    }

    #[test]
    fn created_acls_are_described_grouped_and_deleted_by_filter() {
        let (dir, mut broker) = crate::broker::test_broker();
        enabled(&dir, &mut broker);
        let admin = user("admin");
        let r = create_acls(
            &broker,
            &admin,
            3,
            CreateAclsRequest::default().with_creations(vec![
                creation("orders", 3),
                creation("logs-", 4),
                creation("bad", 2),
            ]),
        );
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [0, 0, ResponseError::InvalidRequest.code()]);
        let d = describe_acls(&broker, &admin, 3, everything());
        assert_eq!(d.error_code, 0);
        assert_eq!(d.resources.len(), 2);
        let matching = describe_acls(
            &broker,
            &admin,
            3,
            everything()
                .with_resource_name_filter(Some(s("logs-eu")))
                .with_pattern_type_filter(2),
        );
        assert_eq!(matching.resources.len(), 1);
        assert_eq!(matching.resources[0].resource_name.as_str(), "logs-");
        let deleted = delete_acls(
            &broker,
            &admin,
            3,
            DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(s("orders")))
                .with_pattern_type_filter(3)
                .with_operation(1)
                .with_permission_type(1)]),
        );
        assert_eq!(deleted.filter_results[0].error_code, 0);
        assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
        assert_eq!(
            describe_acls(&broker, &admin, 3, everything())
                .resources
                .len(),
            1
        );
    }

    #[test]
    fn acl_changes_need_alter_on_the_cluster() {
        let (dir, mut broker) = crate::broker::test_broker();
        enabled(&dir, &mut broker);
        let r = create_acls(
            &broker,
            &user("alice"),
            3,
            CreateAclsRequest::default().with_creations(vec![creation("t", 3)]),
        );
        assert_eq!(
            r.results[0].error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        assert_eq!(
            describe_acls(&broker, &user("alice"), 3, everything()).error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
    }
}
