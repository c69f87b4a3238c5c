//! Produce latency: how long a record waits for its acknowledgement, as percentiles.
//!
//! - [`produce_sampled`]: a throughput run (the same shape as `produce`) that also times every
//!   hundredth record from `send` to its delivery report, for p50/p99 under load.
//! - [`round_trips`]: one record at a time, each waited for, for the latency of an otherwise idle
//!   producer — run beside a load on another topic (`--load-topic`) to see whether that load
//!   holds it up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

/// One record in this many is timed in [`produce_sampled`].
const SAMPLE_EVERY: usize = 100;

/// Latency percentiles of a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Percentiles {
            p50: at(0.50),
            p99: at(0.99),
        })
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// Records the delivery time of sampled records (opaque = slot + 1; 0 for unsampled ones).
struct Timer {
    start: Instant,
    /// Send time of each sampled record, in nanoseconds since `start`.
    sent: Arc<Vec<AtomicU64>>,
    /// Send-to-delivery time of each sampled record, in nanoseconds (0 until delivered).
    took: Arc<Vec<AtomicU64>>,
    failed: Arc<AtomicBool>,
}

impl ClientContext for Timer {}

impl ProducerContext for Timer {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        if slot == 0 {
            return;
        }
        let now = self.start.elapsed().as_nanos() as u64;
        if let (Some(sent), Some(took)) = (self.sent.get(slot - 1), self.took.get(slot - 1)) {
            took.store(
                now.saturating_sub(sent.load(Ordering::Relaxed)).max(1),
                Ordering::Relaxed,
            );
        }
    }
}

/// Produces `records` records of `size` bytes to `topic` (as `produce` does) and returns
/// records/s with the latency percentiles of every hundredth record.
pub(crate) fn produce_sampled(
    config: &ClientConfig,
    topic: &str,
    records: usize,
    size: usize,
) -> anyhow::Result<(f64, Percentiles)> {
    let slots = records / SAMPLE_EVERY + 1;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..slots).map(|_| AtomicU64::new(0)).collect());
    let took: Arc<Vec<AtomicU64>> = Arc::new((0..slots).map(|_| AtomicU64::new(0)).collect());
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let producer: ThreadedProducer<Timer> = config
        .create_with_context(Timer {
            start,
            sent: sent.clone(),
            took: took.clone(),
            failed: failed.clone(),
        })
        .context("creating producer")?;
    let value = vec![b'x'; size];
    for i in 0..records {
        let key = (i as u64).to_be_bytes();
        let slot = if i % SAMPLE_EVERY == 0 {
            let slot = i / SAMPLE_EVERY;
            sent[slot].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            slot + 1
        } else {
            0
        };
        let mut record = BaseRecord::with_opaque_to(topic, slot)
            .key(&key[..])
            .payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(300)).context("flush")?;
    let rate = records as f64 / start.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) {
        bail!("some records were not acknowledged");
    }
    let samples = took
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .filter(|n| *n > 0)
        .map(Duration::from_nanos)
        .collect();
    let percentiles = Percentiles::of(samples).context("no latency samples")?;
    Ok((rate, percentiles))
}

/// Counts delivery reports.
struct Counter {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        self.delivered.fetch_add(1, Ordering::Release);
    }
}

/// `count` produces of one record each to `topic`, each waited for; while `load_topic` is
/// given, four producers keep writing to it the whole time.
pub(crate) fn round_trips(
    broker: &str,
    topic: &str,
    acks: &str,
    count: usize,
    load_topic: Option<&str>,
) -> anyhow::Result<Percentiles> {
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = load_topic
        .into_iter()
        .flat_map(|load| (0..4).map(move |n| (load.to_string(), n)))
        .map(|(load, n)| {
            let (broker, stop) = (broker.to_string(), stop.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let p: BaseProducer = ClientConfig::new()
                    .set("bootstrap.servers", &broker)
                    .set("linger.ms", "0")
                    .set("message.timeout.ms", "600000")
                    .create()?;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = format!("load {n} {i}");
                    if p.send(BaseRecord::<(), _>::to(&load).payload(&v)).is_ok() {
                        i += 1;
                    }
                    p.poll(Duration::from_millis(20));
                }
                Ok(())
            })
        })
        .collect();
    // Let the load reach its steady state first.
    if load_topic.is_some() {
        std::thread::sleep(Duration::from_secs(3));
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let producer: BaseProducer<Counter> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("acks", acks)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000")
        .create_with_context(Counter {
            delivered: delivered.clone(),
            failed: failed.clone(),
        })
        .context("creating producer")?;
    let mut samples = Vec::with_capacity(count);
    let value = [b'x'; 100];
    for i in 0..count as u64 {
        let started = Instant::now();
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(&value[..]))
            .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
        while delivered.load(Ordering::Acquire) <= i {
            producer.poll(Duration::from_millis(1));
        }
        if failed.load(Ordering::Relaxed) {
            bail!("a round trip was not acknowledged");
        }
        samples.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.join();
    }
    Percentiles::of(samples).context("no round trips")
}
