//! Connectors end to end through the Kafka Connect REST API: FileStreamSource and FileStreamSink
//! moving data through the broker, progress visible as consumer group offsets, pause/resume,
//! delete, restarts without loss or repetition, and Connect-style errors.

mod common;

use std::time::Duration;

use common::{eventually, http, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn api(broker: &Broker, path: &str) -> String {
    format!("http://{}{path}", broker.http)
}

fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn topic_values(broker: &Broker, topic: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    let Ok((_, high)) = c.fetch_watermarks(topic, 0, TIMEOUT) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while (out.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

#[test]
fn a_file_flows_through_a_topic_into_another_file_and_survives_restarts() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().expect("dir");
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let source = format!(
        r#"{{"name":"src","config":{{"connector.class":"FileStreamSource","tasks.max":"1","topic":"lines","file":"{}"}}}}"#,
        input.display()
    );
    let (code, body) = http("POST", &api(&broker, "/connectors"), Some(&source));
    assert_eq!(code, 201, "{body}");
    let sink = format!(
        r#"{{"connector.class":"org.apache.kafka.connect.file.FileStreamSinkConnector","topics":"lines","file":"{}"}}"#,
        output.display()
    );
    let (code, body) = http("PUT", &api(&broker, "/connectors/sink/config"), Some(&sink));
    assert_eq!(code, 201, "{body}");

    std::fs::write(&input, "alpha\nbeta\r\ngamma\n").expect("write");
    let expected = vec!["alpha", "beta", "gamma"];
    assert!(
        eventually(TIMEOUT, || (file_lines(&output) == expected).then_some(())).is_some(),
        "{:?}",
        file_lines(&output)
    );
    assert_eq!(topic_values(&broker, "lines"), expected);

    // The sink's progress is its consumer group's committed offset.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "connect-sink")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("lines", 0);
    let committed = c.committed_offsets(tpl, TIMEOUT).expect("committed");
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(3));

    // Restart: nothing produced or written twice, and the connectors carry on.
    broker.restart();
    let status = eventually(TIMEOUT, || {
        let (_, body) = http("GET", &api(&broker, "/connectors/src/status"), None);
        body.contains("\"state\":\"RUNNING\"").then_some(body)
    });
    assert!(status.is_some());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"delta\n"))
        .expect("append");
    let expected = vec!["alpha", "beta", "gamma", "delta"];
    assert!(
        eventually(TIMEOUT, || (file_lines(&output) == expected).then_some(())).is_some(),
        "{:?}",
        file_lines(&output)
    );
    assert_eq!(topic_values(&broker, "lines"), expected);

    // Pause stops delivery; resume delivers what arrived meanwhile.
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/sink/pause"), None).0,
        202
    );
    assert!(eventually(TIMEOUT, || http(
        "GET",
        &api(&broker, "/connectors/sink/status"),
        None
    )
    .1
    .contains("PAUSED")
    .then_some(()))
    .is_some());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"epsilon\n"))
        .expect("append");
    assert!(
        eventually(TIMEOUT, || (topic_values(&broker, "lines").len() == 5)
            .then_some(()))
        .is_some()
    );
    assert_eq!(file_lines(&output).len(), 4, "a paused sink writes nothing");
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/sink/resume"), None).0,
        202
    );
    assert!(eventually(TIMEOUT, || (file_lines(&output).len() == 5).then_some(())).is_some());

    // Delete: gone from the list, 404 afterwards.
    assert_eq!(
        http("DELETE", &api(&broker, "/connectors/src"), None).0,
        204
    );
    let (_, list) = http("GET", &api(&broker, "/connectors"), None);
    assert_eq!(list, r#"["sink"]"#);
    assert_eq!(http("GET", &api(&broker, "/connectors/src"), None).0, 404);
}

