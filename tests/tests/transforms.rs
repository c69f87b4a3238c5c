//! WebAssembly transforms end to end: guest examples built for wasm32-wasip1, deployed with the
//! `sluice transform` CLI, driven by kafkajs and librdkafka; failure policies, in-place
//! transforms, fan-out, restart, pause/resume/remove, and hostile guests.

mod common;

use std::time::Duration;

use common::{guest_module, run, tool, transform_cli, workspace_root, Broker, Options};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn deploy(broker: &Broker, module: &str, args: &[&str]) -> common::Run {
    let path = guest_module(module);
    let path = path.to_string_lossy().to_string();
    let mut all = vec!["deploy", path.as_str()];
    all.extend_from_slice(args);
    let out = transform_cli(broker, &all);
    assert!(
        out.status.success(),
        "deploy failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    out
}

fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// Produces one record; the error text on failure.
fn send(p: &FutureProducer, topic: &str, key: &str, value: &str) -> Result<i64, String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let headers = OwnedHeaders::new().insert(Header {
        key: "h",
        value: Some("v"),
    });
    rt.block_on(
        p.send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers)
                .timestamp(1_700_000_000_123),
            Duration::from_secs(10),
        ),
    )
    .map(|d| d.offset)
    .map_err(|(e, _)| e.to_string())
}

