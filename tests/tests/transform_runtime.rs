//! How transforms run on the write path: a guest burning its CPU cap on one topic does not hold
//! up produces to others (guests run on their own threads); a failing record is narrowed out of
//! its batch under `skip` and `dead-letter`; per-deployment memory and CPU limits; backfills
//! (`--from earliest`) run every stored record exactly once across a `kill -9`; idempotent
//! producers keep producing through an in-place transform across a restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    create_topic, eventually, guest_module, http, run, tool, transform_cli, unused_port,
    workspace_root, Broker, Options,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
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

/// `GET /v1/transforms/NAME` as JSON.
fn describe(broker: &Broker, name: &str) -> serde_json::Value {
    let (status, body) = http(
        "GET",
        &format!("http://{}/v1/transforms/{name}", broker.http),
        None,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("describe is JSON")
}

/// `(key, value, headers)` of every record of `topic` partition 0 from the beginning, with the
/// offset of each.
type Read = (i64, String, String, Vec<(String, String)>);

fn read_all(broker: &Broker, topic: &str) -> Vec<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "runtime-reader")
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
            out.push((m.offset(), text(m.key()), text(m.payload()), headers));
        }
    }
    out
}

fn high_watermark(broker: &Broker, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("consumer");
    c.fetch_watermarks(topic, 0, TIMEOUT)
        .map(|w| w.1)
        .unwrap_or(-1)
}

/// Produces `values` (keyed `k<i>`) to partition 0 as one batch, waits for every ack.
fn produce_batch(broker: &Broker, topic: &str, values: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "200")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        p.send(BaseRecord::to(topic).partition(0).key(&key).payload(v))
            .expect("queue");
    }
    p.flush(TIMEOUT).expect("flush");
}

