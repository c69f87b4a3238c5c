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
    match objects.put_if_absent(&key(hash), bytes.into()).await {
        // Stored by an earlier deploy of the same module: the key names these very bytes (and
        // every fetch checks them against it).
        Ok(()) | Err(ObjectsError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(ModuleShareError::Objects {
            hash: hash.to_string(),
            source,
        }),
    }
}

/// Makes module `hash` present in this broker's module directory, fetching it from the object
/// store if missing; its bytes are validated and must hash to `hash`. Transforms and WASM sinks
/// both run modules from that directory.
pub async fn ensure_local(
    objects: &Objects,
    broker: &Arc<Broker>,
    hash: &str,
) -> Result<(), ModuleShareError> {
    if broker.transforms.has_module(hash) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest module the engine takes as a transform.
    fn transform_module() -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                (func (export "sluice_abi_version") (result i32) i32.const {})
                (func (export "sluice_alloc") (param i32) (result i32) i32.const 1024)
                (func (export "sluice_init") (param i32 i32) (result i64) i64.const 0)
                (func (export "sluice_on_batch") (param i32 i32) (result i64) i64.const 0))"#,
            crate::wasm::ABI_VERSION
        ))
        .expect("valid WAT")
    }

    #[tokio::test]
    async fn a_module_published_by_one_broker_is_fetched_and_checked_by_another() {
        let objects = Objects::in_memory(1 << 20);
        let (_a_dir, a) = crate::broker::test_broker();
        let (_b_dir, b) = crate::broker::test_broker();
        let b = Arc::new(b);
        let hash = a.transforms.upload_module(&transform_module()).unwrap();
        publish(&objects, &a.transforms, &hash).await.unwrap();
        // Deploying the same module again publishes nothing new and is no error.
        publish(&objects, &a.transforms, &hash).await.unwrap();
        assert!(matches!(
            publish(&objects, &a.transforms, &"0".repeat(64)).await,
            Err(ModuleShareError::NotLocal(_))
        ));

        assert!(b.transforms.module_bytes(&hash).is_none());
        ensure_local(&objects, &b, &hash).await.unwrap();
        assert_eq!(b.transforms.module_bytes(&hash), Some(transform_module()));
        ensure_local(&objects, &b, &hash).await.unwrap();

        // Missing, or stored under a name that is not its hash: refused, nothing kept by name.
        let missing = "1".repeat(64);
        assert!(matches!(
            ensure_local(&objects, &b, &missing).await,
            Err(ModuleShareError::Objects { .. })
        ));
        let forged = "2".repeat(64);
        objects
            .put(&key(&forged), transform_module().into())
            .await
            .unwrap();
        assert!(matches!(
            ensure_local(&objects, &b, &forged).await,
            Err(ModuleShareError::Mismatch { .. })
        ));
        assert!(b.transforms.module_bytes(&forged).is_none());
        objects
            .put(&key(&forged), bytes::Bytes::from_static(b"not wasm"))
            .await
            .unwrap();
        assert!(matches!(
            ensure_local(&objects, &b, &forged).await,
            Err(ModuleShareError::Invalid { .. })
        ));
    }
}
