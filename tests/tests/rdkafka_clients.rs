//! librdkafka (through the `rdkafka` crate) against the real broker: produce and fetch with every
//! codec, persistence across restarts, `kill -9` durability, torn-tail recovery, offsets and admin.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Broker, Options};
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer,
    ProducerContext,
};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(broker: &Broker, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.kafka)
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn consumer(broker: &Broker) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        // librdkafka wants a group for assign(); nothing is ever committed to it.
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "1")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin client")
}

/// A record as read back: offset, key, value, headers, timestamp.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

/// Reads partition `partition` of `topic` from `from` until `count` records arrived.
fn read(broker: &Broker, topic: &str, partition: i32, from: Offset, count: usize) -> Vec<Got> {
    let consumer = consumer(broker);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, from)
        .expect("assignment");
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::with_capacity(count);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {count} records of {topic}",
            got.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let m = message.expect("consume");
            got.push(Got {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
    got
}

/// The records a test produces: key i (null every 7th), value (null every 11th), headers (one
/// with a null value, one with an empty one, a repeated key), timestamp base + i.
fn expected(i: usize, base_ts: i64) -> Got {
    Got {
        offset: i as i64,
        key: (!i.is_multiple_of(7)).then(|| format!("key-{i}").into_bytes()),
        value: (!i.is_multiple_of(11))
            .then(|| format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes()),
        headers: vec![
            ("trace".to_string(), Some(format!("t{i}").into_bytes())),
            ("empty".to_string(), None),
            ("blank".to_string(), Some(Vec::new())),
            ("trace".to_string(), Some(b"again".to_vec())),
        ],
        timestamp: Some(base_ts + i as i64),
    }
}

fn produce_expected(
    producer: &BaseProducer,
    topic: &str,
    records: std::ops::Range<usize>,
    base_ts: i64,
) {
    for i in records {
        let want = expected(i, base_ts);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: want.headers[0].1.as_deref(),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            })
            .insert(Header {
                key: "blank",
                value: want.headers[2].1.as_deref(),
            })
            .insert(Header {
                key: "trace",
                value: want.headers[3].1.as_deref(),
            });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .headers(headers)
            .timestamp(base_ts + i as i64);
        if let Some(k) = &want.key {
            record = record.key(&k[..]);
        }
        if let Some(v) = &want.value {
            record = record.payload(&v[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(TIMEOUT).expect("flush");
}

#[test]
fn every_codec_round_trips_keys_headers_nulls_and_timestamps() {
    let broker = Broker::start();
    let base_ts = 1_700_000_000_000;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let p = producer(&broker, &[("compression.type", codec), ("acks", "all")]);
        produce_expected(&p, &topic, 0..1000, base_ts);
        let got = read(&broker, &topic, 0, Offset::Beginning, 1000);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &expected(i, base_ts), "{codec} record {i}");
        }
        let stored = common::stored_codecs(&broker, &topic, 0);
        assert!(
            stored.contains(codec) && (codec != "none" || stored.len() == 1),
            "{codec}: librdkafka stored {stored:?}"
        );
    }
}