#[test]
fn a_guest_spinning_on_one_topic_does_not_hold_up_other_topics() {
    let broker = Broker::start();
    create_topic(&broker, "spin", 1);
    create_topic(&broker, "plain", 1);
    deployed(
        &broker,
        "hostile",
        &[
            "--name",
            "spinner",
            "--input",
            "spin",
            "--output",
            "spin-out",
            "--env",
            "MODE=loop",
            "--on-error",
            "skip",
            "--timeout",
            "1s",
        ],
    );
    // Four producers keep the spinning topic's guests at their CPU cap on every batch.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|n| {
            let (kafka, stop) = (broker.kafka.clone(), stop.clone());
            std::thread::spawn(move || {
                let p: BaseProducer = ClientConfig::new()
                    .set("bootstrap.servers", &kafka)
                    .set("linger.ms", "0")
                    .set("message.timeout.ms", "300000")
                    .create()
                    .expect("producer");
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let v = format!("load {n} {i}");
                    if p.send(BaseRecord::<(), _>::to("spin").payload(&v)).is_ok() {
                        i += 1;
                    }
                    p.poll(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let spun = eventually(TIMEOUT, || {
        let d = describe(&broker, "spinner");
        (d["stats"]["skipped"].as_u64()? >= 2).then_some(())
    });
    assert!(spun.is_some(), "the spinning guest never hit its CPU cap");

    // librdkafka: 200 acks=1 round trips to the plain topic.
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    for i in 0..200 {
        let v = format!("plain {i}");
        let delivered = rt.block_on(p.send(
            FutureRecord::<(), _>::to("plain").payload(&v),
            Duration::from_secs(20),
        ));
        assert!(delivered.is_ok(), "round trip {i} failed: {delivered:?}");
    }
    let took = started.elapsed();
    // Each batch of the spinning topic takes a whole second of guest CPU; were guests on the
    // connection workers, these would wait behind them.
    assert!(
        took < Duration::from_secs(30),
        "200 round trips to a plain topic took {took:?} beside a spinning guest"
    );
    assert_eq!(high_watermark(&broker, "plain"), 200);

    // kafkajs: a new client connects, produces and reads back on another plain topic.
    if let Some(mut node) = tool("node") {
        node.arg("produce_check.js")
            .current_dir(workspace_root().join("tests/node"))
            .env("KAFKA_BROKER", &broker.kafka)
            .env("TOPIC", "plain-js");
        let js = run(node, Duration::from_secs(90));
        assert!(
            js.status.success(),
            "kafkajs beside a spinning guest: {}\n{}",
            js.stdout,
            js.stderr
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().expect("loader");
    }
}

#[test]
fn one_poison_record_is_narrowed_out_of_its_batch() {
    let broker = Broker::start();
    for t in ["skip-in", "dlq-in"] {
        create_topic(&broker, t, 1);
    }
    let policies = [
        ("skipper", "skip-in", "skip-out", "skip"),
        ("dlqer", "dlq-in", "dlq-out", "dead-letter=dlq"),
    ];
    for (name, input, output, policy) in policies {
        deployed(
            &broker,
            "hostile",
            &[
                "--name",
                name,
                "--input",
                input,
                "--output",
                output,
                "--env",
                "MODE=trap",
                "--env",
                "POISON=poison",
                "--on-error",
                policy,
            ],
        );
    }
    let values: Vec<String> = (0..20)
        .map(|i| {
            if i == 7 {
                "poison pill".to_string()
            } else {
                format!("good {i}")
            }
        })
        .collect();
    let good: Vec<String> = values
        .iter()
        .filter(|v| !v.contains("poison"))
        .cloned()
        .collect();
    for input in ["skip-in", "dlq-in"] {
        produce_batch(&broker, input, &values);
        assert_eq!(
            high_watermark(&broker, input),
            20,
            "{input} stores its input"
        );
    }
    for output in ["skip-out", "dlq-out"] {
        let got: Vec<String> = read_all(&broker, output)
            .into_iter()
            .map(|(_, _, v, _)| v)
            .collect();
        assert_eq!(got, good, "{output} holds every good record, in order");
    }
    let dead = read_all(&broker, "dlq");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (_, key, value, headers) = &dead[0];
    assert_eq!((key.as_str(), value.as_str()), ("k7", "poison pill"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert!(
        header("sluice.error").is_some_and(|e| e.contains("panics on purpose")),
        "{headers:?}"
    );
    assert_eq!(header("sluice.source").as_deref(), Some("dlq-in/0@7"));
    assert_eq!(describe(&broker, "skipper")["stats"]["skipped"], 1);
    assert_eq!(describe(&broker, "dlqer")["stats"]["dead_lettered"], 1);
}

#[test]
fn per_deployment_limits_are_enforced_and_bounded() {
    let broker = Broker::start();
    for (flag, value, message) in [
        ("--memory", "100", "memory limit"),
        ("--memory", "64GiB", "memory limit"),
        ("--timeout", "0ms", "timeout"),
        ("--timeout", "10m", "timeout"),
    ] {
        let out = deploy(
            &broker,
            "hostile",
            &[
                "--name", "bad", "--input", "in", "--output", "out", flag, value,
            ],
        );
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(
            out.stderr.contains(message),
            "{flag} {value}: {}",
            out.stderr
        );
    }
    assert!(transform_cli(&broker, &["describe", "bad"])
        .stderr
        .contains("no transform"));

    deployed(
        &broker,
        "hostile",
        &[
            "--name",
            "quick",
            "--input",
            "spin",
            "--output",
            "spin-out",
            "--env",
            "MODE=loop",
            "--on-error",
            "skip",
            "--timeout",
            "100ms",
        ],
    );
    deployed(
        &broker,
        "hostile",
        &[
            "--name",
            "small",
            "--input",
            "hoard",
            "--output",
            "hoard-out",
            "--env",
            "MODE=oom",
            "--on-error",
            "skip",
            "--memory",
            "16MiB",
        ],
    );
    let quick = describe(&broker, "quick");
    assert_eq!(quick["limits"]["timeout_ms"], 100, "{quick}");
    assert_eq!(
        quick["limits"]["memory_bytes"],
        64 << 20,
        "the broker default"
    );
    let small = describe(&broker, "small");
    assert_eq!(small["limits"]["memory_bytes"], 16 << 20, "{small}");

    produce_batch(&broker, "spin", &["x".to_string()]);
    produce_batch(&broker, "hoard", &["x".to_string()]);
    let quick = describe(&broker, "quick");
    assert_eq!(quick["stats"]["skipped"], 1, "{quick}");
    let error = quick["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("CPU time limit of 100ms"), "{error}");
    let small = describe(&broker, "small");
    let error = small["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("memory limit of {} bytes", 16 << 20)),
        "{error}"
    );
}

#[test]
fn a_backfill_runs_every_stored_record_exactly_once_across_kill9() {
    const RECORDS: usize = 100_000;
    let mut broker = Broker::start();
    create_topic(&broker, "history", 1);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "20")
        .set("batch.num.messages", "500")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let v = format!("record number {i}");
        p.send(BaseRecord::<(), _>::to("history").partition(0).payload(&v))
            .expect("queue");
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(TIMEOUT).expect("flush");
    assert_eq!(high_watermark(&broker, "history"), RECORDS as i64);

    deployed(
        &broker,
        "uppercase",
        &[
            "--name",
            "up",
            "--input",
            "history",
            "--output",
            "history-up",
            "--from",
            "earliest",
        ],
    );
    // Kill the broker in the middle of the backfill.
    let midway = eventually(TIMEOUT, || {
        let d = describe(&broker, "up");
        let next = d["backfill"]["0"]["next"].as_i64()?;
        (next > 0 && next < RECORDS as i64 / 2).then_some(next)
    });
    assert!(midway.is_some(), "the backfill never got under way");
    broker.kill9();
    broker.start_again();
    let done = eventually(Duration::from_secs(300), || {
        let d = describe(&broker, "up");
        (d["state"] == "RUNNING").then_some(())
    });
    assert!(
        done.is_some(),
        "the backfill did not finish: {}",
        describe(&broker, "up")
    );
    // New writes are transformed inline again.
    produce_batch(&broker, "history", &["after the backfill".to_string()]);
    let out = read_all(&broker, "history-up");
    assert_eq!(out.len(), RECORDS + 1, "every input once, none twice");
    for (i, (_, _, v, _)) in out.iter().take(RECORDS).enumerate() {
        assert_eq!(v, &format!("RECORD NUMBER {i}"));
    }
    assert_eq!(out[RECORDS].2, "AFTER THE BACKFILL");
}

#[test]
fn an_idempotent_producer_keeps_producing_through_an_in_place_transform_across_restarts() {
    // The same producer (id, epoch, sequences) reconnects to the restarted broker.
    let mut broker = Broker::start_with(Options {
        kafka_port: Some(unused_port()),
        ..Options::default()
    });
    create_topic(&broker, "users", 1);
    deployed(
        &broker,
        "mask-email",
        &[
            "--name",
            "mask",
            "--input",
            "users",
            "--in-place",
            "--on-error",
            "dead-letter=users-dlq",
        ],
    );
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    // Every 5th record is not JSON: the transform drops it from the stored batch (to the
    // dead-letter topic), so stored batches hold fewer records than the producer sent; a record
    // sent alone and dropped leaves its batch empty.
    let value = |i: usize| {
        if i % 5 == 4 {
            format!("not json {i}")
        } else {
            format!(r#"{{"n":{i},"email":"user{i}@example.com"}}"#)
        }
    };
    let send = |range: std::ops::Range<usize>| {
        for i in range {
            let v = value(i);
            p.send(BaseRecord::<(), _>::to("users").partition(0).payload(&v))
                .expect("queue");
        }
        p.flush(TIMEOUT).expect("every record acknowledged");
    };
    send(0..50);
    send(50..54);
    send(54..55);
    broker.kill9();
    broker.start_again();
    send(55..100);
    send(100..104);
    send(104..105);
    broker.restart();
    send(105..150);

    let stored: Vec<(i64, String)> = read_all(&broker, "users")
        .into_iter()
        .map(|(_, _, v, _)| {
            let json: serde_json::Value = serde_json::from_str(&v).expect("stored JSON");
            (
                json["n"].as_i64().unwrap_or(-1),
                json["email"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = (0..150)
        .filter(|i| i % 5 != 4)
        .map(|i| (i as i64, "u***@example.com".to_string()))
        .collect();
    assert_eq!(stored, expected, "each record once, masked, in order");
    assert_eq!(read_all(&broker, "users-dlq").len(), 30);
    assert!(
        !broker.stderr().contains("OUT_OF_ORDER"),
        "{}",
        broker.stderr()
    );
}
