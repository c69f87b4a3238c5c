//! `FileStreamSource`: lines appended to a file become records (null key, the line as value) in a
//! topic, tail -f style. The file position is saved only after the records are durable, so a line
//! is never lost, and on a single node never produced twice across restarts. In cluster mode the
//! position lives in PostgreSQL, so whichever broker takes the task over continues from it; the
//! lines between the last saved position and a holder's death are produced again (at least
//! once).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::io::TaskIo;
use super::{wait_until_running, Connector};
use crate::broker::now_ms;
use crate::records::NewRecord;

/// Longest read per poll.
const MAX_READ: usize = 1 << 20;
/// How often a quiet file is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// Complete lines from `position` (without their `\n` / `\r\n`), and the bytes they took.
/// `Ok(None)` if the file does not exist yet.
fn read_lines(file: &Path, position: u64) -> std::io::Result<Option<(Vec<String>, u64)>> {
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // A file truncated below our position was replaced: start over, as Connect does.
    let len = f.metadata()?.len();
    let start = if len < position { 0 } else { position };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(MAX_READ as u64).read_to_end(&mut buf)?;
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(Some((Vec::new(), start - position)));
    };
    let lines = buf[..end]
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .collect();
    Ok(Some((lines, start + end as u64 + 1 - position)))
}

/// Tails the file into the topic; the position is kept by `io` (see [`TaskIo::position`]).
pub(crate) async fn run(io: TaskIo, c: Arc<Connector>) -> Result<(), String> {
    let mut target = c.target.subscribe();
    let (file, topic, batch_size) = {
        let cfg = c.config.lock();
        (
            cfg.get("file").cloned().unwrap_or_default(),
            cfg.get("topic").cloned().unwrap_or_default(),
            cfg.get("batch.size")
                .and_then(|b| b.parse::<usize>().ok())
                .unwrap_or(2000),
        )
    };
    let mut position = io.position(&file).await?;
    let path = PathBuf::from(&file);
    loop {
        if !wait_until_running(&c, &mut target).await {
            return Ok(());
        }
        if let Some(message) = c.refused(io.broker()) {
            return Err(message);
        }
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || read_lines(&p, position))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {file}: {e}"))?;
        let (lines, consumed) = match read {
            Some((lines, consumed)) if !lines.is_empty() => (lines, consumed),
            Some((_, consumed)) if consumed != 0 => {
                // The file was truncated: continue from its start.
                position = position.wrapping_add(consumed);
                continue;
            }
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = target.changed() => {}
                }
                continue;
            }
        };
        let count = lines.len();
        let now = now_ms();
        let records = lines
            .into_iter()
            .map(|l| NewRecord {
                timestamp: now,
                key: None,
                value: Some(l.into_bytes()),
                headers: vec![],
            })
            .collect();
        io.append(&topic, records, batch_size).await?;
        crate::metrics::connector_records(&c.name, count);
        position = position.wrapping_add(consumed);
        io.save_position(&file, position).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_read_and_crlf_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.txt");
        std::fs::write(&f, "one\r\ntwo\nthr").unwrap();
        let (lines, used) = read_lines(&f, 0).unwrap().unwrap();
        assert_eq!(lines, vec!["one", "two"]);
        assert_eq!(used, 9);
        let (lines, _) = read_lines(&f, used).unwrap().unwrap();
        assert!(lines.is_empty(), "a partial line waits for its newline");
        assert!(read_lines(&dir.path().join("missing"), 0)
            .unwrap()
            .is_none());
    }
}
