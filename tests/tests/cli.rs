//! `sluice topic|group|cluster` against the real broker, each cross-checked with a stock client
//! (kcat, librdkafka through rdkafka): what the CLI creates, alters and produces is what the
//! clients see, what the clients produce and commit is what the CLI shows; bad input gets one
//! line on stderr and a non-zero exit.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, fast_groups, run, sluice_binary, stored_codecs, tool, Broker, Run};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `sluice ARGS...` against `broker` (through `SLUICE_BROKERS`), with `stdin` as input.
fn sluice_with(broker: &Broker, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(sluice_binary());
    cmd.args(args)
        .env("SLUICE_BROKERS", &broker.kafka)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start sluice");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn sluice(broker: &Broker, args: &[&str]) -> Run {
    sluice_with(broker, args, "")
}

/// Runs a command that must succeed; returns its stdout.
fn ok(broker: &Broker, args: &[&str]) -> String {
    let out = sluice(broker, args);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn json(broker: &Broker, args: &[&str]) -> Value {
    let mut with_format = args.to_vec();
    with_format.extend(["--format", "json"]);
    let text = ok(broker, &with_format);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{text}"))
}

/// A failure: the exit code and the single stderr line.
fn fails(broker: &Broker, args: &[&str]) -> (i32, String) {
    let out = sluice(broker, args);
    assert!(
        !out.status.success(),
        "sluice {args:?} succeeded:\n{}",
        out.stdout
    );
    (out.status.code().unwrap_or(-1), out.stderr)
}

fn one_line(stderr: &str) -> &str {
    assert_eq!(stderr.lines().count(), 1, "one line expected:\n{stderr}");
    stderr.trim_end()
}

fn kcat_list(broker: &Broker) -> Option<String> {
    let mut list = tool("kcat")?;
    list.args(["-b", &broker.kafka, "-L"]);
    let out = run(list, TIMEOUT);
    assert!(out.status.success(), "{}", out.stderr);
    Some(out.stdout)
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin")
}

/// The value of topic config `name` as librdkafka's DescribeConfigs reports it.
fn described_config(broker: &Broker, topic: &str, name: &str) -> Option<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let configs = rt
        .block_on(
            admin(broker)
                .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
        )
        .expect("describe configs");
    let config = configs[0].as_ref().expect("topic config");
    config.get(name).and_then(|e| e.value.clone())
}

#[test]
fn topic_admin_commands_are_what_stock_clients_see() {
    let broker = Broker::start();
    let created = ok(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=60000",
        ],
    );
    assert_eq!(created, "TOPIC   STATUS\norders  OK\n");
    if let Some(listed) = kcat_list(&broker) {
        assert!(
            listed.contains("topic \"orders\" with 3 partitions"),
            "{listed}"
        );
    }
    assert_eq!(
        described_config(&broker, "orders", "retention.ms").as_deref(),
        Some("60000")
    );

    let (code, err) = fails(&broker, &["topic", "create", "orders"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("TOPIC_ALREADY_EXISTS"), "{err}");

    let listed = json(&broker, &["topic", "list"]);
    assert_eq!(
        listed,
        serde_json::json!([{"name": "orders", "partitions": 3, "replicas": 1, "internal": false}])
    );
    let table = ok(&broker, &["topic", "list"]);
    assert_eq!(
        table,
        "NAME    PARTITIONS  REPLICAS\norders  3           1\n"
    );

    ok(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=120000",
            "--set",
            "segment.bytes=1048576",
        ],
    );
    assert_eq!(
        described_config(&broker, "orders", "retention.ms").as_deref(),
        Some("120000")
    );
    assert_eq!(
        described_config(&broker, "orders", "segment.bytes").as_deref(),
        Some("1048576")
    );
    ok(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
    );
    assert_eq!(
        described_config(&broker, "orders", "retention.ms").as_deref(),
        Some("604800000"),
        "deleted: back to the broker default"
    );

    let added = json(&broker, &["topic", "add-partitions", "orders", "-n", "2"]);
    assert_eq!(added["partitions"], 5);
    if let Some(listed) = kcat_list(&broker) {
        assert!(
            listed.contains("topic \"orders\" with 5 partitions"),
            "{listed}"
        );
    }
    let described = json(&broker, &["topic", "describe", "orders"]);
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(5));
    let configs = described["configs"].as_array().expect("configs");
    assert!(
        configs.iter().any(|c| c["name"] == "segment.bytes"
            && c["value"] == "1048576"
            && c["source"] == "DYNAMIC_TOPIC_CONFIG"),
        "{configs:?}"
    );

    ok(&broker, &["topic", "delete", "orders"]);
    if let Some(listed) = kcat_list(&broker) {
        assert!(!listed.contains("topic \"orders\""), "{listed}");
    }
    assert_eq!(json(&broker, &["topic", "list"]), serde_json::json!([]));
}

