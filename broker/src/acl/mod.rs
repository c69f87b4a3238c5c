//! Authorization: Kafka's ACL model and the authorizer every handler asks.
//!
//! - [`binding`]: resource types, patterns, operations, permissions, bindings and filters.
//! - [`store`]: the durable bindings under `data/__sluice/acls.json`.
//!
//! [`Authorizer::authorize`] is the one check: super users may do everything; otherwise a Deny
//! that applies wins, then an Allow of the operation (or of one that implies it) grants, and a
//! resource no binding covers is refused unless `allow.everyone.if.no.acl.found`. Without
//! `authorizer.class.name` every request is allowed, as before ACLs existed.

pub mod binding;
pub mod store;

use std::net::IpAddr;

pub use binding::{AclBinding, AclFilter, Operation, Permission, Resource, ResourceType};
use binding::{PatternType, WILDCARD};
pub use store::{AclStore, AclStoreError};

use crate::auth::Principal;

/// The authorizer class names accepted for `authorizer.class.name` (Kafka's KRaft and ZooKeeper
/// authorizers; both mean the same ACL semantics here).
pub const ACCEPTED_CLASS_NAMES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The authorizer's settings, under Kafka's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// `authorizer.class.name`: set (to one of [`ACCEPTED_CLASS_NAMES`]) turns ACLs on.
    pub class_name: Option<String>,
    /// `super.users`: principals (`User:NAME`, `;`-separated in the setting) never refused.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: a resource with no binding at all is open.
    pub allow_everyone_if_no_acl_found: bool,
}

/// Who is asking: the connection's principal and the address it connects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// `User:NAME`, as bindings name principals.
    pub principal: String,
    /// The client's IP address as bindings name hosts.
    pub host: String,
}

impl Requester {
    pub fn new(principal: &Principal, host: IpAddr) -> Requester {
        Requester {
            principal: principal.to_string(),
            host: host.to_string(),
        }
    }

    /// The broker itself (connectors and transforms deployed before ACLs, recovery), which
    /// Kafka's inter-broker principal would be: a super user in effect.
    pub fn broker() -> Requester {
        Requester {
            principal: BROKER_PRINCIPAL.to_string(),
            host: WILDCARD.to_string(),
        }
    }
}

/// The principal the broker acts as for its own work.
const BROKER_PRINCIPAL: &str = "User:__sluice-broker";

/// Decides requests against the ACLs.
#[derive(Debug)]
pub struct Authorizer {
    /// `authorizer.class.name` was set.
    enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
    /// The bindings (kept, and served to no one, while disabled).
    store: AclStore,
}

impl Authorizer {
    /// Loads the bindings at `path` under `settings`.
    pub fn open(
        path: &std::path::Path,
        settings: &AuthorizerSettings,
    ) -> Result<Authorizer, AclStoreError> {
        Ok(Authorizer {
            enabled: settings.class_name.is_some(),
            super_users: settings.super_users.clone(),
            allow_if_no_acl: settings.allow_everyone_if_no_acl_found,
            store: AclStore::open(path)?,
        })
    }

