//! Stream-processing frameworks from the Kafka ecosystem against the real broker: a Quix
//! Streams stateful application (its state in RocksDB backed by a compacted changelog topic it
//! creates itself), counting per key and rebuilding its store from the changelog after its
//! local state is thrown away, at least once and exactly once (transactions).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{run, workspace_root, Broker, Options};

/// The Python interpreter of Quix Streams' own venv (it pins an older confluent-kafka than the
/// other Python tests), or `None` (skipped) outside CI.
fn quix_python() -> Option<String> {
    let python = std::env::var_os("QUIX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/python/.venv-quix/bin/python"));
    common::python_importing(&python.to_string_lossy(), "quixstreams")
}

fn quix_app(guarantee: &str) {
    let Some(python) = quix_python() else {
        return;
    };
    let broker = Broker::start_with(Options {
        toml: "\"log.cleaner.backoff.ms\" = 50\n".to_string(),
        ..Options::default()
    });
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/quix_check.py"))
        .arg(guarantee)
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(cmd, Duration::from_secs(240));
    assert!(
        out.status.success(),
        "{}\n{}\nbroker log:\n{}",
        out.stdout,
        out.stderr,
        broker.stderr()
    );
    assert_eq!(
        out.stdout.trim().lines().last(),
        Some("ok"),
        "{}",
        out.stdout
    );
}

#[test]
fn quix_streams_stateful_app_counts_per_key_and_recovers_its_store_from_the_changelog() {
    quix_app("at-least-once");
}

#[test]
fn quix_streams_exactly_once_app_commits_each_count_in_a_transaction() {
    // `processing_guarantee="exactly-once"`: Quix's producer is transactional and commits the
    // consumed offsets with its outputs (sendOffsetsToTransaction); the check reads with
    // `read_committed`.
    quix_app("exactly-once");
}
