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
use crate::records::record::RecordIter;
use crate::records::NewRecord;
use crate::wasm::abi::{BatchInput, GuestOutput, OutputSection};
use crate::wasm::WasmEngine;

/// A deployment's verdict on an input batch. What the guest wrote went to the section callback
/// of [`decide`] as it came out of the guest.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Policy `reject`: the produce fails with this message; nothing of it is stored.
    Reject(String),
    /// Store what the sections held, and these dead-letter copies of failed inputs
    /// (`(topic, record)`, the slow path: built only for records that failed).
    Write {
        dead_letters: Vec<(String, NewRecord)>,
    },
}

/// Where the input records come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
}

/// Runs `running` over `input` (a records area at the offsets it is or will be stored at) and
/// applies its failure policy. Every output section the guest wrote is handed to `on_section`
/// while it still lies in guest memory (checked), so the caller copies it once, straight into
/// the batch it belongs in; a narrowed batch hands over one section per guest call that
/// succeeded. Under `reject` sections may have been handed over before the verdict: the caller
/// drops them. A deployment whose deployer has lost a right it needs (see
/// [`super::Deployment::refused_by`]) runs nothing: every record fails with that message.
pub(crate) fn decide(
    engine: &WasmEngine,
    authorizer: &Authorizer,
    running: &Running,
    source: Source<'_>,
    input: &BatchInput<'_>,
    on_section: &mut dyn FnMut(&OutputSection<'_>),
) -> Decision {
    let (name, mut policy, refusal) = {
        let d = running.deployment.read();
        (d.name.clone(), d.on_error.clone(), d.refused_by(authorizer))
    };
    running.stats.batches.fetch_add(1, Ordering::Relaxed);
    running
        .stats
        .records_in
        .fetch_add(u64::from(input.record_count), Ordering::Relaxed);
    let narrow = policy != OnError::Reject;
    let mut errors = Vec::new();
    let produced = match refusal {
        Some(refusal) => {
            running.failed(&refusal.message);
            if !refusal.may_dead_letter {
                policy = OnError::Reject;
            }
            let count = input.record_count as usize;
            errors.extend((0..count).map(|i| (i, refusal.message.clone())));
            0
        }
        None => run_narrowing(engine, running, input, 0, narrow, on_section, &mut errors),
    };
    running
        .stats
        .records_out
        .fetch_add(produced, Ordering::Relaxed);
    if errors.is_empty() {
        return Decision::Write {
            dead_letters: Vec::new(),
        };
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
            Decision::Write {
                dead_letters: Vec::new(),
            }
        }
        OnError::DeadLetter(topic) => {
            running
                .stats
                .dead_lettered
                .fetch_add(errors.len() as u64, Ordering::Relaxed);
            errors.sort_by_key(|(i, _)| *i);
            let mut dead_letters = Vec::with_capacity(errors.len());
            let mut records = RecordIter::new(input.records).enumerate();
            for (i, message) in &errors {
                // Errors are in input order: one pass over the records finds them all.
                let Some(r) = records.find(|(at, _)| at == i).and_then(|(_, r)| r.ok()) else {
                    continue;
                };
                let offset = input.base_offset.wrapping_add(i64::from(r.offset_delta));
                let timestamp = input.base_timestamp.wrapping_add(r.timestamp_delta);
                dead_letters.push((
                    topic.clone(),
                    dead_letter(
                        source,
                        NewRecord::from_raw(timestamp, &r),
                        offset,
                        message,
                        &name,
                    ),
                ));
            }
            Decision::Write { dead_letters }
        }
    }
}

/// Runs `input` (whose records start at input index `first`); a whole-call failure is narrowed
/// by re-running halves when `narrow`, else every record of the call carries it. Returns how
/// many records the guest wrote.
fn run_narrowing(
    engine: &WasmEngine,
    running: &Running,
    input: &BatchInput<'_>,
    first: usize,
    narrow: bool,
    on_section: &mut dyn FnMut(&OutputSection<'_>),
    errors: &mut Vec<(usize, String)>,
) -> u64 {
    let count = input.record_count as usize;
    if count == 0 {
        return 0;
    }
    let outputs = u32::try_from(running.output_count()).unwrap_or(u32::MAX);
    let result = running.with_guest(engine, |guest| {
        let keeps_state = super::state::prepare_call(running, guest, input.partition);
        let GuestOutput { sections, errors } = guest.transform(input, outputs)?;
        let mut written = 0u64;
        for section in &sections {
            written += u64::from(section.record_count);
            on_section(section);
        }
        drop(sections);
        if keeps_state {
            // Only a call that succeeded changes the store; the next call sees its writes.
            running
                .state
                .apply(input.partition, guest.take_state_changes());
        }
        Ok((written, errors))
    });
    // Failures, malformed output included, are counted by kind in `with_guest`.
    let message = match result {
        Ok((written, refused)) => {
            errors.extend(refused.into_iter().map(|(i, m)| (first + i as usize, m)));
            return written;
        }
        Err(e) => e.to_string(),
    };
    running.failed(&message);
    if !narrow || count == 1 {
        errors.extend((0..count).map(|i| (first + i, message.clone())));
        return 0;
    }
    let mid = count / 2;
    let Some(split) = split_at_record(input.records, mid) else {
        // The host checked the framing before; a records area that does not split is failed
        // whole rather than guessed at.
        errors.extend((0..count).map(|i| (first + i, message.clone())));
        return 0;
    };
    let (left, right) = input.records.split_at(split);
    let halves = [(left, mid, first), (right, count - mid, first + mid)];
    let mut written = 0;
    for (records, n, at) in halves {
        let half = BatchInput {
            record_count: n as u32,
            records,
            ..*input
        };
        written += run_narrowing(engine, running, &half, at, narrow, on_section, errors);
    }
    written
}

/// The byte position in a records area where record `index` starts.
fn split_at_record(records: &[u8], index: usize) -> Option<usize> {
    let mut iter = RecordIter::new(records);
    for _ in 0..index {
        iter.next()?.ok()?;
    }
    Some(records.len() - iter.rest().len())
}

/// The dead-letter copy of an input record (at `offset`): its key, value and headers, plus why.
fn dead_letter(
    source: Source<'_>,
    mut record: NewRecord,
    offset: i64,
    message: &str,
    deployment: &str,
) -> NewRecord {
    record
        .headers
        .push(("sluice.error".into(), Some(message.as_bytes().to_vec())));
    record.headers.push((
        "sluice.transform".into(),
        Some(deployment.as_bytes().to_vec()),
    ));
    record.headers.push((
        "sluice.source".into(),
        Some(format!("{}/{}@{}", source.topic, source.partition, offset).into_bytes()),
    ));
    record
}