    /// Whether ACLs are enforced (and the ACL APIs served).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn store(&self) -> &AclStore {
        &self.store
    }

    /// Whether `who` may do `op` to `resource`.
    pub fn authorize(&self, who: &Requester, op: Operation, resource: &Resource<'_>) -> bool {
        if !self.enabled || self.is_super_user(who) {
            return true;
        }
        let allowed = self.store.with(|all| {
            let mut covering = all.iter().filter(|b| b.covers(resource)).peekable();
            if covering.peek().is_none() {
                return self.allow_if_no_acl;
            }
            let mut allowed = false;
            for b in covering {
                if !b.applies_to(&who.principal, &who.host) {
                    continue;
                }
                match b.permission {
                    Permission::Deny if b.operation == op || b.operation == Operation::All => {
                        return false
                    }
                    Permission::Allow if op.implied_by().contains(&b.operation) => allowed = true,
                    _ => {}
                }
            }
            allowed
        });
        if !allowed {
            tracing::debug!(principal = %who.principal, host = %who.host, ?op, resource = ?resource.kind, name = resource.name, "denied");
        }
        allowed
    }

    /// Whether `who` may do `op` to some resource of `kind` (Kafka's `authorizeByResourceType`,
    /// which InitProducerId uses for "Write on any topic"): some Allow applies that no Deny of
    /// the same or a wider pattern cancels.
    pub fn authorize_any(&self, who: &Requester, op: Operation, kind: ResourceType) -> bool {
        if !self.enabled || self.is_super_user(who) {
            return true;
        }
        self.store.with(|all| {
            let applicable: Vec<&AclBinding> = all
                .iter()
                .filter(|b| b.resource_type == kind && b.applies_to(&who.principal, &who.host))
                .collect();
            let denies = |pattern: &AclBinding| {
                applicable.iter().any(|d| {
                    d.permission == Permission::Deny
                        && (d.operation == op || d.operation == Operation::All)
                        && match d.pattern_type {
                            PatternType::Literal => {
                                d.resource_name == WILDCARD
                                    || (pattern.pattern_type == PatternType::Literal
                                        && d.resource_name == pattern.resource_name)
                            }
                            PatternType::Prefixed => {
                                pattern.resource_name.starts_with(&d.resource_name)
                            }
                            _ => false,
                        }
                })
            };
            let granted = applicable.iter().any(|b| {
                b.permission == Permission::Allow
                    && op.implied_by().contains(&b.operation)
                    && !denies(b)
            });
            granted || (self.allow_if_no_acl && !all.iter().any(|b| b.resource_type == kind))
        })
    }

    fn is_super_user(&self, who: &Requester) -> bool {
        who.principal == BROKER_PRINCIPAL || self.super_users.contains(&who.principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer(acls: &[(i8, &str, i8, &str, i8, i8)], allow_if_none: bool) -> Authorizer {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = AuthorizerSettings {
            class_name: Some(ACCEPTED_CLASS_NAMES[0].into()),
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: allow_if_none,
        };
        let a = Authorizer::open(&dir.path().join("acls.json"), &settings).expect("open");
        let bindings: Vec<AclBinding> = acls
            .iter()
            .map(|(rt, name, pt, principal, op, perm)| {
                AclBinding::new(*rt, name, *pt, principal, "*", *op, *perm).expect("valid")
            })
            .collect();
        a.store().create(&bindings).expect("create");
        a
    }

    fn user(name: &str) -> Requester {
        Requester::new(&Principal::user(name), "10.0.0.1".parse().expect("ip"))
    }

    const TOPIC: i8 = 2;
    const LITERAL: i8 = 3;
    const PREFIXED: i8 = 4;
    const ALLOW: i8 = 3;
    const DENY: i8 = 2;

    #[test]
    fn read_implies_describe_but_not_write() {
        let a = authorizer(&[(TOPIC, "orders", LITERAL, "User:alice", 3, ALLOW)], false);
        let t = Resource::topic("orders");
        assert!(a.authorize(&user("alice"), Operation::Read, &t));
        assert!(a.authorize(&user("alice"), Operation::Describe, &t));
        assert!(!a.authorize(&user("alice"), Operation::Write, &t));
        assert!(!a.authorize(&user("bob"), Operation::Read, &t));
        assert!(!a.authorize(&user("alice"), Operation::Read, &Resource::topic("other")));
    }

    #[test]
    fn deny_beats_allow_and_super_users_pass() {
        let a = authorizer(
            &[
                (TOPIC, "orders", PREFIXED, "User:*", 2, ALLOW),
                (TOPIC, "orders-secret", LITERAL, "User:alice", 4, DENY),
            ],
            false,
        );
        assert!(a.authorize(
            &user("alice"),
            Operation::Write,
            &Resource::topic("orders-eu")
        ));
        assert!(!a.authorize(
            &user("alice"),
            Operation::Write,
            &Resource::topic("orders-secret")
        ));
        // A Deny of Write does not deny Describe, as in Kafka.
        assert!(a.authorize(
            &user("alice"),
            Operation::Describe,
            &Resource::topic("orders-secret")
        ));
        assert!(a.authorize(&user("admin"), Operation::Delete, &Resource::topic("x")));
    }

    #[test]
    fn allow_everyone_if_no_acl_found_opens_only_uncovered_resources() {
        let a = authorizer(&[(TOPIC, "orders", LITERAL, "User:bob", 3, ALLOW)], true);
        assert!(a.authorize(&user("alice"), Operation::Write, &Resource::topic("free")));
        assert!(!a.authorize(&user("alice"), Operation::Read, &Resource::topic("orders")));
        let closed = authorizer(&[], false);
        assert!(!closed.authorize(&user("alice"), Operation::Write, &Resource::topic("free")));
    }

    #[test]
    fn write_on_any_topic_counts_unless_denied_wider() {
        let a = authorizer(&[(TOPIC, "logs-", PREFIXED, "User:alice", 4, ALLOW)], false);
        assert!(a.authorize_any(&user("alice"), Operation::Write, ResourceType::Topic));
        assert!(!a.authorize_any(&user("bob"), Operation::Write, ResourceType::Topic));
        let denied = authorizer(
            &[
                (TOPIC, "logs-eu", LITERAL, "User:alice", 4, ALLOW),
                (TOPIC, "logs-", PREFIXED, "User:alice", 4, DENY),
            ],
            false,
        );
        assert!(!denied.authorize_any(&user("alice"), Operation::Write, ResourceType::Topic));
    }

    #[test]
    fn disabled_authorizer_allows_everything() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = Authorizer::open(
            &dir.path().join("acls.json"),
            &AuthorizerSettings::default(),
        )
        .expect("open");
        assert!(a.authorize(&user("x"), Operation::Delete, &Resource::cluster()));
    }
}
