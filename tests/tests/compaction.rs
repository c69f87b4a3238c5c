//! Compacted topics (`cleanup.policy=compact`) against the real broker with stock clients:
//! librdkafka through the `rdkafka` crate, and confluent-kafka from Python. Keys overwritten
//! many times are cleaned by the background cleaner, and a consumer from the start sees every
//! key's latest value at the offset it was written at; tombstones expire; keyless records are
//! refused; compressed and idempotent batches; `kill -9` during cleaning; Connect's topics.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, run, workspace_root, Broker, Options};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A broker whose cleaner looks for work every 50 ms.
fn options(extra: &str) -> Options {
    Options {
        toml: format!("\"log.cleaner.backoff.ms\" = 50\n{extra}"),
        ..Options::default()
    }
}

/// The same, on a fixed free port, so clients keep their connection target across restarts.
fn options_on_fixed_port(extra: &str) -> Options {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Options {
        kafka_port: Some(port),
        ..options(extra)
    }
}

/// Topic configs for a quickly compacted topic.
const COMPACTED: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.bytes", "4096"),
    ("min.cleanable.dirty.ratio", "0.01"),
];

fn create(broker: &Broker, topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin");
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt
        .block_on(admin.create_topics(&[new], &AdminOptions::new()))
        .expect("create topic");
    assert!(result[0].is_ok(), "{result:?}");
}

fn producer(broker: &Broker, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// Produces `(key, value)` records (a `None` value is a tombstone) and returns each one's
/// offset, or the error it got.
fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[(Option<String>, Option<String>)],
) -> Vec<Result<i64, KafkaError>> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut futures = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record: FutureRecord<'_, String, String> = FutureRecord::to(topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            futures.push(producer.send(record, Duration::from_secs(30)));
        }
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            out.push(match f.await {
                Ok(delivery) => Ok(delivery.offset),
                Err((e, _)) => Err(e),
            });
        }
        out
    })
}

/// Produces and requires every record to be acknowledged; records the latest offset and value
/// of each key in `latest`.
fn produce_ok(
    producer: &FutureProducer,
    topic: &str,
    records: &[(Option<String>, Option<String>)],
    latest: &mut BTreeMap<String, (i64, Option<String>)>,
) {
    for (result, (key, value)) in produce(producer, topic, records).into_iter().zip(records) {
        let offset = result.unwrap_or_else(|e| panic!("produce {key:?} to {topic}: {e}"));
        if let Some(k) = key {
            let entry = latest.entry(k.clone()).or_insert((-1, None));
            if offset > entry.0 {
                *entry = (offset, value.clone());
            }
        }
    }
}

/// `rounds` overwrites of `keys` keys, values padded to about `size` bytes, half with hex digits
/// of a simple generator and half repeats, so every codec shrinks them but none to nothing.
fn overwrites(
    prefix: &str,
    keys: usize,
    rounds: std::ops::Range<usize>,
    size: usize,
) -> Vec<(Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for round in rounds {
        for k in 0..keys {
            let mut value = format!("{prefix}{k}-round{round}-");
            let mut x = (k as u64 + 1).wrapping_mul(6364136223846793005) ^ round as u64;
            while value.len() < size / 2 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                value.push_str(&format!("{:x}", x >> 60));
            }
            while value.len() < size {
                value.push_str("-pad");
            }
            out.push((Some(format!("{prefix}{k}")), Some(value)));
        }
    }
    out
}

/// Bytes of segment files of partition 0 of `topic`.
fn log_bytes(broker: &Broker, topic: &str) -> u64 {
    std::fs::read_dir(broker.partition_dir(topic, 0))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What a compacted log of `keys` keys with values of `size` bytes stays under once cleaned:
/// the latest records, twice over for batch overheads, plus the uncleanable active segment and
/// the segments rolled since the last cleaning (`segment.bytes` = 4096).
fn cleaned_size(keys: usize, size: usize) -> u64 {
    (3 * 4096 + 2 * keys * (size + 30)) as u64
}

/// Waits until the stored log of `topic` is under `bytes` (the cleaner has run).
fn wait_cleaned_below(broker: &Broker, topic: &str, bytes: u64) {
    let shrunk = eventually(TIMEOUT, || (log_bytes(broker, topic) < bytes).then_some(()));
    assert!(
        shrunk.is_some(),
        "{topic} still holds {} bytes of log, expected under {bytes}:\n{}",
        log_bytes(broker, topic),
        broker.stderr()
    );
}

/// A record read back: offset, key, value.
type Read = (i64, Option<String>, Option<String>);

/// Everything a consumer from the start reads, up to the high watermark.
fn read_all(broker: &Broker, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "compaction-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let mut got: Vec<Read> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.last().map_or(high > 0, |r| r.0 < high - 1) {
        assert!(Instant::now() < deadline, "read up to {got:?} of {high}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let m = message.expect("consume");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            got.push((m.offset(), text(m.key()), text(m.payload())));
        }
    }
    got
}

