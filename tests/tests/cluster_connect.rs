//! Connectors in cluster mode end to end: three brokers on one PostgreSQL and one S3 store, the
//! Kafka Connect REST API on any of them managing the same connectors; a FileStreamSink's task
//! runs on one broker under a lease and moves when that broker is killed, delivering every
//! record at least once (records produced after the kill exactly once); a FileStreamSource
//! writes through the cluster and a consumer on another broker reads its lines.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{eventually, http};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

fn api(cluster: &Cluster, broker: usize, path: &str) -> String {
    format!("http://{}{path}", cluster.brokers[broker].http)
}

fn json(cluster: &Cluster, broker: usize, path: &str) -> Option<Value> {
    let (code, body) = http("GET", &api(cluster, broker, path), None);
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The task's (state, worker id) as broker `broker` answers it.
fn task_status(cluster: &Cluster, broker: usize, name: &str) -> Option<(String, String)> {
    let status = json(cluster, broker, &format!("/connectors/{name}/status"))?;
    let task = status.get("tasks")?.get(0)?;
    Some((
        task.get("state")?.as_str()?.to_string(),
        task.get("worker_id")?.as_str()?.to_string(),
    ))
}

fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Sends `values` to `topic` through `bootstrap` and waits for every acknowledgement.
fn produce(bootstrap: &str, topic: &str, values: &[String]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for v in values {
        common::send_queued(&producer, BaseRecord::<(), String>::to(topic).payload(v));
    }
    producer.flush(TIMEOUT).expect("every record acknowledged");
}

/// Reads partition 0 of `topic` from the beginning through `bootstrap` until `count` values came.
fn read_values(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-connect-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            // The topic may not be known yet when the source has not written.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown,
            )))
            | None => {}
            Some(Err(e)) => panic!("fetched record: {e}"),
        }
    }
    got
}

#[test]
fn a_sink_task_runs_on_one_broker_and_moves_when_it_dies_delivering_every_record() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let output = dir.path().join("out.txt");
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    // Produced through broker 1 (the topic is auto-created there).
    produce(cluster.kafka(1), "events", &before);

    let sink = format!(
        r#"{{"name":"sink","config":{{"connector.class":"FileStreamSink","topics":"events","file":"{}"}}}}"#,
        output.display()
    );
    let (code, body) = http("POST", &api(&cluster, 0, "/connectors"), Some(&sink));
    assert_eq!(code, 201, "{body}");
    // Every broker lists it, and a second create anywhere is refused.
    for b in 0..3 {
        assert_eq!(
            json(&cluster, b, "/connectors"),
            Some(serde_json::json!(["sink"])),
            "broker {b}"
        );
    }
    let (code, _) = http("POST", &api(&cluster, 2, "/connectors"), Some(&sink));
    assert_eq!(code, 409);

    assert!(
        eventually(TIMEOUT, || (file_lines(&output) == before).then_some(())).is_some(),
        "the sink delivered {:?}\n{}",
        file_lines(&output),
        cluster.logs()
    );
    // Broker 2 names the worker running the task, one of the brokers.
    let (state, worker) = eventually(TIMEOUT, || {
        task_status(&cluster, 2, "sink").filter(|(s, _)| s == "RUNNING")
    })
    .unwrap_or_else(|| panic!("no running task\n{}", cluster.logs()));
    assert_eq!(state, "RUNNING");
    let holder = cluster
        .brokers
        .iter()
        .position(|b| b.http == worker)
        .unwrap_or_else(|| panic!("worker {worker} is not a broker"));
    for b in 0..3 {
        assert_eq!(
            task_status(&cluster, b, "sink"),
            Some(("RUNNING".to_string(), worker.clone())),
            "broker {b} answers the same status"
        );
    }

    cluster.kill9(holder);
    let live: Vec<usize> = (0..3).filter(|&b| b != holder).collect();
    let killed_at = Instant::now();
    let after: Vec<String> = (0..50).map(|i| format!("after-{i}")).collect();
    let bootstrap = live
        .iter()
        .map(|&b| cluster.kafka(b).to_string())
        .collect::<Vec<_>>()
        .join(",");
    produce(&bootstrap, "events", &after);

    // The task moves to a live broker within a few lease lengths (the registration lapses in
    // 3 s with the test settings).
    let moved_to = eventually(Duration::from_secs(30), || {
        task_status(&cluster, live[0], "sink")
            .filter(|(s, w)| s == "RUNNING" && *w != worker)
            .map(|(_, w)| w)
    })
    .unwrap_or_else(|| panic!("the task did not move\n{}", cluster.logs()));
    let took = killed_at.elapsed();
    assert!(
        live.iter().any(|&b| cluster.brokers[b].http == moved_to),
        "moved to {moved_to}, not a live broker"
    );
    eprintln!("the sink task moved from {worker} to {moved_to} in {took:?}");

    let delivered = eventually(TIMEOUT, || {
        let lines = file_lines(&output);
        after.iter().all(|v| lines.contains(v)).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "records produced after the kill are missing: {:?}\n{}",
            file_lines(&output),
            cluster.logs()
        )
    });
    // At least once: every record delivered, nothing that was not produced; duplicates only of
    // records the dead holder wrote but had not committed, so the records produced after the
    // kill (which it never saw) are there exactly once, in offset order.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &delivered {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    for v in before.iter().chain(&after) {
        assert!(counts.contains_key(v.as_str()), "{v} not delivered");
    }
    assert_eq!(
        counts.len(),
        before.len() + after.len(),
        "only produced records: {counts:?}"
    );
    for v in &after {
        assert_eq!(counts[v.as_str()], 1, "{v} delivered more than once");
    }
    let after_order: Vec<&String> = delivered
        .iter()
        .filter(|l| l.starts_with("after-"))
        .collect();
    assert_eq!(after_order, after.iter().collect::<Vec<_>>());
}

