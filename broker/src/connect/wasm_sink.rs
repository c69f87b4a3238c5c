//! `sluice.WasmSink`: a sink written with `sluice-sdk` (`#[sink]`), run in the broker's sandbox
//! with only the capabilities its config grants (`sink.file.dir`, `sink.http.allow`).
//!
//! It consumes as group `connect-<name>` and commits after each delivered batch: at least once.
//! A retryable error retries the same batch with exponential backoff (100 ms doubling, capped at
//! `retry.backoff.max.ms`, default 10 s). A permanent error (or a guest failure) is narrowed to
//! the failing records by delivering one at a time; those go to
//! `errors.deadletterqueue.topic.name` when `errors.tolerance=all` (Connect's error headers
//! included), are skipped with `errors.tolerance=all` and no DLQ, or fail the task (FAILED, with
//! the message as trace) under `errors.tolerance=none`, the default.

use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::codec::{encode_deployment, Deployment};
use sluice_sdk::SinkError;

use super::{wait_until_running, Connector, Target};
use crate::broker::{now_ms, Broker};
use crate::group::Committed;
use crate::records::record::{NewRecord, RecordView, RecordsArea};
use crate::wasm::host::{Grants, GuestLog};
use crate::wasm::{BatchInput, Guest, GuestLimits};

const POLL: Duration = Duration::from_millis(100);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

struct Settings {
    module: String,
    topics: Option<String>,
    regex: Option<regex_lite::Regex>,
    grants: Grants,
    env: Vec<(String, String)>,
    batch: usize,
    tolerate: bool,
    dlq: Option<String>,
    max_backoff: Duration,
}

