//! Transactions, the log side, against the real binary with a librdkafka transactional
//! producer: an open transaction holds the last stable offset back, so read_committed consumers
//! (and ListOffsets) stop before it while read_uncommitted ones read everything; committed and
//! aborted transactions are told apart by the aborted list of a read_committed Fetch; open
//! transactions and the aborted list come back after `kill -9`; DescribeProducers shows the open
//! transaction's start. (The coordinator's side — fencing, timeouts, crashes between markers — is
//! `transactions.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{create_topic, eventually, Broker};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, FetchRequest, FetchResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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

/// A plain (non-transactional) producer's write of `value`, acknowledged.
fn produce_plain(broker: &Broker, value: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(value))
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A transactional producer, its transactions initialised.
fn transactional_producer(broker: &Broker, id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "300000")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    producer
}

/// Sends `values` in the producer's current transaction and waits until they are stored.
fn send_in_transaction(producer: &BaseProducer, values: &[&str]) {
    for v in values {
        producer
            .send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(*v))
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// What a Fetch from offset 0 answers.
struct Fetched {
    high_watermark: i64,
    last_stable_offset: i64,
    /// Values of the user records returned (control batches skipped), aborted ones included.
    values: Vec<String>,
    /// `(producer id, first offset)` of the aborted transactions named.
    aborted: Vec<(i64, i64)>,
}

fn fetch(stream: &mut TcpStream, isolation_level: i8) -> Fetched {
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
        values.extend(set.records.iter().filter(|r| !r.control).map(|r| {
            String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).expect("utf-8")
        }));
    }
    Fetched {
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        values,
        aborted: p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
    }
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

/// The producer id DescribeProducers shows with an open transaction, and its start offset.
fn open_transaction(stream: &mut TcpStream) -> Option<(i64, i64)> {
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_indexes(vec![0])]);
    let response: DescribeProducersResponse = call(stream, ApiKey::DescribeProducers, 0, &request);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.active_producers
        .iter()
        .find(|s| s.current_txn_start_offset >= 0)
        .map(|s| (s.producer_id.0, s.current_txn_start_offset))
}

/// Offsets: 0 "before", 1-2 the open transaction, 3 "after".
fn assert_open_transaction_holds_back_read_committed(broker: &Broker) {
    let mut stream = connect(broker);
    let committed = fetch(&mut stream, 1);
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (4, 1)
    );
    assert_eq!(
        committed.values,
        vec!["before"],
        "read_committed stops at the LSO"
    );
    let all = fetch(&mut stream, 0);
    assert_eq!(
        all.last_stable_offset, 1,
        "reported to read_uncommitted too"
    );
    assert_eq!(all.values, vec!["before", "t1", "t2", "after"]);
    assert_eq!(open_transaction(&mut stream).map(|t| t.1), Some(1));

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
    produce_plain(&broker, "before");
    let producer = transactional_producer(&broker, "tx-open");
    producer.begin_transaction().expect("begin");
    send_in_transaction(&producer, &["t1", "t2"]);
    produce_plain(&broker, "after");
    assert_open_transaction_holds_back_read_committed(&broker);

    broker.kill9();
    drop(producer);
    broker.start_again();
    assert_open_transaction_holds_back_read_committed(&broker);
}

/// Offsets: 0-1 committed, 2 its marker, 3-4 aborted, 5 its marker, 6 committed, 7 its marker.
fn assert_only_committed_records_are_read_committed(broker: &Broker) {
    let mut stream = connect(broker);
    let committed = fetch(&mut stream, 1);
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (8, 8)
    );
    assert_eq!(committed.values, vec!["c1", "c2", "a1", "a2", "c3"]);
    assert_eq!(
        committed.aborted.iter().map(|a| a.1).collect::<Vec<_>>(),
        vec![3],
        "the aborted transaction, by its first offset"
    );
    assert!(
        fetch(&mut stream, 0).aborted.is_empty(),
        "read_uncommitted gets no list"
    );
    assert_eq!(open_transaction(&mut stream), None);

    let (read, _) = consume(broker, "read_committed", 3);
    assert_eq!(
        read,
        vec!["c1", "c2", "c3"],
        "librdkafka drops the aborted records"
    );
    let (all, _) = consume(broker, "read_uncommitted", 5);
    assert_eq!(all, vec!["c1", "c2", "a1", "a2", "c3"]);
}

#[test]
fn aborted_transactions_are_dropped_by_read_committed_consumers_across_a_crash() {
    let mut broker = Broker::start();
    create_topic(&broker, TOPIC, 1);
    let producer = transactional_producer(&broker, "tx-ends");
    producer.begin_transaction().expect("begin");
    send_in_transaction(&producer, &["c1", "c2"]);
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    producer.begin_transaction().expect("begin");
    send_in_transaction(&producer, &["a1", "a2"]);
    producer
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");
    producer.begin_transaction().expect("begin");
    send_in_transaction(&producer, &["c3"]);
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    assert_only_committed_records_are_read_committed(&broker);

    broker.kill9();
    drop(producer);
    broker.start_again();
    assert_only_committed_records_are_read_committed(&broker);
}
