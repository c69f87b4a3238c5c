//! `/metrics` end to end: the exposition passes `promtool check metrics`, and its values move as
//! clients produce, consume and commit, as a transform fails on some records and as a connector
//! runs; `metrics.enabled = false` turns the hot-path counters off and keeps the state gauges.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{eventually, guest_module, http, tool, transform_cli, Broker, Options};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn scrape(broker: &Broker) -> String {
    let (code, body) = http("GET", &format!("http://{}/metrics", broker.http), None);
    assert_eq!(code, 200, "{body}");
    body
}

/// Runs `promtool check metrics` on the exposition (skipped where promtool is missing, outside CI).
fn promtool_accepts(text: &str) {
    let Some(mut cmd) = tool("promtool") else {
        return;
    };
    let mut child = cmd
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of the samples of `name` whose labels include every `labels` pair.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")));
            all.then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn has_series(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
}

fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "0")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

fn send(p: &FutureProducer, topic: &str, value: &str) -> Result<i64, String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(p.send(
        FutureRecord::to(topic).key("k").payload(value),
        Duration::from_secs(10),
    ))
    .map(|d| d.offset)
    .map_err(|(e, _)| e.to_string())
}

/// Waits until a scrape satisfies `check`, and returns that scrape.
fn scrape_until(broker: &Broker, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(TIMEOUT, || {
        let text = scrape(broker);
        check(&text).then_some(text)
    })
    .unwrap_or_else(|| panic!("{what}; last scrape:\n{}", scrape(broker)))
}

