//! Transactions, the log side, against the real binary: transactional batches are accepted and
//! tracked as an open transaction, which holds the last stable offset back, so a read_committed
//! consumer (librdkafka) stops before it while a read_uncommitted one reads everything; the
//! open transaction comes back after `kill -9`; DescribeProducers shows it.
//!
//! Until the transaction coordinator lands, InitProducerId with a transactional id is refused, so
//! the transactional batches are sent on the raw protocol under an idempotent producer id, and
//! commit/abort markers are covered by the broker crate's tests (`api::fetch`, `log::partition`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{create_topic, eventually, Broker};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, FetchRequest, FetchResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, RequestHeader,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "tx-log";

fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(&broker.kafka).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends one request and decodes its response.
fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("txlog-test")));
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
    assert_eq!(buf.get_i32(), 7);
    if api.response_header_version(version) >= 1 {
        buf.get_u8();
    }
    Resp::decode(&mut buf, version).expect("decode response")
}

/// A v2 batch encoded by the kafka-protocol crate; `producer_id` -1 is a plain batch.
fn batch(producer_id: i64, sequence: i32, transactional: bool, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
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
    buf.freeze()
}

fn produce(stream: &mut TcpStream, transactional_id: Option<&str>, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// `(high watermark, last stable offset, values returned)` of a Fetch from offset 0.
fn fetch(stream: &mut TcpStream, isolation_level: i8) -> (i64, i64, Vec<String>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = call(stream, ApiKey::Fetch, 12, &request);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut values = Vec::new();
    let mut records = p.records.clone().unwrap_or_default();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).expect("decode fetched batches");
        values.extend(set.records.iter().map(|r| {
            String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).expect("utf-8")
        }));
    }
    (p.high_watermark, p.last_stable_offset, values)
}

/// Every value a librdkafka consumer at `isolation` reads from the start, once it has read
/// `expect` of them (or 30 s passed), and the high watermark it is told.
fn consume(broker: &Broker, isolation: &str, expect: usize) -> (Vec<String>, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", format!("txlog-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    eventually(Duration::from_secs(30), || {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into());
        }
        (values.len() >= expect).then_some(())
    });
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .expect("watermarks");
    (values, high)
}

fn describe_txn_start(stream: &mut TcpStream, producer_id: i64) -> i64 {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_indexes(vec![0])]);
    let response: DescribeProducersResponse = call(stream, ApiKey::DescribeProducers, 0, &request);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers
        .iter()
        .find(|s| s.producer_id.0 == producer_id)
        .map_or(-1, |s| s.current_txn_start_offset)
}

/// The checks that must hold before and after the crash: offset 1 opens a transaction.
fn assert_open_transaction_holds_back_read_committed(broker: &Broker, producer_id: i64) {
    let mut stream = connect(broker);
    let (hw, lso, values) = fetch(&mut stream, 1);
    assert_eq!((hw, lso), (4, 1));
    assert_eq!(values, vec!["before"], "read_committed stops at the LSO");
    let (_, lso, values) = fetch(&mut stream, 0);
    assert_eq!(lso, 1, "the LSO is reported to read_uncommitted too");
    assert_eq!(values, vec!["before", "t1", "t2", "after"]);
    assert_eq!(describe_txn_start(&mut stream, producer_id), 1);

    let (all, high) = consume(broker, "read_uncommitted", 4);
    assert_eq!(all, vec!["before", "t1", "t2", "after"]);
    assert_eq!(high, 4);
    let (committed, lso) = consume(broker, "read_committed", 1);
    assert_eq!(committed, vec!["before"]);
    assert_eq!(lso, 1, "ListOffsets latest under read_committed is the LSO");
}

#[test]
fn an_open_transaction_holds_read_committed_back_across_a_crash() {
    let mut broker = Broker::start();
    create_topic(&broker, TOPIC, 1);
    let mut stream = connect(&broker);
    let init: InitProducerIdResponse = call(
        &mut stream,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;

    assert_eq!(
        produce(&mut stream, None, batch(-1, -1, false, &["before"])),
        (0, 0)
    );
    assert_eq!(
        produce(
            &mut stream,
            Some("tx-1"),
            batch(pid, 0, true, &["t1", "t2"])
        ),
        (0, 1),
        "a transactional batch is accepted"
    );
    assert_eq!(
        produce(
            &mut stream,
            Some("tx-1"),
            batch(pid, 0, true, &["t1", "t2"])
        ),
        (0, 1),
        "and its retry deduplicated"
    );
    assert_eq!(
        produce(&mut stream, None, batch(pid, 2, false, &["plain"])).0,
        48,
        "INVALID_TXN_STATE: a plain batch inside the producer's transaction"
    );
    assert_eq!(
        produce(&mut stream, None, batch(-1, -1, false, &["after"])),
        (0, 3)
    );
    assert_open_transaction_holds_back_read_committed(&broker, pid);

    broker.kill9();
    broker.start_again();
    assert_open_transaction_holds_back_read_committed(&broker, pid);
}
