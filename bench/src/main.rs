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
    /// Instead of producing: run the uppercase transform over the records natively and as this
    /// wasm module (built from guest-examples/uppercase), and compare.
    #[arg(long)]
    guest_module: Option<std::path::PathBuf>,
    /// Records per guest call in the guest comparison.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(module) = &args.guest_module {
        return compare_guest(&args, module);
    }
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
    // Batch by batch, native then wasm, so a busy machine slows both alike.
    let (mut native, mut wasm) = (Duration::ZERO, Duration::ZERO);
    let (mut native_bytes, mut wasm_bytes) = (0usize, 0usize);
    for _ in 0..calls {
        let start = Instant::now();
        sluice_sdk::__private::run_batch(&mut out, &buffer, &mut uppercase::uppercase)
            .context("native batch")?;
        native_bytes += sluice_sdk::__private::sections(&out)
            .map(|s| s.records.len())
            .sum::<usize>();
        let middle = Instant::now();
        let output = guest.transform(&input, 1)?;
        wasm_bytes += output
            .sections
            .iter()
            .map(|s| s.records.len())
            .sum::<usize>();
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
        "uppercase {} records x {} B in batches of {}: native {:.0} records/s, wasm {:.0} records/s, wasm/native = {:.2}",
        calls * args.batch,
        args.size,
        args.batch,
        total / native.as_secs_f64(),
        total / wasm.as_secs_f64(),
        native.as_secs_f64() / wasm.as_secs_f64()
    );
    Ok(())
}
