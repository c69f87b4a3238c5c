//! Who an HTTP request comes from and whether it may do what it asks: HTTP Basic authentication
//! against the SCRAM credentials (`http.authentication=basic`), then the same ACLs as the Kafka
//! listeners. Reads need Describe on the cluster, changes (deploys, pauses, removals, uploads)
//! Alter on the cluster, and topic browsing Describe (details) or Read (records) on the topic.
//! `/health` is always open and `/metrics` unless `http.metrics.authentication`.
//!
//! The request's [`Requester`] is left in its extensions for handlers that record who deployed
//! something.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;

use crate::acl::{Operation, Requester, Resource};
use crate::auth::Principal;
use crate::broker::Broker;
use crate::config::HttpSecurity;

/// The client's address, for ACL host matching (our own type, so it can be taken from any
/// listener axum serves: plain TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, super::tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, super::tls::TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

/// What the guard needs.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) broker: Arc<Broker>,
    pub(crate) security: HttpSecurity,
}

/// A Connect-shaped error answer.
fn refuse(status: StatusCode, message: String) -> Response {
    let mut response = (
        status,
        Json(json!({"error_code": status.as_u16(), "message": message})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"sluice\", charset=\"UTF-8\""),
        );
    }
    response
}

/// `user:password` from an `Authorization: Basic ...` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Whether `password` is `user`'s, by any of its SCRAM credentials (as SASL PLAIN checks).
fn password_matches(broker: &Broker, user: &str, password: &str) -> bool {
    match broker.credentials.any(user) {
        Some((mechanism, credential)) => {
            credential.matches_password(mechanism, password.as_bytes())
        }
        None => false,
    }
}

/// `%XX` escapes decoded, so an ACL check sees the name the route will (a name that does not
/// decode to UTF-8 is kept as written; the route refuses it).
fn percent_decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_or_else(|_| segment.to_string(), |name| name.into_owned())
}

/// What a request needs: `None` for the console's static files (authentication only).
fn required(method: &Method, path: &str) -> Option<(Operation, String, bool)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ui", ..] => None,
        ["v1", "topics", topic, "partitions", _, "records"] => {
            Some((Operation::Read, percent_decoded(topic), true))
        }
        ["v1", "topics", topic, ..] => Some((Operation::Describe, percent_decoded(topic), true)),
        // Validating a connector config changes nothing.
        ["connector-plugins", _, "config", "validate"] => {
            Some((Operation::Describe, String::new(), false))
        }
        _ if method == Method::GET || method == Method::HEAD => {
            Some((Operation::Describe, String::new(), false))
        }
        _ => Some((Operation::Alter, String::new(), false)),
    }
}

/// The middleware: authenticates (when Basic is on), authorizes, and passes the requester on.
pub(crate) async fn guard(
    State(access): State<Access>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if path == "/health" || (path == "/metrics" && !access.security.metrics_authentication) {
        return next.run(request).await;
    }
    let principal = if access.security.basic {
        let Some((user, password)) = basic_credentials(request.headers()) else {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Authentication required: HTTP Basic with a Sluice user".into(),
            );
        };
        let broker = access.broker.clone();
        let checked_user = user.clone();
        // PBKDF2 at the credential's iteration count: off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            password_matches(&broker, &checked_user, &password)
        })
        .await
        .unwrap_or(false);
        if !ok {
            tracing::info!(%peer, %user, "HTTP authentication failed");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Authentication failed: invalid credentials".into(),
            );
        }
        Principal::user(user)
    } else {
        Principal::anonymous()
    };
    let who = Requester::new(&principal, peer.ip());
    if let Some((op, topic, on_topic)) = required(request.method(), &path) {
        let resource = if on_topic {
            Resource::topic(&topic)
        } else {
            Resource::cluster()
        };
        if !access.broker.authorize(&who, op, resource) {
            let what = if on_topic {
                format!("topic {topic}")
            } else {
                "the cluster".to_string()
            };
            return refuse(
                StatusCode::FORBIDDEN,
                format!("{} is not authorized to {op:?} {what}", who.principal),
            );
        }
    }
    request.extensions_mut().insert(who);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_the_readme_says() {
        let get = Method::GET;
        assert_eq!(
            required(&get, "/v1/topics/a%2Eb/partitions/0/records"),
            Some((Operation::Read, "a.b".into(), true))
        );
        assert_eq!(
            required(&get, "/v1/topics/orders"),
            Some((Operation::Describe, "orders".into(), true))
        );
        assert_eq!(
            required(&get, "/connectors"),
            Some((Operation::Describe, String::new(), false))
        );
        assert_eq!(
            required(&Method::PUT, "/v1/transforms/x"),
            Some((Operation::Alter, String::new(), false))
        );
        assert_eq!(
            required(&Method::POST, "/connectors/x/restart"),
            Some((Operation::Alter, String::new(), false))
        );
        assert_eq!(required(&get, "/ui/app.js"), None);
    }

    #[test]
    fn basic_credentials_are_parsed_and_junk_is_not() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6czNjcjN0OjI=".parse().expect("header"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("alice".into(), "s3cr3t:2".into()))
        );
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().expect("header"));
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("header"));
        assert_eq!(basic_credentials(&headers), None);
    }
}
