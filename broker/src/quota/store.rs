//! Client quota configs, as AlterClientQuotas leaves them: per entity (a user, a client id, or a
//! user and a client id, each named or `<default>`), quota key → value. Kept in
//! `data/__sluice/client-quotas.json`, replaced atomically before an alter is answered, and
//! resolved in Kafka's precedence order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Kafka's entity types for client quotas.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// The quota keys Sluice enforces (Kafka's names).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// Longest entity name accepted (Kafka has none; ours keeps the file and the metrics sane).
pub const MAX_NAME_LEN: usize = 1024;

/// What a quota bounds; each is resolved and measured on its own, as Kafka's three quota
/// managers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// Bytes of Produce requests per second.
    Produce,
    /// Bytes of Fetch responses per second.
    Fetch,
    /// Percentage of one thread's time spent handling the entity's requests.
    Request,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    /// The quota key configuring it.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }

    pub fn from_key(key: &str) -> Option<QuotaKind> {
        QuotaKind::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// One component of a quota entity: a named user or client id, or `<default>` (every one that
/// has no quota of its own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// The wire form: `None` is the default entity.
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_string()),
        }
    }

    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityName::Default => f.write_str("<default>"),
            EntityName::Named(n) => f.write_str(n),
        }
    }
}

/// A quota entity: a user, a client id, or both. At least one is present.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl std::fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        if let Some(c) = &self.client_id {
            parts.push(format!("client-id={c}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// The quota values of one entity, by key.
pub type QuotaValues = BTreeMap<String, f64>;

/// Changes to one entity's quotas: key → `Some(value)` to set, `None` to remove.
pub type QuotaChange = (QuotaEntity, Vec<(String, Option<f64>)>);

/// Who a request comes from, as quotas see it.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The principal's name (`ANONYMOUS` on PLAINTEXT).
    pub user: &'a str,
    pub client_id: &'a str,
}

/// The quota that applies to a client for one kind, and the entity it is measured under:
/// clients that share a quota entity share one measurement, as in Kafka (a `<default>`
/// component still measures each user or client id on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub limit: f64,
    /// The user the measurement is kept for (`None`: the quota is not per user).
    pub user: Option<String>,
    /// The client id the measurement is kept for (`None`: the quota is not per client id).
    pub client_id: Option<String>,
}

/// Why the quota file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QuotaStoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The durable client quota configs.
#[derive(Debug)]
pub struct QuotaStore {
    path: PathBuf,
    entries: RwLock<BTreeMap<QuotaEntity, QuotaValues>>,
    /// Whether any quota is set: without one, requests skip quota work entirely.
    any: AtomicBool,
}

/// One entity in the file.
#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    /// `None`: no user component; `Some(None)`: the default user.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "component")]
    user: Option<EntityName>,
    #[serde(
        default,
        rename = "client-id",
        skip_serializing_if = "Option::is_none",
        with = "component"
    )]
    client_id: Option<EntityName>,
    quotas: QuotaValues,
}

/// A component as JSON: absent, `null` (the default entity) or the name.
mod component {
    use super::EntityName;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<EntityName>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(EntityName::Named(n)) => s.serialize_str(n),
            _ => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<EntityName>, D::Error> {
        // Only called when the key is present, so a `null` is the default entity.
        let name: Option<String> = Option::deserialize(d)?;
        Ok(Some(match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n),
        }))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct QuotaFile {
    entities: Vec<FileEntry>,
}

impl QuotaStore {
    /// Loads the quotas kept in the metadata directory `meta` (none if the file is absent).
    pub fn open(meta: &Path) -> Result<QuotaStore, QuotaStoreError> {
        let path = crate::meta::MetaDir::at(meta).client_quotas();
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: QuotaFile =
                    serde_json::from_slice(&bytes).map_err(|e| QuotaStoreError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                let mut entries = BTreeMap::new();
                for e in file.entities {
                    let entity = QuotaEntity {
                        user: e.user,
                        client_id: e.client_id,
                    };
                    let valid = (entity.user.is_some() || entity.client_id.is_some())
                        && e.quotas.iter().all(|(k, v)| valid_value(k, *v).is_ok());
                    if !valid {
                        return Err(QuotaStoreError::Corrupt {
                            path,
                            message: format!("invalid entry for {entity}"),
                        });
                    }
                    entries.insert(entity, e.quotas);
                }
                entries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(QuotaStoreError::Read { path, source }),
        };
        let any = AtomicBool::new(!entries.is_empty());
        Ok(QuotaStore {
            path,
            entries: RwLock::new(entries),
            any,
        })
    }

    /// Whether any quota is configured.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }

    /// Every entity and its quotas.
    pub fn all(&self) -> Vec<(QuotaEntity, QuotaValues)> {
        self.entries
            .read()
            .iter()
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect()
    }

