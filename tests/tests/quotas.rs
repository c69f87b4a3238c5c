//! Client quotas and connection limits against the real binary: a librdkafka producer held to
//! its `producer_byte_rate` beside one that is not, quotas set and listed with `sluice quota`
//! (AlterClientQuotas / DescribeClientQuotas) and kept across a restart, `max.connections.per.ip`
//! and `queued.max.request.bytes`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{create_topic, eventually, http, run, sluice_binary, Broker, Options, Run};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `sluice quota ARGS... --brokers <broker>`.
fn quota_cli(broker: &Broker, args: &[&str]) -> Run {
    let mut cmd = Command::new(sluice_binary());
    cmd.arg("quota")
        .args(args)
        .args(["--brokers", &broker.kafka]);
    run(cmd, Duration::from_secs(30))
}

fn quota_ok(broker: &Broker, args: &[&str]) -> String {
    let out = quota_cli(broker, args);
    assert!(
        out.status.success(),
        "sluice quota {args:?} failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// `sluice quota describe --format json`, as (entity, quotas) pairs.
fn described(broker: &Broker) -> Vec<Value> {
    let text = quota_ok(broker, &["describe", "--format", "json"]);
    serde_json::from_str::<Value>(&text)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

/// When each acknowledged record's ack arrived, and its payload size.
type AckLog = Arc<Mutex<Vec<(Instant, usize)>>>;

/// Counts the payload bytes the broker acknowledged, with when each ack arrived.
struct Delivered(AckLog);

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let size = rdkafka::Message::payload(m).map_or(0, <[u8]>::len);
            self.0.lock().expect("acks").push((Instant::now(), size));
        }
    }
}

/// A producer sending `payload`-sized records to `topic` as fast as the broker takes them, until
/// `stop`; the returned log has every acknowledged record.
fn flood(
    broker: &Broker,
    client_id: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, AckLog) {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Delivered> = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "2")
        // Requests of at most 64 KiB, so a second holds many and the measure is fine-grained.
        .set("batch.size", "65536")
        // A bounded local queue: a throttled producer waits instead of buffering gigabytes.
        .set("queue.buffering.max.messages", "400")
        .set("message.timeout.ms", "120000")
        .create_with_context(Delivered(acks.clone()))
        .expect("producer");
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || {
        let payload = vec![b'q'; 8 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match producer.send(BaseRecord::<(), [u8]>::to(&topic).payload(&payload[..])) {
                Ok(()) => {}
                Err((e, _)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send failed: {e}"
                    );
                    producer.poll(Duration::from_millis(5));
                }
            }
            producer.poll(Duration::ZERO);
        }
        // What is still queued is not counted; drop it.
        producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        producer.poll(Duration::from_millis(100));
    });
    (handle, acks)
}

/// Payload bytes per second acknowledged in `[from, to)`.
fn rate(acks: &Mutex<Vec<(Instant, usize)>>, from: Instant, to: Instant) -> f64 {
    let bytes: usize = acks
        .lock()
        .expect("acks")
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, n)| n)
        .sum();
    bytes as f64 / (to - from).as_secs_f64()
}

