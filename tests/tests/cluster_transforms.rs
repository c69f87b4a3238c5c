//! Transforms in cluster mode end to end: three brokers on one PostgreSQL and one S3 store; the
//! `uppercase` example deployed through one broker's admin API runs on writes through any
//! broker, its outputs committed with their inputs — read through a third broker in input
//! order, exactly once, also across a `kill -9` of the broker the idempotent load goes through;
//! describe on every broker shows the deployment, and removing it through one stops it on all.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{eventually, guest_module, http, transform_cli};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Acknowledged keys, shared with the producer's delivery callback.
type Acked = Arc<Mutex<Vec<String>>>;

/// The producer's delivery reports: acknowledged keys, and failures' messages.
struct Acks {
    acked: Acked,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                self.acked.lock().expect("acks").push(key);
            }
            Err((e, _)) => self.failed.lock().expect("failures").push(e.to_string()),
        }
    }
}

fn producer_with(bootstrap: &str, idempotent: bool) -> (BaseProducer<Acks>, Acks) {
    let acks = || Acks {
        acked: Arc::new(Mutex::new(Vec::new())),
        failed: Arc::new(Mutex::new(Vec::new())),
    };
    let mine = acks();
    let shared = Acks {
        acked: mine.acked.clone(),
        failed: mine.failed.clone(),
    };
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(shared)
        .expect("producer");
    (producer, mine)
}

fn idempotent_producer(bootstrap: &str) -> (BaseProducer<Acks>, Acked) {
    let (producer, acks) = producer_with(bootstrap, true);
    (producer, acks.acked)
}

fn send(producer: &BaseProducer<Acks>, topic: &str, key: &str, value: &str) {
    common::send_queued(producer, BaseRecord::to(topic).key(key).payload(value));
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-transforms-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// Partition 0 of `topic`'s high watermark, asked through `bootstrap`.
fn high_watermark(bootstrap: &str, topic: &str) -> i64 {
    let c = consumer(bootstrap);
    eventually(TIMEOUT, || {
        c.fetch_watermarks(topic, 0, Duration::from_secs(5))
            .ok()
            .map(|(_, high)| high)
    })
    .expect("the high watermark")
}

/// Every record of partition 0 of `topic` below its current high watermark, read through
/// `bootstrap`: (offset, key, value) in order.
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, String)> {
    let high = high_watermark(bootstrap, topic);
    let consumer = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut got: Vec<(i64, String, String)> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.last().map_or(0, |r| r.0 + 1) < high && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            )),
            // A broker Metadata still lists until its lease lapses, or a topic not known yet.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::UnknownTopicOrPartition,
            )))
            | None => {}
            Some(Err(e)) => panic!("fetched record: {e}"),
        }
    }
    assert_eq!(
        got.last().map_or(0, |r| r.0 + 1),
        high,
        "read {topic} up to its high watermark"
    );
    got
}

fn describe(cluster: &Cluster, broker: usize, name: &str) -> (u16, Option<Value>) {
    let url = format!(
        "http://{}/v1/transforms/{name}",
        cluster.brokers[broker].http
    );
    let (code, body) = http("GET", &url, None);
    (code, serde_json::from_str(&body).ok())
}

/// Deploys the `uppercase` example as `up`: `words` -> `shouted`, through broker `through`'s
/// admin API (`sluice transform deploy`), and waits until every broker shows it running.
fn deploy_uppercase(cluster: &Cluster, through: usize) {
    deploy(
        cluster,
        through,
        "uppercase",
        &["--name", "up", "--input", "words", "--output", "shouted"],
    );
}

/// Deploys example `module` with `args` through broker `through` and waits until every broker
/// shows it running.
fn deploy(cluster: &Cluster, through: usize, module: &str, args: &[&str]) {
    let module = guest_module(module).to_string_lossy().to_string();
    let mut all = vec!["deploy", module.as_str()];
    all.extend_from_slice(args);
    let out = transform_cli(&cluster.brokers[through], &all);
    assert!(
        out.status.success(),
        "deploy: {}\n{}",
        out.stdout,
        out.stderr
    );
    let name = args[1];
    for b in 0..cluster.brokers.len() {
        let shown = eventually(TIMEOUT, || {
            let (code, view) = describe(cluster, b, name);
            let view = view.filter(|_| code == 200)?;
            (view["state"] == "RUNNING").then_some(view)
        });
        let view = shown.unwrap_or_else(|| panic!("broker {b} runs {name}\n{}", cluster.logs()));
        assert_eq!(view["input"], args[3], "broker {b}");
        assert_eq!(view["outputs"][0], args[5], "broker {b}");
    }
}