/// Asserts a consumer from the start sees, for each key, exactly its latest value (at the
/// offset it was written at) as the last record of that key.
fn assert_latest(got: &[Read], latest: &BTreeMap<String, (i64, Option<String>)>) {
    let mut seen: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    let mut last_offset = -1;
    for (offset, key, value) in got {
        assert!(
            *offset > last_offset,
            "offsets increase: {offset} after {last_offset}"
        );
        last_offset = *offset;
        let key = key.clone().expect("every stored record has a key");
        seen.insert(key, (*offset, value.clone()));
    }
    for (key, want) in latest {
        assert_eq!(seen.get(key), Some(want), "latest of {key}");
    }
    assert_eq!(seen.len(), latest.len(), "no other keys");
}

#[test]
fn overwritten_keys_are_compacted_and_a_reader_from_the_start_sees_the_latest() {
    let broker = Broker::start_with(options(""));
    create(&broker, "table", COMPACTED);
    let p = producer(&broker, &[]);
    let mut latest = BTreeMap::new();
    let records = overwrites("key", 50, 0..40, 60);
    produce_ok(&p, "table", &records, &mut latest);
    wait_cleaned_below(&broker, "table", cleaned_size(50, 60));
    let got = read_all(&broker, "table");
    assert_latest(&got, &latest);
    assert!(
        got.len() < records.len() / 4,
        "{} of {} records left",
        got.len(),
        records.len()
    );
    // Appends go on at the next offset, and the cleaned log survives a restart.
    produce_ok(&p, "table", &overwrites("key", 50, 40..41, 60), &mut latest);
    drop(p);
    let mut broker = broker;
    broker.restart();
    assert_latest(&read_all(&broker, "table"), &latest);
    assert!(broker.stderr().contains("log cleaned"));
}

#[test]
fn tombstones_are_kept_for_delete_retention_ms_then_removed() {
    let broker = Broker::start_with(options(""));
    let mut configs = COMPACTED.to_vec();
    configs.push(("delete.retention.ms", "15000"));
    create(&broker, "deletes", &configs);
    let p = producer(&broker, &[]);
    let mut latest = BTreeMap::new();
    produce_ok(&p, "deletes", &overwrites("t", 10, 0..3, 50), &mut latest);
    let tombstones: Vec<_> = (0..5).map(|k| (Some(format!("t{k}")), None)).collect();
    // No cleaning can have stamped a delete horizon before this, so none passes before
    // `written + delete.retention.ms`.
    let written = Instant::now();
    produce_ok(&p, "deletes", &tombstones, &mut latest);
    // Later writes to other keys roll segments, so the tombstones become cleanable.
    produce_ok(
        &p,
        "deletes",
        &overwrites("filler", 2, 0..60, 200),
        &mut latest,
    );
    wait_cleaned_below(&broker, "deletes", cleaned_size(12, 200));
    let got = read_all(&broker, "deletes");
    // On a machine too loaded to get here within the retention, only the expiry is checked.
    if written.elapsed() < Duration::from_secs(14) {
        assert_latest(&got, &latest);
        for k in 0..5 {
            let key = Some(format!("t{k}"));
            assert_eq!(
                got.iter().filter(|r| r.1 == key).collect::<Vec<_>>(),
                vec![&(latest[&format!("t{k}")].0, key.clone(), None)],
                "only the tombstone of t{k} is left within delete.retention.ms"
            );
        }
    }
    // After delete.retention.ms the cleaner removes them: the deleted keys are gone entirely.
    let gone = eventually(TIMEOUT, || {
        let got = read_all(&broker, "deletes");
        let deleted = |r: &Read| {
            r.1.as_deref()
                .is_some_and(|k| k < "t5" && k.starts_with('t'))
        };
        (!got.iter().any(deleted)).then_some(got)
    })
    .unwrap_or_else(|| panic!("tombstones never expired:\n{}", broker.stderr()));
    for k in 5..10 {
        let key = format!("t{k}");
        assert!(
            gone.iter()
                .any(|r| r.1.as_deref() == Some(&key) && r.2 == latest[&key].1),
            "{key} kept its value"
        );
    }
}

