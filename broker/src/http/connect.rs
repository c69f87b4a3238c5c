//! The Kafka Connect REST API, on the same listener and port (8083) as Connect's own, with
//! Connect's JSON shapes, status values and `{"error_code", "message"}` errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::acl::Requester;
use crate::broker::Broker;
use crate::connect::{config, Class, Connect, ConnectError, Connector, Target};

/// A Connect-style error answer.
pub(crate) struct ConnectApiError(StatusCode, String);

impl IntoResponse for ConnectApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error_code": self.0.as_u16(), "message": self.1})),
        )
            .into_response()
    }
}

impl From<ConnectError> for ConnectApiError {
    fn from(e: ConnectError) -> ConnectApiError {
        let status = match &e {
            ConnectError::NotFound(_) => StatusCode::NOT_FOUND,
            ConnectError::Exists(_) => StatusCode::CONFLICT,
            ConnectError::Invalid(_) | ConnectError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConnectError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConnectError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ConnectError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ConnectApiError(status, e.to_string())
    }
}

type Result<T> = std::result::Result<T, ConnectApiError>;

pub(crate) fn routes() -> Router<super::AppState> {
    Router::new()
        .route("/", get(root))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(remove))
        .route(
            "/connectors/{name}/config",
            get(get_config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
}

fn worker(broker: &Broker) -> String {
    format!("{}:8083", broker.advertised_host)
}

async fn root(State(broker): State<Arc<Broker>>) -> Json<Value> {
    Json(json!({
        "version": concat!(env!("CARGO_PKG_VERSION"), "-sluice"),
        "commit": "sluice",
        "kafka_cluster_id": broker.cluster_id,
    }))
}

async fn plugins() -> Json<Value> {
    Json(Value::Array(
        Class::all()
            .iter()
            .map(|c| json!({"class": c.name(), "type": c.kind(), "version": env!("CARGO_PKG_VERSION")}))
            .collect(),
    ))
}

fn kind(c: &Connector) -> &'static str {
    c.class().map_or("unknown", Class::kind)
}

fn info_of(c: &Connector) -> Value {
    json!({
        "name": c.name,
        "config": *c.config.lock(),
        "tasks": [{"connector": c.name, "task": 0}],
        "type": kind(c),
    })
}

/// In cluster mode the task's worker is the broker holding its lease (none while unassigned),
/// the connector's the broker answering.
fn status_of(broker: &Broker, connect: &Connect, c: &Connector) -> Value {
    let status = c.status.lock().clone();
    let connector_state = match status.state {
        "FAILED" => "RUNNING",
        s => s,
    };
    let here = connect.worker_id().unwrap_or_else(|| worker(broker));
    let task_worker = if connect.is_cluster() {
        c.worker.lock().clone()
    } else {
        Some(here.clone())
    };
    let mut task = json!({"id": 0, "state": status.state});
    if let Some(w) = task_worker {
        task["worker_id"] = Value::String(w);
    }
    if let Some(trace) = status.trace {
        task["trace"] = Value::String(trace);
    }
    json!({
        "name": c.name,
        "connector": {"state": connector_state, "worker_id": here},
        "tasks": [task],
        "type": kind(c),
    })
}

async fn list(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    RawQuery(query): RawQuery,
) -> Json<Value> {
    let query = query.unwrap_or_default();
    let expand: Vec<&str> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("expand="))
        .collect();
    connect.refresh(&broker).await;
    let connectors = connect.list();
    if expand.is_empty() {
        return Json(Value::Array(
            connectors
                .iter()
                .map(|c| Value::String(c.name.clone()))
                .collect(),
        ));
    }
    let mut out = Map::new();
    for c in connectors {
        let mut entry = Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), status_of(&broker, &connect, &c));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), info_of(&c));
        }
        out.insert(c.name.clone(), Value::Object(entry));
    }
    Json(Value::Object(out))
}

/// A config map from JSON: every value must be a string (Connect also accepts numbers and
/// booleans and keeps their text).
fn config_from(value: &Value) -> Result<config::Config> {
    let Some(map) = value.as_object() else {
        return Err(ConnectApiError(
            StatusCode::BAD_REQUEST,
            "config must be a JSON object".into(),
        ));
    };
    let mut config = config::Config::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConnectApiError(
                    StatusCode::BAD_REQUEST,
                    format!("config value of '{k}' must be a string, not {other}"),
                ))
            }
        };
        config.insert(k.clone(), text);
    }
    Ok(config)
}

