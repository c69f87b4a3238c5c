//! `sluice topic consume`: fetches a topic's partitions from a starting offset and prints each
//! record (text, JSON lines or a kcat-style format), decoding batches with the broker's own
//! record decoder. Without `-n` or `--exit` it follows the topic like `tail -f`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;

use super::kafka::{check, topic_name, Client, ClusterArgs, KafkaError};
use super::offsets::{parse_offset, partition_leaders, resolve, select, OffsetSpec};
use super::output::{parse_pattern, Format, RecordFormat};
use crate::records::{decode_records, BatchHeader};

/// How long the broker may hold a Fetch while there is nothing new.
const FETCH_WAIT: Duration = Duration::from_millis(500);
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// A batch bigger than the partition limit doubles it, up to this.
const PARTITION_MAX_BYTES_CAP: i32 = 64 << 20;
/// Bound on a batch's decompressed size: a broker's data is still not a reason to run out of
/// memory.
const INFLATE_LIMIT: usize = 256 << 20;
/// Fetch v13 names topics by id.
const FETCH_MAX: i16 = 12;

/// `sluice topic consume` flags.
#[derive(Debug, clap::Args)]
pub(super) struct ConsumeArgs {
    topic: String,
    /// Where to start in each partition: beginning, end, N, -N (N before the end) or
    /// @TIMESTAMP (ms since the epoch).
    #[arg(short, long, default_value = "beginning", value_parser = parse_offset, allow_hyphen_values = true)]
    offset: OffsetSpec,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    num: Option<u64>,
    /// Only these partitions (repeatable or comma-separated) [default: all].
    #[arg(short, long, value_delimiter = ',')]
    partition: Vec<i32>,
    /// Stop at the end of every partition instead of waiting for new records.
    #[arg(short, long)]
    exit: bool,
    /// Print each record with a format: %t topic, %p partition, %o offset, %k key, %s value,
    /// %h headers (k=v,...), %T timestamp (ms), %K / %S key / value length (-1 for null), %%,
    /// \n \t \r \\ [default: the value per line; with --format json, one JSON object per line].
    #[arg(short = 'f', long = "print", value_parser = parse_pattern)]
    print: Option<RecordFormat>,
}

/// One partition being read.
struct Position {
    leader: i32,
    next_offset: i64,
    max_bytes: i32,
}

pub(super) fn run(cluster: &ClusterArgs, args: ConsumeArgs) -> anyhow::Result<()> {
    let format = args.print.clone().unwrap_or(match cluster.format {
        Format::Table => RecordFormat::Text,
        Format::Json => RecordFormat::Json,
    });
    let mut client = cluster.client()?;
    let leaders = partition_leaders(&mut client, &args.topic)?;
    let chosen = select(&args.topic, &leaders, &args.partition)?;
    let starts = resolve(&mut client, &args.topic, &chosen, args.offset)?;
    let mut positions: BTreeMap<i32, Position> = starts
        .into_iter()
        .map(|(p, offset)| {
            let position = Position {
                leader: chosen.get(&p).copied().unwrap_or(-1),
                next_offset: offset,
                max_bytes: PARTITION_MAX_BYTES,
            };
            (p, position)
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut reader = Reader {
        client: &mut client,
        topic: &args.topic,
        format: &format,
        limit: args.num,
        exit_at_end: args.exit,
    };
    if args.num == Some(0) {
        return Ok(());
    }
    while !positions.is_empty() {
        match reader.fetch_round(&mut positions, &mut out, &mut printed) {
            Ok(Done::No) => {}
            Ok(Done::Yes) => break,
            Err(Failure::Output(e)) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(Failure::Output(e)) => anyhow::bail!("cannot write stdout: {e}"),
            Err(Failure::Kafka(e)) => return Err(e.into()),
        }
        if let Err(e) = out.flush() {
            if e.kind() == ErrorKind::BrokenPipe {
                return Ok(());
            }
            anyhow::bail!("cannot write stdout: {e}");
        }
    }
    match out.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => anyhow::bail!("cannot write stdout: {e}"),
        _ => Ok(()),
    }
}

enum Done {
    Yes,
    No,
}

enum Failure {
    Kafka(KafkaError),
    Output(std::io::Error),
}

impl From<KafkaError> for Failure {
    fn from(e: KafkaError) -> Failure {
        Failure::Kafka(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Output(e)
    }
}

struct Reader<'a> {
    client: &'a mut Client,
    topic: &'a str,
    format: &'a RecordFormat,
    limit: Option<u64>,
    exit_at_end: bool,
}

impl Reader<'_> {
    /// One Fetch per leader; prints what came back and moves the positions on.
    fn fetch_round(
        &mut self,
        positions: &mut BTreeMap<i32, Position>,
        out: &mut impl Write,
        printed: &mut u64,
    ) -> Result<Done, Failure> {
        let mut by_leader: BTreeMap<i32, Vec<FetchPartition>> = BTreeMap::new();
        for (p, pos) in positions.iter() {
            by_leader.entry(pos.leader).or_default().push(
                FetchPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(pos.next_offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(pos.max_bytes),
            );
        }
        let topic = self.topic;
        for (leader, partitions) in by_leader {
            let request = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(FETCH_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(i32::MAX)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions)]);
            let response = self
                .client
                .broker(leader)?
                .call_waiting(&request, FETCH_MAX, FETCH_WAIT)?;
            check(response.error_code, format!("fetching {topic:?}"), None)?;
            for t in &response.responses {
                for data in &t.partitions {
                    let p = data.partition_index;
                    check(
                        data.error_code,
                        format!("topic {topic:?} partition {p}"),
                        None,
                    )?;
                    let Some(pos) = positions.get_mut(&p) else {
                        continue;
                    };
                    let bytes = data.records.as_deref().unwrap_or_default();
                    let whole = self.print_batches(p, pos, bytes, out, printed)?;
                    if self.limit.is_some_and(|n| *printed >= n) {
                        return Ok(Done::Yes);
                    }
                    if !bytes.is_empty() && whole == 0 {
                        // Only part of one batch fit: ask for more next time.
                        pos.max_bytes =
                            pos.max_bytes.saturating_mul(2).min(PARTITION_MAX_BYTES_CAP);
                    }
                    if self.exit_at_end && pos.next_offset >= data.high_watermark {
                        positions.remove(&p);
                    }
                }
            }
        }
        Ok(Done::No)
    }

    /// Prints the records of the whole batches in `bytes`; returns how many batches it read.
    fn print_batches(
        &self,
        partition: i32,
        pos: &mut Position,
        mut bytes: &[u8],
        out: &mut impl Write,
        printed: &mut u64,
    ) -> Result<usize, Failure> {
        let mut batches = 0;
        while let Some((_, size)) = BatchHeader::peek_size(bytes) {
            if size > bytes.len() {
                break;
            }
            let (batch, rest) = bytes.split_at(size);
            bytes = rest;
            batches += 1;
            let (header, records) = decode_records(batch, INFLATE_LIMIT).map_err(|e| {
                KafkaError::Other(format!(
                    "topic {:?} partition {partition}: undecodable batch at offset {}: {e}",
                    self.topic, pos.next_offset
                ))
            })?;
            if !header.is_control() {
                for record in records.iter().filter(|r| r.offset >= pos.next_offset) {
                    self.format.write(out, self.topic, partition, record)?;
                    *printed += 1;
                    if self.limit.is_some_and(|n| *printed >= n) {
                        pos.next_offset = record.offset + 1;
                        return Ok(batches);
                    }
                }
            }
            pos.next_offset = pos.next_offset.max(header.last_offset() + 1);
        }
        Ok(batches)
    }
}
