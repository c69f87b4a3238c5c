//! `sluice-bench`: produces N records of a given size with librdkafka against a running broker
//! and reports records/s, MB/s and the p50/p99 acknowledgement latency, then (optionally)
//! consumes them back. `--round-trips N` instead times N one-record produces, each waited for,
//! alone and then beside a load on `--load-topic` (see [`latency`]).
//!
//! Compare configurations in one run (e.g. `--topics plain,transformed`): the ratio is what the
//! README reports, since absolute figures depend on the machine.
//!
//! `--cleaner-keys N` measures the log cleaner alone, without a broker: it writes a partition
//! of `--records` records over N keys (`--segment-bytes` segments) into a temporary directory
//! and times one cleaning.
//!
//! `--cluster 1,3 --linger-ms 5,50,250` starts its own cluster-mode brokers on a throwaway
//! PostgreSQL and SeaweedFS (see [`cluster`]) for each pair and reports, beside records/s and
//! latency, the object PUTs and PostgreSQL commits per GB written.

mod cluster;
mod cpu;
mod latency;
mod transactions;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
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
    /// Instead of producing: run the uppercase transform over the records natively and as this
    /// wasm module (built from guest-examples/uppercase), and compare.
    #[arg(long)]
    guest_module: Option<std::path::PathBuf>,
    /// Records per guest call in the guest comparison (and per batch in the cleaner bench).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Topics to create with `cleanup.policy=compact` before producing (a subset of --topics).
    #[arg(long, value_delimiter = ',')]
    compact_topics: Vec<String>,
    /// Instead of producing: time the log cleaner on a partition of --records records over this
    /// many keys.
    #[arg(long)]
    cleaner_keys: Option<usize>,
    /// `segment.bytes` of the cleaner bench's partition.
    #[arg(long, default_value_t = 1 << 20)]
    segment_bytes: u64,
    /// Instead of a throughput run: this many produces of one record each (each waited for)
    /// to every topic of --topics, reporting p50/p99.
    #[arg(long)]
    round_trips: Option<usize>,
    /// With --round-trips: run them a second time while four producers write to this topic
    /// (e.g. one whose transform spins to its CPU cap).
    #[arg(long)]
    load_topic: Option<String>,
    /// Instead of a plain run: produce --records to `<topic>-idempotent` with an idempotent
    /// producer and to `<topic>-transactional` in transactions of this many records, then
    /// consume the transactional topic read_uncommitted and read_committed.
    #[arg(long)]
    transaction_size: Option<usize>,
    /// Also report the CPU time this process (the broker under test) used during each produce
    /// run, per record: steadier than records/s when broker and client share the cores.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Key-map memory for the cleaner bench (`log.cleaner.dedupe.buffer.size`).
    #[arg(long, default_value_t = 128 << 20)]
    dedupe_buffer: usize,
    /// Instead of producing to --broker: start this many cluster-mode brokers (on a throwaway
    /// PostgreSQL and SeaweedFS) and produce through all of them; a list runs each in turn.
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<usize>,
    /// With --cluster: `cluster.upload.linger.ms` values, each run with every broker count.
    #[arg(long, default_value = "250", value_delimiter = ',')]
    linger_ms: Vec<u64>,
    /// With --cluster: partitions of each run's topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// With --cluster: the `sluice` binary (default: the one next to this binary).
    #[arg(long)]
    sluice: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(count) = args.round_trips {
        for topic in &args.topics {
            let quiet = latency::round_trips(&args.broker, topic, &args.acks, count, None)?;
            println!(
                "round trips topic={topic} acks={} x{count}: {quiet}",
                args.acks
            );
            if let Some(load) = &args.load_topic {
                let loaded =
                    latency::round_trips(&args.broker, topic, &args.acks, count, Some(load))?;
                println!(
                    "round trips topic={topic} acks={} x{count} while 4 producers write to {load}: {loaded}",
                    args.acks
                );
            }
        }
        return Ok(());
    }
    if let Some(module) = &args.guest_module {
        return compare_guest(&args, module);
    }
    if let Some(keys) = args.cleaner_keys {
        return bench_cleaner(&args, keys);
    }
    if let Some(size) = args.transaction_size {
        return bench_transactions(&args, size);
    }
    if !args.cluster.is_empty() {
        return bench_cluster(&args);
    }
    if !args.compact_topics.is_empty() {
        let compacted: Vec<NewTopicSpec<'_>> = args
            .compact_topics
            .iter()
            .map(|t| NewTopicSpec {
                name: t,
                partitions: 1,
                config: Some(("cleanup.policy", "compact")),
            })
            .collect();
        create_topics(&args.broker, &compacted)?;
    }
    for topic in &args.topics {
        let cpu_before = args.broker_pid.map(cpu::cpu_seconds).transpose()?;
        let (rate, latency) = produce(&args, &args.broker, topic)?;
        let broker_cpu = match (args.broker_pid, cpu_before) {
            (Some(pid), Some(before)) => {
                let used = cpu::cpu_seconds(pid)? - before;
                format!(
                    ", broker CPU {used:.2} s = {:.2} us/record",
                    used * 1e6 / args.records as f64
                )
            }
            _ => String::new(),
        };
        println!(
            "produce topic={topic} records={} size={} acks={} compression={}: {:.0} records/s, {:.1} MB/s, latency {latency}{broker_cpu}",
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

/// Every (broker count, linger) pair of `--cluster` × `--linger-ms` on one PostgreSQL and one
/// SeaweedFS, fresh brokers and a topic of `--partitions` partitions for each.
fn bench_cluster(args: &Args) -> anyhow::Result<()> {
    let sluice = match &args.sluice {
        Some(path) => path.clone(),
        None => cluster::default_sluice()?,
    };
    if !sluice.is_file() {
        bail!(
            "no sluice binary at {} (build it: cargo build --release -p sluice, or pass --sluice)",
            sluice.display()
        );
    }
    let engines = cluster::Engines::start()?;
    for &brokers in &args.cluster {
        for &linger_ms in &args.linger_ms {
            let setup = cluster::Setup { brokers, linger_ms };
            let topic = format!("bench-{brokers}b-{linger_ms}ms");
            let measured = cluster::measure(
                &engines,
                &sluice,
                setup,
                &topic,
                args.partitions,
                |bootstrap| produce(args, bootstrap, &topic),
            )?;
            println!(
                "cluster brokers={brokers} linger={linger_ms}ms partitions={} records={} size={} acks={}: {measured}",
                args.partitions, args.records, args.size, args.acks
            );
        }
    }
    Ok(())
}

/// Produces `--records` records to `topic` through `bootstrap`: records/s, and the
/// send-to-acknowledgement latency of every hundredth record.
fn produce(
    args: &Args,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<(f64, latency::Percentiles)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000");
    latency::produce_sampled(&config, topic, args.records, args.size)
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

/// The uppercase transform over `records` records in batches: natively (the SDK's own batch loop
/// called directly on the ABI v2 input buffer) and in wasm through the broker's guest runtime
/// (`Guest::transform`: the records copied into guest memory, the output sections checked where
/// they lie), same records.
fn compare_guest(args: &Args, module: &std::path::Path) -> anyhow::Result<()> {
    use sluice::records::record::write_record;
    use sluice::wasm::BatchInput;
    use sluice_sdk::codec::{encode_batch_input, InputHeader};
    let value = vec![b'x'; args.size];
    let mut records = Vec::new();
    for i in 0..args.batch {
        write_record(
            &mut records,
            i as i32,
            0,
            None,
            Some(&value),
            std::iter::empty(),
        );
    }
    let input = BatchInput {
        topic: "bench",
        partition: 0,
        base_offset: 0,
        base_timestamp: 0,
        record_count: u32::try_from(args.batch)?,
        records: &records,
    };
    let buffer = encode_batch_input(
        &InputHeader {
            topic: input.topic,
            partition: input.partition,
            base_offset: input.base_offset,
            base_timestamp: input.base_timestamp,
            record_count: input.record_count,
        },
        &records,
    );
    let calls = args.records.div_ceil(args.batch);
    let init = sluice_sdk::codec::encode_deployment(&sluice_sdk::codec::Deployment {
        outputs: vec!["out".into()],
        env: vec![],
    });
    // The native side needs the same deployment the guest gets.
    sluice_sdk::__private::init(&init);
    let mut out = sluice_sdk::__private::new_output(vec!["out".into()]);

    let engine = sluice::wasm::WasmEngine::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let compiled = engine.compile(&bytes)?;
    let log = std::sync::Arc::new(sluice::wasm::host::GuestLog::default());
    let mut guest = sluice::wasm::Guest::start(
        &engine,
        &compiled,
        sluice::wasm::GuestLimits::default(),
        log,
        "bench",
        &init,
    )?;
    // Batch by batch, native then wasm, so a busy machine slows both alike; timed by the wall
    // clock and by this thread's CPU time (steady on a machine shared with other work).
    let (mut native, mut wasm) = (Duration::ZERO, Duration::ZERO);
    let (mut native_cpu, mut wasm_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut native_bytes, mut wasm_bytes) = (0usize, 0usize);
    for _ in 0..calls {
        let start = Instant::now();
        let start_cpu = cpu::thread_cpu_time();
        sluice_sdk::__private::run_batch(&mut out, &buffer, &mut uppercase::uppercase)
            .context("native batch")?;
        native_bytes += sluice_sdk::__private::sections(&out)
            .map(|s| s.records.len())
            .sum::<usize>();
        let middle = Instant::now();
        let middle_cpu = cpu::thread_cpu_time();
        let output = guest.transform(&input, 1)?;
        wasm_bytes += output
            .sections
            .iter()
            .map(|s| s.records.len())
            .sum::<usize>();
        wasm_cpu += cpu::thread_cpu_time() - middle_cpu;
        native_cpu += middle_cpu - start_cpu;
        wasm += middle.elapsed();
        native += middle - start;
    }
    let native_records: Vec<&[u8]> = sluice_sdk::__private::sections(&out)
        .map(|s| s.records)
        .collect();
    let wasm_output = guest.transform(&input, 1)?;
    let wasm_records: Vec<&[u8]> = wasm_output.sections.iter().map(|s| s.records).collect();
    anyhow::ensure!(
        native_bytes == wasm_bytes && native_records == wasm_records,
        "native and wasm outputs differ"
    );
    let total = (calls * args.batch) as f64;
    println!(
        "uppercase {} records x {} B in batches of {}: native {:.0} records/s, wasm {:.0} records/s, wasm/native = {:.2}; by thread CPU time native {:.0} records/s, wasm {:.0} records/s, wasm/native = {:.2}",
        calls * args.batch,
        args.size,
        args.batch,
        total / native.as_secs_f64(),
        total / wasm.as_secs_f64(),
        native.as_secs_f64() / wasm.as_secs_f64(),
        total / native_cpu.as_secs_f64(),
        total / wasm_cpu.as_secs_f64(),
        native_cpu.as_secs_f64() / wasm_cpu.as_secs_f64()
    );
    Ok(())
}

/// Transactional against idempotent produce, and read_committed against read_uncommitted.
fn bench_transactions(args: &Args, per_transaction: usize) -> anyhow::Result<()> {
    for topic in &args.topics {
        let (idempotent, transactional) = (
            format!("{topic}-idempotent"),
            format!("{topic}-transactional"),
        );
        let plain =
            transactions::produce(&args.broker, &idempotent, args.records, args.size, None)?;
        let txn = transactions::produce(
            &args.broker,
            &transactional,
            args.records,
            args.size,
            Some(per_transaction),
        )?;
        println!(
            "produce {} x {} B: idempotent {plain:.0} records/s, transactional ({per_transaction} per transaction) {txn:.0} records/s, ratio {:.2}",
            args.records,
            args.size,
            txn / plain
        );
        let uncommitted = transactions::consume(
            &args.broker,
            &transactional,
            args.records,
            "read_uncommitted",
        )?;
        let committed =
            transactions::consume(&args.broker, &transactional, args.records, "read_committed")?;
        println!(
            "consume {transactional}: read_uncommitted {uncommitted:.0} records/s, read_committed {committed:.0} records/s, ratio {:.2}",
            committed / uncommitted
        );
    }
    Ok(())
}

/// Creates `--compact-topics` with `cleanup.policy=compact`.
/// A topic for [`create_topics`].
struct NewTopicSpec<'a> {
    name: &'a str,
    partitions: i32,
    /// One topic config, if any.
    config: Option<(&'a str, &'a str)>,
}

/// Creates the topics through librdkafka's admin client.
fn create_topics(bootstrap: &str, topics: &[NewTopicSpec<'_>]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating admin client")?;
    let topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(spec.name, spec.partitions, TopicReplication::Fixed(1));
            match spec.config {
                Some((key, value)) => topic.set(key, value),
                None => topic,
            }
        })
        .collect();
    let results =
        block_on(admin.create_topics(&topics, &AdminOptions::new()))?.context("creating topics")?;
    for result in results {
        if let Err((topic, e)) = result {
            bail!("creating {topic}: {e}");
        }
    }
    Ok(())
}

/// Runs a future to completion on this thread (the admin client drives itself).
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Writes a partition of `--records` records over `keys` keys and times one cleaning of it.
fn bench_cleaner(args: &Args, keys: usize) -> anyhow::Result<()> {
    use sluice::log::cleaner::{clean_now, CleanerConfig};
    use sluice::log::{CleanupPolicy, PartitionLog};
    use sluice::records::record::{build_batch, BatchMeta, NewRecord};
    let codec = match args.compression.as_str() {
        "none" => sluice::records::Compression::None,
        "gzip" => sluice::records::Compression::Gzip,
        "snappy" => sluice::records::Compression::Snappy,
        "lz4" => sluice::records::Compression::Lz4,
        "zstd" => sluice::records::Compression::Zstd,
        other => bail!("unknown codec {other}"),
    };
    let dir = std::env::temp_dir().join(format!("sluice-cleaner-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = sluice::catalog::kafka_default_log_config();
    config.cleanup_policy = CleanupPolicy {
        compact: true,
        delete: false,
    };
    config.segment_bytes = args.segment_bytes;
    config.min_cleanable_dirty_ratio = 0.0;
    let log = PartitionLog::open(&dir, config).context("opening the bench partition")?;
    let value = vec![b'v'; args.size];
    let mut i = 0usize;
    while i < args.records {
        let n = args.batch.min(args.records - i);
        let records: Vec<NewRecord> = (i..i + n)
            .map(|j| NewRecord {
                timestamp: 0,
                key: Some(format!("key-{}", (j * 7919) % keys).into_bytes()),
                value: Some(value.clone()),
                headers: vec![],
            })
            .collect();
        let batch = build_batch(&records, codec, &BatchMeta::default());
        log.append(batch.into(), 0).context("appending")?;
        i += n;
    }
    let rss_before = peak_rss();
    let cleaner = CleanerConfig {
        dedupe_buffer_size: args.dedupe_buffer,
        ..CleanerConfig::default()
    };
    let start = Instant::now();
    let stats = clean_now(&log, &cleaner, 1).context("cleaning")?;
    let elapsed = start.elapsed().as_secs_f64();
    let rss_after = peak_rss();
    let _ = std::fs::remove_dir_all(&dir);
    let Some(stats) = stats else {
        bail!("nothing to clean: use more --records than one segment holds");
    };
    println!(
        "cleaner records={} keys={keys} size={} codec={}: {:.1} MB/s of log cleaned ({} -> {} bytes, {} -> {} records, {:.2} s); key map {} keys in {} MiB; peak RSS {} -> {} MiB",
        args.records,
        args.size,
        args.compression,
        stats.bytes_before as f64 / elapsed / 1e6,
        stats.bytes_before,
        stats.bytes_after,
        stats.records_before,
        stats.records_after,
        elapsed,
        stats.keys,
        args.dedupe_buffer >> 20,
        rss_before.unwrap_or(0) >> 20,
        rss_after.unwrap_or(0) >> 20,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_takes_lists_of_broker_counts_and_lingers() {
        let args = Args::try_parse_from([
            "sluice-bench",
            "--cluster",
            "1,3",
            "--linger-ms",
            "5,50,250",
            "--partitions",
            "6",
            "--sluice",
            "/opt/sluice",
        ])
        .unwrap();
        assert_eq!(args.cluster, [1, 3]);
        assert_eq!(args.linger_ms, [5, 50, 250]);
        assert_eq!(args.partitions, 6);
        assert_eq!(
            args.sluice.as_deref(),
            Some(std::path::Path::new("/opt/sluice"))
        );
        let plain = Args::try_parse_from(["sluice-bench"]).unwrap();
        assert!(plain.cluster.is_empty());
        assert_eq!(plain.linger_ms, [250]);
    }
}