#[test]
fn the_rest_surface_answers_as_kafka_connect_does() {
    let broker = Broker::start();
    let (code, root) = http("GET", &api(&broker, "/"), None);
    assert_eq!(code, 200);
    assert!(
        root.contains("\"version\"") && root.contains("kafka_cluster_id"),
        "{root}"
    );
    let (_, plugins) = http("GET", &api(&broker, "/connector-plugins"), None);
    assert!(
        plugins.contains("org.apache.kafka.connect.file.FileStreamSourceConnector"),
        "{plugins}"
    );

    // Bad configs: 400 naming the key.
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(r#"{"name":"x","config":{"connector.class":"FileStreamSink","file":"/tmp/x"}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("\"error_code\":400") && body.contains("topics"),
        "{body}"
    );
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(r#"{"name":"x","config":{"connector.class":"com.example.Nope"}}"#),
    );
    assert_eq!(code, 400);
    assert!(body.contains("connector.class"), "{body}");
    let (code, body) = http(
        "POST",
        &api(&broker, "/connectors"),
        Some(
            r#"{"name":"x","config":{"connector.class":"FileStreamSource","topic":"t","file":"/tmp/x","tasks.max":"zero"}}"#,
        ),
    );
    assert_eq!(code, 400);
    assert!(body.contains("tasks.max"), "{body}");
    let (code, _) = http("POST", &api(&broker, "/connectors"), Some("not json"));
    assert_eq!(code, 400);

    // Validate.
    let (code, body) = http(
        "PUT",
        &api(
            &broker,
            "/connector-plugins/FileStreamSinkConnector/config/validate",
        ),
        Some(r#"{"connector.class":"FileStreamSink","file":"/tmp/x"}"#),
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("\"error_count\":1") && body.contains("Must configure one of topics"),
        "{body}"
    );

    // Create, conflict, info/config/tasks/status, patch, restart, stop.
    let create = r#"{"name":"s","config":{"connector.class":"FileStreamSource","topic":"t","file":"/nonexistent/file"}}"#;
    assert_eq!(
        http("POST", &api(&broker, "/connectors"), Some(create)).0,
        201
    );
    let (code, body) = http("POST", &api(&broker, "/connectors"), Some(create));
    assert_eq!(code, 409);
    assert!(body.contains("already exists"));
    let (_, info) = http("GET", &api(&broker, "/connectors/s"), None);
    assert!(
        info.contains("\"type\":\"source\"")
            && info.contains("\"tasks\":[{\"connector\":\"s\",\"task\":0}]"),
        "{info}"
    );
    let (_, tasks) = http("GET", &api(&broker, "/connectors/s/tasks"), None);
    assert!(
        tasks.contains("\"id\":{\"connector\":\"s\",\"task\":0}"),
        "{tasks}"
    );
    let (code, patched) = http(
        "PATCH",
        &api(&broker, "/connectors/s/config"),
        Some(r#"{"batch.size":"10","file":"/nonexistent/other"}"#),
    );
    assert_eq!(code, 200, "{patched}");
    let (_, config) = http("GET", &api(&broker, "/connectors/s/config"), None);
    assert!(
        config.contains("\"batch.size\":\"10\"") && config.contains("/nonexistent/other"),
        "{config}"
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/restart"), None).0,
        204
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/tasks/0/restart"), None).0,
        204
    );
    assert_eq!(
        http("POST", &api(&broker, "/connectors/s/tasks/7/restart"), None).0,
        404
    );
    assert_eq!(
        http("PUT", &api(&broker, "/connectors/s/stop"), None).0,
        204
    );
    assert!(eventually(TIMEOUT, || http(
        "GET",
        &api(&broker, "/connectors/s/status"),
        None
    )
    .1
    .contains("STOPPED")
    .then_some(()))
    .is_some());
    let (code, expanded) = http(
        "GET",
        &api(&broker, "/connectors?expand=status&expand=info"),
        None,
    );
    assert_eq!(code, 200);
    assert!(
        expanded.contains("\"status\"") && expanded.contains("\"info\""),
        "{expanded}"
    );
    let (code, body) = http("GET", &api(&broker, "/connectors/missing/status"), None);
    assert_eq!(code, 404);
    assert!(body.contains("Connector missing not found"), "{body}");
}

/// A webhook receiver: answers 503 to the first `fail_first` requests, 400 to a batch containing
/// "poison", 200 otherwise; collects the values of accepted batches.
struct Hook {
    port: u16,
    values: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Hook {
    fn start(fail_first: usize) -> Hook {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let values = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (v, r) = (values.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let n = r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = if n < fail_first {
                    "503 Service Unavailable"
                } else if body.contains("poison") {
                    "400 Bad Request"
                } else {
                    let parsed: Vec<serde_json::Value> =
                        serde_json::from_str(&body).unwrap_or_default();
                    let mut values = v.lock().expect("values");
                    values.extend(
                        parsed
                            .iter()
                            .filter_map(|x| x["value"].as_str().map(str::to_string)),
                    );
                    "200 OK"
                };
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
                );
            }
        });
        Hook {
            port,
            values,
            requests,
        }
    }

    fn values(&self) -> std::collections::BTreeSet<String> {
        self.values
            .lock()
            .expect("values")
            .iter()
            .cloned()
            .collect()
    }
}

