//! `GET /metrics`: the Prometheus text exposition. The hot-path counters come from
//! [`crate::metrics`]; the state gauges (partition logs, groups, deployments, connectors) are read
//! from the broker here, at scrape time, so they cost nothing on the write path.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::browse::group_lag;
use super::AppState;
use crate::metrics::{self, Scrape};

/// Most consumer groups given series: group ids are chosen by clients, so a flood of them must
/// not flood the exposition (the first ones by name are shown).
pub(crate) const MAX_GROUP_SERIES: usize = 1000;

/// Every group state Kafka names, so a state change shows as one series going 0 and another 1.
const GROUP_STATES: &[&str] = &[
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
];

/// Connector task states as Connect names them.
const TASK_STATES: &[&str] = &["RUNNING", "PAUSED", "STOPPED", "FAILED", "UNASSIGNED"];

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let existing = match &state.broker.cluster {
        None => Existing::Catalog,
        Some(cluster) => match cluster.all_topics().await {
            Ok(all) => Existing::Cluster(all.into_iter().map(|t| t.name).collect()),
            Err(_) => Existing::Unknown,
        },
    };
    let text = tokio::task::spawn_blocking(move || scrape(&state, existing))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text)
}

/// The topics whose counters a scrape keeps (those of deleted topics go).
enum Existing {
    /// The local catalog's (single node).
    Catalog,
    /// The cluster's, from the metadata database (the local catalog is empty in cluster mode).
    Cluster(HashSet<String>),
    /// The database cannot say: every counter stays.
    Unknown,
}

