//! Topic configs end to end: `compression.type` (topic-level, set at create and by
//! IncrementalAlterConfigs, and the broker default from the TOML file) decides the codec of the
//! stored batches, read from the segment files; every record comes back intact; Kafka 3.x topic
//! configs are accepted and described; unknown names and bad values are refused; timestamp
//! bounds refuse records with INVALID_TIMESTAMP. Clients: confluent-kafka and kcat.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run, stored_codecs, tool, workspace_root, Broker, Options};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn python() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka")
}

fn set(codecs: &[&'static str]) -> BTreeSet<&'static str> {
    codecs.iter().copied().collect()
}

#[test]
fn topics_store_batches_in_their_compression_type_and_accept_kafka_3_configs() {
    let Some(python) = python() else {
        return;
    };
    let broker = Broker::start();
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/topic_configs_check.py"))
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(cmd, SCRIPT_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\n{}\nbroker log:\n{}",
        out.stdout,
        out.stderr,
        broker.stderr()
    );
    assert_eq!(out.stdout.trim(), "ok");

    // The script produced with other codecs than each topic's (none, gzip, snappy, lz4, zstd):
    // only the topic's codec is on disk.
    for (topic, codecs) in [
        ("tc-lz4", set(&["lz4"])),
        ("tc-zstd", set(&["zstd"])),
        ("tc-gzip", set(&["gzip"])),
        ("tc-snappy", set(&["snappy"])),
        ("tc-none", set(&["none"])),
        // snappy while compression.type was producer, zstd after IncrementalAlterConfigs.
        ("tc-alter", set(&["snappy", "zstd"])),
    ] {
        assert_eq!(stored_codecs(&broker, topic, 0), codecs, "{topic}");
    }
}

/// kcat's lines `key:value`, produced with `codec`.
fn kcat_produce(broker: &Broker, topic: &str, codec: &str, lines: &[String]) -> Option<()> {
    let mut produce = tool("kcat")?;
    let mut child = produce
        .args([
            "-b",
            &broker.kafka,
            "-P",
            "-t",
            topic,
            "-z",
            codec,
            "-K",
            ":",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat -P");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all((lines.join("\n") + "\n").as_bytes())
        .expect("write lines");
    assert!(child.wait().expect("kcat -P").success(), "{codec}: kcat -P");
    Some(())
}

#[test]
fn the_broker_compression_type_applies_to_topics_that_set_none() {
    let broker = Broker::start_with(Options {
        toml: "\"compression.type\" = \"zstd\"\n\"compression.zstd.level\" = 9\n".into(),
        ..Options::default()
    });
    let topic = "auto-created";
    let mut all = Vec::new();
    for codec in ["none", "gzip", "lz4"] {
        let lines: Vec<String> = (0..50)
            .map(|i| format!("{codec}-{i}:{codec} value {i} {}", "repeats ".repeat(10)))
            .collect();
        if kcat_produce(&broker, topic, codec, &lines).is_none() {
            return;
        }
        all.extend(lines);
    }
    let Some(mut consume) = tool("kcat") else {
        return;
    };
    consume
        .args([
            "-b",
            &broker.kafka,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
        ])
        .args(["-f", "%k:%s\n"]);
    let read = run(consume, Duration::from_secs(60));
    assert!(read.status.success(), "{}", read.stderr);
    assert_eq!(read.stdout, all.join("\n") + "\n");
    assert_eq!(stored_codecs(&broker, topic, 0), set(&["zstd"]));

    // DescribeConfigs says where the topic's codec comes from: the broker's file.
    use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let described = rt
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
        .expect("describe configs");
    let resource = described[0].as_ref().expect("topic described");
    let entry = |name: &str| {
        resource
            .entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} not described"))
    };
    for (name, value) in [
        ("compression.type", "zstd"),
        ("compression.zstd.level", "9"),
    ] {
        let e = entry(name);
        assert_eq!(e.value.as_deref(), Some(value), "{name}");
        assert_eq!(e.source, ConfigSource::StaticBroker, "{name}");
    }
    assert_eq!(
        entry("compression.gzip.level").source,
        ConfigSource::Default
    );
}
