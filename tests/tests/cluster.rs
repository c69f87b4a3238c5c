//! Cluster mode end to end: three stateless brokers on one PostgreSQL and one S3 store
//! (SeaweedFS), driven by stock clients — produced through one broker, consumed through
//! another; brokers, PostgreSQL and the store killed, paused and restarted under load, and every
//! acknowledged record read back at its offset.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{default_python, eventually, python_importing, run, tool, workspace_root};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Records each acknowledged (offset, key), and counts the failures.
struct Acks {
    acked: Acked,
    failed: Failed,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                self.acked.lock().expect("acks").push((m.offset(), key));
            }
            Err((e, _)) => self.failed.lock().expect("failures").push(e.to_string()),
        }
    }
}

/// Acknowledged (offset, key)s, shared with the producer's delivery callback.
type Acked = Arc<Mutex<Vec<(i64, String)>>>;
/// Delivery failures, shared likewise.
type Failed = Arc<Mutex<Vec<String>>>;

fn idempotent_producer(bootstrap: &str) -> (BaseProducer<Acks>, Acked, Failed) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Long enough to ride out a restarted PostgreSQL or object store.
        .set("message.timeout.ms", "60000")
        .create_with_context(Acks {
            acked: acked.clone(),
            failed: failed.clone(),
        })
        .expect("producer");
    (producer, acked, failed)
}

/// Reads `topic`-`partition` from the beginning through `bootstrap` until `count` records
/// arrived; (offset, key, value) in order.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    count: usize,
) -> Vec<(i64, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = match message {
                Ok(m) => m,
                // librdkafka reports a connection to a dead broker (one Metadata still lists
                // until its lease lapses) this way, then goes on through the live ones.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                )) => continue,
                Err(e) => panic!("fetched record: {e}"),
            };
            got.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            ));
        }
    }
    got
}

/// Sends `count` records `k<i>` = `v<i>` and waits for every acknowledgement.
fn produce_all(producer: &BaseProducer<Acks>, topic: &str, count: usize) {
    for i in 0..count {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        common::send_queued(producer, BaseRecord::to(topic).key(&key).payload(&value));
    }
    producer.flush(TIMEOUT).expect("every record acknowledged");
}

/// Every acknowledged record is at its acknowledged offset, none twice, values matching keys.
fn assert_acknowledged_at_their_offsets(
    acked: &[(i64, String)],
    read: &[(i64, String, String)],
    logs: &str,
) {
    let mut by_offset = BTreeMap::new();
    for (offset, key, value) in read {
        assert_eq!(&format!("v{}", &key[1..]), value, "offset {offset}");
        assert!(
            by_offset.insert(*offset, key.clone()).is_none(),
            "offset {offset} read twice"
        );
    }
    let mut keys: Vec<&String> = by_offset.values().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), by_offset.len(), "a record stored twice");
    for (offset, key) in acked {
        assert_eq!(
            by_offset.get(offset),
            Some(key),
            "acknowledged {key} at offset {offset} lost or moved\n{logs}"
        );
    }
}

#[test]
fn three_brokers_start_on_one_database_and_one_bucket() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    assert_eq!(cluster.brokers.len(), 3);
    for broker in &mut cluster.brokers {
        assert!(broker.is_running(), "{}", broker.stderr());
    }
    // Each broker is its own process with its own address; all three share the engines.
    let mut addresses: Vec<&str> = cluster.brokers.iter().map(|b| b.kafka.as_str()).collect();
    addresses.dedup();
    assert_eq!(addresses.len(), 3);
}

#[test]
fn librdkafka_produces_through_one_broker_and_consumes_through_another() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let (producer, acked, failed) = idempotent_producer(cluster.kafka(0));
    produce_all(&producer, "across", 500);
    assert!(failed.lock().expect("failures").is_empty());
    let read = read_all(cluster.kafka(2), "across", 0, 500);
    assert_eq!(read.len(), 500, "{}", cluster.logs());
    let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..500).collect::<Vec<_>>());
    assert_acknowledged_at_their_offsets(&acked.lock().expect("acks"), &read, &cluster.logs());
}

#[test]
fn kcat_produces_through_one_broker_and_consumes_through_another() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let Some(mut produce) = tool("kcat") else {
        return;
    };
    produce.args(["-b", cluster.kafka(1), "-t", "kcat-across", "-P", "-K", ":"]);
    let lines: String = (0..50).map(|i| format!("k{i}:v{i}\n")).collect();
    let input = std::env::temp_dir().join(format!("cluster-kcat-{}.txt", std::process::id()));
    std::fs::write(&input, &lines).expect("kcat input");
    produce.arg("-l").arg(&input);
    let produced = run(produce, TIMEOUT);
    let _ = std::fs::remove_file(&input);
    assert!(produced.status.success(), "{}", produced.stderr);
    let mut consume = tool("kcat").expect("kcat found above");
    consume.args([
        "-b",
        cluster.kafka(2),
        "-t",
        "kcat-across",
        "-C",
        "-o",
        "beginning",
        "-c",
        "50",
        "-e",
        "-f",
        "%o %k %s\n",
    ]);
    let consumed = run(consume, TIMEOUT);
    assert!(consumed.status.success(), "{}", consumed.stderr);
    let expected: String = (0..50).map(|i| format!("{i} k{i} v{i}\n")).collect();
    assert_eq!(consumed.stdout, expected, "{}", cluster.logs());
}

