//! `FileStreamSink`: every record value of the configured topics (`topics` or `topics.regex`)
//! appended to a file, a line each. It consumes as consumer group `connect-<name>`: it resumes
//! from that group's committed offsets and commits after each write is synced, so delivery is at
//! least once and `fetchOffsets`, kcat or any lag tool shows its progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::{wait_until_running, Connector};
use crate::api::{now_ms, Broker};
use crate::group::Committed;
use crate::records::batch::BatchHeader;
use crate::records::record::decode_records;

const POLL: Duration = Duration::from_millis(100);
const READ_BYTES: usize = 1 << 20;

/// The topics a sink reads: a list, or every topic matching a regex.
fn topics(
    broker: &Broker,
    list: &Option<String>,
    regex: &Option<regex_lite::Regex>,
) -> Vec<String> {
    match (list, regex) {
        (Some(list), _) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        (None, Some(re)) => broker
            .catalog
            .list()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| re.is_match(n))
            .collect(),
        (None, None) => Vec::new(),
    }
}

pub(crate) async fn run(broker: Arc<Broker>, c: Arc<Connector>) -> Result<(), String> {
    let mut target = c.target.subscribe();
    let (file, list, regex) = {
        let cfg = c.config.lock();
        let regex = match cfg.get("topics.regex") {
            Some(r) if !r.trim().is_empty() => {
                Some(regex_lite::Regex::new(r).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        (
            cfg.get("file").cloned().unwrap_or_default(),
            cfg.get("topics").cloned().filter(|t| !t.trim().is_empty()),
            regex,
        )
    };
    let group = format!("connect-{}", c.name);
    loop {
        if !wait_until_running(&c, &mut target).await {
            return Ok(());
        }
        let committed = broker.groups.offsets.group(&group);
        let b = broker.clone();
        let (l, r, g) = (list.clone(), regex.clone(), committed);
        let (lines, positions) = tokio::task::spawn_blocking(move || collect(&b, &l, &r, &g))
            .await
            .map_err(|e| e.to_string())??;
        if lines.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = target.changed() => {}
            }
            continue;
        }
        let f = file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&f)?;
            out.write_all(&lines)?;
            out.sync_data()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write {file}: {e}"))?;
        let now = now_ms();
        let commits = positions
            .into_iter()
            .map(|((t, p), offset)| {
                (
                    t,
                    p,
                    Committed {
                        offset,
                        leader_epoch: -1,
                        metadata: None,
                        commit_timestamp: now,
                    },
                )
            })
            .collect();
        broker
            .groups
            .offsets
            .commit(&group, commits)
            .await
            .map_err(|e| format!("cannot commit offsets of {group}: {e}"))?;
    }
}

type Positions = BTreeMap<(String, i32), i64>;

/// Reads what is new in every partition: the lines to write and where each partition got to.
fn collect(
    broker: &Broker,
    list: &Option<String>,
    regex: &Option<regex_lite::Regex>,
    committed: &crate::group::offsets::GroupOffsets,
) -> Result<(Vec<u8>, Positions), String> {
    let mut lines = Vec::new();
    let mut positions = Positions::new();
    for topic in topics(broker, list, regex) {
        let Some(t) = broker.catalog.get(&topic) else {
            continue;
        };
        for (p, log) in t.partitions().iter().enumerate() {
            let p = p as i32;
            let start = committed
                .get(&(topic.clone(), p))
                .map_or(log.log_start_offset(), |c| c.offset)
                .max(log.log_start_offset());
            if start >= log.high_watermark() {
                continue;
            }
            let slice = log
                .read(start, READ_BYTES, true)
                .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
            let mut rest = &slice.records[..];
            let mut next = start;
            while let Some((_, size)) = BatchHeader::peek_size(rest) {
                let size = size.min(rest.len());
                let (header, records) = decode_records(&rest[..size], 256 << 20)
                    .map_err(|e| format!("reading {topic}-{p}: {e}"))?;
                rest = &rest[size..];
                for r in records.into_iter().filter(|r| r.offset >= start) {
                    // Connect's FileStreamSink writes the value's string form; null prints as "null".
                    match &r.value {
                        Some(v) => lines.extend_from_slice(v),
                        None => lines.extend_from_slice(b"null"),
                    }
                    lines.push(b'\n');
                }
                next = next.max(header.last_offset() + 1);
            }
            if next > start {
                positions.insert((topic.clone(), p), next);
            }
        }
    }
    Ok((lines, positions))
}