/// The index of the broker Metadata names leader of partition 0 of `topic`.
fn leader_of(cluster: &Cluster, topic: &str) -> usize {
    let c = consumer(&cluster.bootstrap());
    let metadata = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let leader = metadata.topics()[0].partitions()[0].leader();
    let broker = metadata
        .brokers()
        .iter()
        .find(|b| b.id() == leader)
        .expect("the leader is listed");
    let address = format!("{}:{}", broker.host(), broker.port());
    (0..cluster.brokers.len())
        .find(|&i| cluster.kafka(i) == address)
        .unwrap_or_else(|| panic!("leader {address} is one of the brokers"))
}

/// Every output is its input upper-cased, at the same position: one output per stored input,
/// none without its input.
fn assert_outputs_follow_inputs(
    inputs: &[(i64, String, String)],
    outputs: &[(i64, String, String)],
) {
    assert_eq!(outputs.len(), inputs.len(), "one output per input");
    for (i, o) in inputs.iter().zip(outputs) {
        assert_eq!((&o.1, &o.2), (&i.1, &i.2.to_uppercase()), "output {}", o.0);
    }
}

#[test]
fn a_deployment_made_through_one_broker_runs_on_writes_through_another_and_is_removed_everywhere() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    deploy_uppercase(&cluster, 0);

    let (producer, acked) = idempotent_producer(cluster.kafka(1));
    for i in 0..200 {
        send(&producer, "words", &format!("k{i}"), &format!("word {i}"));
    }
    producer.flush(TIMEOUT).expect("every record acknowledged");
    assert_eq!(acked.lock().expect("acks").len(), 200);

    let inputs = read_all(cluster.kafka(2), "words");
    let expected: Vec<String> = (0..200).map(|i| format!("word {i}")).collect();
    let values: Vec<String> = inputs.iter().map(|r| r.2.clone()).collect();
    assert_eq!(values, expected, "the inputs are stored as sent");
    let outputs = read_all(cluster.kafka(2), "shouted");
    assert_outputs_follow_inputs(&inputs, &outputs);
    // Every broker counted what it ran; together, every input once.
    let ran: u64 = (0..3)
        .map(|b| {
            describe(&cluster, b, "up").1.expect("describe")["stats"]["records_in"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(ran, 200);

    // Removed through broker 2: no broker runs it any more.
    let url = format!("http://{}/v1/transforms/up", cluster.brokers[2].http);
    let (code, body) = http("DELETE", &url, None);
    assert_eq!(code, 204, "{body}");
    for b in 0..3 {
        let gone = eventually(TIMEOUT, || {
            (describe(&cluster, b, "up").0 == 404).then_some(())
        });
        assert!(gone.is_some(), "broker {b} removed up\n{}", cluster.logs());
    }
    for b in 0..3 {
        let (p, _) = idempotent_producer(cluster.kafka(b));
        send(&p, "words", "after", &format!("after removal {b}"));
        p.flush(TIMEOUT).expect("acknowledged");
    }
    assert_eq!(high_watermark(cluster.kafka(0), "words"), 203);
    assert_eq!(high_watermark(cluster.kafka(0), "shouted"), 200);
    let (code, _) = http("DELETE", &url, None);
    assert_eq!(code, 404, "removed already");
}

#[test]
fn what_cluster_mode_does_not_run_is_refused_at_deploy_time_with_a_message() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let module = guest_module("uppercase").to_string_lossy().to_string();
    let broker = &cluster.brokers[0];
    let refused = |extra: &[&str], says: &str| {
        let mut args = vec![
            "deploy",
            module.as_str(),
            "--name",
            "x",
            "--input",
            "a",
            "--output",
            "b",
        ];
        args.extend_from_slice(extra);
        let out = transform_cli(broker, &args);
        assert!(!out.status.success(), "{extra:?} was deployed");
        assert!(
            out.stderr.contains(says) && out.stderr.contains("cluster mode"),
            "{extra:?}: {}",
            out.stderr
        );
    };
    refused(&["--from", "earliest"], "from other than latest");
    refused(&["--table", "a"], "table lookups");
    let counter = guest_module("counter").to_string_lossy().to_string();
    let out = transform_cli(
        broker,
        &[
            "deploy", &counter, "--name", "c", "--input", "a", "--output", "b",
        ],
    );
    assert!(
        !out.status.success() && out.stderr.contains("state"),
        "a stateful module: {}",
        out.stderr
    );
    let listed = transform_cli(broker, &["list"]);
    assert!(listed.status.success());
    assert!(!listed.stdout.contains("RUNNING"), "{}", listed.stdout);
}

#[test]
fn each_acknowledged_input_has_exactly_one_output_across_a_broker_kill() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    deploy_uppercase(&cluster, 0);
    // The topic exists (the deploy made it): the load goes through its partition's leader.
    let victim = leader_of(&cluster, "words");
    let (producer, acked) = idempotent_producer(&cluster.bootstrap());
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                send(&producer, "words", &format!("k{sent}"), &format!("v{sent}"));
                sent += 1;
            }
            sent
        })
    };
    let enough = eventually(TIMEOUT, || {
        (acked.lock().expect("acks").len() >= 500).then_some(())
    });
    assert!(enough.is_some(), "500 acknowledged\n{}", cluster.logs());
    cluster.kill9(victim);
    let more = acked.lock().expect("acks").len() + 300;
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
    eprintln!(
        "{} of {sent} acknowledged; broker {victim} killed",
        acked.len()
    );

    let reader = (0..3).find(|&b| b != victim).expect("a live broker");
    let inputs = read_all(cluster.kafka(reader), "words");
    let outputs = read_all(cluster.kafka(reader), "shouted");
    // Idempotence: no input stored twice; every acknowledged one stored.
    let mut stored: HashMap<&str, usize> = HashMap::new();
    for (offset, key, value) in &inputs {
        assert_eq!(&format!("v{}", &key[1..]), value, "input {offset}");
        *stored.entry(key.as_str()).or_default() += 1;
    }
    assert!(
        stored.values().all(|&n| n == 1),
        "an input stored twice\n{}",
        cluster.logs()
    );
    for key in &acked {
        assert!(stored.contains_key(key.as_str()), "acknowledged {key} lost");
    }
    // Exactly one output per stored input, in input order, none without its input.
    assert_outputs_follow_inputs(&inputs, &outputs);
}