#[test]
fn kafkajs_and_kafka_python_across_brokers() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    // kafkajs produces through broker 0 ...
    let Some(mut node) = tool("node") else {
        return;
    };
    let script = r#"
import { Kafka } from 'kafkajs';
const kafka = new Kafka({ clientId: 'cluster-e2e', brokers: [process.env.BROKER] });
const producer = kafka.producer({ idempotent: true });
await producer.connect();
for (let i = 0; i < 20; i++) {
  await producer.send({ topic: 'js-py', acks: -1, messages: [{ key: `k${i}`, value: `v${i}` }] });
}
await producer.disconnect();
"#;
    node.args(["--input-type=module", "-e", script])
        .current_dir(workspace_root().join("tests/node"))
        .env("BROKER", cluster.kafka(0))
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    let produced = run(node, TIMEOUT);
    assert!(
        produced.status.success(),
        "{}\n{}",
        produced.stderr,
        cluster.logs()
    );
    // ... kafka-python reads through broker 1.
    let Some(python) = python_importing(&default_python(), "kafka") else {
        return;
    };
    let mut py = std::process::Command::new(python);
    py.args([
        "-c",
        r#"
import os, kafka
c = kafka.KafkaConsumer('js-py', bootstrap_servers=os.environ['BROKER'],
                        auto_offset_reset='earliest', consumer_timeout_ms=20000)
got = []
for m in c:
    got.append(f"{m.offset} {m.key.decode()} {m.value.decode()}")
    if len(got) == 20:
        break
print("\n".join(got))
"#,
    ])
    .env("BROKER", cluster.kafka(1));
    let consumed = run(py, TIMEOUT);
    assert!(consumed.status.success(), "{}", consumed.stderr);
    let expected: Vec<String> = (0..20).map(|i| format!("{i} k{i} v{i}")).collect();
    assert_eq!(
        consumed.stdout.lines().collect::<Vec<_>>(),
        expected,
        "{}",
        cluster.logs()
    );
}

/// The tutorial's kafkajs scripts (tests/node/seed/), with their one broker address replaced
/// by the three brokers' bootstrap list, and nothing else changed.
#[test]
fn seed_examples_run_against_a_three_broker_bootstrap_list() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let list = cluster
        .bootstrap()
        .split(',')
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let node_dir = workspace_root().join("tests/node");
    // Copies next to the originals, so `import 'kafkajs'` resolves the same node_modules.
    let copy = |name: &str| {
        let text = std::fs::read_to_string(node_dir.join("seed").join(name)).expect("seed script");
        assert!(
            text.contains("'localhost:9092'"),
            "{name} names localhost:9092"
        );
        let path = node_dir.join(format!(".cluster-{}-{name}", std::process::id()));
        std::fs::write(&path, text.replace("'localhost:9092'", &list)).expect("copy");
        path
    };
    let Some(_) = tool("node") else {
        return;
    };
    let scripts: Vec<_> = ["producer.js", "admin.js"]
        .iter()
        .map(|n| copy(n))
        .collect();
    for script in &scripts {
        let mut cmd = std::process::Command::new("node");
        cmd.arg(script)
            .current_dir(&node_dir)
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
        let ran = run(cmd, TIMEOUT);
        let _ = std::fs::remove_file(script);
        assert!(
            ran.status.success() && ran.stderr.trim().is_empty(),
            "{}: {}\n{}\n{}",
            script.display(),
            ran.stdout,
            ran.stderr,
            cluster.logs()
        );
    }
    let read = read_all(&cluster.bootstrap(), "test-topic", 0, 1);
    assert_eq!(
        read,
        [(0, "key1".to_string(), "Hello KafkaJS user!".to_string())]
    );
}