fn body(
    raw: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Value> {
    raw.map(|Json(v)| v)
        .map_err(|e| ConnectApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn create(
    State(broker): State<Arc<Broker>>,
    Extension(who): Extension<Requester>,
    State(connect): State<Arc<Connect>>,
    raw: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let value = body(raw)?;
    let Some(name) = value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(ConnectApiError(
            StatusCode::BAD_REQUEST,
            "Connector name must be specified".into(),
        ));
    };
    let config = config_from(value.get("config").unwrap_or(&Value::Null))?;
    let (c, _) = connect
        .put(&broker, &name, config, true, &who.principal)
        .await?;
    Ok((StatusCode::CREATED, Json(info_of(&c))))
}

async fn info(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    connect.refresh(&broker).await;
    let c = connect.get(&name)?;
    Ok(Json(info_of(&c)))
}

async fn get_config(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    connect.refresh(&broker).await;
    let c = connect.get(&name)?;
    let config = c.config.lock().clone();
    Ok(Json(json!(config)))
}

async fn put_config(
    State(broker): State<Arc<Broker>>,
    Extension(who): Extension<Requester>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
    raw: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let config = config_from(&body(raw)?)?;
    let (c, created) = connect
        .put(&broker, &name, config, false, &who.principal)
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(info_of(&c)),
    ))
}

async fn patch_config(
    State(broker): State<Arc<Broker>>,
    Extension(who): Extension<Requester>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
    raw: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>> {
    let patch = body(raw)?;
    let Some(map) = patch.as_object() else {
        return Err(ConnectApiError(
            StatusCode::BAD_REQUEST,
            "config must be a JSON object".into(),
        ));
    };
    connect.refresh(&broker).await;
    let mut config = connect.get(&name)?.config.lock().clone();
    for (k, v) in map {
        // A null removes the key, as Connect's PATCH does.
        if v.is_null() {
            config.remove(k);
        } else {
            let single = config_from(&json!({ k: v }))?;
            config.extend(single);
        }
    }
    let (c, _) = connect
        .put(&broker, &name, config, false, &who.principal)
        .await?;
    Ok(Json(info_of(&c)))
}

async fn status(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    connect.refresh(&broker).await;
    let c = connect.get(&name)?;
    Ok(Json(status_of(&broker, &connect, &c)))
}

async fn tasks(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    connect.refresh(&broker).await;
    let c = connect.get(&name)?;
    let config = c.config.lock().clone();
    Ok(Json(
        json!([{"id": {"connector": name, "task": 0}, "config": config}]),
    ))
}

async fn pause(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    connect.set_target(&broker, &name, Target::Paused).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn resume(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    connect.set_target(&broker, &name, Target::Running).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn stop(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    connect.set_target(&broker, &name, Target::Stopped).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    connect.restart(&broker, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart_task(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path((name, task)): Path<(String, String)>,
) -> Result<StatusCode> {
    connect.get(&name)?;
    if task != "0" {
        return Err(ConnectApiError(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{task} not found"),
        ));
    }
    connect.restart(&broker, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(broker): State<Arc<Broker>>,
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    connect.delete(&broker, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn validate(
    Path(plugin): Path<String>,
    raw: std::result::Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>> {
    let mut config = config_from(&body(raw)?)?;
    let class = config
        .get("connector.class")
        .cloned()
        .unwrap_or_else(|| plugin.clone());
    let Some(resolved) = Class::parse(&class).or_else(|| Class::parse(&plugin)) else {
        return Err(ConnectApiError(StatusCode::BAD_REQUEST, format!("Failed to find any class that implements Connector and which name matches {plugin}")));
    };
    config
        .entry("connector.class".into())
        .or_insert_with(|| resolved.name().to_string());
    let issues = config::validate(&config);
    let mut by_key: BTreeMap<String, Vec<String>> =
        config.keys().map(|k| (k.clone(), Vec::new())).collect();
    for issue in &issues {
        by_key
            .entry(issue.key.clone())
            .or_default()
            .push(issue.message.clone());
    }
    let configs: Vec<Value> = by_key
        .into_iter()
        .map(|(key, errors)| {
            json!({
                "definition": {"name": key, "type": "STRING", "required": false, "default_value": null, "importance": "HIGH", "documentation": "", "group": "Common", "width": "NONE", "display_name": key, "dependents": [], "order": 0},
                "value": {"name": key, "value": config.get(&key), "recommended_values": [], "errors": errors, "visible": true},
            })
        })
        .collect();
    Ok(Json(json!({
        "name": resolved.name(),
        "error_count": issues.len(),
        "groups": ["Common"],
        "configs": configs,
    })))
}
