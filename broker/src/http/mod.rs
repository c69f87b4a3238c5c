//! The HTTP listener: `/health`, `/metrics` (Prometheus, see [`metrics`]), the web console at
//! `/ui` ([`console`]), the transform admin API (`/v1/...`, see [`transforms`]), the read-only
//! topic and group API the console uses ([`browse`]) and the Kafka Connect REST API (`/`,
//! `/connectors...`, `/connector-plugins...`, see [`connect`]).

mod browse;
mod connect;
mod console;
mod metrics;
mod transforms;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::connect::Connect;

/// What handlers reach: the broker, and the connector runtime that lives beside this listener.
#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub connect: Arc<Connect>,
}

impl FromRef<AppState> for Arc<Broker> {
    fn from_ref(state: &AppState) -> Arc<Broker> {
        state.broker.clone()
    }
}

impl FromRef<AppState> for Arc<Connect> {
    fn from_ref(state: &AppState) -> Arc<Connect> {
        state.connect.clone()
    }
}

/// Serves HTTP until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .merge(console::routes())
        .merge(browse::routes())
        .merge(transforms::routes())
        .merge(connect::routes())
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn health() -> &'static str {
    "ok\n"
}
