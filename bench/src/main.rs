//! `sluice-bench`: produces N records of a given size with librdkafka against a running broker
//! and reports records/s and MB/s, then (optionally) consumes them back.
//!
//! Compare configurations in one run (e.g. `--topics plain,transformed`): the ratio is what the
//! README reports, since absolute figures depend on the machine.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Debug, Parser)]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    broker: String,
    /// Topics to measure, one after the other, comma separated.
    #[arg(long, default_value = "bench", value_delimiter = ',')]
    topics: Vec<String>,
    /// Records per topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Producer `acks` (all, 1, 0).
    #[arg(long, default_value = "all")]
    acks: String,
    /// Producer `compression.type`.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Also consume every record back and time it.
    #[arg(long)]
    consume: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for topic in &args.topics {
        let rate = produce(&args, topic)?;
        println!(
            "produce topic={topic} records={} size={} acks={} compression={}: {:.0} records/s, {:.1} MB/s",
            args.records,
            args.size,
            args.acks,
            args.compression,
            rate,
            rate * args.size as f64 / 1e6
        );
        if args.consume {
            let rate = consume(&args, topic)?;
            println!("consume topic={topic}: {rate:.0} records/s");
        }
    }
    Ok(())
}

fn produce(args: &Args, topic: &str) -> anyhow::Result<f64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.broker)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating producer")?;
    let value = vec![b'x'; args.size];
    let start = Instant::now();
    for i in 0..args.records {
        let key = (i as u64).to_be_bytes();
        let mut record = BaseRecord::to(topic).key(&key[..]).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("flush")?;
    Ok(args.records as f64 / start.elapsed().as_secs_f64())
}

fn consume(args: &Args, topic: &str) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.broker)
        .set("group.id", "sluice-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "1")
        .create()
        .context("creating consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let start = Instant::now();
    let mut seen = 0usize;
    let deadline = start + Duration::from_secs(300);
    while seen < args.records {
        if Instant::now() > deadline {
            bail!("consumed only {seen} of {} records", args.records);
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.context("consume")?;
            seen += 1;
        }
    }
    Ok(seen as f64 / start.elapsed().as_secs_f64())
}