/// `(key, value, header h, timestamp)` of every record of partition 0, from the beginning.
fn read_all(broker: &Broker, topic: &str) -> Vec<(String, String, Option<String>, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = c.fetch_watermarks(topic, 0, TIMEOUT).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while (out.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let text = |b: Option<&[u8]>| {
                b.map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let h = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "h")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            out.push((
                text(m.key()),
                text(m.payload()),
                h,
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    out
}

fn high_watermark(broker: &Broker, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    c.fetch_watermarks(topic, 0, TIMEOUT)
        .map(|w| w.1)
        .unwrap_or(-1)
}

#[test]
fn uppercase_runs_inline_for_kafkajs_and_librdkafka() {
    let broker = Broker::start_with(Options {
        toml: "\"group.initial.rebalance.delay.ms\" = 0\n".into(),
        ..Options::default()
    });
    let out = deploy(
        &broker,
        "uppercase",
        &[
            "--name",
            "uppercase",
            "--input",
            "input-topic",
            "--output",
            "output-topic",
        ],
    );
    assert!(
        out.stdout.contains("created topic output-topic"),
        "{}",
        out.stdout
    );

    // librdkafka: outputs exist by the time the produce is acknowledged.
    let p = producer(&broker);
    send(&p, "input-topic", "k1", "hello from librdkafka").expect("produce");
    assert_eq!(
        high_watermark(&broker, "output-topic"),
        1,
        "output written before the ack"
    );
    let got = read_all(&broker, "output-topic");
    assert_eq!(
        got,
        vec![(
            "k1".into(),
            "HELLO FROM LIBRDKAFKA".into(),
            Some("v".into()),
            1_700_000_000_123
        )]
    );
    assert_eq!(
        read_all(&broker, "input-topic")[0].1,
        "hello from librdkafka",
        "the input is stored unchanged"
    );

    // kafkajs, seed style: producer.js-like produce, consumer.js-like group consumer.
    let Some(mut node) = tool("node") else { return };
    node.arg("transform_check.js")
        .current_dir(workspace_root().join("tests/node"))
        .env("KAFKA_BROKER", &broker.kafka)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
    let js = run(node, Duration::from_secs(60));
    assert!(js.status.success(), "{}\n{}", js.stdout, js.stderr);
    let lines: Vec<&str> = js.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "k1 HELLO FROM LIBRDKAFKA -",
            "key1 HELLO KAFKAJS USER! kafkajs"
        ]
    );
}

#[test]
fn deployments_survive_restarts_and_can_be_paused_resumed_and_removed() {
    let mut broker = Broker::start();
    deploy(
        &broker,
        "uppercase",
        &["--name", "up", "--input", "in", "--output", "out"],
    );
    broker.restart();
    let p = producer(&broker);
    send(&p, "in", "a", "after restart").expect("produce");
    assert_eq!(
        read_all(&broker, "out").last().map(|r| r.1.clone()),
        Some("AFTER RESTART".into())
    );

    let listed = transform_cli(&broker, &["list"]);
    assert!(
        listed.stdout.contains("up\tRUNNING\tin"),
        "{}",
        listed.stdout
    );
    assert!(transform_cli(&broker, &["pause", "up"]).status.success());
    send(&p, "in", "b", "while paused").expect("produce");
    assert_eq!(
        high_watermark(&broker, "out"),
        1,
        "a paused transform does not run"
    );
    assert!(transform_cli(&broker, &["resume", "up"]).status.success());
    send(&p, "in", "c", "resumed").expect("produce");
    assert_eq!(
        read_all(&broker, "out").last().map(|r| r.1.clone()),
        Some("RESUMED".into())
    );
    let described = transform_cli(&broker, &["describe", "up"]);
    assert!(
        described.stdout.contains("\"records_out\": 2"),
        "{}",
        described.stdout
    );
    assert!(transform_cli(&broker, &["remove", "up"]).status.success());
    send(&p, "in", "d", "removed").expect("produce");
    assert_eq!(high_watermark(&broker, "out"), 2);
    let again = transform_cli(&broker, &["remove", "up"]);
    assert!(
        !again.status.success() && again.stderr.contains("no transform named 'up'"),
        "{}",
        again.stderr
    );
}

#[test]
fn an_in_place_transform_masks_what_is_stored_and_applies_its_policy() {
    let broker = Broker::start();
    deploy(
        &broker,
        "mask-email",
        &["--name", "mask", "--input", "users", "--in-place"],
    );
    let p = producer(&broker);
    send(&p, "users", "u1", r#"{"email":"jane.doe@example.com"}"#).expect("valid JSON is stored");
    let err = send(&p, "users", "u2", "not json").expect_err("reject policy refuses the produce");
    assert!(
        err.contains("InvalidRecord") || err.contains("invalid"),
        "{err}"
    );
    let stored = read_all(&broker, "users");
    assert_eq!(stored.len(), 1, "nothing of the refused batch is stored");
    assert_eq!(stored[0].1, r#"{"email":"j***@example.com"}"#);
    assert_eq!(stored[0].2.as_deref(), Some("v"), "headers kept");

    // The same guest with dead-lettering: the bad record goes aside with the reason.
    deploy(
        &broker,
        "mask-email",
        &[
            "--name",
            "mask2",
            "--input",
            "users2",
            "--in-place",
            "--on-error",
            "dead-letter=users-dlq",
        ],
    );
    send(&p, "users2", "u3", "still not json").expect("dead-letter accepts the produce");
    send(&p, "users2", "u4", r#"{"a":"b@c.de"}"#).expect("produce");
    let stored = read_all(&broker, "users2");
    assert_eq!(
        stored.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        vec![r#"{"a":"b***@c.de"}"#]
    );
    let dead = read_all(&broker, "users-dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "u3");
    assert_eq!(dead[0].1, "still not json");
}

#[test]
fn the_router_fans_out_by_field() {
    let broker = Broker::start();
    deploy(
        &broker,
        "router",
        &[
            "--name", "route", "--input", "events", "--output", "misc", "--output", "orders",
            "--output", "payments",
        ],
    );
    let p = producer(&broker);
    for (k, v) in [
        ("1", r#"{"type":"orders"}"#),
        ("2", r#"{"type":"payments"}"#),
        ("3", r#"{"type":"?"}"#),
        ("4", r#"{"copy":true}"#),
    ] {
        send(&p, "events", k, v).expect("produce");
    }
    let keys = |t: &str| {
        read_all(&broker, t)
            .into_iter()
            .map(|r| r.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("orders"), vec!["1", "4"]);
    assert_eq!(keys("payments"), vec!["2", "4"]);
    assert_eq!(keys("misc"), vec!["3", "4"]);
}

#[test]
fn hostile_guests_fail_their_own_batches_and_nothing_else() {
    let broker = Broker::start();
    let p = producer(&broker);
    for mode in ["loop", "oom", "trap"] {
        let input = format!("hostile-{mode}");
        let env = format!("MODE={mode}");
        deploy(
            &broker,
            "hostile",
            &[
                "--name", &input, "--input", &input, "--output", "sink", "--env", &env,
            ],
        );
        let err = send(&p, &input, "k", "v").expect_err("the produce fails");
        assert!(
            err.contains("InvalidRecord") || err.contains("invalid"),
            "{mode}: {err}"
        );
        let described = transform_cli(&broker, &["describe", &input]);
        let expected = match mode {
            "loop" => "CPU time limit",
            "oom" => "memory limit",
            _ => "panics on purpose",
        };
        assert!(
            described.stdout.contains(expected),
            "{mode}: {}",
            described.stdout
        );
        if mode == "trap" {
            let logs = transform_cli(&broker, &["logs", &input]);
            assert!(
                logs.stdout.contains("hostile guest panics on purpose"),
                "{}",
                logs.stdout
            );
        }
        // The broker and other topics carry on.
        send(&p, "bystander", "k", mode).expect("other topics are unaffected");
        assert!(
            high_watermark(&broker, &input) == 0,
            "{mode}: nothing of the failed batch stored"
        );
    }
    // A trapped guest is replaced: the same deployment works once the input is fine.
    let http = format!("http://{}", broker.http);
    let upload = |body: Vec<u8>| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--data-binary", "@-", &format!("{http}/v1/modules")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(&body)?;
                c.wait_with_output()
            })
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(upload(b"not wasm at all".to_vec()).contains("not a WebAssembly module"));
    let wrong_abi = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "sluice_abi_version") (result i32) i32.const 99)
            (func (export "sluice_alloc") (param i32) (result i32) i32.const 0)
            (func (export "sluice_init") (param i32 i32) (result i64) i64.const 0)
            (func (export "sluice_on_batch") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .expect("wat");
    assert!(upload(wrong_abi).contains("ABI version 99"));
    let missing = wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("wat");
    assert!(upload(missing).contains("does not export sluice_abi_version"));
    let file_access = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32))))"#,
    )
    .expect("wat");
    assert!(upload(file_access).contains("path_open"));
}

#[test]
fn a_guest_returning_malformed_output_is_refused() {
    let broker = Broker::start();
    // Speaks ABI v2 and claims a section for output 7 of a one-output deployment.
    let bad = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (data (i32.const 1024) "\01\00\00\00\07\00\00\00\01\00\00\00")
            (data (i32.const 1036) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00")
            (data (i32.const 1052) "\00\08\00\00\01\00\00\00\00\00\00\00")
            (data (i32.const 2048) "\00")
            (func (export "sluice_abi_version") (result i32) i32.const 2)
            (func (export "sluice_alloc") (param i32) (result i32) i32.const 4096)
            (func (export "sluice_init") (param i32 i32) (result i64) i64.const 8796093022209)
            (func (export "sluice_on_batch") (param i32 i32) (result i64) i64.const 4398046511144))"#,
    )
    .expect("wat");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.wasm");
    std::fs::write(&path, bad).expect("write");
    let path = path.to_string_lossy().to_string();
    let out = transform_cli(
        &broker,
        &[
            "deploy", &path, "--name", "bad", "--input", "bad-in", "--output", "bad-out",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let err = send(&producer(&broker), "bad-in", "k", "v").expect_err("refused");
    assert!(
        err.contains("InvalidRecord") || err.contains("invalid"),
        "{err}"
    );
    let described = transform_cli(&broker, &["describe", "bad"]);
    assert!(
        described.stdout.contains("malformed output"),
        "{}",
        described.stdout
    );
}

#[test]
fn after_kill_9_every_acknowledged_input_has_its_output_exactly_once() {
    let mut broker = Broker::start();
    deploy(
        &broker,
        "uppercase",
        &["--name", "up", "--input", "eo-in", "--output", "eo-out"],
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let acked: Vec<String> = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..2000 {
            let p = producer.clone();
            handles.push(tokio::spawn(async move {
                let value = format!("record-{i}");
                p.send(
                    FutureRecord::<(), _>::to("eo-in").payload(&value),
                    Duration::from_secs(5),
                )
                .await
                .ok()
                .map(|_| value)
            }));
        }
        let mut acked = Vec::new();
        for (i, h) in handles.into_iter().enumerate() {
            if let Ok(Some(v)) = h.await {
                acked.push(v);
            }
            if i == 1000 {
                broker.kill9();
            }
        }
        acked
    });
    assert!(acked.len() >= 500, "only {} acknowledged", acked.len());
    broker.start_again();
    let inputs: Vec<String> = read_all(&broker, "eo-in")
        .into_iter()
        .map(|r| r.1)
        .collect();
    let outputs: Vec<String> = read_all(&broker, "eo-out")
        .into_iter()
        .map(|r| r.1)
        .collect();
    let expected: Vec<String> = inputs.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(
        outputs, expected,
        "every stored input has its output once, in order"
    );
    for v in &acked {
        assert!(inputs.contains(v), "acknowledged {v} was stored");
    }
}

#[test]
fn recovery_writes_missing_outputs_and_never_duplicates() {
    let mut broker = Broker::start();
    deploy(
        &broker,
        "uppercase",
        &["--name", "up", "--input", "rc-in", "--output", "rc-out"],
    );
    let p = producer(&broker);
    for i in 0..20 {
        send(&p, "rc-in", "k", &format!("v{i}")).expect("produce");
    }
    drop(p);
    broker.kill9();
    // Simulate a crash after the last input was stored but before its output was: cut the last
    // output batch, and roll the saved progress back to the start (as a stale save would be).
    let out_dir = broker.partition_dir("rc-out", 0);
    let segment = std::fs::read_dir(&out_dir)
        .expect("output partition")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("segment");
    let len = std::fs::metadata(&segment).expect("segment").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len - 5))
        .expect("truncate");
    let progress = broker
        .data
        .path()
        .join("data/__sluice/transform-progress.json");
    std::fs::write(
        &progress,
        r#"{"version":1,"deployments":{"up":{"0":{"next_input":0,"seqs":{}}}}}"#,
    )
    .expect("rewind progress");

    broker.start_again();
    let outputs: Vec<String> = read_all(&broker, "rc-out")
        .into_iter()
        .map(|r| r.1)
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("V{i}")).collect();
    assert_eq!(outputs, expected);
}

