//! The transform admin API, `/v1/...`, used by `sluice transform`:
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/v1/modules` | body: a `.wasm` module; validates and stores it, answers `{"module": "<sha256>"}` |
//! | GET | `/v1/transforms` | every deployment with its counters |
//! | PUT | `/v1/transforms/{name}` | deploys: `{"module", "input", "outputs", "env", "on_error", "in_place", "memory_bytes", "timeout_ms", "tables", "state_max_bytes", "from"}`; a module that imports the state calls gets its changelog topic `__sluice-state-<name>` |
//! | GET | `/v1/transforms/{name}` | one deployment with its counters and last error |
//! | GET | `/v1/transforms/{name}/logs?tail=N` | the guest's recent log lines |
//! | POST | `/v1/transforms/{name}/pause`, `/resume` | stop / restart running it on new writes |
//! | DELETE | `/v1/transforms/{name}` | removes it (and its changelog topic, if it keeps state) |
//!
//! Errors are `{"error_code": <http status>, "message": "..."}`.
//!
//! In cluster mode deployments are the cluster's ([`crate::cluster::deployments`]): a deploy,
//! pause, resume or removal on any broker is stored in PostgreSQL and applied by every broker;
//! what cluster mode does not run yet (state, tables, backfills, in-place, chains) is a 400.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acl::Requester;
use crate::broker::Broker;
use crate::cluster::deployments::ClusterDeployError;
use crate::cluster::modules::ModuleShareError;
use crate::transform::{DeployError, Deployment, OnError, Running};
use crate::wasm::engine::MAX_MODULE_BYTES;

/// An error answer.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error_code": self.0.as_u16(), "message": self.1})),
        )
            .into_response()
    }
}

impl From<ClusterDeployError> for ApiError {
    fn from(e: ClusterDeployError) -> ApiError {
        match e {
            ClusterDeployError::Deploy(e) => e.into(),
            ClusterDeployError::Unsupported(m) => ApiError(StatusCode::BAD_REQUEST, m),
            ClusterDeployError::Module(e @ ModuleShareError::NotLocal(_)) => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
            // The object store or the database is down or refused: retry later.
            e @ (ClusterDeployError::Module(_) | ClusterDeployError::Db(_)) => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> ApiError {
        let status = match &e {
            DeployError::Exists(_) | DeployError::Cycle { .. } => StatusCode::CONFLICT,
            DeployError::NotFound(_) | DeployError::UnknownModule(_) => StatusCode::NOT_FOUND,
            DeployError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

pub(crate) fn routes() -> Router<super::AppState> {
    Router::new()
        .route(
            "/v1/modules",
            post(upload).layer(DefaultBodyLimit::max(MAX_MODULE_BYTES)),
        )
        .route("/v1/transforms", get(list))
        .route(
            "/v1/transforms/{name}",
            get(describe).put(deploy).delete(remove),
        )
        .route("/v1/transforms/{name}/logs", get(logs))
        .route("/v1/transforms/{name}/pause", post(pause))
        .route("/v1/transforms/{name}/resume", post(resume))
}

async fn upload(
    State(broker): State<Arc<Broker>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let hash = tokio::task::spawn_blocking(move || broker.transforms.upload_module(&body))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::CREATED, Json(json!({ "module": hash }))))
}

/// The body of a deploy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    module: String,
    input: String,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    on_error: Option<String>,
    #[serde(default)]
    in_place: bool,
    /// Linear memory one instance may use; the broker's default when absent.
    #[serde(default)]
    memory_bytes: Option<u64>,
    /// CPU time per batch, in milliseconds; the broker's default when absent.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Topics the guest may look up as tables (each must exist).
    #[serde(default)]
    tables: Vec<String>,
    /// Cap on the state store in bytes; 64 MiB when absent.
    #[serde(default)]
    state_max_bytes: Option<u64>,
    /// Where to start: `latest` (default: only new writes), `earliest`, `offset:N` or
    /// `timestamp:MS` (the records already stored from there are run in the background).
    #[serde(default)]
    from: Option<String>,
}

/// Where a deployment starts in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

impl StartAt {
    fn parse(text: &str) -> Result<StartAt, String> {
        let bad =
            || format!("from must be earliest, latest, offset:N or timestamp:MS, not '{text}'");
        match text {
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            other => {
                if let Some(n) = other.strip_prefix("offset:") {
                    n.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .map(StartAt::Offset)
                        .ok_or_else(bad)
                } else if let Some(ms) = other.strip_prefix("timestamp:") {
                    ms.parse::<i64>()
                        .ok()
                        .filter(|ms| *ms >= 0)
                        .map(StartAt::Timestamp)
                        .ok_or_else(bad)
                } else {
                    Err(bad())
                }
            }
        }
    }

    /// The progress a partition starts with.
    fn start(self, log: &crate::log::PartitionLog) -> crate::transform::PartitionProgress {
        let end = log.high_watermark();
        let first = match self {
            StartAt::Latest => end,
            StartAt::Earliest => log.log_start_offset(),
            StartAt::Offset(n) => n.clamp(log.log_start_offset(), end),
            StartAt::Timestamp(ms) => match log.offset_for_timestamp(ms) {
                Ok(Some((_, offset))) => offset.max(log.log_start_offset()),
                _ => end,
            },
        };
        crate::transform::PartitionProgress {
            next_input: first,
            backfilling: first < end,
            backfill_from: (first < end).then_some(first),
            ..Default::default()
        }
    }
}

async fn deploy(
    State(broker): State<Arc<Broker>>,
    Extension(who): Extension<Requester>,
    Path(name): Path<String>,
    body: Result<Json<DeployBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let on_error = match body.on_error.as_deref() {
        None => OnError::Reject,
        Some(text) => OnError::parse(text).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?,
    };
    let from = match body.from.as_deref() {
        None => StartAt::Latest,
        Some(text) => StartAt::parse(text).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?,
    };
    if body.in_place && from != StartAt::Latest {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "an in_place transform rewrites records as they are written; it cannot start from records already stored (from must be latest)".into(),
        ));
    }
    let deployment = Deployment {
        name,
        module: body.module,
        input: body.input,
        outputs: body.outputs,
        env: body.env.into_iter().collect(),
        on_error,
        in_place: body.in_place,
        paused: false,
        memory_bytes: body.memory_bytes,
        timeout_ms: body.timeout_ms,
        tables: body.tables,
        state_max_bytes: body.state_max_bytes,
        deployer: Some(who.principal),
    };
    deployment
        .validate()
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    // Code deployed into the broker may read and write only what its deployer may.
    if let Some(refusal) = deployment.refused_by(&broker.authorizer) {
        return Err(ApiError(StatusCode::FORBIDDEN, refusal.message));
    }
    if let Some(cluster) = &broker.cluster {
        if from != StartAt::Latest {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "from other than latest (a backfill of stored records): not supported in cluster mode yet".into(),
            ));
        }
        let (running, created) =
            crate::cluster::deployments::deploy(&broker, cluster, deployment).await?;
        let mut view = describe_running(&broker, &running);
        view["created_topics"] = json!(created);
        return Ok((StatusCode::CREATED, Json(view)));
    }
    let b = broker.clone();
    let (running, created) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        // Topics the deployment reads and writes are created with broker defaults if missing.
        let mut created = Vec::new();
        let mut topics = vec![deployment.input.clone()];
        topics.extend(deployment.writes());
        for t in topics {
            if b.catalog.get(&t).is_none() {
                b.catalog
                    .create_topic(&t, -1, -1, &[], false)
                    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("topic {t}: {e}")))?;
                created.push(t);
            }
        }
        for t in &deployment.tables {
            if b.catalog.get(t).is_none() {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("table topic '{t}' does not exist"),
                ));
            }
        }
        if b.transforms.module(&deployment.module)?.stateful {
            if deployment.in_place {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "a transform with state cannot be in_place: its store could not be kept exactly in step with records it replaces".into(),
                ));
            }
            created.push(create_changelog(&b, &deployment)?);
        }
        let start = b
            .catalog
            .get(&deployment.input)
            .map(|t| {
                t.partitions()
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i as i32, from.start(l)))
                    .collect()
            })
            .unwrap_or_default();
        let changelog = crate::transform::state::changelog_topic(&deployment.name);
        let running = match b.transforms.deploy(deployment, start) {
            Ok(running) => running,
            Err(e) => {
                if created.contains(&changelog) {
                    let _ = b.catalog.delete_topic(&changelog);
                }
                return Err(e.into());
            }
        };
        Ok((running, created))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if from != StartAt::Latest {
        crate::write::spawn_backfill(&broker, running.name());
    }
    let mut view = describe_running(&broker, &running);
    view["created_topics"] = json!(created);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Creates the deployment's changelog topic afresh (a leftover of an earlier deployment of the
/// same name is dropped: its state belonged to that one): compacted, one partition per input
/// partition.
fn create_changelog(broker: &Broker, d: &Deployment) -> Result<String, ApiError> {
    let topic = crate::transform::state::changelog_topic(&d.name);
    let partitions = broker
        .catalog
        .get(&d.input)
        .map_or(-1, |t| t.partition_count());
    if broker.catalog.get(&topic).is_some() {
        broker
            .catalog
            .delete_topic(&topic)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{topic}: {e}")))?;
    }
    broker
        .catalog
        .create_topic(
            &topic,
            partitions,
            -1,
            &[("cleanup.policy".to_string(), Some("compact".to_string()))],
            false,
        )
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("changelog {topic}: {e}")))?;
    Ok(topic)
}

fn describe_running(broker: &Broker, r: &Running) -> Value {
    let d = r.deployment.read().clone();
    let s = &r.stats;
    let limits = r.limits();
    let backfill: BTreeMap<String, Value> = r
        .progress
        .lock()
        .iter()
        .filter(|(_, p)| p.backfilling)
        .map(|(partition, p)| {
            let end = broker
                .catalog
                .get(&d.input)
                .and_then(|t| t.partition(*partition))
                .map_or(p.next_input, |l| l.high_watermark());
            (
                partition.to_string(),
                json!({"from": p.backfill_from, "next": p.next_input, "end": end}),
            )
        })
        .collect();
    json!({
        "name": d.name,
        "module": d.module,
        "input": d.input,
        "outputs": d.outputs,
        "env": d.env.iter().cloned().collect::<BTreeMap<String, String>>(),
        "on_error": d.on_error.to_string(),
        "in_place": d.in_place,
        "deployer": d.deployer,
        "state": if d.paused { "PAUSED" } else if backfill.is_empty() { "RUNNING" } else { "BACKFILLING" },
        "limits": {
            "memory_bytes": limits.memory_bytes,
            "timeout_ms": limits.cpu_per_call.as_millis() as u64,
        },
        "backfill": backfill,
        "tables": d.tables,
        "store": r.state.stateful.then(|| json!({
            "changelog": crate::transform::state::changelog_topic(&d.name),
            "keys": r.state.keys(),
            "used_bytes": crate::wasm::state_host::StateBackend::used_bytes(&*r.state),
            "max_bytes": crate::wasm::state_host::StateBackend::max_bytes(&*r.state),
        })),
        "stats": {
            "batches": s.batches.load(Ordering::Relaxed),
            "records_in": s.records_in.load(Ordering::Relaxed),
            "records_out": s.records_out.load(Ordering::Relaxed),
            "rejected": s.rejected.load(Ordering::Relaxed),
            "skipped": s.skipped.load(Ordering::Relaxed),
            "dead_lettered": s.dead_lettered.load(Ordering::Relaxed),
            "failures": s.failures.load(Ordering::Relaxed),
        },
        "last_error": *r.last_error.lock(),
    })
}

fn find(broker: &Broker, name: &str) -> Result<Arc<Running>, ApiError> {
    broker.transforms.get(name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no transform named '{name}'"),
        )
    })
}

async fn list(State(broker): State<Arc<Broker>>) -> Json<Value> {
    Json(Value::Array(
        broker
            .transforms
            .list()
            .iter()
            .map(|r| describe_running(&broker, r))
            .collect(),
    ))
}

async fn describe(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let running = find(&broker, &name)?;
    Ok(Json(describe_running(&broker, &running)))
}

#[derive(Debug, Deserialize)]
struct Tail {
    tail: Option<usize>,
}

async fn logs(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
    Query(q): Query<Tail>,
) -> Result<Json<Value>, ApiError> {
    let r = find(&broker, &name)?;
    Ok(Json(json!({ "lines": r.log.tail(q.tail.unwrap_or(100)) })))
}

async fn pause(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&broker, &name, true).await?;
    let running = find(&broker, &name)?;
    Ok(Json(describe_running(&broker, &running)))
}

async fn resume(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&broker, &name, false).await?;
    let running = find(&broker, &name)?;
    Ok(Json(describe_running(&broker, &running)))
}

/// Pauses or resumes, cluster-wide in cluster mode.
async fn set_paused(broker: &Arc<Broker>, name: &str, paused: bool) -> Result<(), ApiError> {
    match &broker.cluster {
        Some(cluster) => {
            crate::cluster::deployments::set_paused(broker, cluster, name, paused).await?
        }
        None => broker.transforms.set_paused(name, paused)?,
    }
    Ok(())
}

async fn remove(
    State(broker): State<Arc<Broker>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if let Some(cluster) = &broker.cluster {
        // The cluster's, whether or not this broker has applied it yet.
        crate::cluster::deployments::remove(&broker, cluster, &name).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let running = find(&broker, &name)?;
    broker.transforms.remove(&name)?;
    if running.state.stateful {
        // The store belonged to this deployment; a later one of the same name starts afresh.
        let topic = crate::transform::state::changelog_topic(&name);
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if b.catalog.get(&topic).is_some() {
                if let Err(e) = b.catalog.delete_topic(&topic) {
                    tracing::warn!(transform = %name, "cannot delete changelog {topic}: {e}");
                }
            }
        })
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