#[test]
fn records_topics_and_configs_survive_a_restart() {
    let mut broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let created = rt
        .block_on(
            admin(&broker).create_topics(
                &[NewTopic::new("durable", 3, TopicReplication::Fixed(1))
                    .set("retention.ms", "86400000")
                    // Small segments: the records span several, read back across the rolls.
                    .set("segment.bytes", "8192")],
                &AdminOptions::new(),
            ),
        )
        .expect("create topics");
    assert!(created[0].is_ok(), "{created:?}");
    let p = producer(
        &broker,
        &[
            ("partitioner", "murmur2_random"),
            ("batch.num.messages", "10"),
        ],
    );
    // Recent timestamps: retention.ms (one day) must not delete the closed segments.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    produce_expected(&p, "durable", 0..600, now_ms - 600);
    let before: BTreeMap<i32, Vec<Got>> = (0..3)
        .map(|part| {
            let (_, high) = consumer(&broker)
                .fetch_watermarks("durable", part, TIMEOUT)
                .expect("watermarks");
            (
                part,
                read(&broker, "durable", part, Offset::Beginning, high as usize),
            )
        })
        .collect();
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 600);
    assert!(
        segments(&broker, "durable", 0).len() > 1,
        "partition 0 rolled to several segments"
    );
    drop(p);

    broker.restart();

    for (part, records) in &before {
        let after = read(&broker, "durable", *part, Offset::Beginning, records.len());
        assert_eq!(&after, records, "partition {part}");
    }
    let configs = rt
        .block_on(
            admin(&broker)
                .describe_configs(&[ResourceSpecifier::Topic("durable")], &AdminOptions::new()),
        )
        .expect("describe configs");
    let config = configs[0].as_ref().expect("topic config");
    for (name, value) in [("retention.ms", "86400000"), ("segment.bytes", "8192")] {
        assert_eq!(
            config.get(name).and_then(|e| e.value.clone()).as_deref(),
            Some(value),
            "{name} after the restart"
        );
    }
    let metadata = consumer(&broker)
        .fetch_metadata(Some("durable"), TIMEOUT)
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
}