#[test]
fn transforms_chain_and_keep_the_input_codec() {
    let broker = Broker::start();
    deploy(
        &broker,
        "uppercase",
        &[
            "--name", "first", "--input", "chain-a", "--output", "chain-b",
        ],
    );
    deploy(
        &broker,
        "router",
        &[
            "--name", "second", "--input", "chain-b", "--output", "chain-c",
        ],
    );
    let module = guest_module("uppercase").to_string_lossy().to_string();
    let cycle = transform_cli(
        &broker,
        &[
            "deploy", &module, "--name", "third", "--input", "chain-c", "--output", "chain-a",
        ],
    );
    assert!(
        !cycle.status.success() && cycle.stderr.contains("cycle"),
        "{}",
        cycle.stderr
    );
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    // Long and repetitive, so librdkafka really compresses it.
    let filler = "abc".repeat(300);
    send(
        &p,
        "chain-a",
        "k",
        &format!(r#"{{"type":"x","v":"{filler}"}}"#),
    )
    .expect("produce");
    let c = read_all(&broker, "chain-c");
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].1,
        format!(r#"{{"TYPE":"X","V":"{}"}}"#, filler.to_uppercase())
    );
    assert_eq!(c[0].2.as_deref(), Some("v"));
    // The stored output batch carries the input's codec (attributes bits 0-2: 3 = lz4).
    for topic in ["chain-a", "chain-b", "chain-c"] {
        let segment = broker
            .partition_dir(topic, 0)
            .join("00000000000000000000.log");
        let bytes = std::fs::read(segment).expect("segment");
        assert_eq!(
            i16::from_be_bytes([bytes[21], bytes[22]]) & 7,
            3,
            "{topic} is lz4"
        );
    }
}

#[test]
fn a_scaffolded_transform_builds_and_deploys() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("dir");
    let mut init = std::process::Command::new(common::sluice_binary());
    init.args(["transform", "init", "my-transform", "--path"])
        .arg(dir.path());
    let out = run(init, TIMEOUT);
    assert!(out.status.success(), "{}", out.stderr);
    let crate_dir = dir.path().join("my-transform");
    let mut build = std::process::Command::new(common::sluice_binary());
    build
        .args(["transform", "build", "--path"])
        .arg(&crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            common::target_dir().join("scaffold-test"),
        );
    let built = run(build, Duration::from_secs(600));
    assert!(built.status.success(), "{}\n{}", built.stdout, built.stderr);
    let module = built.stdout.trim().to_string();
    assert!(module.ends_with("my_transform.wasm"), "{module}");
    let out = transform_cli(
        &broker,
        &[
            "deploy", &module, "--name", "mine", "--input", "s-in", "--output", "s-out",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    send(&producer(&broker), "s-in", "k", "as is").expect("produce");
    assert_eq!(read_all(&broker, "s-out")[0].1, "as is");
}