#[test]
fn a_broker_killed_under_acks_all_load_loses_no_acknowledged_record() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    // The producer knows all three: when broker 0 dies, it carries on through the others.
    let (producer, acked, _failed) = idempotent_producer(&cluster.bootstrap());
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (format!("k{sent}"), format!("v{sent}"));
                let mut record = BaseRecord::to("crash").key(&key).payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(5));
                        }
                    }
                }
                sent += 1;
                producer.poll(Duration::ZERO);
            }
            sent
        })
    };
    let enough = eventually(TIMEOUT, || {
        (acked.lock().expect("acks").len() >= 1000).then_some(())
    });
    assert!(enough.is_some(), "1000 acknowledged\n{}", cluster.logs());
    cluster.kill9(0);
    let more = acked.lock().expect("acks").len() + 500;
    let after = eventually(TIMEOUT, || {
        (acked.lock().expect("acks").len() >= more).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    let _ = producer.flush(TIMEOUT);
    assert!(
        after.is_some(),
        "produces went on through the other brokers\n{}",
        cluster.logs()
    );
    let acked = acked.lock().expect("acks").clone();
    eprintln!("{} of {sent} acknowledged", acked.len());
    let high = acked.iter().map(|a| a.0).max().unwrap_or(-1) + 1;
    let read = read_all(cluster.kafka(1), "crash", 0, high as usize);
    assert_acknowledged_at_their_offsets(&acked, &read, &cluster.logs());
}

#[test]
fn a_paused_broker_resumed_past_its_lease_breaks_no_ordering() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let (producer, acked, _) = idempotent_producer(cluster.kafka(0));
    produce_all(&producer, "paused", 100);
    cluster.pause(0);
    // Past the lease (FAST: 3 s), polled for: the other brokers see broker 0 gone.
    let lapsed = eventually(TIMEOUT, || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.kafka(1))
            .create()
            .ok()?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).ok()?;
        (metadata.brokers().len() == 2).then_some(())
    });
    let (other, other_acked, _) = idempotent_producer(cluster.kafka(1));
    produce_all(&other, "paused", 100);
    cluster.resume(0);
    // Whatever broker 0 had buffered is fenced or committed after the others' records: the
    // partition stays dense and every acknowledged record is where it was acknowledged.
    produce_all(&producer, "paused", 0);
    let _ = producer.flush(TIMEOUT);
    let mut all = acked.lock().expect("acks").clone();
    all.extend(other_acked.lock().expect("acks").iter().cloned());
    let high = all.iter().map(|a| a.0).max().unwrap_or(-1) + 1;
    let read = read_all(cluster.kafka(2), "paused", 0, high as usize);
    let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..high).collect::<Vec<_>>(), "dense offsets");
    assert!(
        lapsed.is_some(),
        "broker 0's lease lapsed\n{}",
        cluster.logs()
    );
    // Keys are reused between the two producers: check offsets, not key uniqueness.
    let by_offset: BTreeMap<i64, String> = read.into_iter().map(|r| (r.0, r.1)).collect();
    for (offset, key) in &all {
        assert_eq!(by_offset.get(offset), Some(key), "offset {offset}");
    }
}

/// Produces from a thread until stopped; the engine is restarted meanwhile. Produces fail
/// retriably while it is down (the client retries them) and every acknowledged record is read
/// back at its offset once it is back.
fn survives_an_engine_restart(restart: impl FnOnce(&mut Cluster), topic: &'static str) {
    let Some(mut cluster) = Cluster::start(2) else {
        return;
    };
    let (producer, acked, failed) = idempotent_producer(cluster.kafka(0));
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (format!("k{sent}"), format!("v{sent}"));
                if producer
                    .send(BaseRecord::to(topic).key(&key).payload(&value))
                    .is_ok()
                {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(2));
            }
            sent
        })
    };
    let started = eventually(TIMEOUT, || {
        (acked.lock().expect("acks").len() >= 200).then_some(())
    });
    assert!(started.is_some(), "200 acknowledged\n{}", cluster.logs());
    restart(&mut cluster);
    let more = acked.lock().expect("acks").len() + 200;
    let recovered = eventually(TIMEOUT, || {
        (acked.lock().expect("acks").len() >= more).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let _ = producer.flush(TIMEOUT);
    assert!(
        recovered.is_some(),
        "produces recovered by themselves\n{}",
        cluster.logs()
    );
    assert!(
        failed.lock().expect("failures").is_empty(),
        "the client's retries covered the outage: {:?}",
        failed.lock().expect("failures")
    );
    let acked = acked.lock().expect("acks").clone();
    let high = acked.iter().map(|a| a.0).max().unwrap_or(-1) + 1;
    let read = read_all(cluster.kafka(1), topic, 0, high as usize);
    assert_acknowledged_at_their_offsets(&acked, &read, &cluster.logs());
}

#[test]
fn produces_recover_after_postgresql_restarts_under_load() {
    survives_an_engine_restart(Cluster::restart_pg, "pg-restart");
}

#[test]
fn produces_recover_after_the_object_store_restarts_under_load() {
    survives_an_engine_restart(Cluster::restart_weed, "weed-restart");
}
