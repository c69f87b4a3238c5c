//! The read-only JSON API the web console is built on (and scripts may use):
//!
//! | method | path | answers |
//! | --- | --- | --- |
//! | GET | `/v1/topics` | every topic: partitions, records, bytes, and its in/out counters |
//! | GET | `/v1/topics/{topic}` | one topic: per-partition log start, high watermark, size, segments; its configs |
//! | GET | `/v1/topics/{topic}/partitions/{p}/records?offset=N` or `?timestamp=MS`, `&limit=N` | up to `limit` (default 50, at most 500) records from there: offset, timestamp, key, value (hex), headers |
//! | GET | `/v1/groups` | every consumer group: state, members, committed offset and lag per partition |
//! | GET | `/v1/stats` | the per-topic byte and record counters of `/metrics`, for live charts |

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::transforms::ApiError;
use crate::broker::{now_ms, Broker};
use crate::catalog::Topic;
use crate::records::batch::BatchHeader;

/// Default and most records one browse answers.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Most batch bytes read for one browse (a page of large records stops early).
const MAX_READ_BYTES: usize = 4 << 20;
/// Most bytes a batch may decompress to while browsing.
const DECOMPRESS_LIMIT: usize = 64 << 20;

pub(crate) fn routes() -> Router<super::AppState> {
    Router::new()
        .route("/v1/topics", get(topics))
        .route("/v1/topics/{topic}", get(topic))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(records),
        )
        .route("/v1/groups", get(groups))
        .route("/v1/stats", get(stats))
}

fn not_found(topic: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("unknown topic {topic}"))
}

/// Records and bytes of a topic, summed over its partitions.
fn totals(topic: &Topic) -> (i64, u64) {
    topic
        .partitions()
        .iter()
        .fold((0, 0), |(records, bytes), log| {
            let (_, size) = log.size();
            (
                records + (log.high_watermark() - log.log_start_offset()).max(0),
                bytes + size,
            )
        })
}

async fn topics(State(broker): State<Arc<Broker>>) -> Json<Value> {
    let counters: std::collections::HashMap<String, [u64; 4]> =
        crate::metrics::get().topic_totals().into_iter().collect();
    let mut list: Vec<Value> = broker
        .catalog
        .list()
        .iter()
        .map(|t| {
            let (records, bytes) = totals(t);
            let c = counters.get(t.name()).copied().unwrap_or_default();
            json!({
                "name": t.name(),
                "partitions": t.partition_count(),
                "records": records,
                "size_bytes": bytes,
                "bytes_in": c[0], "records_in": c[1], "bytes_out": c[2], "records_out": c[3],
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(Value::Array(list))
}

async fn topic(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = broker.catalog.get(&name).ok_or_else(|| not_found(&name))?;
    let partitions: Vec<Value> = t
        .partitions()
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let (segments, size) = log.size();
            json!({
                "partition": i,
                "log_start_offset": log.log_start_offset(),
                "high_watermark": log.high_watermark(),
                "size_bytes": size,
                "segments": segments,
            })
        })
        .collect();
    let configs: serde_json::Map<String, Value> = broker
        .catalog
        .describe_topic(&t, None)
        .into_iter()
        .map(|e| {
            let value = if e.sensitive { None } else { e.value };
            (
                e.name,
                json!({"value": value, "source": format!("{:?}", e.source)}),
            )
        })
        .collect();
    let (records, bytes) = totals(&t);
    Ok(Json(json!({
        "name": t.name(),
        "records": records,
        "size_bytes": bytes,
        "partitions": partitions,
        "configs": configs,
    })))
}

#[derive(Debug, Deserialize)]
struct BrowseQuery {
    offset: Option<i64>,
    timestamp: Option<i64>,
    limit: Option<usize>,
}

/// One record as the console shows it; bytes are hex so that any value survives JSON.
#[derive(Debug, Serialize)]
struct BrowsedRecord {
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

async fn records(
    State(broker): State<Arc<Broker>>,
    Path((name, partition)): Path<(String, i32)>,
    Query(q): Query<BrowseQuery>,
) -> Result<Json<Value>, ApiError> {
    let t = broker.catalog.get(&name).ok_or_else(|| not_found(&name))?;
    let log = t.partition(partition).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("topic {name} has no partition {partition}"),
        )
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (start, hw) = (log.log_start_offset(), log.high_watermark());
    let from = match (q.offset, q.timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give offset or timestamp, not both".into(),
            ))
        }
        (Some(o), None) => o.clamp(start, hw),
        (None, Some(ts)) => log
            .offset_for_timestamp(ts)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_or(hw, |(offset, _)| offset),
        (None, None) => start,
    };
    let mut out = Vec::new();
    if from < hw {
        let slice = log
            .read(from, MAX_READ_BYTES, true)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut rest = &slice.records[..];
        while let Some((_, size)) = BatchHeader::peek_size(rest) {
            if size > rest.len() || out.len() >= limit {
                break;
            }
            let (header, recs) = crate::records::decode_records(&rest[..size], DECOMPRESS_LIMIT)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            rest = &rest[size..];
            // Transaction markers are not user records.
            if header.is_control() {
                continue;
            }
            out.extend(recs.into_iter().filter(|r| r.offset >= from).map(|r| {
                BrowsedRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_deref().map(hex),
                    value: r.value.as_deref().map(hex),
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k, v.as_deref().map(hex)))
                        .collect(),
                }
            }));
        }
        out.truncate(limit);
    }
    let next = out.last().map_or(from, |r| r.offset + 1);
    Ok(Json(json!({
        "topic": name,
        "partition": partition,
        "log_start_offset": start,
        "high_watermark": hw,
        "from": from,
        "next_offset": next,
        "records": out,
    })))
}