fn sleep_until(at: Instant) {
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// The value of a counter sample on `/metrics` (0 when absent).
fn metric(broker: &Broker, sample: &str) -> f64 {
    let (status, body) = http("GET", &format!("http://{}/metrics", broker.http), None);
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_throttled_producer_is_held_to_its_byte_rate_while_another_is_not_slowed() {
    let broker = Broker::start();
    create_topic(&broker, "throttled", 1);
    create_topic(&broker, "free", 1);
    let quota = MIB;
    quota_ok(
        &broker,
        &[
            "alter",
            "--client-id",
            "throttled-producer",
            "--add",
            &format!("producer_byte_rate={quota}"),
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let (slow_thread, slow) = flood(&broker, "throttled-producer", "throttled", stop.clone());
    let (fast_thread, fast) = flood(&broker, "free-producer", "free", stop.clone());
    // Past the first second (one window's burst), measured over 10 s.
    let from = start + Duration::from_secs(2);
    let to = from + Duration::from_secs(10);
    sleep_until(to);
    let slow_rate = rate(&slow, from, to);
    let fast_rate = rate(&fast, from, to);
    eprintln!(
        "throttled: {:.2} MiB/s, unthrottled: {:.2} MiB/s",
        slow_rate / MIB,
        fast_rate / MIB
    );
    assert!(
        (slow_rate - quota).abs() <= 0.2 * quota,
        "the throttled producer got {:.2} MiB/s against a quota of 1 MiB/s",
        slow_rate / MIB
    );
    assert!(
        fast_rate >= 3.0 * quota && fast_rate >= 3.0 * slow_rate,
        "the unthrottled producer got only {:.2} MiB/s beside the throttled one's {:.2}",
        fast_rate / MIB,
        slow_rate / MIB
    );
    assert!(
        metric(
            &broker,
            "sluice_quota_throttled_responses_total{quota=\"producer_byte_rate\"}"
        ) > 0.0,
        "throttled responses are counted"
    );

    // Removing the quota frees the client (after at most one throttle time).
    quota_ok(
        &broker,
        &[
            "alter",
            "--client-id",
            "throttled-producer",
            "--delete",
            "producer_byte_rate",
        ],
    );
    let freed_from = Instant::now() + Duration::from_millis(1500);
    let freed_to = freed_from + Duration::from_secs(3);
    sleep_until(freed_to);
    let freed_rate = rate(&slow, freed_from, freed_to);
    stop.store(true, Ordering::Relaxed);
    slow_thread.join().expect("throttled producer");
    fast_thread.join().expect("unthrottled producer");
    assert!(
        freed_rate >= 3.0 * quota,
        "without its quota the producer still got only {:.2} MiB/s",
        freed_rate / MIB
    );
}

#[test]
fn a_throttled_consumer_is_held_to_its_byte_rate_by_user_and_client_id() {
    let broker = Broker::start();
    create_topic(&broker, "backlog", 1);
    // A backlog the consumer cannot finish in the measured time at its quota.
    let stop = Arc::new(AtomicBool::new(false));
    let (filler, filled) = flood(&broker, "filler", "backlog", stop.clone());
    let enough = eventually(Duration::from_secs(60), || {
        let bytes: usize = filled.lock().expect("acks").iter().map(|(_, n)| n).sum();
        (bytes as f64 >= 24.0 * MIB).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    filler.join().expect("filler");
    assert!(enough.is_some(), "the backlog was not written");

    let quota = MIB;
    quota_ok(
        &broker,
        &[
            "alter",
            "--user",
            "ANONYMOUS",
            "--client-id",
            "throttled-consumer",
            "--add",
            &format!("consumer_byte_rate={quota}"),
        ],
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("client.id", "throttled-consumer")
        .set("group.id", "quota-reader")
        .set("enable.auto.commit", "false")
        // Small fetches, so a second holds many and the measure is fine-grained.
        .set("fetch.max.bytes", "65536")
        .set("message.max.bytes", "65536")
        .set("max.partition.fetch.bytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("backlog", 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let from = start + Duration::from_secs(2);
    let to = from + Duration::from_secs(10);
    let mut measured = 0usize;
    while Instant::now() < to {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let at = Instant::now();
            if at >= from && at < to {
                measured += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            }
        }
    }
    let rate = measured as f64 / 10.0;
    eprintln!("throttled consumer: {:.2} MiB/s", rate / MIB);
    assert!(
        (rate - quota).abs() <= 0.2 * quota,
        "the throttled consumer got {:.2} MiB/s against a quota of 1 MiB/s",
        rate / MIB
    );
    assert!(
        metric(
            &broker,
            "sluice_quota_throttled_responses_total{quota=\"consumer_byte_rate\"}"
        ) > 0.0
    );
}

/// Sends Metadata v4 (no topics) on `stream`; returns the response's `throttle_time_ms`.
fn metadata_throttle(stream: &mut TcpStream, client_id: &str, correlation_id: i32) -> i32 {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(4)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).expect("header");
    MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .encode(&mut body, 4)
        .expect("request");
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("response length");
    let mut response = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut response).expect("response");
    // v4: the correlation id (header v0), then throttle_time_ms.
    assert_eq!(
        i32::from_be_bytes([response[0], response[1], response[2], response[3]]),
        correlation_id
    );
    i32::from_be_bytes([response[4], response[5], response[6], response[7]])
}

#[test]
fn a_client_over_its_request_percentage_is_told_and_held_back_even_if_it_ignores_the_field() {
    let broker = Broker::start();
    // 0.1% of one thread: a millisecond of handling per second.
    quota_ok(
        &broker,
        &[
            "alter",
            "--client-id",
            "busy",
            "--add",
            "request_percentage=0.1",
        ],
    );
    let mut busy = connect(&broker);
    let mut other = connect(&broker);
    let mut throttle = 0;
    for i in 0..5_000 {
        assert_eq!(metadata_throttle(&mut other, "calm", i), 0);
        throttle = metadata_throttle(&mut busy, "busy", i);
        if throttle > 0 {
            break;
        }
    }
    assert!(throttle > 0, "never throttled");
    // The client sends at once, ignoring the field; the broker answers only after the hold.
    let sent = Instant::now();
    metadata_throttle(&mut busy, "busy", 9_999);
    let waited = sent.elapsed();
    assert!(
        waited + Duration::from_millis(20) >= Duration::from_millis(throttle as u64),
        "told to wait {throttle} ms, answered after {waited:?}"
    );
    // Another client on the same broker is not held back.
    let sent = Instant::now();
    assert_eq!(metadata_throttle(&mut other, "calm", 10_000), 0);
    assert!(
        sent.elapsed() < Duration::from_millis(throttle as u64).max(Duration::from_millis(200))
    );
}

#[test]
fn client_quotas_are_described_as_altered_and_survive_a_restart() {
    let mut broker = Broker::start();
    quota_ok(
        &broker,
        &[
            "alter",
            "--user",
            "alice",
            "--client-id-default",
            "--add",
            "producer_byte_rate=2048",
            "--add",
            "request_percentage=12.5",
        ],
    );
    quota_ok(
        &broker,
        &[
            "alter",
            "--client-id",
            "reporting",
            "--add",
            "consumer_byte_rate=4096",
        ],
    );
    // A dry run and refused values change nothing.
    quota_ok(
        &broker,
        &[
            "alter",
            "--user-default",
            "--add",
            "producer_byte_rate=1",
            "--validate-only",
        ],
    );
    for bad in [
        &["alter", "--user", "bob", "--add", "producer_byte_rate=1.5"][..],
        &["alter", "--user", "bob", "--add", "no_such_quota=5"][..],
        &["alter", "--user", "bob", "--add", "consumer_byte_rate=-4"][..],
    ] {
        let out = quota_cli(&broker, bad);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(out.stderr.contains("INVALID_REQUEST"), "{}", out.stderr);
    }
    let expected = serde_json::json!([
        {"entity": {"client-id": "reporting"}, "quotas": {"consumer_byte_rate": 4096.0}},
        {"entity": {"user": "alice", "client-id": null},
         "quotas": {"producer_byte_rate": 2048.0, "request_percentage": 12.5}},
    ]);
    let mut listed = described(&broker);
    let key = |v: &Value| v["entity"].to_string();
    listed.sort_by_key(key);
    let mut want = expected.as_array().expect("array").clone();
    want.sort_by_key(key);
    assert_eq!(listed, want);

    // Filters: one entity by its exact components.
    let alice = quota_ok(
        &broker,
        &[
            "describe",
            "--user",
            "alice",
            "--client-id-default",
            "--strict",
            "--format",
            "json",
        ],
    );
    let alice: Value = serde_json::from_str(&alice).expect("json");
    assert_eq!(alice.as_array().map(Vec::len), Some(1), "{alice}");

    broker.restart();
    let mut after = described(&broker);
    after.sort_by_key(key);
    assert_eq!(after, want, "quotas after a restart");

    quota_ok(
        &broker,
        &[
            "alter",
            "--client-id",
            "reporting",
            "--delete",
            "consumer_byte_rate",
        ],
    );
    let left = described(&broker);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["entity"]["user"], "alice");
}

/// An ApiVersions v0 request frame.
fn api_versions_frame(correlation_id: i32) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(0)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("limits-test")));
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).expect("header");
    ApiVersionsRequest::default()
        .encode(&mut body, 0)
        .expect("request");
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

/// Sends ApiVersions on `stream` and reads the response's correlation id.
fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> std::io::Result<i32> {
    stream.write_all(&api_versions_frame(correlation_id))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut body)?;
    Ok(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(&broker.kafka).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Whether the broker closed `stream` (EOF or reset) rather than answering.
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    // The request may or may not reach a socket the broker already closed.
    let _ = stream.write_all(&api_versions_frame(99));
    let mut buf = [0u8; 4];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_over_max_connections_per_ip_are_closed_and_the_first_ones_keep_working() {
    let broker = Broker::start_with(Options {
        toml: "\"max.connections.per.ip\" = 3\n".into(),
        ..Options::default()
    });
    let mut first: Vec<TcpStream> = (0..3).map(|_| connect(&broker)).collect();
    for (i, s) in first.iter_mut().enumerate() {
        assert_eq!(api_versions(s, i as i32).expect("answered"), i as i32);
    }
    let mut extra = connect(&broker);
    assert!(
        closed_by_broker(&mut extra),
        "the fourth connection from one address is closed"
    );
    for (i, s) in first.iter_mut().enumerate() {
        let id = 10 + i as i32;
        assert_eq!(api_versions(s, id).expect("still answered"), id);
    }
    assert_eq!(
        metric(
            &broker,
            "sluice_connections_refused_total{limit=\"max.connections.per.ip\"}"
        ),
        1.0
    );
    assert!(broker.stderr().contains("connection refused"));

    // Closing one frees its slot.
    drop(first.pop());
    let reconnected = eventually(Duration::from_secs(10), || {
        let mut s = connect(&broker);
        api_versions(&mut s, 42).ok().map(|_| s)
    });
    assert!(reconnected.is_some(), "a freed slot takes a new connection");
}

#[test]
fn requests_larger_than_queued_max_request_bytes_are_still_served() {
    let broker = Broker::start_with(Options {
        toml: "\"queued.max.request.bytes\" = 4096\n".into(),
        ..Options::default()
    });
    create_topic(&broker, "bounded", 1);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Delivered> = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "5")
        .create_with_context(Delivered(acks.clone()))
        .expect("producer");
    let big = vec![b'b'; 200 * 1024];
    for _ in 0..20 {
        producer
            .send(BaseRecord::<(), [u8]>::to("bounded").payload(&big[..]))
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(acks.lock().expect("acks").len(), 20);
}
