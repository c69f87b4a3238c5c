//! One connection's security state: the listener it came in on, the principal it has
//! authenticated as, the SASL exchange in progress and, with `connections.max.reauth.ms`, when
//! it must re-authenticate (KIP-368); and, for quotas, its client id and how long it is held
//! back.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::throttle::ThrottleGate;
use crate::auth::{Authenticator, Principal, SaslExchange};
use crate::config::SecurityProtocol;
use crate::quota::Client;

/// What a connection knows of the listener it was accepted on.
#[derive(Debug)]
pub struct ListenerContext {
    /// The listener name (`PLAINTEXT`, `SSL`, or a custom one).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// What Metadata and FindCoordinator tell a client of this listener to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Present on SASL_PLAINTEXT and SASL_SSL listeners.
    pub authenticator: Option<Arc<Authenticator>>,
}

/// A connection's authentication state.
#[derive(Debug)]
pub struct Session {
    pub listener: Arc<ListenerContext>,
    pub peer: SocketAddr,
    /// Who the connection is: `User:ANONYMOUS` on PLAINTEXT, the mapped certificate subject on
    /// SSL, the SASL identity once authenticated; `None` until then on SASL listeners.
    pub principal: Option<Principal>,
    /// The mechanism the principal authenticated with (re-authentication must use it again).
    pub mechanism: Option<&'static str>,
    /// The exchange begun by SaslHandshake.
    pub exchange: Option<SaslExchange>,
    /// After SaslHandshake v0 the next frames are bare SASL tokens, not Kafka requests.
    pub raw_tokens: bool,
    /// The end of the authenticated session (KIP-368); past it only re-authentication is served.
    pub expires_at: Option<Instant>,
    /// Set by a handler when the connection must close once this reply is sent (a failed
    /// authentication).
    pub close_after_reply: bool,
    /// The client id of the latest request header (quotas are per client id).
    pub client_id: String,
    /// Set while the connection is over a quota; shared with replies that finish later (a
    /// fetch's byte count is known only once it is answered).
    pub gate: Arc<ThrottleGate>,
}

impl Session {
    /// A new connection; `principal` is `None` where SASL must come first.
    pub fn new(
        listener: Arc<ListenerContext>,
        peer: SocketAddr,
        principal: Option<Principal>,
    ) -> Session {
        Session {
            listener,
            peer,
            principal,
            mechanism: None,
            exchange: None,
            raw_tokens: false,
            expires_at: None,
            close_after_reply: false,
            client_id: String::new(),
            gate: Arc::new(ThrottleGate::default()),
        }
    }

    /// Who the connection is, as quotas see it (an unauthenticated connection has no user).
    pub fn quota_client(&self) -> Client<'_> {
        Client {
            user: self.principal.as_ref().map_or("", |p| p.name.as_str()),
            client_id: &self.client_id,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.principal.is_some()
    }

    /// Whether the authenticated session has outlived `connections.max.reauth.ms` (or its token).
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }
}