/// A group's position in one partition.
#[derive(Debug, Serialize)]
pub(crate) struct Lag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: i64,
    pub(crate) high_watermark: i64,
    pub(crate) lag: i64,
}

/// Committed offset and lag of `group` in every partition it committed to (of existing topics).
pub(crate) fn group_lag(broker: &Broker, group: &str) -> Vec<Lag> {
    broker
        .groups
        .offsets
        .group(group)
        .into_iter()
        .filter_map(|((topic, partition), c)| {
            let log = broker.catalog.get(&topic)?.partition(partition)?;
            let hw = log.high_watermark();
            Some(Lag {
                topic,
                partition,
                committed: c.offset,
                high_watermark: hw,
                lag: (hw - c.offset.max(log.log_start_offset())).max(0),
            })
        })
        .collect()
}

async fn groups(State(broker): State<Arc<Broker>>) -> Json<Value> {
    let mut list = broker.groups.list();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let out: Vec<Value> = list
        .into_iter()
        .take(super::metrics::MAX_GROUP_SERIES)
        .map(|(id, protocol_type, state)| {
            let members: Vec<Value> = broker
                .groups
                .existing(&id)
                .map(|g| {
                    g.lock()
                        .describe_members()
                        .iter()
                        .map(|m| {
                            json!({
                                "member_id": m.member_id,
                                "client_id": m.client_id,
                                "client_host": m.client_host,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let partitions = group_lag(&broker, &id);
            let total: i64 = partitions.iter().map(|l| l.lag).sum();
            json!({
                "group": id,
                "protocol_type": protocol_type,
                "state": state.name(),
                "members": members,
                "lag": total,
                "partitions": partitions,
            })
        })
        .collect();
    Json(Value::Array(out))
}

async fn stats() -> Json<Value> {
    let topics: serde_json::Map<String, Value> = crate::metrics::get()
        .topic_totals()
        .into_iter()
        .map(|(t, c)| {
            (
                t,
                json!({"bytes_in": c[0], "records_in": c[1], "bytes_out": c[2], "records_out": c[3]}),
            )
        })
        .collect();
    Json(json!({
        "time_ms": now_ms(),
        "metrics_enabled": crate::metrics::enabled(),
        "topics": topics,
    }))
}
