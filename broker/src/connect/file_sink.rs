//! `FileStreamSink`: every record value of the configured topics (`topics` or `topics.regex`)
//! appended to a file, a line each. It consumes as consumer group `connect-<name>`: it resumes
//! from that group's committed offsets and commits after each write is synced, so delivery is at
//! least once and `fetchOffsets`, kcat or any lag tool shows its progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::io::TaskIo;
use super::{wait_until_running, Connector};
use crate::broker::now_ms;
use crate::group::Committed;

const POLL: Duration = Duration::from_millis(100);

pub(crate) async fn run(io: TaskIo, c: Arc<Connector>) -> Result<(), String> {
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
        if let Some(message) = c.refused(io.broker()) {
            return Err(message);
        }
        let committed = io.committed(&group).await?;
        let topics = io.sink_topics(&list, &regex).await?;
        let (lines, positions) = collect(io.unconsumed(topics, committed, usize::MAX).await?);
        if lines.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = target.changed() => {}
            }
            continue;
        }
        // A broker that lost the lease must not write what the next holder writes too.
        io.ensure_held().await?;
        let f = file.clone();
        let count = lines.iter().filter(|&&b| b == b'\n').count();
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
        crate::metrics::connector_records(&c.name, count);
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
        io.commit(&group, commits).await?;
    }
}

type Positions = BTreeMap<(String, i32), i64>;

/// What is new in every partition: the lines to write and where each partition got to.
fn collect(unconsumed: Vec<super::Unconsumed>) -> (Vec<u8>, Positions) {
    let mut lines = Vec::new();
    let mut positions = Positions::new();
    for (topic, p, records) in unconsumed {
        let next = records.last().map_or(0, |r| r.offset + 1);
        for r in records {
            // Connect's FileStreamSink writes the value's string form; null prints as "null".
            match &r.value {
                Some(v) => lines.extend_from_slice(v),
                None => lines.extend_from_slice(b"null"),
            }
            lines.push(b'\n');
        }
        positions.insert((topic, p), next);
    }
    (lines, positions)
}
