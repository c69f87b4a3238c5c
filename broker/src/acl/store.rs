//! The durable set of ACL bindings (`data/__sluice/acls.json`): every change is written with
//! `write_atomically` before it is applied in memory, so an answered CreateAcls or DeleteAcls
//! survives a crash and a failed write changes nothing.

use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::binding::{AclBinding, AclFilter};
use crate::meta::write_atomically;

/// The file's format version.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct AclFile {
    version: u32,
    acls: Vec<AclBinding>,
}

/// Why the bindings cannot be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ACL file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot save ACLs: {0}")]
    Write(std::io::Error),
}

/// The bindings, in memory and on disk.
#[derive(Debug)]
pub struct AclStore {
    /// `acls.json`.
    path: PathBuf,
    /// What the authorizer reads on every request.
    bindings: RwLock<Vec<AclBinding>>,
    /// Serializes changes, so two writers cannot save interleaved versions of the file.
    writer: Mutex<()>,
}

impl AclStore {
    /// Loads `path`, or starts empty where it does not exist.
    pub fn open(path: &Path) -> Result<AclStore, AclStoreError> {
        let bindings = match std::fs::read(path) {
            Ok(bytes) => {
                let file: AclFile =
                    serde_json::from_slice(&bytes).map_err(|e| AclStoreError::Corrupt {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                if file.version != FORMAT_VERSION {
                    return Err(AclStoreError::Corrupt {
                        path: path.to_path_buf(),
                        message: format!("unknown format version {}", file.version),
                    });
                }
                file.acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(AclStoreError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(AclStore {
            path: path.to_path_buf(),
            bindings: RwLock::new(bindings),
            writer: Mutex::new(()),
        })
    }

    /// Runs `f` over the current bindings.
    pub fn with<T>(&self, f: impl FnOnce(&[AclBinding]) -> T) -> T {
        f(&self.bindings.read())
    }

    /// The bindings `filter` selects.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.with(|all| all.iter().filter(|b| filter.matches(b)).cloned().collect())
    }

    /// Adds `new` (those already present are kept once), durably.
    pub fn create(&self, new: &[AclBinding]) -> Result<(), AclStoreError> {
        self.change(|all| {
            for binding in new {
                if !all.contains(binding) {
                    all.push(binding.clone());
                }
            }
        })
        .map(drop)
    }

    /// Removes what each filter selects, durably; answers the removed bindings per filter.
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        self.change(|all| {
            let per_filter: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            all.retain(|b| !filters.iter().any(|f| f.matches(b)));
            per_filter
        })
    }

    /// Applies `edit` to a copy, saves the copy, then makes it the current set.
    fn change<T>(&self, edit: impl FnOnce(&mut Vec<AclBinding>) -> T) -> Result<T, AclStoreError> {
        let _writer = self.writer.lock();
        let mut next = self.bindings.read().clone();
        let answer = edit(&mut next);
        let file = AclFile {
            version: FORMAT_VERSION,
            acls: next,
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AclStoreError::Write(std::io::Error::other(e)))?;
        write_atomically(&self.path, &bytes).map_err(AclStoreError::Write)?;
        *self.bindings.write() = file.acls;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::binding::{Operation, PatternType, Permission, ResourceType};

    fn read_orders() -> AclBinding {
        AclBinding::new(2, "orders", 3, "User:alice", "*", 3, 3).expect("valid binding")
    }

    #[test]
    fn created_bindings_survive_reopening_and_deleted_ones_stay_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("acls.json");
        let store = AclStore::open(&path).expect("open");
        let write = AclBinding::new(2, "logs-", 4, "User:bob", "*", 4, 3).expect("valid");
        store
            .create(&[read_orders(), write.clone(), read_orders()])
            .expect("create");
        let reopened = AclStore::open(&path).expect("reopen");
        assert_eq!(reopened.with(|b| b.to_vec()), vec![read_orders(), write]);
        let removed = reopened
            .delete(&[AclFilter {
                resource_type: ResourceType::Any,
                resource_name: None,
                pattern_type: PatternType::Prefixed,
                principal: None,
                host: None,
                operation: Operation::Any,
                permission: Permission::Any,
            }])
            .expect("delete");
        assert_eq!(removed[0].len(), 1);
        let again = AclStore::open(&path).expect("reopen");
        assert_eq!(again.with(|b| b.to_vec()), vec![read_orders()]);
    }

    #[test]
    fn a_corrupt_file_is_refused_not_emptied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("acls.json");
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(
            AclStore::open(&path),
            Err(AclStoreError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"{not json");
    }
}
