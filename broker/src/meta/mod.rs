//! The one owner of `<data dir>/__sluice/`: every file Sluice keeps there is named here, and
//! every one is replaced with [`write_atomically`].
//!
//! | name | holder | what |
//! | --- | --- | --- |
//! | `lock` | `cli::serve` | held (`flock`) while a broker runs on the data dir |
//! | `cluster-id` | `cli::serve` | the cluster id reported in Metadata |
//! | `producer-ids` | [`crate::producer_ids`] | end of the reserved producer-id block |
//! | `topics.json` | [`crate::catalog`] | topics, partition counts, dynamic configs |
//! | `offsets.log` | [`crate::group`] | committed offsets, CRC-framed, append-only |
//! | `transforms.json` | [`crate::transform`] | transform deployments |
//! | `transform-progress.json` | [`crate::transform`] | per deployment and input partition: next input, output sequences |
//! | `modules/<sha256>.wasm` | [`crate::transform`] | uploaded guest modules |
//! | `connectors.json` | [`crate::connect`] | connectors, their configs and target states |
//! | `connect-offsets/<name>.json` | [`crate::connect`] | a source connector's file position |
//! | `scram-credentials.json` | [`crate::auth`] | SCRAM credentials: salt, stored key, server key |
//! | `transactions.log` | [`crate::txn`] | transactional ids and their transactions, CRC-framed, append-only (fsync per transition) |
//! | `client-quotas.json` | [`crate::quota`] | client quotas per user and/or client id (AlterClientQuotas) |
//! | `acls.json` | [`crate::acl`] | ACL bindings (CreateAcls / DeleteAcls) |

mod atomic;
pub(crate) mod framed;

use std::path::{Path, PathBuf};

pub use atomic::{sync_dir, write_atomically};

/// The directory under the data dir that holds Sluice's own metadata. Its name cannot be a
/// partition directory (those end in `-<partition>`), so it never collides with a topic.
pub const META_DIR: &str = "__sluice";

/// Paths of the files under `__sluice/`.
#[derive(Debug, Clone)]
pub struct MetaDir {
    /// `<data dir>/__sluice`.
    root: PathBuf,
}

impl MetaDir {
    /// The metadata directory of `data_dir` (not created).
    pub fn of(data_dir: &Path) -> MetaDir {
        MetaDir {
            root: data_dir.join(META_DIR),
        }
    }

    /// A metadata directory at exactly `root` (tests that keep metadata in a temp dir).
    pub fn at(root: &Path) -> MetaDir {
        MetaDir {
            root: root.to_path_buf(),
        }
    }

    /// Creates the directory and the subdirectories files are kept in.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.modules())?;
        std::fs::create_dir_all(self.connect_offsets())?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn cluster_id(&self) -> PathBuf {
        self.root.join("cluster-id")
    }
    pub fn producer_ids(&self) -> PathBuf {
        self.root.join("producer-ids")
    }
    pub fn topics(&self) -> PathBuf {
        self.root.join("topics.json")
    }
    pub fn offsets_log(&self) -> PathBuf {
        self.root.join("offsets.log")
    }
    pub fn transforms(&self) -> PathBuf {
        self.root.join("transforms.json")
    }
    pub fn transform_progress(&self) -> PathBuf {
        self.root.join("transform-progress.json")
    }
    /// The per-deployment progress files of earlier versions, read once and removed.
    pub fn legacy_progress_dir(&self) -> PathBuf {
        self.root.join("progress")
    }
    pub fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }
    /// `hash` must be hex (checked by the caller): it becomes a file name.
    pub fn module(&self, hash: &str) -> PathBuf {
        self.modules().join(format!("{hash}.wasm"))
    }
    pub fn connectors(&self) -> PathBuf {
        self.root.join("connectors.json")
    }
    pub fn connect_offsets(&self) -> PathBuf {
        self.root.join("connect-offsets")
    }
    pub fn scram_credentials(&self) -> PathBuf {
        self.root.join("scram-credentials.json")
    }
    pub fn transactions(&self) -> PathBuf {
        self.root.join("transactions.log")
    }
    pub fn client_quotas(&self) -> PathBuf {
        self.root.join("client-quotas.json")
    }
    pub fn acls(&self) -> PathBuf {
        self.root.join("acls.json")
    }
}
