//! The HTTP listener: `/health`, the transform admin API (`/v1/...`, see [`transforms`]) and the
//! Kafka Connect REST API (`/`, `/connectors...`, `/connector-plugins...`, see [`connect`]).

mod connect;
mod transforms;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Broker;

/// Serves HTTP until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .merge(transforms::routes())
        .merge(connect::routes())
        .with_state(broker);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn health() -> &'static str {
    "ok\n"
}