#[test]
fn records_without_a_key_are_refused_and_nothing_of_their_batch_is_stored() {
    let broker = Broker::start_with(options(""));
    create(&broker, "keyed", COMPACTED);
    let p = producer(&broker, &[("linger.ms", "0")]);
    let results = produce(&p, "keyed", &[(None, Some("no key".into()))]);
    assert!(
        matches!(
            results[0],
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidRecord
            ))
        ),
        "{results:?}"
    );
    let ok = produce(&p, "keyed", &[(Some("k".into()), Some("v".into()))]);
    assert_eq!(
        ok[0].as_ref().ok(),
        Some(&0),
        "nothing of the refused batch took an offset"
    );

    let Some(python) = python_clients() else {
        return;
    };
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/compaction_check.py"))
        .args(["keyless", "py-keyed"])
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(cmd, TIMEOUT);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
}

#[test]
fn compressed_idempotent_batches_are_cleaned_in_their_codec_and_the_producer_goes_on_after_a_restart(
) {
    let mut broker = Broker::start_with(options_on_fixed_port(""));
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    let mut producers = Vec::new();
    let mut latest: Vec<BTreeMap<String, (i64, Option<String>)>> = Vec::new();
    for codec in codecs {
        let topic = format!("c-{codec}");
        create(&broker, &topic, COMPACTED);
        let p = producer(
            &broker,
            &[("enable.idempotence", "true"), ("compression.type", codec)],
        );
        let mut l = BTreeMap::new();
        produce_ok(&p, &topic, &overwrites(codec, 30, 0..30, 120), &mut l);
        wait_cleaned_below(&broker, &topic, cleaned_size(30, 120));
        assert_latest(&read_all(&broker, &topic), &l);
        let stored = common::stored_codecs(&broker, &topic, 0);
        assert!(stored.contains(codec), "{codec}: {stored:?}");
        // Batches emptied for the producer state are headers only, with no codec.
        assert!(
            stored.iter().all(|c| *c == codec || *c == "none"),
            "{codec}: {stored:?}"
        );
        producers.push(p);
        latest.push(l);
    }
    broker.restart();
    for ((codec, p), l) in codecs.iter().zip(&producers).zip(&mut latest) {
        let topic = format!("c-{codec}");
        produce_ok(p, &topic, &overwrites(codec, 30, 30..40, 120), l);
        p.flush(Duration::from_secs(30)).expect("flush");
        assert_latest(&read_all(&broker, &topic), l);
    }
}

#[test]
fn kill_9_during_cleaning_loses_no_latest_value() {
    // Throttled I/O keeps each cleaning running for a while, so the kills land inside one.
    let mut broker = Broker::start_with(options_on_fixed_port(
        "\"log.cleaner.io.max.bytes.per.second\" = 300000\n",
    ));
    create(&broker, "crashy", COMPACTED);
    let mut latest = BTreeMap::new();
    let mut mid_clean = 0;
    for cycle in 0..5 {
        let p = producer(&broker, &[("acks", "all")]);
        produce_ok(
            &p,
            "crashy",
            &overwrites("key", 100, cycle * 8..(cycle + 1) * 8, 200),
            &mut latest,
        );
        drop(p);
        let dir = broker.partition_dir("crashy", 0);
        let cleaning = eventually(Duration::from_secs(20), || {
            std::fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".cleaned"))
                .then_some(())
        });
        mid_clean += usize::from(cleaning.is_some());
        broker.kill9();
        broker.start_again();
        assert_latest(&read_all(&broker, "crashy"), &latest);
    }
    assert!(mid_clean >= 3, "only {mid_clean} of 5 kills hit a cleaning");
    wait_cleaned_below(&broker, "crashy", cleaned_size(100, 200));
    assert_latest(&read_all(&broker, "crashy"), &latest);
}

#[test]
fn kafka_connect_internal_topics_are_accepted() {
    let broker = Broker::start_with(options(""));
    let Some(python) = python_clients() else {
        return;
    };
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/compaction_check.py"))
        .arg("connect")
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(cmd, TIMEOUT);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
}

fn python_clients() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka")
}
