//! Guest modules shared through the object store: stored once under `modules/<sha256>` (a
//! content address, so a PUT-if-absent of the same bytes is always right), fetched by hash
//! into a broker's local module directory on first use, then checked against their name.

use std::sync::Arc;

use super::objects::{Objects, ObjectsError};
use crate::broker::Broker;
use crate::transform::{DeployError, TransformRegistry};

/// Where modules live in the bucket; the maintenance sweep never looks here.
pub const MODULE_PREFIX: &str = "modules/";

/// Why a module could not be shared or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ModuleShareError {
    #[error("no module with hash {0} was uploaded to this broker")]
    NotLocal(String),
    #[error("module {hash} in the object store: {source}")]
    Objects {
        hash: String,
        #[source]
        source: ObjectsError,
    },
    #[error("module {expected} in the object store holds module {found}")]
    Mismatch { expected: String, found: String },
    #[error("module {hash} from the object store: {source}")]
    Invalid {
        hash: String,
        #[source]
        source: DeployError,
    },
}

fn key(hash: &str) -> String {
    format!("{MODULE_PREFIX}{hash}")
}

/// Stores this broker's uploaded module `hash` in the object store (if it is not there yet),
/// so every broker can fetch it.
pub async fn publish(
    objects: &Objects,
    registry: &TransformRegistry,
    hash: &str,
) -> Result<(), ModuleShareError> {
    let bytes = registry
        .module_bytes(hash)
        .ok_or_else(|| ModuleShareError::NotLocal(hash.to_string()))?;
    objects
        .put_if_absent(&key(hash), bytes.into())
        .await
        .map_err(|source| ModuleShareError::Objects {
            hash: hash.to_string(),
            source,
        })
}

/// Makes module `hash` present in this broker's module directory, fetching it from the object
/// store if missing; its bytes are validated and must hash to `hash`. Transforms and WASM sinks
/// both run modules from that directory.
pub async fn ensure_local(
    objects: &Objects,
    broker: &Arc<Broker>,
    hash: &str,
) -> Result<(), ModuleShareError> {
    if broker.transforms.module_bytes(hash).is_some() {
        return Ok(());
    }
    let bytes = objects
        .get(&key(hash))
        .await
        .map_err(|source| ModuleShareError::Objects {
            hash: hash.to_string(),
            source,
        })?;
    let b = broker.clone();
    // Compiling is CPU work: off the async workers.
    let stored = tokio::task::spawn_blocking(move || b.transforms.upload_module(&bytes))
        .await
        .map_err(|e| ModuleShareError::Invalid {
            hash: hash.to_string(),
            source: DeployError::Io(std::io::Error::other(e.to_string())),
        })?
        .map_err(|source| ModuleShareError::Invalid {
            hash: hash.to_string(),
            source,
        })?;
    if !stored.eq_ignore_ascii_case(hash) {
        return Err(ModuleShareError::Mismatch {
            expected: hash.to_string(),
            found: stored,
        });
    }
    Ok(())
}
