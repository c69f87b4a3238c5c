//! Transforms with state, end to end: the `counter` example counts every input exactly once
//! across repeated `kill -9` under load and carries on after a clean restart; `dedup` drops
//! duplicates across a restart; `enrich` joins with a `--table` topic and sees its updates; a
//! store over its `--state-max-bytes` fails the batch with a clear error.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    create_topic, eventually, guest_module, http, transform_cli, unused_port, Broker, Options,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

fn deploy(broker: &Broker, module: &str, args: &[&str]) -> common::Run {
    let path = guest_module(module).to_string_lossy().to_string();
    let mut all = vec!["deploy", path.as_str()];
    all.extend_from_slice(args);
    transform_cli(broker, &all)
}

fn deployed(broker: &Broker, module: &str, args: &[&str]) {
    let out = deploy(broker, module, args);
    assert!(
        out.status.success(),
        "deploy failed: {}\n{}",
        out.stdout,
        out.stderr
    );
}

fn describe(broker: &Broker, name: &str) -> serde_json::Value {
    let (status, body) = http(
        "GET",
        &format!("http://{}/v1/transforms/{name}", broker.http),
        None,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("describe is JSON")
}

/// A stored record: key, value, headers.
type Read = (String, String, Vec<(String, String)>);

/// Every record of `topic` partition 0, from the start to the high watermark.
fn read_all(broker: &Broker, topic: &str) -> Vec<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "stateful-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "1")
        .create()
        .expect("consumer");
    let (_, high) = c.fetch_watermarks(topic, 0, TIMEOUT).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut next = 0;
    while next < high && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let text = |b: Option<&[u8]>| {
                b.map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), text(h.value)))
                        .collect()
                })
                .unwrap_or_default();
            next = m.offset() + 1;
            out.push((text(m.key()), text(m.payload()), headers));
        }
    }
    assert!(next >= high, "{topic}: read {next} of {high} records");
    out
}

fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Produces `(key, value)` pairs to partition 0 and waits for every ack.
fn produce(broker: &Broker, topic: &str, records: &[(&str, &str)]) {
    let p = producer(broker);
    for (k, v) in records {
        p.send(BaseRecord::to(topic).partition(0).key(*k).payload(*v))
            .expect("queue");
    }
    p.flush(TIMEOUT).expect("every record acknowledged");
}

/// Per key, the counts the output carries, in order.
fn counts_by_key(out: &[Read]) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, v, _) in out {
        by_key
            .entry(k.clone())
            .or_default()
            .push(v.parse().expect("a count"));
    }
    by_key
}

/// Per key, how many inputs are stored.
fn inputs_by_key(input: &[Read]) -> BTreeMap<String, u64> {
    let mut n: BTreeMap<String, u64> = BTreeMap::new();
    for (k, _, _) in input {
        *n.entry(k.clone()).or_default() += 1;
    }
    n
}

/// Every stored input counted exactly once: each key's counts are 1, 2, ..., its inputs.
fn assert_counted_exactly_once(broker: &Broker) -> BTreeMap<String, u64> {
    let inputs = inputs_by_key(&read_all(broker, "clicks"));
    let counts = counts_by_key(&read_all(broker, "counts"));
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        counts.keys().collect::<Vec<_>>()
    );
    for (key, n) in &inputs {
        let got = &counts[key];
        // The first count out of place and its neighbours (a full list is too long to read).
        let wrong = got
            .iter()
            .enumerate()
            .find(|(i, c)| **c != *i as u64 + 1)
            .map(|(i, _)| (i, got[i.saturating_sub(2)..(i + 3).min(got.len())].to_vec()));
        if let Some(keep) = std::env::var_os("STATEFUL_KEEP") {
            if wrong.is_some() || got.len() as u64 != *n {
                let _ = std::process::Command::new("cp")
                    .arg("-r")
                    .arg(broker.data.path())
                    .arg(keep)
                    .status();
            }
        }
        assert!(
            wrong.is_none() && got.len() as u64 == *n,
            "key {key}: {n} inputs, {} counts, first out of place: {wrong:?}",
            got.len()
        );
    }
    inputs
}

#[test]
fn counts_are_exact_after_repeated_kill9_under_load_and_continue_after_a_restart() {
    let mut broker = Broker::start_with(Options {
        kafka_port: Some(unused_port()),
        ..Options::default()
    });
    create_topic(&broker, "clicks", 1);
    deployed(
        &broker,
        "counter",
        &[
            "--name", "counter", "--input", "clicks", "--output", "counts",
        ],
    );
    let d = describe(&broker, "counter");
    assert_eq!(d["store"]["changelog"], "__sluice-state-counter", "{d}");

    // A producer keeps writing keyed clicks while the broker is killed three times; what it
    // could not get acknowledged is simply not counted (nor stored).
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let kafka = broker.kafka.clone();
        std::thread::spawn(move || {
            // No local message timeout: every queued click is eventually sent to the broker
            // that runs last, and the final flush returns once each request is answered, so
            // nothing is still being written when the topics are read.
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &kafka)
                .set("acks", "all")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "0")
                .set("reconnect.backoff.max.ms", "100")
                .create()
                .expect("producer");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("user{}", i % 7);
                let _ = p.send(
                    BaseRecord::to("clicks")
                        .partition(0)
                        .key(&key)
                        .payload("click"),
                );
                p.poll(Duration::ZERO);
                i += 1;
                if i.is_multiple_of(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            p.flush(Duration::from_secs(120)).is_ok()
        })
    };
    let high = |broker: &Broker| {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.kafka)
            .create()
            .expect("consumer");
        c.fetch_watermarks("clicks", 0, Duration::from_secs(5))
            .map(|w| w.1)
            .unwrap_or(0)
    };
    for round in 1..=3 {
        let target = round * 3000;
        let reached = eventually(TIMEOUT, || (high(&broker) >= target).then_some(()));
        assert!(
            reached.is_some(),
            "round {round}: the load never reached {target}"
        );
        broker.kill9();
        broker.start_again();
    }
    let reached = eventually(TIMEOUT, || (high(&broker) >= 10_000).then_some(()));
    assert!(
        reached.is_some(),
        "the load did not resume after the last restart"
    );
    stop.store(true, Ordering::Relaxed);
    assert!(
        load.join().expect("producer thread"),
        "the load's last clicks were not all answered"
    );

    let inputs = assert_counted_exactly_once(&broker);
    assert!(inputs.values().sum::<u64>() >= 10_000);

    // A clean restart: the store comes back from the changelog, counts continue.
    broker.restart();
    produce(&broker, "clicks", &[("user0", "click"), ("new", "click")]);
    let after = assert_counted_exactly_once(&broker);
    assert_eq!(after["user0"], inputs["user0"] + 1);
    assert_eq!(after["new"], 1);
    let d = describe(&broker, "counter");
    assert_eq!(d["store"]["keys"], 8, "{d}");
}

