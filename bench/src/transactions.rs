//! Transactions' cost: records/s of a transactional producer committing every
//! `--transaction-size` records against an idempotent producer, and of `read_committed` against
//! `read_uncommitted` consumers of the transactional topic — each pair in one run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Produces `records` records of `size` bytes to `topic`; with `per_transaction`, in
/// transactions of that many records, each committed before the next begins.
pub(crate) fn produce(
    broker: &str,
    topic: &str,
    records: usize,
    size: usize,
    per_transaction: Option<usize>,
) -> anyhow::Result<f64> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000");
    if per_transaction.is_some() {
        config.set("transactional.id", format!("sluice-bench-{topic}"));
    }
    let producer: BaseProducer = config.create().context("creating producer")?;
    if per_transaction.is_some() {
        producer
            .init_transactions(TIMEOUT)
            .context("init_transactions")?;
    }
    let value = vec![b'x'; size];
    let chunk = per_transaction.unwrap_or(records).max(1);
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = chunk.min(records - sent);
        if per_transaction.is_some() {
            producer.begin_transaction().context("begin_transaction")?;
        }
        for _ in 0..n {
            send(&producer, topic, &value)?;
        }
        // Every record of the transaction delivered (and its report served) before the commit.
        producer.flush(TIMEOUT).context("flush")?;
        if per_transaction.is_some() {
            producer
                .commit_transaction(TIMEOUT)
                .context("commit_transaction")?;
        }
        sent += n;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

fn send(producer: &BaseProducer, topic: &str, value: &[u8]) -> anyhow::Result<()> {
    loop {
        match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(value)) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("send: {e}"),
        }
    }
}

/// Consumes `records` records of `topic` partition 0 from the start at `isolation`
/// (`read_committed` or `read_uncommitted`): records/s.
pub(crate) fn consume(
    broker: &str,
    topic: &str,
    records: usize,
    isolation: &str,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("sluice-bench-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.queue.backoff.ms", "1")
        .create()
        .context("creating consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let mut seen = 0usize;
    while seen < records {
        if Instant::now() > deadline {
            bail!("{isolation}: consumed only {seen} of {records} records");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.context("consume")?;
            seen += 1;
        }
    }
    Ok(seen as f64 / start.elapsed().as_secs_f64())
}