#[test]
fn metrics_are_valid_prometheus_and_move_with_clients_transforms_and_connectors() {
    let broker = Broker::start_with(common::fast_groups());
    let before = scrape(&broker);
    promtool_accepts(&before);
    assert!(has_series(&before, "process_resident_memory_bytes"));
    assert!(has_series(&before, "process_open_fds"));
    assert!(has_series(&before, "process_cpu_seconds_total"));

    // Produce 10 records with acks=all.
    common::create_topic(&broker, "orders", 2);
    let p = producer(&broker);
    for i in 0..10 {
        send(&p, "orders", &format!("order-{i}")).expect("produce");
    }
    let text = scrape(&broker);
    let orders = [("topic", "orders")];
    assert_eq!(value(&text, "sluice_topic_records_in_total", &orders), 10.0);
    assert!(value(&text, "sluice_topic_bytes_in_total", &orders) > 0.0);
    assert_eq!(
        value(&text, "sluice_partition_high_watermark", &orders),
        10.0
    );
    assert_eq!(value(&text, "sluice_topic_partitions", &orders), 2.0);
    assert!(value(&text, "sluice_partition_log_size_bytes", &orders) > 0.0);
    assert!(value(&text, "sluice_partition_log_segments", &orders) >= 2.0);
    assert!(value(&text, "sluice_requests_total", &[("api", "Produce")]) >= 10.0);
    assert!(
        value(
            &text,
            "sluice_request_handling_seconds_count",
            &[("api", "Produce")]
        ) >= 10.0
    );
    assert!(value(&text, "sluice_log_fsync_seconds_count", &[]) >= 1.0);
    assert!(value(&text, "sluice_log_group_commit_records_sum", &[]) >= 10.0);
    assert!(value(&text, "sluice_connections_accepted_total", &[]) >= 1.0);
    assert!(value(&text, "sluice_connections_open", &[]) >= 1.0);

    // A Kafka error is counted by API and code: a fetch past the end is out of range.
    let stray: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "stray")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(1000))
        .expect("partition");
    stray.assign(&tpl).expect("assign");
    let out_of_range = [("api", "Fetch"), ("error", "offset_out_of_range")];
    let found = eventually(TIMEOUT, || {
        let _ = stray.poll(Duration::from_millis(50));
        (value(
            &scrape(&broker),
            "sluice_request_errors_total",
            &out_of_range,
        ) >= 1.0)
            .then_some(())
    });
    assert!(found.is_some(), "{}", scrape(&broker));
    drop(stray);

    // Errors of every API are counted, not just Produce's and Fetch's: a second CreateTopics
    // of the same name answers TOPIC_ALREADY_EXISTS.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &broker.kafka)
            .create()
            .expect("admin");
    let again =
        rdkafka::admin::NewTopic::new("orders", 2, rdkafka::admin::TopicReplication::Fixed(1));
    let results = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(admin.create_topics(&[again], &rdkafka::admin::AdminOptions::new()))
        .expect("create topics");
    assert!(results[0].is_err(), "{results:?}");
    let exists = [("api", "CreateTopics"), ("error", "topic_already_exists")];
    assert_eq!(
        value(&scrape(&broker), "sluice_request_errors_total", &exists),
        1.0
    );

    // Consume everything as a group and commit: lag goes to 0, bytes and records go out.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "readers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    let mut seen = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while seen < 10 && std::time::Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
        }
    }
    assert_eq!(seen, 10, "consumed");
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    let text = scrape_until(&broker, "the group's commit shows", |t| {
        value(t, "sluice_group_committed_offset", &[("group", "readers")]) == 10.0
    });
    assert_eq!(
        value(&text, "sluice_topic_records_out_total", &orders),
        10.0
    );
    assert!(value(&text, "sluice_topic_bytes_out_total", &orders) > 0.0);
    assert_eq!(
        value(&text, "sluice_group_lag", &[("group", "readers")]),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "sluice_group_state",
            &[("group", "readers"), ("state", "Stable")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "sluice_group_members", &[("group", "readers")]),
        1.0
    );
    assert!(value(&text, "sluice_requests_total", &[("api", "OffsetCommit")]) >= 1.0);
    // More records: the group lags by them.
    for i in 0..3 {
        send(&p, "orders", &format!("late-{i}")).expect("produce");
    }
    let text = scrape(&broker);
    assert_eq!(
        value(&text, "sluice_group_lag", &[("group", "readers")]),
        3.0
    );
    drop(consumer);

    // A transform that traps on records containing "poison", skipping them.
    let module = guest_module("hostile").to_string_lossy().to_string();
    let deployed = transform_cli(
        &broker,
        &[
            "deploy",
            &module,
            "--name",
            "picky",
            "--input",
            "raw",
            "--output",
            "clean",
            "--env",
            "POISON=poison",
            "--env",
            "MODE=trap",
            "--on-error",
            "skip",
        ],
    );
    assert!(deployed.status.success(), "{}", deployed.stderr);
    for v in ["fine-1", "poison-pill", "fine-2"] {
        send(&p, "raw", v).expect("produce to the transformed topic");
    }
    let picky = [("deployment", "picky")];
    let text = scrape(&broker);
    promtool_accepts(&text);
    assert_eq!(
        value(&text, "sluice_transform_records_in_total", &picky),
        3.0
    );
    assert_eq!(
        value(&text, "sluice_transform_records_out_total", &picky),
        2.0
    );
    assert_eq!(
        value(&text, "sluice_transform_skipped_records_total", &picky),
        1.0
    );
    assert!(value(&text, "sluice_transform_batches_total", &picky) >= 3.0);
    assert!(
        value(
            &text,
            "sluice_transform_errors_total",
            &[("deployment", "picky"), ("kind", "trap")]
        ) >= 1.0
    );
    assert!(value(&text, "sluice_transform_execution_seconds_count", &picky) >= 3.0);
    assert!(value(&text, "sluice_transform_memory_limit_bytes", &picky) > 0.0);
    assert!(value(&text, "sluice_transform_instances", &picky) >= 1.0);
    assert!(value(&text, "sluice_transform_memory_bytes", &picky) > 0.0);
    assert_eq!(value(&text, "sluice_transform_paused", &picky), 0.0);
    assert_eq!(value(&text, "sluice_transform_lag", &picky), 0.0);
    assert_eq!(
        value(
            &text,
            "sluice_topic_records_in_total",
            &[("topic", "clean")]
        ),
        2.0
    );

    // A file source connector: its records and task state.
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nb\nc\n").expect("write");
    let source = format!(
        r#"{{"name":"src","config":{{"connector.class":"FileStreamSource","topic":"lines","file":"{}"}}}}"#,
        input.display()
    );
    let (code, body) = http(
        "POST",
        &format!("http://{}/connectors", broker.http),
        Some(&source),
    );
    assert_eq!(code, 201, "{body}");
    let text = scrape_until(&broker, "the connector's records are counted", |t| {
        value(t, "sluice_connector_records_total", &[("connector", "src")]) == 3.0
    });
    assert_eq!(
        value(
            &text,
            "sluice_connector_task_state",
            &[("connector", "src"), ("state", "RUNNING")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "sluice_topic_records_in_total",
            &[("topic", "lines")]
        ),
        3.0
    );
    promtool_accepts(&text);
}

#[test]
fn metrics_enabled_false_turns_off_counters_and_keeps_state_gauges() {
    let broker = Broker::start_with(Options {
        toml: "\"metrics.enabled\" = false\n".into(),
        ..Options::default()
    });
    let p = producer(&broker);
    for i in 0..5 {
        send(&p, "quiet", &format!("r{i}")).expect("produce");
    }
    let text = scrape(&broker);
    promtool_accepts(&text);
    assert!(!has_series(&text, "sluice_topic_records_in_total"));
    assert_eq!(value(&text, "sluice_requests_total", &[]), 0.0);
    assert_eq!(
        value(
            &text,
            "sluice_partition_high_watermark",
            &[("topic", "quiet")]
        ),
        5.0
    );
}