#[test]
fn a_source_on_one_broker_writes_into_the_cluster_and_is_managed_from_any_broker() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("in.txt");
    let source = format!(
        r#"{{"connector.class":"FileStreamSource","topic":"lines","file":"{}"}}"#,
        input.display()
    );
    let (code, body) = http(
        "PUT",
        &api(&cluster, 0, "/connectors/src/config"),
        Some(&source),
    );
    assert_eq!(code, 201, "{body}");
    let first: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    std::fs::write(&input, first.join("\n") + "\n").expect("write");
    let read = read_values(cluster.kafka(2), "lines", first.len());
    assert_eq!(read, first, "{}", cluster.logs());

    // Paused through broker 1: every broker reports it; lines appended meanwhile wait.
    let (code, _) = http("PUT", &api(&cluster, 1, "/connectors/src/pause"), None);
    assert_eq!(code, 202);
    for b in 0..3 {
        assert!(
            eventually(TIMEOUT, || {
                task_status(&cluster, b, "src").filter(|(s, _)| s == "PAUSED")
            })
            .is_some(),
            "broker {b} shows the pause\n{}",
            cluster.logs()
        );
    }
    let more: Vec<String> = (20..30).map(|i| format!("line {i}")).collect();
    let mut all = first.clone();
    all.extend(more.iter().cloned());
    std::fs::write(&input, all.join("\n") + "\n").expect("append");
    let (code, _) = http("PUT", &api(&cluster, 2, "/connectors/src/resume"), None);
    assert_eq!(code, 202);
    // Continued from its saved position: each line once, in order.
    let read = read_values(cluster.kafka(1), "lines", all.len());
    assert_eq!(read, all, "{}", cluster.logs());

    // A WASM sink is refused by name, for now.
    let wasm = format!(
        r#"{{"connector.class":"sluice.WasmSink","topics":"lines","wasm.module":"{}"}}"#,
        "ab".repeat(32)
    );
    let (code, body) = http(
        "PUT",
        &api(&cluster, 0, "/connectors/w/config"),
        Some(&wasm),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cluster mode"), "{body}");

    // Deleted through broker 2: gone everywhere.
    let (code, _) = http("DELETE", &api(&cluster, 2, "/connectors/src"), None);
    assert_eq!(code, 204);
    for b in 0..3 {
        assert!(
            eventually(TIMEOUT, || {
                (json(&cluster, b, "/connectors") == Some(serde_json::json!([]))).then_some(())
            })
            .is_some(),
            "broker {b} still lists it"
        );
    }
    let (code, _) = http("GET", &api(&cluster, 0, "/connectors/src/status"), None);
    assert_eq!(code, 404);
}