fn upload(broker: &Broker, module: &str) -> String {
    let path = common::guest_module(module);
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--data-binary"])
        .arg(format!("@{}", path.display()))
        .arg(api(broker, "/v1/modules"));
    let out = common::run(cmd, TIMEOUT);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("upload answer");
    v["module"].as_str().expect("module hash").to_string()
}

fn produce_values(broker: &Broker, topic: &str, values: &[&str]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for v in values {
        p.send(BaseRecord::<(), _>::to(topic).payload(*v))
            .expect("send");
        p.flush(TIMEOUT).expect("flush");
    }
}

#[test]
fn a_webhook_sink_retries_through_outages_and_dead_letters_permanent_failures() {
    let mut broker = Broker::start();
    let hook = Hook::start(3);
    let module = upload(&broker, "webhook-sink");
    let values: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    let mut all: Vec<&str> = values.iter().map(String::as_str).collect();
    all.insert(10, "poison");
    produce_values(&broker, "hooks", &all);
    let base = format!("http://127.0.0.1:{}", hook.port);
    let config = format!(
        r#"{{"name":"hook","config":{{"connector.class":"sluice.WasmSink","topics":"hooks","wasm.module":"{module}","sink.http.allow":"{base}","env.URL":"{base}/in","errors.tolerance":"all","errors.deadletterqueue.topic.name":"hooks-dlq","batch.size":"5","retry.backoff.max.ms":"200"}}}}"#
    );
    let (code, body) = http("POST", &api(&broker, "/connectors"), Some(&config));
    assert_eq!(code, 201, "{body}");
    let expected: std::collections::BTreeSet<String> = values.iter().cloned().collect();
    assert!(
        eventually(TIMEOUT, || (hook.values() == expected).then_some(())).is_some(),
        "delivered {:?}",
        hook.values()
    );
    assert!(
        hook.requests.load(std::sync::atomic::Ordering::SeqCst) > 3,
        "the outage was retried"
    );
    assert!(eventually(TIMEOUT, || (topic_values(&broker, "hooks-dlq")
        == ["poison"])
    .then_some(()))
    .is_some());

    // Progress is the group's committed offset, and a restart resumes without loss.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "connect-hook")
        .create()
        .expect("consumer");
    let committed = eventually(TIMEOUT, || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("hooks", 0);
        let got = c.committed_offsets(tpl, TIMEOUT).ok()?;
        (got.elements()[0].offset() == Offset::Offset(21)).then_some(())
    });
    assert!(committed.is_some());
    drop(c);
    broker.restart();
    produce_values(&broker, "hooks", &["after-1", "after-2"]);
    assert!(eventually(TIMEOUT, || {
        let got = hook.values();
        (got.contains("after-1") && got.contains("after-2") && expected.is_subset(&got))
            .then_some(())
    })
    .is_some());
}

