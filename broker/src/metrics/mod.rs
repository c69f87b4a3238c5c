//! The broker's Prometheus metrics: the counters and histograms the hot paths bump, in one
//! process-wide registry. Gauges that describe state (log sizes, watermarks, group lag,
//! deployment counters, connector tasks) are not kept here: the HTTP listener reads them from the
//! broker at scrape time ([`Scrape`]) and encodes them beside these.
//!
//! Hot-path cost: each hook is one relaxed load of [`enabled`] and, when on, atomic adds on
//! children looked up without allocation (per-API children sit in a fixed table; per-topic ones
//! in a read-locked map taken once per batch, never per record).
//!
//! This module is a leaf: every layer may call into it, it calls none of them.

pub mod process;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The content type of [`Metrics::encode`]'s output (Prometheus text exposition 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kafka API keys with a fixed per-API slot; a key past this is counted under one "other" slot.
const API_SLOTS: usize = 96;
/// Request versions with their own slot; higher ones share the last.
const VERSION_SLOTS: usize = 32;

/// Latency buckets from 50 µs to 10 s: local requests take microseconds, `acks=-1` produces an
/// fsync (milliseconds), fetches long-poll up to their `max.wait.ms`.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Records covered by one fsync: group commit makes this grow with concurrency.
const GROUP_COMMIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
];

static ENABLED: AtomicBool = AtomicBool::new(true);
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Turns the hot-path counters on or off (`metrics.enabled`); scrape-time gauges stay.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the hot-path counters are being kept.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Counters of one topic, looked up once per batch.
#[derive(Debug)]
struct TopicCounters {
    bytes_in: IntCounter,
    records_in: IntCounter,
    bytes_out: IntCounter,
    records_out: IntCounter,
}

/// One API's request latency histograms.
#[derive(Debug)]
struct ApiTimers {
    queue: Histogram,
    handling: Histogram,
    response: Histogram,
}

/// Everything counted on the hot paths.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_errors: IntCounterVec,
    queue_seconds: HistogramVec,
    handling_seconds: HistogramVec,
    response_seconds: HistogramVec,
    /// `requests` children by `[api][version]`, created on first use.
    request_slots: Vec<OnceLock<IntCounter>>,
    /// Latency children by API, created on first use.
    timer_slots: Vec<OnceLock<ApiTimers>>,
    connections_accepted: IntCounter,
    connections_open: IntGauge,
    bytes_in: IntCounterVec,
    records_in: IntCounterVec,
    bytes_out: IntCounterVec,
    records_out: IntCounterVec,
    /// Children of the four per-topic vectors, so a batch costs one map lookup.
    topics: RwLock<HashMap<String, TopicCounters>>,
    fsync_seconds: Histogram,
    group_commit_records: Histogram,
    transform_seconds: HistogramVec,
    transform_errors: IntCounterVec,
    connector_records: IntCounterVec,
    connector_retries: IntCounterVec,
    connector_dead_lettered: IntCounterVec,
    connections_refused: IntCounterVec,
    throttled: IntCounterVec,
    throttle_ms: IntCounterVec,
    /// Cluster mode: what the object store and the database are asked for (a provider bills
    /// per request): successful PUTs and GETs with their bytes, and uploads committed (one
    /// PostgreSQL transaction each) with their bytes.
    object_puts: IntCounter,
    object_put_bytes: IntCounter,
    object_gets: IntCounter,
    object_get_bytes: IntCounter,
    upload_commits: IntCounter,
    upload_bytes: IntCounter,
}

/// A Prometheus name or label set that is fixed in this file is valid: registration and vector
/// construction can only fail on a bad name, a label count mismatch or a duplicate, all of which
/// the unit test below would catch.
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bug(name, e));
    register(registry, name, v.clone());
    v
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| bug(name, e));
    register(registry, name, c.clone());
    c
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let v = HistogramVec::new(opts, labels).unwrap_or_else(|e| bug(name, e));
    register(registry, name, v.clone());
    v
}

fn register(registry: &Registry, name: &str, c: impl Collector + 'static) {
    if let Err(e) = registry.register(Box::new(c)) {
        bug(name, e)
    }
}