/// Collects the (offset, key) of every record the broker acknowledged.
struct Acks(Arc<Mutex<Vec<(i64, String)>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            self.0.lock().expect("acks").push((m.offset(), key));
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut broker = Broker::start();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "3000")
        // Many small batches, so the crash hits some in flight and some being written.
        .set("batch.num.messages", "50")
        .create_with_context(Acks(acks.clone()))
        .expect("producer");
    let producer = Arc::new(producer);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Small produces, one after another, until told to stop: the crash lands mid-stream.
    let sender = {
        let (producer, stop, acks) = (producer.clone(), stop.clone(), acks.clone());
        std::thread::spawn(move || {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{sent}");
                let value = format!("v{sent}");
                let mut record = BaseRecord::to("crash").key(&key).payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(5));
                        }
                    }
                }
                sent += 1;
                producer.poll(Duration::ZERO);
                // Stay at most 500 records ahead of the acknowledgements, so the producer is
                // still sending small batches when the broker dies.
                while sent - acks.lock().expect("acks").len() > 500
                    && !stop.load(std::sync::atomic::Ordering::Relaxed)
                {
                    producer.poll(Duration::from_millis(1));
                }
            }
            sent
        })
    };
    let enough = eventually(TIMEOUT, || {
        (acks.lock().expect("acks").len() >= 2000).then_some(())
    });
    assert!(
        enough.is_some(),
        "2000 records acknowledged before the crash"
    );
    broker.kill9();
    // What is in flight now fails once message.timeout.ms passes.
    let keep_sending = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < keep_sending {
        producer.poll(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    let _ = producer.flush(Duration::from_secs(10));
    let acked = acks.lock().expect("acks").clone();
    eprintln!("{} of {sent} records acknowledged", acked.len());
    assert!(
        acked.len() < sent,
        "the crash was mid-stream: {} of {sent} acknowledged",
        acked.len()
    );

    broker.start_again();
    let (_, high) = consumer(&broker)
        .fetch_watermarks("crash", 0, TIMEOUT)
        .expect("watermarks");
    let got = read(&broker, "crash", 0, Offset::Beginning, high as usize);
    let mut keys = std::collections::BTreeSet::new();
    for g in &got {
        let key = String::from_utf8(g.key.clone().expect("key")).expect("utf-8 key");
        assert_eq!(
            g.value.as_deref(),
            Some(format!("v{}", &key[1..]).as_bytes()),
            "offset {} holds the value sent with {key}",
            g.offset
        );
        assert!(keys.insert(key), "offset {} is a duplicate", g.offset);
    }
    let by_offset: BTreeMap<i64, String> = got
        .into_iter()
        .map(|g| {
            (
                g.offset,
                String::from_utf8(g.key.unwrap_or_default()).unwrap_or_default(),
            )
        })
        .collect();
    for (offset, key) in &acked {
        assert_eq!(
            by_offset.get(offset),
            Some(key),
            "acknowledged {key} at offset {offset} lost or moved"
        );
    }
}

/// The `*.log` segment files of a partition, oldest first (names are zero-padded base offsets).
fn segments(broker: &Broker, topic: &str, partition: i32) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(broker.partition_dir(topic, partition))
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

#[test]
fn a_torn_segment_tail_is_recovered_and_writes_continue() {
    // Small segments, so the torn one is the newest of several.
    let mut broker = Broker::start_with(Options {
        // The records carry 2022 timestamps: keep time-based retention from deleting the
        // closed segments, as it would in Kafka.
        toml: "\"log.segment.bytes\" = 4096\n\"log.retention.ms\" = -1\n".to_string(),
        ..Options::default()
    });
    let p = producer(&broker, &[("linger.ms", "0"), ("acks", "all")]);
    // Flushing every 10 records makes many small batches, so the torn one is only the last.
    for start in (0..200).step_by(10) {
        produce_expected(&p, "torn", start..start + 10, 1_650_000_000_000);
    }
    drop(p);
    broker.kill9();
    let logs = segments(&broker, "torn", 0);
    assert!(logs.len() > 1, "several segments: {logs:?}");
    let log = logs.last().expect("a segment").clone();
    let len = std::fs::metadata(&log).expect("segment").len();
    // Cut into the last batch, then append garbage after it, as a crash mid-write could.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open segment");
    file.set_len(len - 7).expect("truncate");
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 100], len - 7).expect("garbage");
    drop(file);

    broker.start_again();
    let (low, high) = consumer(&broker)
        .fetch_watermarks("torn", 0, TIMEOUT)
        .expect("watermarks");
    assert_eq!(low, 0);
    assert!(
        (150..200).contains(&high),
        "high watermark {high} after losing the torn batch"
    );
    let got = read(&broker, "torn", 0, Offset::Beginning, high as usize);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &expected(i, 1_650_000_000_000), "record {i} kept intact");
    }
    let p = producer(&broker, &[("acks", "all")]);
    p.send(BaseRecord::<(), _>::to("torn").payload("after"))
        .expect("send");
    p.flush(TIMEOUT).expect("flush");
    let next = read(&broker, "torn", 0, Offset::Offset(high), 1);
    assert_eq!(next[0].offset, high);
    assert_eq!(next[0].value.as_deref(), Some(&b"after"[..]));
}

