//! The Kafka wire protocol from a raw socket: hostile and malformed frames are refused without
//! harming other clients, unknown APIs get an answer or a close (never a hang), ApiVersions
//! negotiation follows KIP-511, and idempotent-producer retries and gaps behave as in Kafka.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::Broker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(&broker.kafka).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends one request and reads its response body (after the correlation id).
fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation: i32,
    request: &Req,
) -> Resp {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .expect("header");
    request.encode(&mut body, version).expect("body");
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("response length");
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response).expect("response");
    let mut buf = Bytes::from(response);
    assert_eq!(buf.get_i32(), correlation);
    if api.response_header_version(version) >= 1 {
        assert_eq!(buf.get_u8(), 0, "no tagged fields in the response header");
    }
    Resp::decode(&mut buf, version).expect("decode response")
}

/// True when the broker closed the connection (or answered nothing) within the timeout.
fn closed_or_answered(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        // Zero bytes is a close; anything else is an answer.
        Ok(_n) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// True when the broker ends the connection (EOF or reset) within the read timeout, whatever it
/// may have written first.
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// The broker's resident memory in KiB, from /proc.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A normal client still produces and reads its record back on its own connections.
fn healthy(broker: &Broker, marker: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<(), _>::to("healthy").payload(marker))
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks("healthy", 0, Duration::from_secs(30))
        .expect("watermarks");
    assert!(high >= 1, "{marker}: nothing stored");
    // Every call appends one record, so the newest one is this call's.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("healthy", 0, Offset::Offset(high - 1))
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{marker}: record not read back"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            assert_eq!(m.payload(), Some(marker.as_bytes()), "after {marker}");
            return;
        }
    }
}

#[test]
fn malformed_frames_are_refused_while_other_clients_carry_on() {
    let mut broker = Broker::start();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x00\x00\x10this is not kafka!!".to_vec()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("2 GiB length", i32::MAX.to_be_bytes().to_vec()),
        (
            "length past the data",
            [&100i32.to_be_bytes()[..], b"short"].concat(),
        ),
        (
            "too short for a header",
            [&3i32.to_be_bytes()[..], &[0, 0, 0]].concat(),
        ),
        ("unknown api key", {
            let mut f = 10i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
            f
        }),
        ("absurd array count", {
            // Produce v3 header, then transactional id null, acks, timeout, topic count 0x7fffffff.
            let mut body = Vec::new();
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&3i16.to_be_bytes());
            body.extend_from_slice(&9i32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.extend_from_slice(&1000i32.to_be_bytes());
            body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
            let mut f = (body.len() as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        }),
    ];
    for (name, bytes) in hostile {
        let mut stream = connect(&broker);
        stream.write_all(&bytes).expect("send");
        match name {
            "length past the data" => {
                // Half-close: the broker sees the frame end early.
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            }
            "2 GiB length" => {
                // Keep sending: a broker that trusted the length would buffer all of it.
                let chunk = vec![0u8; 1 << 20];
                for _ in 0..64 {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
            _ => {}
        }
        if matches!(name, "negative length" | "2 GiB length") {
            assert!(closed(&mut stream), "{name}: the connection was not closed");
        } else {
            assert!(
                closed_or_answered(&mut stream),
                "{name}: the broker neither answered nor closed"
            );
        }
        assert!(broker.is_running(), "{name}: the broker died");
        if let Some(pid) = broker.pid() {
            let rss = resident_kib(pid);
            assert!(
                rss < 512 * 1024,
                "{name}: the broker holds {rss} KiB after the frame"
            );
        }
        healthy(&broker, name);
    }
}

#[test]
fn api_versions_lists_what_is_served_and_answers_newer_versions_in_v0() {
    let broker = Broker::start();
    let mut stream = connect(&broker);
    let response: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    );
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce listed");
    assert!(produce.min_version <= 3 && produce.max_version >= 9);
    assert!(response.supported_features.is_empty() && response.finalized_features.is_empty());
    // KIP-511: a version newer than ours gets UNSUPPORTED_VERSION in the v0 layout.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(2);
    let mut body = BytesMut::new();
    header.encode(&mut body, 2).expect("header");
    body.put_u8(0); // empty tagged fields of a flexible body
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("length");
    let mut rest = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut rest).expect("body");
    let mut buf = Bytes::from(rest);
    assert_eq!(buf.get_i32(), 2);
    let v0 = ApiVersionsResponse::decode(&mut buf, 0).expect("v0 response");
    assert_eq!(v0.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!v0.api_keys.is_empty());
}

fn produce_request(topic: &str, batch: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])])
}

/// A v2 record batch encoded by the kafka-protocol crate, not by the broker's own code, so a bug
/// shared by the broker's encoder and decoder cannot hide here. `producer_id` -1 is a plain batch.
fn idempotent_batch(producer_id: i64, sequence: i32, values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if sequence < 0 {
                -1
            } else {
                sequence + i as i32
            },
            timestamp: 1,
            key: None,
            value: Some(Bytes::from(v.as_bytes().to_vec())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.to_vec()
}

#[test]
fn idempotent_retries_are_deduplicated_and_gaps_refused() {
    let broker = Broker::start();
    let mut stream = connect(&broker);
    let _: kafka_protocol::messages::MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        9,
        1,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("idem")))),
            ]))
            .with_allow_auto_topic_creation(true),
    );
    let init: InitProducerIdResponse = call(
        &mut stream,
        ApiKey::InitProducerId,
        4,
        2,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);

    let partition = |r: &ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    let first: ProduceResponse = call(
        &mut stream,
        ApiKey::Produce,
        9,
        3,
        &produce_request("idem", idempotent_batch(pid, 0, &["a", "b"])),
    );
    assert_eq!(partition(&first), (0, 0));
    let retry: ProduceResponse = call(
        &mut stream,
        ApiKey::Produce,
        9,
        4,
        &produce_request("idem", idempotent_batch(pid, 0, &["a", "b"])),
    );
    assert_eq!(
        partition(&retry),
        (0, 0),
        "a retried batch gets its original offset"
    );
    let gap: ProduceResponse = call(
        &mut stream,
        ApiKey::Produce,
        9,
        5,
        &produce_request("idem", idempotent_batch(pid, 5, &["c"])),
    );
    assert_eq!(partition(&gap).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    let next: ProduceResponse = call(
        &mut stream,
        ApiKey::Produce,
        9,
        6,
        &produce_request("idem", idempotent_batch(pid, 2, &["c"])),
    );
    assert_eq!(partition(&next), (0, 2));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    assert_eq!(
        consumer
            .fetch_watermarks("idem", 0, Duration::from_secs(30))
            .expect("watermarks"),
        (0, 3),
        "nothing duplicated"
    );
}

#[test]
fn a_corrupt_batch_is_refused_and_nothing_is_stored() {
    let broker = Broker::start();
    let mut stream = connect(&broker);
    let _: kafka_protocol::messages::MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        9,
        1,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("crc")))),
            ]))
            .with_allow_auto_topic_creation(true),
    );
    let mut batch = idempotent_batch(-1, -1, &["x"]);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let response: ProduceResponse = call(
        &mut stream,
        ApiKey::Produce,
        9,
        2,
        &produce_request("crc", batch),
    );
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 2, "CORRUPT_MESSAGE");
    assert!(p
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("CRC")));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "e2e-reader")
        .create()
        .expect("consumer");
    assert_eq!(
        consumer
            .fetch_watermarks("crc", 0, Duration::from_secs(30))
            .expect("watermarks"),
        (0, 0)
    );
}
