//! The HTTP listener: `/health`, `/metrics` (Prometheus, see [`metrics`]), the web console at
//! `/ui` ([`console`]), the transform admin API (`/v1/...`, see [`transforms`]), the read-only
//! topic and group API the console uses ([`browse`]) and the Kafka Connect REST API (`/`,
//! `/connectors...`, `/connector-plugins...`, see [`connect`]). [`access`] authenticates and
//! authorizes every request; [`tls`] serves it all over HTTPS when `http.ssl.enabled`.

mod access;
mod browse;
mod connect;
mod console;
mod metrics;
mod tls;
mod transforms;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::tls::TlsServer;
use crate::broker::Broker;
use crate::config::HttpSecurity;
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

/// Serves HTTP (HTTPS with `tls`) until `shutdown` turns true, authenticating and authorizing
/// requests per `security`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    security: HttpSecurity,
    tls: Option<Arc<TlsServer>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let access = access::Access {
        broker: state.broker.clone(),
        security,
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .merge(console::routes())
        .merge(browse::routes())
        .merge(transforms::routes())
        .merge(connect::routes())
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .with_state(state)
        .into_make_service_with_connect_info::<access::PeerAddr>();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(tls) => {
            axum::serve(tls::TlsListener::start(listener, tls)?, app)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

async fn health() -> &'static str {
    "ok\n"
}