fn bug(name: &str, e: prometheus::Error) -> ! {
    // Only a typo in this file reaches here (see `counter_vec`).
    unreachable!("metric {name} is misdefined: {e}")
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let api = &["api"];
        let topic = &["topic"];
        let connector = &["connector"];
        let accepted = IntCounter::new(
            "sluice_connections_accepted_total",
            "Kafka connections accepted.",
        )
        .unwrap_or_else(|e| bug("sluice_connections_accepted_total", e));
        register(&r, "sluice_connections_accepted_total", accepted.clone());
        let open = IntGauge::new("sluice_connections_open", "Kafka connections open now.")
            .unwrap_or_else(|e| bug("sluice_connections_open", e));
        register(&r, "sluice_connections_open", open.clone());
        let fsync = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_log_fsync_seconds",
                "Duration of one group-commit fsync of a partition's log.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| bug("sluice_log_fsync_seconds", e));
        register(&r, "sluice_log_fsync_seconds", fsync.clone());
        let group_commit = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_log_group_commit_records",
                "Records made durable by one fsync (group commit).",
            )
            .buckets(GROUP_COMMIT_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| bug("sluice_log_group_commit_records", e));
        register(&r, "sluice_log_group_commit_records", group_commit.clone());
        Metrics {
            requests: counter_vec(
                &r,
                "sluice_requests_total",
                "Kafka requests received, by API and version.",
                &["api", "version"],
            ),
            request_errors: counter_vec(
                &r,
                "sluice_request_errors_total",
                "Kafka error codes answered (per partition where the API answers per partition).",
                &["api", "error"],
            ),
            queue_seconds: histogram_vec(
                &r,
                "sluice_request_queue_seconds",
                "Time a ready response waits behind earlier responses of its connection.",
                api,
                LATENCY_BUCKETS,
            ),
            handling_seconds: histogram_vec(
                &r,
                "sluice_request_handling_seconds",
                "Time from a request's arrival until its response is ready (appends, fsync waits, fetch long-polls).",
                api,
                LATENCY_BUCKETS,
            ),
            response_seconds: histogram_vec(
                &r,
                "sluice_request_response_seconds",
                "Time to write a response to the connection.",
                api,
                LATENCY_BUCKETS,
            ),
            request_slots: (0..API_SLOTS * VERSION_SLOTS)
                .map(|_| OnceLock::new())
                .collect(),
            timer_slots: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
            connections_accepted: accepted,
            connections_open: open,
            bytes_in: counter_vec(
                &r,
                "sluice_topic_bytes_in_total",
                "Record batch bytes written to a topic (produce, transform outputs, sources).",
                topic,
            ),
            records_in: counter_vec(
                &r,
                "sluice_topic_records_in_total",
                "Records written to a topic.",
                topic,
            ),
            bytes_out: counter_vec(
                &r,
                "sluice_topic_bytes_out_total",
                "Record batch bytes returned by Fetch from a topic.",
                topic,
            ),
            records_out: counter_vec(
                &r,
                "sluice_topic_records_out_total",
                "Records returned by Fetch from a topic.",
                topic,
            ),
            topics: RwLock::new(HashMap::new()),
            fsync_seconds: fsync,
            group_commit_records: group_commit,
            transform_seconds: histogram_vec(
                &r,
                "sluice_transform_execution_seconds",
                "Duration of one guest call on a batch.",
                &["deployment"],
                LATENCY_BUCKETS,
            ),
            transform_errors: counter_vec(
                &r,
                "sluice_transform_errors_total",
                "Failed guest calls and refused records, by kind (trap, timeout, out_of_memory, malformed_output, start, rejected).",
                &["deployment", "kind"],
            ),
            connector_records: counter_vec(
                &r,
                "sluice_connector_records_total",
                "Records a connector delivered (sinks) or wrote (sources).",
                connector,
            ),
            connector_retries: counter_vec(
                &r,
                "sluice_connector_retries_total",
                "Deliveries a connector retried after a retryable error.",
                connector,
            ),
            connector_dead_lettered: counter_vec(
                &r,
                "sluice_connector_dead_lettered_total",
                "Records a connector sent to its dead-letter topic.",
                connector,
            ),
            connections_refused: counter_vec(
                &r,
                "sluice_connections_refused_total",
                "Kafka connections closed right after accept, by the limit they were over (max.connections, max.connections.per.ip).",
                &["limit"],
            ),
            throttled: counter_vec(
                &r,
                "sluice_quota_throttled_responses_total",
                "Responses that held a client back for being over a quota, by quota key.",
                &["quota"],
            ),
            throttle_ms: counter_vec(
                &r,
                "sluice_quota_throttle_milliseconds_total",
                "Milliseconds clients were held back for being over a quota, by quota key.",
                &["quota"],
            ),
            object_puts: counter(
                &r,
                "sluice_cluster_object_puts_total",
                "Cluster mode: objects written to the object store (uploads and merged objects).",
            ),
            object_put_bytes: counter(
                &r,
                "sluice_cluster_object_put_bytes_total",
                "Cluster mode: bytes of the objects counted in sluice_cluster_object_puts_total.",
            ),
            object_gets: counter(
                &r,
                "sluice_cluster_object_gets_total",
                "Cluster mode: GETs from the object store (fetch reads that missed the cache, whole objects read by merges).",
            ),
            object_get_bytes: counter(
                &r,
                "sluice_cluster_object_get_bytes_total",
                "Cluster mode: bytes returned by the GETs counted in sluice_cluster_object_gets_total.",
            ),
            upload_commits: counter(
                &r,
                "sluice_cluster_upload_commits_total",
                "Cluster mode: uploads committed to PostgreSQL (one transaction each).",
            ),
            upload_bytes: counter(
                &r,
                "sluice_cluster_upload_bytes_total",
                "Cluster mode: record batch bytes of the uploads counted in sluice_cluster_upload_commits_total.",
            ),
            registry: r,
        }
    }

    /// Runs `f` on `topic`'s counters: under a shared lock once they exist, so the hot path
    /// neither allocates nor clones.
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        if let Some(c) = self.topics.read().get(topic) {
            return f(c);
        }
        let labels = &[topic];
        let mut topics = self.topics.write();
        let c = topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicCounters {
                bytes_in: self.bytes_in.with_label_values(labels),
                records_in: self.records_in.with_label_values(labels),
                bytes_out: self.bytes_out.with_label_values(labels),
                records_out: self.records_out.with_label_values(labels),
            });
        f(c)
    }

    fn timers(&self, api_key: i16) -> &ApiTimers {
        let slot = api_slot(api_key);
        self.timer_slots[slot].get_or_init(|| {
            let name = [api_label(api_key)];
            ApiTimers {
                queue: self.queue_seconds.with_label_values(&name),
                handling: self.handling_seconds.with_label_values(&name),
                response: self.response_seconds.with_label_values(&name),
            }
        })
    }

    /// Drops the per-topic series of topics for which `exists` is false (deleted topics), so
    /// the label set stays bounded by the catalog.
    pub fn retain_topics(&self, exists: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .topics
            .read()
            .keys()
            .filter(|t| !exists(t))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut topics = self.topics.write();
        for t in gone {
            topics.remove(&t);
            for v in [
                &self.bytes_in,
                &self.records_in,
                &self.bytes_out,
                &self.records_out,
            ] {
                let _ = v.remove_label_values(&[&t]);
            }
        }
    }

    /// Per topic: bytes in, records in, bytes out, records out (the console's live charts).
    pub fn topic_totals(&self) -> Vec<(String, [u64; 4])> {
        let mut out: Vec<(String, [u64; 4])> = self
            .topics
            .read()
            .iter()
            .map(|(t, c)| {
                (
                    t.clone(),
                    [
                        c.bytes_in.get(),
                        c.records_in.get(),
                        c.bytes_out.get(),
                        c.records_out.get(),
                    ],
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The Prometheus text exposition of these metrics, process metrics and `extra` (families
    /// gathered at scrape time).
    pub fn encode(&self, extra: Vec<MetricFamily>) -> String {
        let mut families = self.registry.gather();
        families.extend(process::families());
        families.extend(extra);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a family without samples' type, which gather() and
        // the scrape builders never produce; an error then leaves what was written.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("metrics exposition incomplete: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn api_slot(api_key: i16) -> usize {
    usize::try_from(api_key)
        .ok()
        .filter(|&k| k < API_SLOTS - 1)
        .unwrap_or(API_SLOTS - 1)
}

/// The API's name as Kafka writes it (`Produce`, `Fetch`, ...), or `other`.
fn api_label(api_key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(api) if api_slot(api_key) < API_SLOTS - 1 => format!("{api:?}"),
        _ => "other".to_string(),
    }
}

/// Snake-case name of a Kafka error code (`unknown_topic_or_partition`), or `code_N` for a code
/// the protocol crate does not name.
fn error_label(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(kafka_protocol::error::ResponseError::Unknown(_)) | None => format!("code_{code}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 4);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() {
                    if i > 0 {
                        out.push('_');
                    }
                    out.push(ch.to_ascii_lowercase());
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

/// A request's timings, from the moment its frame was read until its response is written.
#[derive(Debug)]
pub struct RequestTimer {
    /// `None` when metrics are off, so no clock is read.
    inner: Option<(i16, Instant, Option<Instant>)>,
}

impl RequestTimer {
    /// Counts the request in `frame` (its first bytes are the API key and version) and starts
    /// its clock.
    pub fn start(frame: &[u8]) -> RequestTimer {
        if !enabled() || frame.len() < 4 {
            return RequestTimer { inner: None };
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let m = get();
        let v = usize::try_from(version).unwrap_or(0).min(VERSION_SLOTS - 1);
        m.request_slots[api_slot(key) * VERSION_SLOTS + v]
            .get_or_init(|| {
                m.requests
                    .with_label_values(&[&api_label(key), &v.to_string()])
            })
            .inc();
        RequestTimer {
            inner: Some((key, Instant::now(), None)),
        }
    }

    /// The response is ready to be written.
    pub fn handled(&mut self) {
        self.handled_at(clock());
    }

    /// The response was ready at `at` (from [`clock`], taken where the deferred work ended).
    pub fn handled_at(&mut self, at: Option<Instant>) {
        if let (Some((key, start, ready)), Some(at)) = (&mut self.inner, at) {
            get()
                .timers(*key)
                .handling
                .observe(secs(at.saturating_duration_since(*start)));
            *ready = Some(at);
        }
    }

    /// The writer takes the response; returns when it started writing.
    pub fn writing(&self) -> Option<Instant> {
        let (key, _, ready) = self.inner.as_ref()?;
        let now = Instant::now();
        if let Some(ready) = ready {
            get()
                .timers(*key)
                .queue
                .observe(secs(now.saturating_duration_since(*ready)));
        }
        Some(now)
    }

    /// The response was written (started at `since`, from [`RequestTimer::writing`]).
    pub fn written(&self, since: Option<Instant>) {
        if let (Some((key, _, _)), Some(since)) = (&self.inner, since) {
            get().timers(*key).response.observe(secs(since.elapsed()));
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A Kafka error code answered to a request of `api_key` (0 is no error and is not counted).
pub fn request_error(api_key: kafka_protocol::messages::ApiKey, code: i16) {
    if code == 0 || !enabled() {
        return;
    }
    get()
        .request_errors
        .with_label_values(&[&format!("{api_key:?}"), &error_label(code)])
        .inc();
}

/// A connection was accepted; the returned guard counts it open until dropped.
pub fn connection_opened() -> OpenConnection {
    let m = get();
    m.connections_accepted.inc();
    m.connections_open.inc();
    OpenConnection(())
}

/// A connection was closed right after accept for being over `limit` (counted even with
/// `metrics.enabled=false`: refusals are rare and operators look for them).
pub fn connection_refused(limit: &str) {
    get().connections_refused.with_label_values(&[limit]).inc();
}

/// A response held its client back for `throttle` for being over the quota `key`.
pub fn throttled(key: &str, throttle: Duration) {
    if !enabled() {
        return;
    }
    let m = get();
    m.throttled.with_label_values(&[key]).inc();
    m.throttle_ms
        .with_label_values(&[key])
        .inc_by(u64::try_from(throttle.as_millis()).unwrap_or(u64::MAX));
}

/// Counts a connection as open while alive.
#[derive(Debug)]
pub struct OpenConnection(());

impl Drop for OpenConnection {
    fn drop(&mut self) {
        get().connections_open.dec();
    }
}

/// `records` records in `bytes` batch bytes were stored in `topic` (which exists).
pub fn topic_in(topic: &str, bytes: usize, records: u64) {
    if !enabled() {
        return;
    }
    get().with_topic(topic, |c| {
        c.bytes_in.inc_by(bytes as u64);
        c.records_in.inc_by(records);
    });
}

/// Fetch returned `batches` (whole v2 record batches) from `topic` (which exists).
pub fn topic_out(topic: &str, batches: &[u8]) {
    if !enabled() || batches.is_empty() {
        return;
    }
    let records = record_count(batches);
    get().with_topic(topic, |c| {
        c.bytes_out.inc_by(batches.len() as u64);
        c.records_out.inc_by(records);
    });
}

/// Records in a run of v2 batches, from each batch header's record count (a partial batch at
/// the end, which a fetch limit can cut, is not counted).
fn record_count(mut batches: &[u8]) -> u64 {
    let mut total = 0u64;
    while let Some((_, size)) = crate::records::BatchHeader::peek_size(batches) {
        let Some(header) = batches
            .get(..size)
            .and_then(crate::records::BatchHeader::parse)
        else {
            break;
        };
        total += u64::try_from(header.records_count).unwrap_or(0);
        batches = &batches[size..];
    }
    total
}

/// A clock for an fsync or a guest call, `None` when metrics are off.
pub fn clock() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// One group-commit fsync, started at `started` (from [`clock`]), made `records` durable.
pub fn fsync(started: Option<Instant>, records: i64) {
    if let Some(started) = started {
        let m = get();
        m.fsync_seconds.observe(secs(started.elapsed()));
        m.group_commit_records.observe(records.max(0) as f64);
    }
}

/// Why a guest call failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFailure {
    Trap,
    Timeout,
    OutOfMemory,
    MalformedOutput,
    Start,
    /// A `reject` policy refused a produce.
    Rejected,
}

impl GuestFailure {
    fn label(self) -> &'static str {
        match self {
            GuestFailure::Trap => "trap",
            GuestFailure::Timeout => "timeout",
            GuestFailure::OutOfMemory => "out_of_memory",
            GuestFailure::MalformedOutput => "malformed_output",
            GuestFailure::Start => "start",
            GuestFailure::Rejected => "rejected",
        }
    }
}

/// A guest call of `deployment` started at `started` (from [`clock`]) ended, failing with
/// `failure` if it did.
pub fn transform_call(deployment: &str, started: Option<Instant>, failure: Option<GuestFailure>) {
    let Some(started) = started else { return };
    let m = get();
    m.transform_seconds
        .with_label_values(&[deployment])
        .observe(secs(started.elapsed()));
    if let Some(f) = failure {
        transform_error(deployment, f);
    }
}

/// A failure of `deployment` counted outside a guest call (malformed output, a rejection).
pub fn transform_error(deployment: &str, failure: GuestFailure) {
    if enabled() {
        get()
            .transform_errors
            .with_label_values(&[deployment, failure.label()])
            .inc();
    }
}

/// Connector `name` delivered or wrote `n` records.
pub fn connector_records(name: &str, n: usize) {
    if enabled() && n > 0 {
        get()
            .connector_records
            .with_label_values(&[name])
            .inc_by(n as u64);
    }
}

/// Connector `name` retries a delivery.
pub fn connector_retry(name: &str) {
    if enabled() {
        get().connector_retries.with_label_values(&[name]).inc();
    }
}

/// Connector `name` dead-lettered a record.
pub fn connector_dead_lettered(name: &str) {
    if enabled() {
        get()
            .connector_dead_lettered
            .with_label_values(&[name])
            .inc();
    }
}

/// An object store request that moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOp {
    Put,
    Get,
}

/// Cluster mode: an object store `op` of `bytes` succeeded (once per request, not per batch).
pub fn object_request(op: ObjectOp, bytes: usize) {
    if !enabled() {
        return;
    }
    let m = get();
    let (count, total) = match op {
        ObjectOp::Put => (&m.object_puts, &m.object_put_bytes),
        ObjectOp::Get => (&m.object_gets, &m.object_get_bytes),
    };
    count.inc();
    total.inc_by(bytes as u64);
}

/// Cluster mode: an upload of `bytes` was committed in one PostgreSQL transaction.
pub fn upload_committed(bytes: u64) {
    if enabled() {
        let m = get();
        m.upload_commits.inc();
        m.upload_bytes.inc_by(bytes);
    }
}

/// Builds the gauge families read from the broker's state at scrape time.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<MetricFamily>,
}

/// A gauge family being filled at scrape time.
#[derive(Debug)]
pub struct ScrapeGauge(prometheus::GaugeVec);

impl ScrapeGauge {
    /// Sets the gauge's sample for `labels` (in the order the family was declared with).
    pub fn set(&self, labels: &[&str], value: f64) {
        if let Ok(g) = self.0.get_metric_with_label_values(labels) {
            g.set(value);
        }
    }
}

/// A counter family filled at scrape time from counters kept elsewhere (a deployment's stats).
#[derive(Debug)]
pub struct ScrapeCounter(IntCounterVec);

impl ScrapeCounter {
    /// Sets the counter's sample for `labels` to `value`.
    pub fn set(&self, labels: &[&str], value: u64) {
        if let Ok(c) = self.0.get_metric_with_label_values(labels) {
            c.inc_by(value);
        }
    }
}

impl Scrape {
    /// A counter family `name` (ending in `_total`) with `labels`.
    pub fn counter(name: &str, help: &str, labels: &[&str]) -> ScrapeCounter {
        ScrapeCounter(
            IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bug(name, e)),
        )
    }

    /// Adds a filled counter family.
    pub fn finish_counter(&mut self, counter: ScrapeCounter) {
        self.families.extend(counter.0.collect());
    }

    /// A gauge family `name` with `labels`; call [`Scrape::finish`] with it when filled.
    pub fn gauge(name: &str, help: &str, labels: &[&str]) -> ScrapeGauge {
        ScrapeGauge(
            prometheus::GaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| bug(name, e)),
        )
    }

    /// Adds a filled family.
    pub fn finish(&mut self, gauge: ScrapeGauge) {
        self.families.extend(gauge.0.collect());
    }

    /// The families gathered, for [`Metrics::encode`].
    pub fn into_families(self) -> Vec<MetricFamily> {
        self.families
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_well_defined_and_encodes() {
        topic_in("t", 100, 2);
        object_request(ObjectOp::Put, 10);
        upload_committed(10);
        let text = get().encode(Vec::new());
        assert!(text.contains("sluice_cluster_object_puts_total"));
        assert!(text.contains("sluice_cluster_upload_bytes_total"));
        assert!(text.contains("sluice_topic_bytes_in_total{topic=\"t\"}"));
        assert!(text.contains("# TYPE sluice_log_fsync_seconds histogram"));
    }

    #[test]
    fn error_codes_are_named_in_snake_case() {
        assert_eq!(error_label(3), "unknown_topic_or_partition");
        assert_eq!(error_label(-12345), "code_-12345");
    }

    #[test]
    fn record_count_reads_batch_headers_and_ignores_a_cut_tail() {
        let mut batch = vec![0u8; 70];
        batch[8..12].copy_from_slice(&58i32.to_be_bytes());
        batch[57..61].copy_from_slice(&3i32.to_be_bytes());
        let mut two = batch.clone();
        two.extend_from_slice(&batch);
        two.extend_from_slice(&batch[..30]);
        assert_eq!(record_count(&two), 6);
    }
}