#[test]
fn dedup_drops_duplicates_across_a_restart() {
    let mut broker = Broker::start();
    create_topic(&broker, "orders", 1);
    deployed(
        &broker,
        "dedup",
        &[
            "--name",
            "dedup",
            "--input",
            "orders",
            "--output",
            "orders-unique",
        ],
    );
    produce(
        &broker,
        "orders",
        &[("o1", "a"), ("o2", "b"), ("o1", "a again"), ("o3", "c")],
    );
    broker.restart();
    produce(
        &broker,
        "orders",
        &[
            ("o2", "b again"),
            ("o4", "d"),
            ("o3", "c again"),
            ("o4", "d again"),
        ],
    );
    let unique: Vec<(String, String)> = read_all(&broker, "orders-unique")
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    let expected: Vec<(String, String)> = [("o1", "a"), ("o2", "b"), ("o3", "c"), ("o4", "d")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(unique, expected);
}

#[test]
fn a_table_join_sees_the_tables_latest_values() {
    let broker = Broker::start();
    create_topic(&broker, "events", 1);
    let refused = deploy(
        &broker,
        "enrich",
        &[
            "--name", "enrich", "--input", "events", "--output", "enriched", "--table", "users",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("table topic 'users' does not exist"),
        "{}",
        refused.stderr
    );

    create_topic(&broker, "users", 2);
    produce(&broker, "users", &[("u1", "Ada"), ("u2", "Alan")]);
    deployed(
        &broker,
        "enrich",
        &[
            "--name",
            "enrich",
            "--input",
            "events",
            "--output",
            "enriched",
            "--table",
            "users",
            "--env",
            "TABLE=users",
        ],
    );
    produce(&broker, "events", &[("u1", "login"), ("u3", "login")]);
    produce(&broker, "users", &[("u1", "Grace")]);
    produce(&broker, "events", &[("u1", "logout"), ("u2", "login")]);

    let out: Vec<(String, String)> = read_all(&broker, "enriched")
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    let expected: Vec<(String, String)> = [
        ("u1", "login|Ada"),
        ("u3", "login"),
        ("u1", "logout|Grace"),
        ("u2", "login|Alan"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(out, expected);
    assert_eq!(describe(&broker, "enrich")["tables"][0], "users");
}

#[test]
fn a_store_over_its_cap_fails_the_batch_with_a_clear_error() {
    let broker = Broker::start();
    create_topic(&broker, "clicks", 1);
    deployed(
        &broker,
        "counter",
        &[
            "--name",
            "capped",
            "--input",
            "clicks",
            "--output",
            "counts",
            "--state-max-bytes",
            "1KiB",
        ],
    );
    assert_eq!(describe(&broker, "capped")["store"]["max_bytes"], 1024);
    // 100 keys of 11 bytes with a 1-byte count: over 1 KiB before the last.
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i:07}")).collect();
    let p = producer(&broker);
    for k in &keys {
        p.send(BaseRecord::to("clicks").partition(0).key(k).payload("x"))
            .expect("queue");
        p.flush(TIMEOUT).expect("flush");
    }
    drop(p);
    let d = describe(&broker, "capped");
    let error = d["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("over its cap of 1024 bytes (--state-max-bytes)"),
        "{d}"
    );
    // The failing produces were rejected (policy reject): only what fit was stored, and
    // each of those counted.
    let stored = read_all(&broker, "clicks").len();
    assert!(stored > 0 && stored < keys.len(), "{stored} stored");
    let used = d["store"]["used_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(used <= 1024, "{d}");
    assert_eq!(read_all(&broker, "counts").len(), stored);

    // Removing the deployment removes its changelog.
    let topics = |broker: &Broker| -> Vec<String> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.kafka)
            .create()
            .expect("consumer");
        c.fetch_metadata(None, TIMEOUT)
            .expect("metadata")
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    };
    assert!(topics(&broker).contains(&"__sluice-state-capped".to_string()));
    let (status, _) = http(
        "DELETE",
        &format!("http://{}/v1/transforms/capped", broker.http),
        None,
    );
    assert_eq!(status, 204);
    assert!(!topics(&broker).contains(&"__sluice-state-capped".to_string()));
}