fn scrape(state: &AppState, existing: Existing) -> String {
    let broker = &state.broker;
    let topics = broker.catalog.list();
    match existing {
        Existing::Catalog => metrics::get().retain_topics(|t| broker.catalog.get(t).is_some()),
        Existing::Cluster(known) => metrics::get().retain_topics(|t| known.contains(t)),
        Existing::Unknown => {}
    }
    let mut scrape = Scrape::default();

    let tp = &["topic", "partition"];
    let partitions = Scrape::gauge(
        "sluice_topic_partitions",
        "Partitions of a topic.",
        &["topic"],
    );
    let size = Scrape::gauge(
        "sluice_partition_log_size_bytes",
        "Bytes of a partition's log segments.",
        tp,
    );
    let segments = Scrape::gauge(
        "sluice_partition_log_segments",
        "Segments of a partition's log.",
        tp,
    );
    let start = Scrape::gauge(
        "sluice_partition_log_start_offset",
        "A partition's log start offset.",
        tp,
    );
    let hw = Scrape::gauge(
        "sluice_partition_high_watermark",
        "A partition's high watermark (the next offset to be written).",
        tp,
    );
    for topic in &topics {
        partitions.set(&[topic.name()], f64::from(topic.partition_count()));
        for (i, log) in topic.partitions().iter().enumerate() {
            let p = i.to_string();
            let labels = &[topic.name(), p.as_str()];
            let (count, bytes) = log.size();
            size.set(labels, bytes as f64);
            segments.set(labels, count as f64);
            start.set(labels, log.log_start_offset() as f64);
            hw.set(labels, log.high_watermark() as f64);
        }
    }
    for g in [partitions, size, segments, start, hw] {
        scrape.finish(g);
    }

    let group_state = Scrape::gauge(
        "sluice_group_state",
        "1 for a consumer group's current state.",
        &["group", "state"],
    );
    let members = Scrape::gauge(
        "sluice_group_members",
        "Members of a consumer group.",
        &["group"],
    );
    let gtp = &["group", "topic", "partition"];
    let committed = Scrape::gauge(
        "sluice_group_committed_offset",
        "A group's committed offset in a partition.",
        gtp,
    );
    let lag = Scrape::gauge(
        "sluice_group_lag",
        "Records between a group's committed offset and the partition's high watermark.",
        gtp,
    );
    let mut groups = broker.groups.list();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, _, current) in groups.iter().take(MAX_GROUP_SERIES) {
        for s in GROUP_STATES {
            let on = current.name() == *s;
            group_state.set(&[id, s], if on { 1.0 } else { 0.0 });
        }
        let count = broker
            .groups
            .existing(id)
            .map_or(0, |g| g.lock().describe_members().len());
        members.set(&[id], count as f64);
        for row in group_lag(broker, id) {
            let p = row.partition.to_string();
            let labels = &[id.as_str(), row.topic.as_str(), p.as_str()];
            committed.set(labels, row.committed as f64);
            lag.set(labels, row.lag as f64);
        }
    }
    for g in [group_state, members, committed, lag] {
        scrape.finish(g);
    }

    let d = &["deployment"];
    let counters = [
        (
            "sluice_transform_batches_total",
            "Input batches a deployment ran on.",
        ),
        (
            "sluice_transform_records_in_total",
            "Input records a deployment ran on.",
        ),
        (
            "sluice_transform_records_out_total",
            "Records a deployment's guest returned.",
        ),
        (
            "sluice_transform_rejected_batches_total",
            "Produces refused by a deployment's reject policy.",
        ),
        (
            "sluice_transform_skipped_records_total",
            "Failed inputs dropped by a deployment's skip policy.",
        ),
        (
            "sluice_transform_dead_lettered_records_total",
            "Failed inputs copied to a deployment's dead-letter topic.",
        ),
        (
            "sluice_transform_failed_calls_total",
            "Guest calls that failed as a whole (trap, timeout, out of memory, malformed output).",
        ),
    ]
    .map(|(name, help)| Scrape::counter(name, help, d));
    let instances = Scrape::gauge(
        "sluice_transform_instances",
        "Idle guest instances a deployment keeps for its next batches.",
        d,
    );
    let memory_used = Scrape::gauge(
        "sluice_transform_memory_bytes",
        "Linear memory of a deployment's idle guest instances.",
        d,
    );
    let memory = Scrape::gauge(
        "sluice_transform_memory_limit_bytes",
        "The memory cap of each of a deployment's guest instances.",
        d,
    );
    let paused = Scrape::gauge(
        "sluice_transform_paused",
        "1 when a deployment is paused.",
        d,
    );
    let transform_lag = Scrape::gauge(
        "sluice_transform_lag",
        "Input records of a partition not yet run by a deployment.",
        &["deployment", "partition"],
    );
    for running in broker.transforms.list() {
        let (name, input, is_paused) = {
            let dep = running.deployment.read();
            (dep.name.clone(), dep.input.clone(), dep.paused)
        };
        let s = &running.stats;
        let values = [
            &s.batches,
            &s.records_in,
            &s.records_out,
            &s.rejected,
            &s.skipped,
            &s.dead_lettered,
            &s.failures,
        ];
        for (c, v) in counters.iter().zip(values) {
            c.set(&[&name], v.load(Ordering::Relaxed));
        }
        let (count, used) = running.idle_instances();
        instances.set(&[&name], count as f64);
        memory_used.set(&[&name], used as f64);
        memory.set(&[&name], running.limits().memory_bytes as f64);
        paused.set(&[&name], if is_paused { 1.0 } else { 0.0 });
        let progress = running.progress.lock().clone();
        if let Some(topic) = broker.catalog.get(&input) {
            for (i, log) in topic.partitions().iter().enumerate() {
                // A partition without progress has had no write since the deployment: no lag.
                let behind = progress.get(&(i as i32)).map_or(0, |p| {
                    (log.high_watermark() - p.next_input.max(log.log_start_offset())).max(0)
                });
                transform_lag.set(&[&name, &i.to_string()], behind as f64);
            }
        }
    }
    for c in counters {
        scrape.finish_counter(c);
    }
    for g in [instances, memory_used, memory, paused, transform_lag] {
        scrape.finish(g);
    }

    let task_state = Scrape::gauge(
        "sluice_connector_task_state",
        "1 for a connector task's current state.",
        &["connector", "state"],
    );
    for c in state.connect.list() {
        let current = c.status.lock().state;
        for s in TASK_STATES {
            task_state.set(&[&c.name, s], if current == *s { 1.0 } else { 0.0 });
        }
    }
    scrape.finish(task_state);

    metrics::get().encode(scrape.into_families())
}