#[test]
fn sinks_reach_only_what_they_are_granted_and_fail_when_told_to() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("dir");
    produce_values(&broker, "events", &["a", "b", "c"]);

    // JSON lines into the granted directory.
    let jsonl = upload(&broker, "jsonl-sink");
    let config = format!(
        r#"{{"connector.class":"sluice.WasmSink","topics":"events","wasm.module":"{jsonl}","sink.file.dir":"{}","env.FILE":"out.jsonl"}}"#,
        dir.path().display()
    );
    assert_eq!(
        http(
            "PUT",
            &api(&broker, "/connectors/lines/config"),
            Some(&config)
        )
        .0,
        201
    );
    let out = dir.path().join("out.jsonl");
    let lines = eventually(TIMEOUT, || {
        let lines = file_lines(&out);
        (lines.len() == 3).then_some(lines)
    })
    .expect("three JSON lines");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(first["value"], "a");
    assert_eq!(first["topic"], "events");

    // An ungranted URL: the webhook cannot reach it and says why in the task status.
    let webhook = upload(&broker, "webhook-sink");
    let config = format!(
        r#"{{"connector.class":"sluice.WasmSink","topics":"events","wasm.module":"{webhook}","env.URL":"http://127.0.0.1:9/x"}}"#
    );
    assert_eq!(
        http(
            "PUT",
            &api(&broker, "/connectors/nohttp/config"),
            Some(&config)
        )
        .0,
        201
    );
    let why = eventually(TIMEOUT, || {
        let (_, status) = http("GET", &api(&broker, "/connectors/nohttp/status"), None);
        status
            .contains("not under a granted base URL")
            .then_some(())
    });
    assert!(
        why.is_some(),
        "{}",
        http("GET", &api(&broker, "/connectors/nohttp/status"), None).1
    );

    // errors.tolerance=none: a permanent failure fails the task, with the reason as trace.
    let hook = Hook::start(0);
    let base = format!("http://127.0.0.1:{}", hook.port);
    produce_values(&broker, "strict", &["poison"]);
    let config = format!(
        r#"{{"connector.class":"sluice.WasmSink","topics":"strict","wasm.module":"{webhook}","sink.http.allow":"{base}","env.URL":"{base}/in"}}"#
    );
    assert_eq!(
        http(
            "PUT",
            &api(&broker, "/connectors/strict/config"),
            Some(&config)
        )
        .0,
        201
    );
    let failed = eventually(TIMEOUT, || {
        let (_, status) = http("GET", &api(&broker, "/connectors/strict/status"), None);
        (status.contains("\"state\":\"FAILED\"") && status.contains("400")).then_some(())
    });
    assert!(
        failed.is_some(),
        "{}",
        http("GET", &api(&broker, "/connectors/strict/status"), None).1
    );

    // A transform module is not a sink.
    let upper = upload(&broker, "uppercase");
    let config = format!(
        r#"{{"connector.class":"sluice.WasmSink","topics":"events","wasm.module":"{upper}"}}"#
    );
    assert_eq!(
        http(
            "PUT",
            &api(&broker, "/connectors/wrong/config"),
            Some(&config)
        )
        .0,
        201
    );
    assert!(eventually(TIMEOUT, || http(
        "GET",
        &api(&broker, "/connectors/wrong/status"),
        None
    )
    .1
    .contains("not a sink")
    .then_some(()))
    .is_some());
}

#[test]
fn sluice_sink_deploy_creates_a_wasm_sink_connector() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("dir");
    produce_values(&broker, "cli-events", &["x", "y"]);
    let mut cmd = std::process::Command::new(common::sluice_binary());
    cmd.args(["sink", "deploy"])
        .arg(common::guest_module("jsonl-sink"))
        .args(["--name", "cli-sink", "--topics", "cli-events", "--file-dir"])
        .arg(dir.path())
        .args([
            "--env",
            "FILE=cli.jsonl",
            "--admin",
            &format!("http://{}", broker.http),
        ]);
    let out = common::run(cmd, TIMEOUT);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("connect-cli-sink"), "{}", out.stdout);
    assert!(
        eventually(TIMEOUT, || (file_lines(&dir.path().join("cli.jsonl"))
            .len()
            == 2)
            .then_some(()))
        .is_some()
    );
    let mut status = std::process::Command::new(common::sluice_binary());
    status.args([
        "sink",
        "status",
        "cli-sink",
        "--admin",
        &format!("http://{}", broker.http),
    ]);
    assert!(common::run(status, TIMEOUT).stdout.contains("RUNNING"));
}
