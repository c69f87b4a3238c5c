//! Running one deployment's guest over input records, and deciding by the deployment's failure
//! policy what is to be written. Nothing here appends: [`crate::write`] stores what it says.
//!
//! A batch that fails as a whole (a trap, a CPU-time or memory overrun, malformed output) under
//! `skip` or `dead-letter` is narrowed to the records that fail: its halves are re-run, and theirs,
//! down to single records, so the good records of a batch keep their outputs.

use std::sync::atomic::Ordering;

use super::deployment::OnError;
use super::registry::Running;
use crate::acl::Authorizer;
use crate::records::record::{RecordIter, RecordsArea};
use crate::records::{NewRecord, RecordView};
use crate::wasm::abi::BatchInput;
use crate::wasm::{GuestError, WasmEngine};

/// What a deployment wrote for one input batch.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// `(input index, output index, record)` in input order. For an in-place deployment the
    /// records that replace the input; otherwise records for the deployment's outputs.
    pub(crate) outputs: Vec<(usize, usize, NewRecord)>,
    /// Dead-letter copies of failed inputs: `(topic, record)`.
    pub(crate) dead_letters: Vec<(String, NewRecord)>,
}

/// A deployment's verdict on an input batch.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Policy `reject`: the produce fails with this message; nothing of it is stored.
    Reject(String),
    /// Store these.
    Write(Writes),
}

/// Where the input records come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
}

/// Runs `running` over `records` (already carrying the offsets they are or will be stored at)
/// and applies its failure policy. A deployment whose deployer has lost a right it needs (see
/// [`super::Deployment::refused_by`]) runs nothing: every record fails with that message.
pub(crate) fn decide(
    engine: &WasmEngine,
    authorizer: &Authorizer,
    running: &Running,
    source: Source<'_>,
    records: &[RecordView],
) -> Decision {
    let (name, mut policy, refusal) = {
        let d = running.deployment.read();
        (d.name.clone(), d.on_error.clone(), d.refused_by(authorizer))
    };
    running.stats.batches.fetch_add(1, Ordering::Relaxed);
    running
        .stats
        .records_in
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    let narrow = policy != OnError::Reject;
    let mut produced = Vec::new();
    let mut errors = Vec::new();
    match refusal {
        Some(refusal) => {
            running.failed(&refusal.message);
            if !refusal.may_dead_letter {
                policy = OnError::Reject;
            }
            errors.extend((0..records.len()).map(|i| (i, refusal.message.clone())));
        }
        None => run_narrowing(
            engine,
            running,
            source,
            records,
            0,
            narrow,
            &mut produced,
            &mut errors,
        ),
    }
    running
        .stats
        .records_out
        .fetch_add(produced.len() as u64, Ordering::Relaxed);
    let mut writes = Writes {
        outputs: produced,
        dead_letters: Vec::new(),
    };
    if errors.is_empty() {
        return Decision::Write(writes);
    }
    match policy {
        OnError::Reject => {
            running.stats.rejected.fetch_add(1, Ordering::Relaxed);
            crate::metrics::transform_error(&name, crate::metrics::GuestFailure::Rejected);
            let message = errors.first().map(|(_, m)| m.clone()).unwrap_or_default();
            Decision::Reject(format!("transform {name}: {message}"))
        }
        OnError::Skip => {
            running
                .stats
                .skipped
                .fetch_add(errors.len() as u64, Ordering::Relaxed);
            Decision::Write(writes)
        }
        OnError::DeadLetter(topic) => {
            running
                .stats
                .dead_lettered
                .fetch_add(errors.len() as u64, Ordering::Relaxed);
            for (i, message) in &errors {
                if let Some(r) = records.get(*i) {
                    writes
                        .dead_letters
                        .push((topic.clone(), dead_letter(source, r, message, &name)));
                }
            }
            Decision::Write(writes)
        }
    }
}

/// Runs `records` (which start at input index `first`); a whole-call failure is narrowed by
/// re-running halves when `narrow`, else every record of the call carries it.
#[allow(clippy::too_many_arguments)]
fn run_narrowing(
    engine: &WasmEngine,
    running: &Running,
    source: Source<'_>,
    records: &[RecordView],
    first: usize,
    narrow: bool,
    produced: &mut Vec<(usize, usize, NewRecord)>,
    errors: &mut Vec<(usize, String)>,
) {
    if records.is_empty() {
        return;
    }
    match call(engine, running, source, records) {
        Ok((out, refused)) => {
            produced.extend(out.into_iter().map(|(i, o, r)| (first + i, o, r)));
            errors.extend(refused.into_iter().map(|(i, m)| (first + i, m)));
        }
        Err(message) => {
            running.failed(&message);
            if !narrow || records.len() == 1 {
                errors.extend((0..records.len()).map(|i| (first + i, message.clone())));
                return;
            }
            let mid = records.len() / 2;
            let (left, right) = records.split_at(mid);
            run_narrowing(
                engine, running, source, left, first, narrow, produced, errors,
            );
            run_narrowing(
                engine,
                running,
                source,
                right,
                first + mid,
                narrow,
                produced,
                errors,
            );
        }
    }
}

/// What a guest produced for a call: `(input index, output index, record)` and refused inputs.
type CallResult = (Vec<(usize, usize, NewRecord)>, Vec<(usize, String)>);

/// One guest call (ABI v2); a whole-call failure (trap, timeout, out of memory, bad output) is
/// `Err`. The records cross as a Kafka records area; the guest's output sections are read in
/// guest memory and turned into records before the instance is handed back.
fn call(
    engine: &WasmEngine,
    running: &Running,
    source: Source<'_>,
    records: &[RecordView],
) -> Result<CallResult, String> {
    let mut area = RecordsArea::new();
    for r in records {
        area.push(
            r.offset,
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        )?;
    }
    let input = BatchInput::of_area(source.topic, source.partition, &area);
    let outputs = u32::try_from(running.output_count()).unwrap_or(u32::MAX);
    let result = running.with_guest(engine, |guest| {
        let out = guest.transform(&input, outputs)?;
        let mut produced = Vec::new();
        for section in &out.sections {
            // Sections keep input order; a record's position stands for its input where the
            // ABI does not say (v2 carries no per-record input index).
            for (i, record) in RecordIter::new(section.records).enumerate() {
                let record = record.map_err(GuestError::Malformed)?;
                produced.push((
                    i,
                    section.output as usize,
                    NewRecord::from_raw(
                        section.base_timestamp.wrapping_add(record.timestamp_delta),
                        &record,
                    ),
                ));
            }
        }
        let errors: Vec<(usize, String)> = out
            .errors
            .into_iter()
            .map(|(i, m)| (i as usize, m))
            .collect();
        Ok((produced, errors))
    });
    // Failures, malformed output included, are counted by kind in `with_guest`.
    result.map_err(|e| e.to_string())
}

/// The dead-letter copy of an input record: its key, value and headers, plus why.
fn dead_letter(source: Source<'_>, r: &RecordView, message: &str, deployment: &str) -> NewRecord {
    let mut headers = r.headers.clone();
    headers.push(("sluice.error".into(), Some(message.as_bytes().to_vec())));
    headers.push((
        "sluice.transform".into(),
        Some(deployment.as_bytes().to_vec()),
    ));
    headers.push((
        "sluice.source".into(),
        Some(format!("{}/{}@{}", source.topic, source.partition, r.offset).into_bytes()),
    ));
    NewRecord {
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
    }
}
