//! The catalog file, `<data dir>/__sluice/topics.json`: every topic's name, id, partition count
//! and dynamic configs, rewritten whole and atomically on each change.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::topic_config;
use super::{validate_topic_name, TopicError, MAX_PARTITIONS};

/// Bumped on an incompatible change; a file from a newer Sluice is refused rather than misread.
const FORMAT_VERSION: u32 = 1;

/// The file as stored.
#[derive(Debug, Serialize, Deserialize)]
struct CatalogFile {
    /// [`FORMAT_VERSION`] of the writer.
    version: u32,
    /// Sorted by name so the file diffs cleanly.
    topics: Vec<TopicRecord>,
}

/// One topic as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopicRecord {
    /// The topic name, also the prefix of its partition directories.
    pub(crate) name: String,
    /// Stored as a hyphenated string so the file stays readable.
    pub(crate) id: uuid::Uuid,
    /// Partitions `0..partitions` exist.
    pub(crate) partitions: i32,
    /// Only the configs set on the topic; defaults come from the broker config at each start,
    /// so changing a broker default reaches every topic that does not override it.
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, String>,
}

pub(crate) fn catalog_path(data_dir: &Path) -> PathBuf {
    crate::meta::MetaDir::of(data_dir).topics()
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> TopicError {
    TopicError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "corrupt topic catalog {}: {why}; refusing to start rather than lose topics",
            path.display()
        ),
    ))
}

/// Reads the catalog; a missing file is an empty catalog (a fresh data dir). Anything unreadable
/// is an error naming the file: starting without it would silently drop topics.
pub(crate) fn load(data_dir: &Path) -> Result<Vec<TopicRecord>, TopicError> {
    let path = catalog_path(data_dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(TopicError::Io(io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            )))
        }
    };
    let file: CatalogFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(
            &path,
            format!("unsupported format version {}", file.version),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for t in &file.topics {
        validate_topic_name(&t.name).map_err(|e| corrupt(&path, e))?;
        if !(1..=MAX_PARTITIONS).contains(&t.partitions) {
            return Err(corrupt(
                &path,
                format!("topic {} has {} partitions", t.name, t.partitions),
            ));
        }
        for (k, v) in &t.configs {
            topic_config::validate_config(k, v)
                .map_err(|e| corrupt(&path, format!("topic {}: {e}", t.name)))?;
        }
        if !names.insert(t.name.as_str()) || !ids.insert(t.id) {
            return Err(corrupt(&path, format!("topic {} appears twice", t.name)));
        }
    }
    Ok(file.topics)
}

/// Replaces the catalog with `topics`, atomically: a crash leaves the old or the new file.
pub(crate) fn save(data_dir: &Path, topics: &[TopicRecord]) -> Result<(), TopicError> {
    let meta = crate::meta::MetaDir::of(data_dir);
    fs::create_dir_all(meta.root())?;
    let file = CatalogFile {
        version: FORMAT_VERSION,
        topics: topics.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    crate::meta::write_atomically(&meta.topics(), &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, partitions: i32) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        }
    }

    #[test]
    fn saved_catalog_loads_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let topics = vec![record("a", 1), record("b.c_d-e", 12)];
        save(dir.path(), &topics).unwrap();
        assert_eq!(load(dir.path()).unwrap(), topics);
        save(dir.path(), &topics[..1]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), topics[..1]);
    }

    #[test]
    fn corrupt_catalog_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(crate::meta::META_DIR)).unwrap();
        for bad in [
            "{not json".to_string(),
            r#"{"version":99,"topics":[]}"#.to_string(),
            format!(
                r#"{{"version":1,"topics":[{{"name":"..","id":"{}","partitions":1}}]}}"#,
                uuid::Uuid::new_v4()
            ),
            format!(
                r#"{{"version":1,"topics":[{{"name":"t","id":"{}","partitions":0}}]}}"#,
                uuid::Uuid::new_v4()
            ),
            format!(
                r#"{{"version":1,"topics":[{{"name":"t","id":"{}","partitions":1,"configs":{{"cleanup.policy":"shred"}}}}]}}"#,
                uuid::Uuid::new_v4()
            ),
        ] {
            fs::write(catalog_path(dir.path()), &bad).unwrap();
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("topics.json"), "{bad}: {err}");
        }
    }

    #[test]
    fn duplicate_topics_in_the_file_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let a = record("a", 1);
        let mut b = record("a", 2);
        b.id = uuid::Uuid::new_v4();
        save(dir.path(), &[a, b]).unwrap();
        assert!(load(dir.path()).is_err());
    }
}
