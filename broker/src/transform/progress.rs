//! Where each deployment is in each input partition, and the one file that keeps it,
//! `__sluice/transform-progress.json`.
//!
//! The file is a checkpoint, not a journal: it is written every second or so (and on deploy,
//! remove and shutdown), never per batch. Exactly once does not depend on it being current:
//! outputs are idempotent-producer streams, so re-running inputs from an older checkpoint
//! regenerates outputs the output logs already hold, under the same sequence numbers, and they
//! are dropped as duplicates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::MetaDir;

/// Where a deployment is in one input partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// The next input offset to run.
    pub next_input: i64,
    /// The next sequence number of each output stream (`"<topic>/<partition>"`).
    pub seqs: BTreeMap<String, i32>,
    /// Inputs before the deployment are still being run in the background (`--from`); until it
    /// catches up, new writes to this partition are left to it rather than run inline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfilling: bool,
    /// Where a backfill started, for progress reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_from: Option<i64>,
}

/// Every deployment's progress, by deployment name and input partition.
pub type Progress = BTreeMap<String, BTreeMap<i32, PartitionProgress>>;

/// Bumped on an incompatible change; a newer file is refused rather than misread.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct ProgressFile {
    version: u32,
    deployments: Progress,
}

/// Reads the checkpoint (or, from a data dir of an earlier version, the per-deployment files).
pub fn load(meta: &MetaDir) -> std::io::Result<Progress> {
    let path = meta.transform_progress();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let file: ProgressFile = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid: {e}", path.display()),
                )
            })?;
            if file.version != FORMAT_VERSION {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} has format version {}; this broker reads {FORMAT_VERSION}",
                        path.display(),
                        file.version
                    ),
                ));
            }
            Ok(file.deployments)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => load_legacy(meta),
        Err(e) => Err(e),
    }
}

/// Earlier versions kept `progress/<deployment>.json` each; they are read once, and removed at
/// the first checkpoint.
fn load_legacy(meta: &MetaDir) -> std::io::Result<Progress> {
    let mut all = Progress::new();
    let entries = match std::fs::read_dir(meta.legacy_progress_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        // A damaged legacy file only means more re-running, not a refusal to start.
        if let Ok(p) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            all.insert(name.to_string(), p);
        }
    }
    Ok(all)
}

/// Replaces the checkpoint with `progress`.
pub fn save(meta: &MetaDir, progress: &Progress) -> std::io::Result<()> {
    let file = ProgressFile {
        version: FORMAT_VERSION,
        deployments: progress.clone(),
    };
    let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    crate::meta::write_atomically(&meta.transform_progress(), &json)?;
    let legacy = meta.legacy_progress_dir();
    if legacy.exists() {
        std::fs::remove_dir_all(&legacy)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_replaces_legacy_files() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::at(dir.path());
        std::fs::create_dir_all(meta.legacy_progress_dir()).unwrap();
        std::fs::write(
            meta.legacy_progress_dir().join("up.json"),
            br#"{"0":{"next_input":7,"seqs":{"out/0":3}}}"#,
        )
        .unwrap();
        let legacy = load(&meta).unwrap();
        assert_eq!(legacy["up"][&0].next_input, 7);
        assert_eq!(legacy["up"][&0].seqs["out/0"], 3);
        save(&meta, &legacy).unwrap();
        assert!(!meta.legacy_progress_dir().exists());
        assert_eq!(load(&meta).unwrap(), legacy);
    }
}