fn settings(c: &Connector) -> Result<Settings, String> {
    let cfg = c.config.lock();
    let get = |k: &str| cfg.get(k).cloned().filter(|v| !v.trim().is_empty());
    Ok(Settings {
        module: get("wasm.module").ok_or("wasm.module is missing")?,
        topics: get("topics"),
        regex: get("topics.regex")
            .map(|r| regex_lite::Regex::new(&r))
            .transpose()
            .map_err(|e| e.to_string())?,
        grants: Grants {
            file_dir: get("sink.file.dir").map(Into::into),
            http_allow: get("sink.http.allow")
                .map(|u| {
                    u.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        },
        env: cfg
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("env.").map(|k| (k.to_string(), v.clone())))
            .collect(),
        batch: get("batch.size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(500),
        tolerate: get("errors.tolerance").as_deref() == Some("all"),
        dlq: get("errors.deadletterqueue.topic.name"),
        max_backoff: Duration::from_millis(
            get("retry.backoff.max.ms")
                .and_then(|b| b.parse().ok())
                .unwrap_or(10_000),
        ),
    })
}

/// One delivery attempt of `records` (all from one partition, in offset order), given to the
/// guest in Kafka's record format (ABI v2).
fn deliver(
    guest: &mut Guest,
    topic: &str,
    partition: i32,
    records: &[RecordView],
) -> Result<(), SinkError> {
    let mut area = RecordsArea::new();
    for r in records {
        area.push(
            r.offset,
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        )
        .map_err(SinkError::Permanent)?;
    }
    let input = BatchInput::of_area(topic, partition, &area);
    match guest.sink_batch(&input) {
        Ok(verdict) => verdict,
        Err(e) => Err(SinkError::Permanent(e.to_string())),
    }
}

pub(crate) async fn run(broker: Arc<Broker>, c: Arc<Connector>) -> Result<(), String> {
    let mut target = c.target.subscribe();
    let s = Arc::new(settings(&c)?);
    let module = broker
        .transforms
        .module(&s.module)
        .map_err(|e| e.to_string())?;
    if module.kind != crate::wasm::engine::ModuleKind::Sink {
        return Err(
            "wasm.module is a transform, not a sink (it must export sluice_on_sink_batch)".into(),
        );
    }
    let log = Arc::new(GuestLog::default());
    let init = encode_deployment(&Deployment {
        outputs: Vec::new(),
        env: s.env.clone(),
    });
    let start = |broker: &Arc<Broker>| {
        Guest::start_with(
            &broker.transforms.engine,
            &module,
            GuestLimits::default(),
            log.clone(),
            &c.name,
            &init,
            s.grants.clone(),
        )
        .map_err(|e| e.to_string())
    };
    let mut guest = Some(start(&broker)?);
    let group = format!("connect-{}", c.name);
    loop {
        if !wait_until_running(&c, &mut target).await {
            return Ok(());
        }
        if let Some(message) = c.refused(&broker) {
            return Err(message);
        }
        let committed = broker.groups.offsets.group(&group);
        let b = broker.clone();
        let settings = s.clone();
        let chunks = tokio::task::spawn_blocking(move || pending(&b, &settings, &committed))
            .await
            .map_err(|e| e.to_string())??;
        if chunks.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = target.changed() => {}
            }
            continue;
        }
        for (topic, partition, records) in chunks {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let mut g = match guest.take() {
                    Some(g) => g,
                    None => start(&broker)?,
                };
                let (t, r) = (topic.clone(), records.clone());
                // Guests run on the guest pool, as transforms do (see wasm::pool).
                let (g_back, result) = broker
                    .guests
                    .run(move || {
                        let result = deliver(&mut g, &t, partition, &r);
                        (g, result)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                // An instance that failed is not trusted again.
                guest = result.is_ok().then_some(g_back);
                match result {
                    Ok(()) => {
                        crate::metrics::connector_records(&c.name, records.len());
                        break;
                    }
                    Err(SinkError::Retryable(message)) => {
                        crate::metrics::connector_retry(&c.name);
                        c.set_status("RUNNING", Some(format!("retrying: {message}")));
                        tracing::warn!(connector = %c.name, "delivery failed, retrying in {backoff:?}: {message}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = target.changed() => {}
                        }
                        if *target.borrow() != Target::Running
                            && !wait_until_running(&c, &mut target).await
                        {
                            return Ok(());
                        }
                        backoff = (backoff * 2).min(s.max_backoff);
                    }
                    Err(SinkError::Permanent(message)) => {
                        let b = broker.clone();
                        let (t, settings, name) = (topic.clone(), s.clone(), c.name.clone());
                        let r = records.clone();
                        let g = start(&broker)?;
                        let (g, outcome) = broker
                            .guests
                            .run(move || isolate(&b, g, &settings, &name, &t, partition, &r))
                            .await
                            .map_err(|e| e.to_string())?;
                        guest = g;
                        if let Err(failure) = outcome {
                            return Err(format!("{failure} (batch error: {message})"));
                        }
                        break;
                    }
                }
            }
            c.set_status("RUNNING", None);
            let next = records.last().map_or(0, |r| r.offset + 1);
            let commit = vec![(
                topic.clone(),
                partition,
                Committed {
                    offset: next,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp: now_ms(),
                },
            )];
            broker
                .groups
                .offsets
                .commit(&group, commit)
                .await
                .map_err(|e| format!("cannot commit offsets of {group}: {e}"))?;
        }
    }
}

/// New records of every partition, at most `batch` per partition.
fn pending(
    broker: &Broker,
    s: &Settings,
    committed: &crate::group::offsets::GroupOffsets,
) -> Result<Vec<super::Unconsumed>, String> {
    let topics = super::sink_topics(broker, &s.topics, &s.regex);
    super::unconsumed(broker, &topics, committed, s.batch)
}

/// Delivers records one at a time to find the ones that fail for good, and applies
/// `errors.tolerance` to them. Retryable errors here are retried a few times, then counted as
/// failures (the batch as a whole already failed permanently).
fn isolate(
    broker: &Broker,
    mut guest: Guest,
    s: &Settings,
    name: &str,
    topic: &str,
    partition: i32,
    records: &[RecordView],
) -> (Option<Guest>, Result<(), String>) {
    for r in records {
        let mut attempt = 0;
        let result = loop {
            match deliver(&mut guest, topic, partition, std::slice::from_ref(r)) {
                Err(SinkError::Retryable(m)) if attempt < 3 => {
                    attempt += 1;
                    std::thread::sleep(FIRST_BACKOFF * attempt);
                    let _ = m;
                }
                other => break other,
            }
        };
        let Err(e) = result else { continue };
        let message = match &e {
            SinkError::Retryable(m) | SinkError::Permanent(m) => m.clone(),
        };
        if !s.tolerate {
            return (
                Some(guest),
                Err(format!(
                    "record {topic}-{partition}@{} could not be delivered: {message}",
                    r.offset
                )),
            );
        }
        if let Some(dlq) = &s.dlq {
            if let Err(err) = dead_letter(broker, dlq, name, topic, partition, r, &message) {
                return (
                    Some(guest),
                    Err(format!("cannot write to dead-letter topic {dlq}: {err}")),
                );
            }
            crate::metrics::connector_dead_lettered(name);
        }
    }
    (Some(guest), Ok(()))
}

/// Writes a record to the dead-letter topic with Connect's context headers.
fn dead_letter(
    broker: &Broker,
    dlq: &str,
    name: &str,
    topic: &str,
    partition: i32,
    r: &RecordView,
    message: &str,
) -> Result<(), String> {
    let mut headers = r.headers.clone();
    for (k, v) in [
        ("__connect.errors.topic", topic.to_string()),
        ("__connect.errors.partition", partition.to_string()),
        ("__connect.errors.offset", r.offset.to_string()),
        ("__connect.errors.connector.name", name.to_string()),
        ("__connect.errors.exception.message", message.to_string()),
    ] {
        headers.push((k.to_string(), Some(v.into_bytes())));
    }
    let record = NewRecord {
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
    };
    crate::write::append_records(broker, dlq, 0, &[record], now_ms()).map_err(|e| e.to_string())?;
    Ok(())
}
