//! `sluice topic produce`: each stdin line becomes a record (optionally `KEY<sep>VALUE`, with
//! headers), batched per partition with the broker's own batch builder and sent with Produce.
//! Lines are sent as soon as stdin has nothing more buffered, so piped input goes in large
//! batches and typed input goes at once.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use serde_json::json;

use super::kafka::{check, topic_name, Client, ClusterArgs};
use super::offsets::{partition_leaders, select};
use super::output::{emit, Table};
use crate::records::partitioner::partition_for_key;
use crate::records::record::BatchMeta;
use crate::records::{build_batch, Compression, NewRecord};

/// Records are sent once a partition's pending batch reaches this size, well under the
/// broker's default `message.max.bytes` (1 MiB).
const BATCH_BYTES: usize = 256 << 10;
/// Produce v10+ adds only tagged fields; v13 names topics by id.
const PRODUCE_MAX: i16 = 9;

/// `sluice topic produce` flags.
#[derive(Debug, clap::Args)]
pub(super) struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value (a line without it has a null key).
    #[arg(short = 'k', long)]
    key_separator: Option<String>,
    /// A header KEY=VALUE put on every record (repeatable).
    #[arg(short = 'H', long = "header", value_parser = super::topic::parse_pair)]
    headers: Vec<(String, String)>,
    /// Write every record to this partition [default: by key hash (as Kafka's Java
    /// client), keyless records round-robin per batch].
    #[arg(short, long)]
    partition: Option<i32>,
    /// all (-1: once durable), 1 (once written) or 0 (no answer).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_hyphen_values = true)]
    acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(short = 'z', long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(format!("'{other}' is not all, -1, 1 or 0")),
    }
}

fn parse_compression(text: &str) -> Result<Compression, String> {
    match text {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!("'{other}' is not none, gzip, snappy, lz4 or zstd")),
    }
}

/// What one partition received.
#[derive(Debug, Default)]
struct Produced {
    records: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
}

struct Producer<'a> {
    client: &'a mut Client,
    topic: &'a str,
    leaders: BTreeMap<i32, i32>,
    args: &'a ProduceArgs,
    timeout_ms: i32,
    pending: BTreeMap<i32, Vec<NewRecord>>,
    pending_bytes: usize,
    /// Where keyless records go until the next send.
    sticky: i32,
    produced: BTreeMap<i32, Produced>,
}

impl Producer<'_> {
    fn partition_for(&self, key: Option<&[u8]>) -> i32 {
        if let Some(p) = self.args.partition {
            return p;
        }
        let count = i32::try_from(self.leaders.len()).unwrap_or(i32::MAX).max(1);
        match key {
            Some(key) => partition_for_key(key, count),
            None => self.sticky % count,
        }
    }

    fn add(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let (key, value) = match &self.args.key_separator {
            Some(sep) => match find(line, sep.as_bytes()) {
                Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                None => (None, line),
            },
            None => (None, line),
        };
        let partition = self.partition_for(key);
        let record = NewRecord {
            timestamp: now_ms(),
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: self
                .args
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone().into_bytes())))
                .collect(),
        };
        self.pending_bytes += line.len() + 32;
        self.pending.entry(partition).or_default().push(record);
        if self.pending_bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    /// Sends every pending batch, one Produce per leader, and checks each partition's answer.
    fn send(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.sticky = self.sticky.wrapping_add(1) & i32::MAX;
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (partition, records) in &pending {
            let batch = build_batch(records, self.args.compression, &BatchMeta::default());
            let leader = self.leaders.get(partition).copied().unwrap_or(-1);
            by_leader.entry(leader).or_default().push(
                PartitionProduceData::default()
                    .with_index(*partition)
                    .with_records(Some(Bytes::from(batch))),
            );
            counts.insert(*partition, records.len() as u64);
        }
        let topic = self.topic;
        for (leader, partitions) in by_leader {
            let request = ProduceRequest::default()
                .with_acks(self.args.acks)
                .with_timeout_ms(self.timeout_ms)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(partitions.clone())]);
            let conn = self.client.broker(leader)?;
            if self.args.acks == 0 {
                conn.send_only(&request, PRODUCE_MAX)?;
                for p in &partitions {
                    let entry = self.produced.entry(p.index).or_default();
                    entry.records += counts.get(&p.index).copied().unwrap_or(0);
                }
                continue;
            }
            let response = conn.call(&request, PRODUCE_MAX)?;
            for t in &response.responses {
                for p in &t.partition_responses {
                    check(
                        p.error_code,
                        format!("topic {topic:?} partition {}", p.index),
                        p.error_message.as_ref(),
                    )?;
                    let n = counts.get(&p.index).copied().unwrap_or(0);
                    let entry = self.produced.entry(p.index).or_default();
                    entry.records += n;
                    entry.first_offset.get_or_insert(p.base_offset);
                    entry.last_offset = Some(p.base_offset + n as i64 - 1);
                }
            }
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn run(cluster: &ClusterArgs, args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    let all = partition_leaders(&mut client, &args.topic)?;
    if let Some(p) = args.partition {
        select(&args.topic, &all, &[p])?;
    }
    let topic = args.topic.clone();
    let mut producer = Producer {
        client: &mut client,
        topic: &topic,
        leaders: all,
        args: &args,
        timeout_ms: i32::try_from(cluster.timeout.as_millis()).unwrap_or(i32::MAX),
        pending: BTreeMap::new(),
        pending_bytes: 0,
        sticky: 0,
        produced: BTreeMap::new(),
    };
    // Our own buffer, to see when stdin has nothing more ready (then the batch goes out).
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        producer.add(&line)?;
        if input.buffer().is_empty() {
            producer.send()?;
        }
    }
    producer.send()?;
    let produced = std::mem::take(&mut producer.produced);
    let offset = |o: Option<i64>| o.map_or("-".to_string(), |o| o.to_string());
    let mut table = Table::new(&["partition", "records", "first-offset", "last-offset"]);
    for (p, r) in &produced {
        table.row(vec![
            p.to_string(),
            r.records.to_string(),
            offset(r.first_offset),
            offset(r.last_offset),
        ]);
    }
    emit(cluster.format, &table, || {
        produced
            .iter()
            .map(|(p, r)| {
                json!({"topic": topic, "partition": p, "records": r.records,
                       "first_offset": r.first_offset, "last_offset": r.last_offset})
            })
            .collect()
    });
    Ok(())
}
