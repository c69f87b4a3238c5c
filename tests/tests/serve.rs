//! `sluice serve` as scripts see it: the one startup line on stdout, `/health`, a clean exit on
//! SIGTERM, settings from environment variables and the TOML file, both flush policies, and a
//! refused unknown setting.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, sluice_binary, Broker, Options};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Whether `line` is exactly `sluice listening kafka=127.0.0.1:PORT http=127.0.0.1:PORT`.
fn is_startup_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("sluice listening kafka=127.0.0.1:") else {
        return false;
    };
    let Some((kafka_port, http)) = rest.split_once(" http=127.0.0.1:") else {
        return false;
    };
    kafka_port.parse::<u16>().is_ok_and(|p| p > 0) && http.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Produces `value` with acks=all to partition 0 of `topic` and reads it back from the start.
fn produce_and_read(kafka: &str, topic: &str, value: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<(), _>::to(topic).payload(value).partition(0))
        .expect("send");
    producer.flush(TIMEOUT).expect("flush");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let message = eventually(TIMEOUT, || consumer.poll(Duration::from_millis(100)))
        .expect("the record read back")
        .expect("consume");
    assert_eq!(message.payload(), Some(value.as_bytes()));
}

#[test]
fn prints_one_startup_line_serves_health_and_stops_cleanly_under_both_flush_policies() {
    for flush in ["fsync", "page-cache"] {
        let mut broker = Broker::start_with(Options {
            flush: Some(flush),
            ..Options::default()
        });
        assert!(
            is_startup_line(&broker.startup_line),
            "startup line {:?}",
            broker.startup_line
        );
        let (status, _) = http_get(&broker.http, "/health");
        assert_eq!(status, 200, "GET /health");
        produce_and_read(&broker.kafka, &format!("flush-{flush}"), flush);
        // stop() sends SIGTERM and asserts exit status 0.
        broker.stop();
        assert!(!broker.stderr().contains("panicked"), "{}", broker.stderr());
    }
}

/// Starts the binary the way a deployment script would, its stderr going to `stderr_log`;
/// returns it and its first stdout line.
fn spawn(cmd: &mut Command, stderr_log: &std::path::Path) -> (Child, Option<String>) {
    let stderr = std::fs::File::create(stderr_log).expect("stderr log");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start sluice");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).ok();
    (child, line)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice did not stop within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn environment_variables_and_the_toml_file_configure_the_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("from-env");
    let config = dir.path().join("sluice.toml");
    let log = dir.path().join("stderr");
    let stderr_of = || std::fs::read_to_string(&log).unwrap_or_default();
    std::fs::write(
        &config,
        "\"num.partitions\" = 3\n\"auto.create.topics.enable\" = true\n",
    )
    .expect("config");
    let (mut child, line) = spawn(
        Command::new(sluice_binary())
            .args(["serve", "--config"])
            .arg(&config)
            .env("SLUICE_KAFKA_LISTEN", "127.0.0.1:0")
            .env("SLUICE_HTTP_LISTEN", "127.0.0.1:0")
            .env("SLUICE_DATA_DIR", &data),
        &log,
    );
    let Some(line) = line else {
        let _ = child.kill();
        panic!("no startup line:\n{}", stderr_of());
    };
    assert!(is_startup_line(&line), "startup line {line:?}");
    let kafka = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kafka="))
        .expect("kafka address")
        .to_string();

    // A topic auto-created by a produce gets num.partitions from the TOML file.
    produce_and_read(&kafka, "auto-created", "hello");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some("auto-created"), TIMEOUT)
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    assert!(
        data.join("auto-created-0").is_dir(),
        "partitions live under SLUICE_DATA_DIR"
    );
    let status = terminate(&mut child);
    assert!(status.success(), "exit {status}:\n{}", stderr_of());
}

#[test]
fn an_unknown_setting_stops_the_broker_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sluice.toml");
    let log = dir.path().join("stderr");
    std::fs::write(&config, "\"no.such.setting\" = 1\n").expect("config");
    let (mut child, line) = spawn(
        Command::new(sluice_binary())
            .args(["serve", "--kafka-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config),
        &log,
    );
    if line.is_some() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker started with an unknown setting: {line:?}");
    }
    let status = eventually(TIMEOUT, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the broker neither started nor exited");
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "exit status {status}");
    assert!(stderr.contains("no.such.setting"), "stderr: {stderr}");
}

#[test]
fn json_log_format_writes_one_json_object_per_stderr_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr");
    let (mut child, line) = spawn(
        Command::new(sluice_binary())
            .args(["serve", "--kafka-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("SLUICE_LOG", "info"),
        &log,
    );
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let Some(line) = line else {
        let _ = child.kill();
        panic!("no startup line:\n{}", stderr());
    };
    assert!(is_startup_line(&line), "stdout stays plain: {line:?}");
    let status = terminate(&mut child);
    assert!(status.success(), "exit {status}:\n{}", stderr());
    let logged = stderr();
    let lines: Vec<&str> = logged.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "nothing logged at info level");
    for l in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(parsed.is_object(), "not an object: {l}");
    }
}
