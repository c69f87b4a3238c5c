//! Kafka's ACL model: resource types, pattern types, operations, permissions (with their wire
//! codes), bindings, the filters CreateAcls/DescribeAcls/DeleteAcls carry, and which bindings a
//! filter or a resource matches.

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource (Kafka's `CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name or principal or host that stands for every one.
pub const WILDCARD: &str = "*";
/// The principal that stands for every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Declares a wire-coded enum whose `Any`/`Unknown` values exist only in filters.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            /// The Kafka wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }

            /// The value of a wire code; `None` for codes Kafka does not define.
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
        }
    };
}

wire_enum!(
    /// What kind of thing an ACL is about.
    ResourceType {
        Unknown = 0,
        Any = 1,
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

wire_enum!(
    /// How a binding's resource name is matched.
    PatternType {
        Unknown = 0,
        /// Filters only: any pattern type, the name compared exactly.
        Any = 1,
        /// Filters only: every binding that would apply to the named resource.
        Match = 2,
        Literal = 3,
        Prefixed = 4,
    }
);

wire_enum!(
    /// What a principal does to a resource.
    Operation {
        Unknown = 0,
        Any = 1,
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
);

wire_enum!(
    /// Whether a binding grants or refuses.
    Permission {
        Unknown = 0,
        Any = 1,
        Deny = 2,
        Allow = 3,
    }
);

impl Operation {
    /// The operations whose Allow also allows `self` (Kafka's implication rules: Describe
    /// follows from Read, Write, Delete and Alter; DescribeConfigs from AlterConfigs).
    pub fn implied_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter, All],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
            Read => &[Read, All],
            Write => &[Write, All],
            Create => &[Create, All],
            Delete => &[Delete, All],
            Alter => &[Alter, All],
            ClusterAction => &[ClusterAction, All],
            AlterConfigs => &[AlterConfigs, All],
            IdempotentWrite => &[IdempotentWrite, All],
            CreateTokens => &[CreateTokens, All],
            DescribeTokens => &[DescribeTokens, All],
            All => &[All],
            Any | Unknown => &[],
        }
    }
}