    /// Applies `changes` and makes them durable before returning; on a write failure nothing
    /// changes.
    pub fn alter(&self, changes: &[QuotaChange]) -> Result<(), QuotaStoreError> {
        let mut entries = self.entries.write();
        let mut next = entries.clone();
        for (entity, ops) in changes {
            let values = next.entry(entity.clone()).or_default();
            for (key, value) in ops {
                match value {
                    Some(v) => {
                        values.insert(key.clone(), *v);
                    }
                    None => {
                        values.remove(key);
                    }
                }
            }
            if values.is_empty() {
                next.remove(entity);
            }
        }
        let file = QuotaFile {
            entities: next
                .iter()
                .map(|(e, q)| FileEntry {
                    user: e.user.clone(),
                    client_id: e.client_id.clone(),
                    quotas: q.clone(),
                })
                .collect(),
        };
        // Serializing plain strings and finite numbers cannot fail.
        let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        crate::meta::write_atomically(&self.path, &bytes).map_err(|source| {
            QuotaStoreError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        self.any.store(!next.is_empty(), Ordering::Relaxed);
        *entries = next;
        Ok(())
    }

    /// The quota of `kind` that applies to `client`, in Kafka's precedence order:
    /// user+client-id, user+default client-id, user, default user+client-id, default
    /// user+default client-id, default user, client-id, default client-id.
    pub fn resolve(&self, kind: QuotaKind, client: Client<'_>) -> Option<Resolved> {
        if self.is_empty() {
            return None;
        }
        let user = || Some(EntityName::Named(client.user.to_string()));
        let client_id = || Some(EntityName::Named(client.client_id.to_string()));
        let default = || Some(EntityName::Default);
        let order = [
            (user(), client_id()),
            (user(), default()),
            (user(), None),
            (default(), client_id()),
            (default(), default()),
            (default(), None),
            (None, client_id()),
            (None, default()),
        ];
        let entries = self.entries.read();
        for (user, client_id) in order {
            let entity = QuotaEntity { user, client_id };
            if let Some(limit) = entries.get(&entity).and_then(|q| q.get(kind.key())) {
                return Some(Resolved {
                    limit: *limit,
                    user: entity.user.is_some().then(|| client.user.to_string()),
                    client_id: entity
                        .client_id
                        .is_some()
                        .then(|| client.client_id.to_string()),
                });
            }
        }
        None
    }
}

/// Checks a quota value for `key`: a known key, positive and finite, a whole number for the
/// byte rates (Kafka's LONG quotas).
pub fn valid_value(key: &str, value: f64) -> Result<(), String> {
    let kind = QuotaKind::from_key(key).ok_or_else(|| {
        format!(
            "unknown quota key '{key}' (Sluice enforces {PRODUCER_BYTE_RATE}, {CONSUMER_BYTE_RATE} and {REQUEST_PERCENTAGE})"
        )
    })?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{key} must be a positive number, got {value}"));
    }
    if kind != QuotaKind::Request && value.fract() != 0.0 {
        return Err(format!("{key} must be a whole number of bytes per second"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Option<EntityName> {
        Some(EntityName::Named(n.to_string()))
    }

    fn set(store: &QuotaStore, user: Option<EntityName>, client_id: Option<EntityName>, v: f64) {
        store
            .alter(&[(
                QuotaEntity { user, client_id },
                vec![(PRODUCER_BYTE_RATE.to_string(), Some(v))],
            )])
            .unwrap();
    }

    fn limit(store: &QuotaStore, user: &str, client_id: &str) -> Option<f64> {
        store
            .resolve(QuotaKind::Produce, Client { user, client_id })
            .map(|r| r.limit)
    }

    #[test]
    fn precedence_is_kafkas_from_most_to_least_specific() {
        let dir = tempfile::tempdir().unwrap();
        let store = QuotaStore::open(dir.path()).unwrap();
        let d = || Some(EntityName::Default);
        // Added least specific first, so each step proves it beats every one before it.
        let levels = [
            (None, d(), 8.0),
            (None, named("app"), 7.0),
            (d(), None, 6.0),
            (d(), d(), 5.0),
            (d(), named("app"), 4.0),
            (named("alice"), None, 3.0),
            (named("alice"), d(), 2.0),
            (named("alice"), named("app"), 1.0),
        ];
        for (user, client_id, v) in levels {
            set(&store, user, client_id, v);
            assert_eq!(limit(&store, "alice", "app"), Some(v));
        }
        // Another user and client id fall to the defaults.
        assert_eq!(limit(&store, "bob", "other"), Some(5.0));
        assert_eq!(limit(&store, "alice", "other"), Some(2.0));
    }

    #[test]
    fn a_default_component_measures_each_name_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = QuotaStore::open(dir.path()).unwrap();
        set(&store, None, Some(EntityName::Default), 100.0);
        let r = store
            .resolve(
                QuotaKind::Produce,
                Client {
                    user: "u",
                    client_id: "c1",
                },
            )
            .unwrap();
        assert_eq!(r.user, None);
        assert_eq!(r.client_id.as_deref(), Some("c1"));
        assert!(store
            .resolve(
                QuotaKind::Fetch,
                Client {
                    user: "u",
                    client_id: "c1"
                }
            )
            .is_none());
    }

    #[test]
    fn quotas_survive_reopening_and_removal_empties_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = QuotaStore::open(dir.path()).unwrap();
        assert!(store.is_empty());
        set(&store, named("alice"), Some(EntityName::Default), 1024.0);
        let reopened = QuotaStore::open(dir.path()).unwrap();
        assert_eq!(reopened.all(), store.all());
        assert_eq!(limit(&reopened, "alice", "x"), Some(1024.0));
        reopened
            .alter(&[(
                QuotaEntity {
                    user: named("alice"),
                    client_id: Some(EntityName::Default),
                },
                vec![(PRODUCER_BYTE_RATE.to_string(), None)],
            )])
            .unwrap();
        assert!(reopened.is_empty());
        assert!(QuotaStore::open(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::meta::MetaDir::at(dir.path()).client_quotas();
        std::fs::write(
            &path,
            br#"{"entities":[{"quotas":{"producer_byte_rate":1}}]}"#,
        )
        .unwrap();
        let e = QuotaStore::open(dir.path()).unwrap_err();
        assert!(matches!(e, QuotaStoreError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn values_are_checked_as_kafka_types_them() {
        assert!(valid_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(valid_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(valid_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(valid_value(CONSUMER_BYTE_RATE, 0.0).is_err());
        assert!(valid_value(CONSUMER_BYTE_RATE, f64::NAN).is_err());
        assert!(valid_value("controller_mutation_rate", 1.0).is_err());
    }
}
