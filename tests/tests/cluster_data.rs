//! Cluster mode's data path end to end: two `sluice serve` brokers on one PostgreSQL and one
//! SeaweedFS, an idempotent librdkafka producer bootstrapped from one, a consumer bootstrapped
//! from the other, every acknowledged record read back at the offset it was acknowledged with.
//! (The wider cluster suite is tests/tests/cluster.rs.)

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Broker, Options};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_engines::{Postgres, Weed};

const TIMEOUT: Duration = Duration::from_secs(60);

fn cluster_broker(pg: &Postgres, weed: &Weed) -> Broker {
    let env = weed
        .env()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Broker::start_with(Options {
        toml: "\"num.partitions\" = 3\n".into(),
        args: vec![
            "--metadata".into(),
            pg.url(),
            "--objects".into(),
            weed.objects_url(),
        ],
        env,
        ..Options::default()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn records_produced_through_one_broker_are_read_through_another_at_their_offsets() {
    if !sluice_engines::require("PostgreSQL", Postgres::installed())
        || !sluice_engines::require("SeaweedFS", Weed::installed())
    {
        return;
    }
    let pg = Postgres::start().expect("start PostgreSQL");
    let weed = Weed::start().expect("start SeaweedFS");
    let a = cluster_broker(&pg, &weed);
    let b = cluster_broker(&pg, &weed);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let topic = "cluster-orders";
    let count = 300;
    let mut deliveries = Vec::new();
    for i in 0..count {
        let key = format!("key-{}", i % 17);
        let value = format!("order {i}");
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((e, _)) => panic!("cannot queue {value}: {e}"),
        };
        deliveries.push((value.clone(), delivery));
    }
    // Where each record was acknowledged: partition -> offset -> value.
    let mut acked: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    for (value, delivery) in deliveries {
        let (partition, offset) = match delivery.await {
            Ok(Ok(d)) => (d.partition, d.offset),
            Ok(Err((e, _))) => panic!(
                "{value} not acknowledged: {e}\nbroker a:\n{}\nbroker b:\n{}",
                a.stderr(),
                b.stderr()
            ),
            Err(_) => panic!("{value}: the producer went away"),
        };
        let previous = acked.entry(partition).or_default().insert(offset, value);
        assert!(
            previous.is_none(),
            "two records acknowledged at {partition}/{offset}"
        );
    }
    assert!(
        acked.len() > 1,
        "keys spread over partitions: {:?}",
        acked.keys()
    );
    for (partition, offsets) in &acked {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        let got: Vec<i64> = offsets.keys().copied().collect();
        assert_eq!(
            got, expected,
            "partition {partition}: offsets contiguous from 0"
        );
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.kafka)
        .set("group.id", "cluster-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in acked.keys() {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while read.values().map(BTreeMap::len).sum::<usize>() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records\nbroker b:\n{}",
            read.values().map(BTreeMap::len).sum::<usize>(),
            b.stderr()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                read.entry(m.partition())
                    .or_default()
                    .insert(m.offset(), value);
            }
            Some(Err(e)) => panic!("consume failed: {e}\nbroker b:\n{}", b.stderr()),
            None => {}
        }
    }
    assert_eq!(
        read, acked,
        "every record at the offset it was acknowledged with"
    );
}