/// A resource a request touches: a topic, a group, the cluster, a transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Topic,
            name,
        }
    }
    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Group,
            name,
        }
    }
    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::TransactionalId,
            name,
        }
    }
    pub fn cluster() -> Resource<'static> {
        Resource {
            kind: ResourceType::Cluster,
            name: CLUSTER_NAME,
        }
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:NAME`, or `User:*` for everyone.
    pub principal: String,
    /// A client IP address as Kafka prints it, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be created (answered INVALID_REQUEST, as Kafka does).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidAcl {
    #[error("Invalid resource type {0}")]
    ResourceType(i8),
    #[error("Invalid pattern type {0}")]
    PatternType(i8),
    #[error("Invalid operation {0}")]
    Operation(i8),
    #[error("Invalid permission type {0}")]
    Permission(i8),
    #[error("Resource name should not be empty")]
    EmptyName,
    #[error("The only valid name for the CLUSTER resource is kafka-cluster")]
    ClusterName,
    #[error("Could not parse principal from `{0}` (no colon is present separating the principal type from the principal name)")]
    Principal(String),
    #[error("Invalid host '{0}': not an IP address or *")]
    Host(String),
}

impl AclBinding {
    /// A binding from CreateAcls' fields, refused where Kafka refuses it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, InvalidAcl> {
        let resource_type = match ResourceType::from_code(resource_type) {
            Some(
                t @ (ResourceType::Topic
                | ResourceType::Group
                | ResourceType::Cluster
                | ResourceType::TransactionalId
                | ResourceType::DelegationToken
                | ResourceType::User),
            ) => t,
            _ => return Err(InvalidAcl::ResourceType(resource_type)),
        };
        let pattern_type = match PatternType::from_code(pattern_type) {
            Some(p @ (PatternType::Literal | PatternType::Prefixed)) => p,
            _ => return Err(InvalidAcl::PatternType(pattern_type)),
        };
        let operation = match Operation::from_code(operation) {
            Some(Operation::Any | Operation::Unknown) | None => {
                return Err(InvalidAcl::Operation(operation))
            }
            Some(op) => op,
        };
        let permission = match Permission::from_code(permission) {
            Some(p @ (Permission::Allow | Permission::Deny)) => p,
            _ => return Err(InvalidAcl::Permission(permission)),
        };
        if resource_name.is_empty() {
            return Err(InvalidAcl::EmptyName);
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(InvalidAcl::ClusterName);
        }
        match principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err(InvalidAcl::Principal(principal.to_string())),
        }
        if host != WILDCARD && host.parse::<std::net::IpAddr>().is_err() {
            return Err(InvalidAcl::Host(host.to_string()));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    /// Whether this binding's resource pattern covers `resource`.
    pub fn covers(&self, resource: &Resource<'_>) -> bool {
        self.resource_type == resource.kind
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == resource.name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => resource.name.starts_with(&self.resource_name),
                _ => false,
            }
    }

    /// Whether this binding names `principal` (or everyone) and `host` (or every host).
    pub fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls or DeleteAcls filter: `None` and `Any` match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// A filter from the wire fields; unknown codes are refused (INVALID_REQUEST).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, InvalidAcl> {
        let known = |t: Option<ResourceType>| t.filter(|t| *t != ResourceType::Unknown);
        Ok(AclFilter {
            resource_type: known(ResourceType::from_code(resource_type))
                .ok_or(InvalidAcl::ResourceType(resource_type))?,
            resource_name: resource_name.map(str::to_string),
            pattern_type: PatternType::from_code(pattern_type)
                .filter(|p| *p != PatternType::Unknown)
                .ok_or(InvalidAcl::PatternType(pattern_type))?,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: Operation::from_code(operation)
                .filter(|o| *o != Operation::Unknown)
                .ok_or(InvalidAcl::Operation(operation))?,
            permission: Permission::from_code(permission)
                .filter(|p| *p != Permission::Unknown)
                .ok_or(InvalidAcl::Permission(permission))?,
        })
    }

    /// Whether `binding` is one this filter selects (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let resource_type =
            self.resource_type == ResourceType::Any || self.resource_type == binding.resource_type;
        let name = match (self.pattern_type, &self.resource_name) {
            (PatternType::Match, Some(name)) => match binding.pattern_type {
                PatternType::Literal => {
                    binding.resource_name == *name || binding.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&binding.resource_name),
                _ => false,
            },
            (PatternType::Match | PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => binding.resource_name == *name,
            (pattern, name) => {
                pattern == binding.pattern_type
                    && name.as_ref().is_none_or(|n| *n == binding.resource_name)
            }
        };
        resource_type
            && name
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(pattern: PatternType, name: &str, op: Operation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    fn filter(pattern: PatternType, name: Option<&str>) -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: name.map(String::from),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    #[test]
    fn literal_wildcard_and_prefixed_patterns_cover_resources() {
        let t = Resource::topic("orders-eu");
        assert!(binding(PatternType::Literal, "orders-eu", Operation::Read).covers(&t));
        assert!(binding(PatternType::Literal, "*", Operation::Read).covers(&t));
        assert!(binding(PatternType::Prefixed, "orders-", Operation::Read).covers(&t));
        assert!(!binding(PatternType::Prefixed, "payments", Operation::Read).covers(&t));
        assert!(!binding(PatternType::Literal, "orders", Operation::Read).covers(&t));
        assert!(!binding(PatternType::Literal, "orders-eu", Operation::Read)
            .covers(&Resource::group("orders-eu")));
    }

    #[test]
    fn match_filter_selects_every_binding_that_applies() {
        let f = filter(PatternType::Match, Some("orders-eu"));
        assert!(f.matches(&binding(PatternType::Prefixed, "orders", Operation::Read)));
        assert!(f.matches(&binding(PatternType::Literal, "*", Operation::Read)));
        assert!(!f.matches(&binding(PatternType::Literal, "orders", Operation::Read)));
        let any = filter(PatternType::Any, Some("orders"));
        assert!(any.matches(&binding(PatternType::Prefixed, "orders", Operation::Read)));
        assert!(any.matches(&binding(PatternType::Literal, "orders", Operation::Read)));
        assert!(!any.matches(&binding(PatternType::Literal, "*", Operation::Read)));
        let literal = filter(PatternType::Literal, None);
        assert!(!literal.matches(&binding(PatternType::Prefixed, "orders", Operation::Read)));
    }

    #[test]
    fn creation_refuses_what_kafka_refuses() {
        let ok = |rt, name, pt, principal, host, op, perm| {
            AclBinding::new(rt, name, pt, principal, host, op, perm)
        };
        assert!(ok(2, "t", 3, "User:a", "*", 3, 3).is_ok());
        assert_eq!(
            ok(1, "t", 3, "User:a", "*", 3, 3),
            Err(InvalidAcl::ResourceType(1))
        );
        assert_eq!(
            ok(2, "t", 2, "User:a", "*", 3, 3),
            Err(InvalidAcl::PatternType(2))
        );
        assert_eq!(
            ok(2, "t", 3, "User:a", "*", 1, 3),
            Err(InvalidAcl::Operation(1))
        );
        assert_eq!(
            ok(4, "other", 3, "User:a", "*", 7, 3),
            Err(InvalidAcl::ClusterName)
        );
        assert!(matches!(
            ok(2, "t", 3, "alice", "*", 3, 3),
            Err(InvalidAcl::Principal(_))
        ));
        assert!(matches!(
            ok(2, "t", 3, "User:a", "host.example", 3, 3),
            Err(InvalidAcl::Host(_))
        ));
    }
}