#[test]
fn offsets_by_time_watermarks_delete_records_partitions_and_topic_deletion() {
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin = admin(&broker);
    let p = producer(&broker, &[("linger.ms", "0")]);
    produce_expected(&p, "offsets", 0..100, 1_000_000);
    let c = consumer(&broker);
    assert_eq!(
        c.fetch_watermarks("offsets", 0, TIMEOUT)
            .expect("watermarks"),
        (0, 100)
    );

    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("offsets", 0, Offset::Offset(1_000_042))
        .expect("query");
    let found = c
        .offsets_for_times(query, TIMEOUT)
        .expect("offsets for times");
    assert_eq!(found.elements()[0].offset(), Offset::Offset(42));
    // Before every record: the first one; after every record: no offset (Kafka's -1, End).
    let by_time = |ts: i64| {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("offsets", 0, Offset::Offset(ts))
            .expect("query");
        c.offsets_for_times(query, TIMEOUT)
            .expect("offsets for times")
            .elements()[0]
            .offset()
    };
    assert_eq!(by_time(1), Offset::Offset(0));
    assert_eq!(by_time(1_000_000 + 100), Offset::End);

    let mut cut = TopicPartitionList::new();
    cut.add_partition_offset("offsets", 0, Offset::Offset(30))
        .expect("cut");
    let deleted = rt
        .block_on(admin.delete_records(&cut, &AdminOptions::new()))
        .expect("delete records");
    assert_eq!(deleted.elements()[0].offset(), Offset::Offset(30));
    assert_eq!(
        c.fetch_watermarks("offsets", 0, TIMEOUT)
            .expect("watermarks"),
        (30, 100)
    );
    let from_start = read(&broker, "offsets", 0, Offset::Beginning, 1);
    assert_eq!(
        from_start[0].offset, 30,
        "reading from the beginning starts at the new log start"
    );

    // A fetch below the log start offset is OFFSET_OUT_OF_RANGE: the client resets to the new
    // log start when told to, and reports the error when told to.
    let reset = |policy: &str| -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.kafka)
            .set("group.id", "e2e-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", policy)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("offsets", 0, Offset::Offset(10))
            .expect("assignment");
        c.assign(&tpl).expect("assign");
        c
    };
    let earliest = reset("earliest");
    let first = eventually(TIMEOUT, || earliest.poll(Duration::from_millis(100)))
        .expect("a record after the reset")
        .expect("consume");
    assert_eq!(first.offset(), 30, "reset to the log start offset");
    drop(first);
    let strict = reset("error");
    let failed = eventually(TIMEOUT, || strict.poll(Duration::from_millis(100)))
        .expect("an answer to the out-of-range fetch");
    assert!(
        failed.is_err(),
        "fetching offset 10 below log start 30 errs, got offset {:?}",
        failed.map(|m| m.offset())
    );

    let grown = rt
        .block_on(
            admin.create_partitions(&[NewPartitions::new("offsets", 4)], &AdminOptions::new()),
        )
        .expect("create partitions");
    assert!(grown[0].is_ok(), "{grown:?}");
    let metadata = eventually(TIMEOUT, || {
        let m = c.fetch_metadata(Some("offsets"), TIMEOUT).ok()?;
        (m.topics()[0].partitions().len() == 4).then_some(m)
    });
    assert!(metadata.is_some(), "topic grew to 4 partitions");

    let gone = rt
        .block_on(admin.delete_topics(&["offsets"], &AdminOptions::new()))
        .expect("delete topics");
    assert!(gone[0].is_ok(), "{gone:?}");
    assert!(!broker.partition_dir("offsets", 0).exists());
    let metadata = c
        .fetch_metadata(Some("offsets"), TIMEOUT)
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
        "a deleted topic is unknown"
    );
}

#[test]
fn a_record_under_message_max_bytes_round_trips_and_a_larger_batch_is_refused() {
    let broker = Broker::start_with(Options {
        toml: "\"message.max.bytes\" = 1048588\n".to_string(),
        ..Options::default()
    });
    // The client's own limit is raised so that the broker's limit is the one tested.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("acks", "all")
        .set("message.max.bytes", "20000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let send = |value: &[u8]| {
        rt.block_on(producer.send(
            FutureRecord::<(), _>::to("big").payload(value).partition(0),
            TIMEOUT,
        ))
        .map(|delivery| delivery.offset)
        .map_err(|(error, _)| error)
    };
    let fits: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let stored = send(&fits).expect("a 900 KB record is accepted");
    assert_eq!(stored, 0);
    let refused = send(&vec![7u8; 2_000_000]);
    assert!(
        matches!(
            refused,
            Err(rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge
            ))
        ),
        "a 2 MB batch gets MESSAGE_TOO_LARGE, got {:?}",
        refused
    );
    assert_eq!(
        consumer(&broker)
            .fetch_watermarks("big", 0, TIMEOUT)
            .expect("watermarks"),
        (0, 1),
        "nothing of the refused batch is stored"
    );
    let got = read(&broker, "big", 0, Offset::Beginning, 1);
    assert_eq!(got[0].value.as_deref(), Some(&fits[..]));
}