#[test]
fn produced_lines_carry_keys_headers_and_partitions_that_kcat_reads() {
    let broker = Broker::start();
    ok(&broker, &["topic", "create", "lines", "-p", "2"]);
    let out = sluice_with(
        &broker,
        &[
            "topic", "produce", "lines", "-k", ":", "-H", "src=cli", "-H", "n=1", "-p", "1",
            "--format", "json",
        ],
        "a:1\nb:2:two\nplain\n",
    );
    assert!(out.status.success(), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        report,
        serde_json::json!([{"topic": "lines", "partition": 1, "records": 3, "first_offset": 0, "last_offset": 2}])
    );
    let zstd = sluice_with(
        &broker,
        &[
            "topic", "produce", "lines", "-p", "0", "-z", "zstd", "--acks", "1",
        ],
        "squeezed\n",
    );
    assert!(zstd.status.success(), "{}", zstd.stderr);
    assert!(stored_codecs(&broker, "lines", 0).contains("zstd"));
    // acks=0 gets no answer, so the record shows up some time after the command returns.
    let unacked = sluice_with(
        &broker,
        &["topic", "produce", "lines", "-p", "0", "--acks", "0"],
        "unacked\n",
    );
    assert!(unacked.status.success(), "{}", unacked.stderr);
    let landed = eventually(TIMEOUT, || {
        let read = ok(&broker, &["topic", "consume", "lines", "-p", "0", "-e"]);
        (read == "squeezed\nunacked\n").then_some(())
    });
    assert!(
        landed.is_some(),
        "the acks=0 record was stored after the acks=1 one"
    );

    let Some(mut consume) = tool("kcat") else {
        return;
    };
    consume.args([
        "-b",
        &broker.kafka,
        "-C",
        "-t",
        "lines",
        "-p",
        "1",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%k|%s|%h\n",
    ]);
    let read = run(consume, TIMEOUT);
    assert!(read.status.success(), "{}", read.stderr);
    assert_eq!(
        read.stdout,
        "a|1|src=cli,n=1\nb|2:two|src=cli,n=1\n|plain|src=cli,n=1\n"
    );
    let Some(mut consume) = tool("kcat") else {
        return;
    };
    consume.args([
        "-b",
        &broker.kafka,
        "-C",
        "-t",
        "lines",
        "-p",
        "0",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%s\n",
    ]);
    assert_eq!(run(consume, TIMEOUT).stdout, "squeezed\nunacked\n");
}

