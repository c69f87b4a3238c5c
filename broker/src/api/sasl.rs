//! SaslHandshake and SaslAuthenticate: pick a mechanism, then run its exchange one message per
//! request. A failure answers `SASL_AUTHENTICATION_FAILED` with a message that does not say
//! whether the user exists, and the connection is closed after the answer.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::{Duration, Instant};

use crate::auth::{SaslFailure, SaslStep};
use crate::protocol::session::Session;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub(crate) fn handshake(
    session: &mut Session,
    version: i16,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let Some(auth) = session.listener.authenticator.clone() else {
        session.close_after_reply = true;
        return SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code());
    };
    let enabled: Vec<StrBytes> = auth.mechanisms.iter().map(|m| s(m.name())).collect();
    let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
    if session.exchange.is_some() {
        session.close_after_reply = true;
        return response.with_error_code(ResponseError::IllegalSaslState.code());
    }
    let mechanism = request.mechanism.as_str();
    // Re-authentication (KIP-368) must use the mechanism the session began with.
    let same_as_before = session.mechanism.is_none_or(|m| m == mechanism);
    match auth.start(mechanism).filter(|_| same_as_before) {
        Some(exchange) => {
            session.exchange = Some(exchange);
            session.raw_tokens = version == 0;
            response.with_error_code(0)
        }
        None => {
            tracing::info!(peer = %session.peer, mechanism = %mechanism.escape_default(), "SASL mechanism refused");
            session.close_after_reply = true;
            response.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
        }
    }
}

/// The result of one SASL message, whichever framing carried it.
pub(crate) enum Outcome {
    /// Send these bytes; the exchange goes on or has succeeded.
    Reply { bytes: Vec<u8>, lifetime_ms: i64 },
    /// Refused with `code`: answer after `delay`, then close.
    Failed {
        code: ResponseError,
        message: String,
        delay: Duration,
    },
}

/// Runs one client message of the current exchange.
pub(crate) fn step(session: &mut Session, message: &[u8]) -> Outcome {
    let (Some(auth), Some(mut exchange)) = (
        session.listener.authenticator.clone(),
        session.exchange.take(),
    ) else {
        session.close_after_reply = true;
        return Outcome::Failed {
            code: ResponseError::IllegalSaslState,
            message: "SaslAuthenticate before a successful SaslHandshake".to_string(),
            delay: Duration::ZERO,
        };
    };
    let mechanism = exchange.mechanism_name();
    let ip = session.peer.ip();
    let fail = |session: &mut Session, failure: SaslFailure| {
        auth.record_failure(ip, mechanism, &failure);
        session.close_after_reply = true;
        Outcome::Failed {
            code: ResponseError::SaslAuthenticationFailed,
            message: failure.client_message(),
            delay: auth.failed_delay,
        }
    };
    match exchange.step(&auth, ip, message) {
        Ok(SaslStep::Continue(bytes)) => {
            session.exchange = Some(exchange);
            Outcome::Reply {
                bytes,
                lifetime_ms: 0,
            }
        }
        Ok(SaslStep::Done {
            principal,
            reply,
            credential_expires_ms,
        }) => {
            if session
                .principal
                .as_ref()
                .is_some_and(|before| *before != principal)
            {
                let failure = SaslFailure::bad_credentials(
                    &principal.name,
                    "re-authentication as a different principal",
                );
                return fail(session, failure);
            }
            let lifetime_ms = if auth.max_reauth_ms > 0 {
                let mut lifetime = auth.max_reauth_ms;
                if let Some(expires) = credential_expires_ms {
                    lifetime = lifetime.min((expires - crate::api::now_ms()).max(1));
                }
                // A lifetime past what the clock can hold is no limit at all.
                session.expires_at =
                    Instant::now().checked_add(Duration::from_millis(lifetime.unsigned_abs()));
                lifetime
            } else {
                session.expires_at = None;
                0
            };
            tracing::info!(peer = %session.peer, listener = %session.listener.name, mechanism, %principal, "authenticated");
            session.principal = Some(principal);
            session.mechanism = Some(mechanism);
            session.raw_tokens = false;
            Outcome::Reply {
                bytes: reply,
                lifetime_ms,
            }
        }
        Err(failure) => fail(session, failure),
    }
}

/// SaslAuthenticate: the response, and how long to hold it (failures wait
/// `connection.failed.authentication.delay.ms`).
pub(crate) fn authenticate(
    session: &mut Session,
    request: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, Duration) {
    match step(session, &request.auth_bytes) {
        Outcome::Reply { bytes, lifetime_ms } => (
            SaslAuthenticateResponse::default()
                .with_auth_bytes(Bytes::from(bytes))
                .with_session_lifetime_ms(lifetime_ms),
            Duration::ZERO,
        ),
        Outcome::Failed {
            code,
            message,
            delay,
        } => (
            SaslAuthenticateResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(s(&message))),
            delay,
        ),
    }
}