#[test]
fn failure_policies_work_in_cluster_mode_dead_letters_committed_with_the_input() {
    let Some(cluster) = Cluster::start(2) else {
        return;
    };
    // Records whose value holds "bad" make the guest trap.
    let hostile = |name: &str, input: &str, policy: &str| {
        deploy(
            &cluster,
            0,
            "hostile",
            &[
                "--name",
                name,
                "--input",
                input,
                "--output",
                &format!("{input}-out"),
                "--env",
                "MODE=trap",
                "--env",
                "POISON=bad",
                "--on-error",
                policy,
            ],
        );
    };
    hostile("dl", "mixed", "dead-letter=mixed-dlq");
    hostile("sk", "skipped", "skip");
    hostile("rj", "strict", "reject");

    let (producer, acks) = producer_with(cluster.kafka(1), false);
    for topic in ["mixed", "skipped"] {
        for (i, v) in ["ok 0", "bad 1", "ok 2", "bad 3"].iter().enumerate() {
            send(&producer, topic, &format!("k{i}"), v);
        }
    }
    producer.flush(TIMEOUT).expect("every record acknowledged");
    assert_eq!(acks.acked.lock().expect("acks").len(), 8);
    let values = |topic: &str| -> Vec<String> {
        read_all(cluster.kafka(0), topic)
            .into_iter()
            .map(|r| r.2)
            .collect()
    };
    assert_eq!(values("mixed-out"), ["ok 0", "ok 2"]);
    assert_eq!(values("mixed-dlq"), ["bad 1", "bad 3"]);
    assert_eq!(values("skipped-out"), ["ok 0", "ok 2"]);
    assert_eq!(values("mixed").len(), 4, "the input is stored whole");

    // Reject: the produce fails and nothing of it is stored; a good record goes through.
    send(&producer, "strict", "k", "bad record");
    producer.flush(TIMEOUT).expect("answered");
    let failed = acks.failed.lock().expect("failures").clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("InvalidRecord") || failed[0].contains("invalid"),
        "{failed:?}"
    );
    send(&producer, "strict", "k", "good record");
    producer.flush(TIMEOUT).expect("answered");
    assert_eq!(values("strict"), ["good record"]);
    assert_eq!(values("strict-out"), ["good record"]);
}