#[test]
fn records_kcat_produced_are_consumed_in_every_format_and_from_every_offset() {
    let broker = Broker::start();
    ok(&broker, &["topic", "create", "kc", "-p", "1"]);
    let Some(mut produce) = tool("kcat") else {
        return;
    };
    produce.args([
        "-b",
        &broker.kafka,
        "-P",
        "-t",
        "kc",
        "-K",
        ":",
        "-H",
        "h1=v1",
        "-H",
        "h2=v2",
    ]);
    let mut child = produce.stdin(Stdio::piped()).spawn().expect("kcat -P");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"k0:v0\nk1:v1\nk2:v2\nk3:v3\nk4:v4\n")
            .expect("write lines");
    }
    assert!(child.wait().expect("kcat -P").success());

    let values = |args: &[&str]| {
        let mut all = vec!["topic", "consume", "kc"];
        all.extend(args);
        ok(&broker, &all)
    };
    assert_eq!(values(&["-e"]), "v0\nv1\nv2\nv3\nv4\n");
    assert_eq!(values(&["-o", "2", "-e"]), "v2\nv3\nv4\n");
    assert_eq!(values(&["-o", "-2", "-e"]), "v3\nv4\n");
    assert_eq!(values(&["-o", "end", "-e"]), "");
    assert_eq!(values(&["-n", "2"]), "v0\nv1\n", "-n stops without -e");
    assert_eq!(
        values(&["-o", "3", "-f", r"%t %p %o %k=%s %h %K %S\n", "-e"]),
        "kc 0 3 k3=v3 h1=v1,h2=v2 2 2\nkc 0 4 k4=v4 h1=v1,h2=v2 2 2\n"
    );
    let lines = values(&["--format", "json", "-e"]);
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(records.len(), 5);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["topic"], "kc");
        assert_eq!(r["partition"], 0);
        assert_eq!(r["offset"], i);
        assert_eq!(r["key"], format!("k{i}"));
        assert_eq!(r["value"], format!("v{i}"));
        assert_eq!(
            r["headers"],
            serde_json::json!([{"key": "h1", "value": "v1"}, {"key": "h2", "value": "v2"}])
        );
        assert!(
            r["timestamp"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "{r}"
        );
    }

    // By time: records stamped by the producer at 1000, 2000, 3000.
    ok(&broker, &["topic", "create", "timed", "-p", "1"]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("producer");
    for (i, ts) in [1000i64, 2000, 3000].into_iter().enumerate() {
        let value = format!("t{i}");
        producer
            .send(
                BaseRecord::<(), _>::to("timed")
                    .payload(&value)
                    .timestamp(ts),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(TIMEOUT).expect("flush");
    let timed = |offset: &str| {
        ok(
            &broker,
            &[
                "topic", "consume", "timed", "-o", offset, "-e", "-f", r"%T %s\n",
            ],
        )
    };
    assert_eq!(timed("@2000"), "2000 t1\n3000 t2\n");
    assert_eq!(timed("@1500"), "2000 t1\n3000 t2\n");
    assert_eq!(timed("@3001"), "", "past the last timestamp: the end");
}

#[test]
fn group_describe_shows_exact_lag_and_seek_moves_where_consumers_resume() {
    let broker = Broker::start_with(fast_groups());
    ok(&broker, &["topic", "create", "work", "-p", "2"]);
    let ten: String = (0..10).map(|i| format!("a{i}\n")).collect();
    let six: String = (0..6).map(|i| format!("b{i}\n")).collect();
    assert!(
        sluice_with(&broker, &["topic", "produce", "work", "-p", "0"], &ten)
            .status
            .success()
    );
    assert!(
        sluice_with(&broker, &["topic", "produce", "work", "-p", "1"], &six)
            .status
            .success()
    );

    let consumer = group_consumer(&broker, "cli-group");
    consumer.subscribe(&["work"]).expect("subscribe");
    let assigned = eventually(TIMEOUT, || {
        let _ = consumer.poll(Duration::from_millis(50));
        (consumer.assignment().ok()?.count() == 2).then_some(())
    });
    assert!(assigned.is_some(), "the consumer got both partitions");
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("work", 0, Offset::Offset(4))
        .expect("offset");
    commit
        .add_partition_offset("work", 1, Offset::Offset(6))
        .expect("offset");
    consumer.commit(&commit, CommitMode::Sync).expect("commit");

    let described = json(&broker, &["group", "describe", "cli-group"]);
    assert_eq!(described["state"], "Stable");
    assert_eq!(described["members"].as_array().map(Vec::len), Some(1));
    let member = described["members"][0]["member_id"].clone();
    assert_eq!(
        described["members"][0]["assignment"],
        serde_json::json!([{"topic": "work", "partitions": [0, 1]}])
    );
    assert_eq!(
        described["offsets"],
        serde_json::json!([
            {"topic": "work", "partition": 0, "committed": 4, "log_end": 10, "lag": 6, "member_id": member},
            {"topic": "work", "partition": 1, "committed": 6, "log_end": 6, "lag": 0, "member_id": member},
        ])
    );
    assert_eq!(described["total_lag"], 6);
    let table = ok(&broker, &["group", "describe", "cli-group"]);
    assert!(table.contains("TOTAL-LAG      6\n"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("work   0          4          10       6")),
        "{table}"
    );

    let listed = json(&broker, &["group", "list"]);
    assert_eq!(
        listed,
        serde_json::json!([{"group": "cli-group", "state": "Stable", "protocol_type": "consumer"}])
    );

    let (code, err) = fails(
        &broker,
        &["group", "seek", "cli-group", "--topic", "work", "--to", "2"],
    );
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("1 active member"), "{err}");

    drop(consumer);
    let empty = eventually(TIMEOUT, || {
        let d = json(&broker, &["group", "describe", "cli-group"]);
        (d["state"] == "Empty").then_some(())
    });
    assert!(
        empty.is_some(),
        "the group empties once its consumer leaves"
    );
    let moved = json(
        &broker,
        &["group", "seek", "cli-group", "--topic", "work", "--to", "2"],
    );
    assert_eq!(
        moved,
        serde_json::json!([
            {"topic": "work", "partition": 0, "previous": 4, "new": 2},
            {"topic": "work", "partition": 1, "previous": 6, "new": 2},
        ])
    );
    let moved = json(
        &broker,
        &[
            "group",
            "seek",
            "cli-group",
            "--topic",
            "work",
            "--to",
            "-1",
            "-p",
            "1",
        ],
    );
    assert_eq!(
        moved,
        serde_json::json!([{"topic": "work", "partition": 1, "previous": 2, "new": 5}])
    );

    // A consumer joining the group resumes exactly at the offsets seek set.
    let resumed = group_consumer(&broker, "cli-group");
    resumed.subscribe(&["work"]).expect("subscribe");
    let mut first = std::collections::BTreeMap::new();
    let got = eventually(TIMEOUT, || {
        if let Some(Ok(m)) = resumed.poll(Duration::from_millis(50)) {
            first
                .entry(m.partition())
                .or_insert((m.offset(), m.payload().map(<[u8]>::to_vec)));
        }
        (first.len() == 2).then_some(())
    });
    assert!(got.is_some(), "read both partitions: {first:?}");
    assert_eq!(first[&0], (2, Some(b"a2".to_vec())));
    assert_eq!(first[&1], (5, Some(b"b5".to_vec())));
    drop(resumed);

    let gone = eventually(TIMEOUT, || {
        sluice(&broker, &["group", "delete", "cli-group"])
            .status
            .success()
            .then_some(())
    });
    assert!(gone.is_some(), "the emptied group is deleted");
    assert_eq!(json(&broker, &["group", "list"]), serde_json::json!([]));
    let (code, err) = fails(&broker, &["group", "describe", "cli-group"]);
    assert_eq!(code, 1);
    assert_eq!(one_line(&err), "sluice: group \"cli-group\" does not exist");
}

fn group_consumer(broker: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

#[test]
fn cluster_info_names_the_broker_controller_and_topic_count() {
    let broker = Broker::start();
    ok(&broker, &["topic", "create", "one", "two"]);
    let info = json(&broker, &["cluster", "info"]);
    let (host, port) = broker.kafka.rsplit_once(':').expect("host:port");
    assert_eq!(info["brokers"][0]["host"], host);
    assert_eq!(info["brokers"][0]["port"].to_string(), port);
    assert_eq!(info["controller_id"], info["brokers"][0]["id"]);
    assert_eq!(info["topics"], 2);
    let admin = admin(&broker);
    let cluster_id = admin.inner().fetch_cluster_id(TIMEOUT).expect("cluster id");
    assert_eq!(info["cluster_id"], cluster_id.as_str());
    // An unreachable bootstrap broker is skipped for the next one.
    let fallback = format!("127.0.0.1:1,{}", broker.kafka);
    assert_eq!(
        json(&broker, &["cluster", "info", "--brokers", &fallback]),
        info
    );
    let table = ok(&broker, &["cluster", "info"]);
    assert!(
        table.starts_with(&format!("CLUSTER-ID  {cluster_id}\n")),
        "{table}"
    );
}

#[test]
fn bad_input_gets_one_line_naming_the_problem_and_a_nonzero_exit() {
    let broker = Broker::start();
    ok(&broker, &["topic", "create", "real", "-p", "1"]);
    for args in [
        &["topic", "describe", "ghost"][..],
        &["topic", "consume", "ghost", "-e"],
        &["topic", "produce", "ghost"],
        &["topic", "alter-config", "ghost", "--set", "retention.ms=1"],
        &["topic", "add-partitions", "ghost", "-n", "1"],
    ] {
        let (code, err) = fails(&broker, args);
        assert_eq!(code, 1, "{args:?}");
        let line = one_line(&err);
        assert!(
            line.starts_with("sluice: topic \"ghost\": UNKNOWN_TOPIC_OR_PARTITION"),
            "{args:?}: {line}"
        );
    }
    let (code, err) = fails(&broker, &["topic", "delete", "ghost"]);
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{err}"
    );

    let (code, err) = fails(&broker, &["topic", "consume", "real", "-o", "abc"]);
    assert_eq!(code, 2, "a usage error");
    assert!(
        err.lines()
            .next()
            .unwrap_or_default()
            .contains("'abc' is not beginning, end, N, -N or @timestamp"),
        "{err}"
    );
    let (code, err) = fails(&broker, &["topic", "consume", "real", "-o", "7"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "sluice: offset 7 is outside topic \"real\" partition 0 (log start 0, high watermark 0)"
    );
    let (code, err) = fails(&broker, &["topic", "consume", "real", "-p", "3"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "sluice: topic \"real\" has no partition 3 (it has 1)"
    );

    let (code, err) = fails(
        &broker,
        &["topic", "alter-config", "real", "--set", "no.such.config=1"],
    );
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.starts_with("sluice: topic \"real\": INVALID_CONFIG"),
        "{line}"
    );
    assert!(line.contains("no.such.config"), "{line}");

    let (code, err) = fails(&broker, &["topic", "list", "--brokers", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "sluice: cannot connect to 127.0.0.1:1: connection refused"
    );

    // A broker that accepts and never answers: the timeout ends the call.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = hung.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let (code, err) = fails(
        &broker,
        &["cluster", "info", "--brokers", &addr, "--timeout", "500ms"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        format!("sluice: {addr}: no answer within 500ms")
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(hung);
}
