//! Who is on the other end of a connection: SASL authentication (PLAIN, SCRAM-SHA-256/512,
//! OAUTHBEARER), TLS settings and certificate reloading, and the principal a connection carries.
//!
//! - [`credentials`]: the salted SCRAM credentials under `data/__sluice/`.
//! - [`scram`]: the server side of a SCRAM exchange.
//! - [`oauthbearer`]: JWT validation against a configured key set.
//! - [`rate_limit`]: failed authentications counted per source address.
//! - [`tls`]: rustls server configs from Kafka's `ssl.*` settings, reloaded when files change.
//! - [`principal_rules`]: `ssl.principal.mapping.rules`, certificate subject → user name.
//!
//! Handlers will read the [`Principal`] of their connection to authorize requests (ACLs).

pub mod credentials;
pub mod oauthbearer;
pub mod principal_rules;
pub mod rate_limit;
pub mod scram;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use credentials::{CredentialStore, ScramMechanism};

/// An authenticated identity, shown as Kafka shows it: `User:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Always `User` today (Kafka's `KafkaPrincipal.USER_TYPE`).
    pub kind: &'static str,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User",
            name: name.into(),
        }
    }

    /// Kafka's principal for unauthenticated PLAINTEXT and SSL connections.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A SASL mechanism the broker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// A failed SASL step: what the operator's log says, and the one message the client gets.
#[derive(Debug)]
pub struct SaslFailure {
    /// For the broker's log: may name the user and the exact reason.
    pub detail: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// Wrong password or unknown user: the client must not learn which.
    Credentials,
    /// A bearer token that is expired, badly signed or for someone else.
    Token,
    /// A message that is not what the mechanism expects.
    Malformed,
    /// Too many failures from this address.
    Throttled,
    /// The broker itself failed (random source).
    Internal,
}

impl SaslFailure {
    pub fn bad_credentials(user: &str, why: &str) -> SaslFailure {
        SaslFailure {
            detail: format!("user '{}': {why}", user.escape_default()),
            kind: FailureKind::Credentials,
        }
    }

    pub fn bad_token(why: String) -> SaslFailure {
        SaslFailure {
            detail: why,
            kind: FailureKind::Token,
        }
    }

    pub fn malformed(why: &str) -> SaslFailure {
        SaslFailure {
            detail: why.to_string(),
            kind: FailureKind::Malformed,
        }
    }

    pub fn internal() -> SaslFailure {
        SaslFailure {
            detail: "internal error".to_string(),
            kind: FailureKind::Internal,
        }
    }

    fn throttled() -> SaslFailure {
        SaslFailure {
            detail: "too many failed authentications from this address".to_string(),
            kind: FailureKind::Throttled,
        }
    }

    /// What the client is told (SaslAuthenticate's error_message).
    pub fn client_message(&self) -> String {
        match self.kind {
            FailureKind::Credentials | FailureKind::Throttled => {
                "Authentication failed: invalid credentials".to_string()
            }
            FailureKind::Token => format!("Authentication failed: {}", self.detail),
            FailureKind::Malformed => format!("Authentication failed: {}", self.detail),
            FailureKind::Internal => "Authentication failed: broker error".to_string(),
        }
    }
}

/// The SASL settings (Kafka's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`.
    pub enabled_mechanisms: Vec<String>,
    /// `connections.max.reauth.ms`: 0 leaves sessions unbounded (KIP-368).
    pub max_reauth_ms: i64,
    /// `connection.failed.authentication.delay.ms`: how long a failure waits before its answer.
    pub failed_delay_ms: u64,
    /// `sasl.failed.authentications.max.per.minute` (Sluice's): failures from one address in a
    /// minute after which every attempt from it is refused until the minute has passed.
    pub max_failures_per_minute: u32,
    pub oauth: oauthbearer::OAuthSettings,
}

impl Default for SaslSettings {
    fn default() -> SaslSettings {
        SaslSettings {
            enabled_mechanisms: vec![
                "SCRAM-SHA-256".to_string(),
                "SCRAM-SHA-512".to_string(),
                "PLAIN".to_string(),
            ],
            max_reauth_ms: 0,
            failed_delay_ms: 100,
            max_failures_per_minute: 20,
            oauth: oauthbearer::OAuthSettings::kafka_defaults(),
        }
    }
}

/// What every SASL listener shares: the credentials, the enabled mechanisms, the token checker
/// and the failure counter.
#[derive(Debug)]
pub struct Authenticator {
    pub credentials: Arc<CredentialStore>,
    /// In the order of `sasl.enabled.mechanisms` (SaslHandshake lists them so).
    pub mechanisms: Vec<Mechanism>,
    oauth: Option<oauthbearer::JwtValidator>,
    limiter: rate_limit::FailureLimiter,
    /// `connections.max.reauth.ms`.
    pub max_reauth_ms: i64,
    /// Delay before a failure is answered.
    pub failed_delay: Duration,
    /// Per-process secret behind the stand-in salts of unknown SCRAM users.
    decoy_key: Vec<u8>,
}

impl Authenticator {
    pub fn new(
        credentials: Arc<CredentialStore>,
        settings: &SaslSettings,
    ) -> Result<Authenticator, String> {
        let mut mechanisms = Vec::new();
        for name in &settings.enabled_mechanisms {
            let mechanism = Mechanism::from_name(name).ok_or_else(|| {
                format!(
                    "sasl.enabled.mechanisms: '{name}' is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
                )
            })?;
            if !mechanisms.contains(&mechanism) {
                mechanisms.push(mechanism);
            }
        }
        let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
            Some(oauthbearer::JwtValidator::load(settings.oauth.clone())?)
        } else {
            None
        };
        Ok(Authenticator {
            credentials,
            mechanisms,
            oauth,
            limiter: rate_limit::FailureLimiter::new(settings.max_failures_per_minute),
            max_reauth_ms: settings.max_reauth_ms,
            failed_delay: Duration::from_millis(settings.failed_delay_ms),
            decoy_key: credentials::random_bytes(32).map_err(|e| e.to_string())?,
        })
    }

    /// Starts an exchange for `name`, if that mechanism is enabled.
    pub fn start(&self, name: &str) -> Option<SaslExchange> {
        let mechanism = Mechanism::from_name(name).filter(|m| self.mechanisms.contains(m))?;
        Some(match mechanism {
            Mechanism::Plain => SaslExchange::Plain,
            Mechanism::Scram(m) => SaslExchange::Scram(scram::ScramServer::new(m)),
            Mechanism::OAuthBearer => SaslExchange::OAuthBearer,
        })
    }

    /// Counts a failure from `ip` (and logs it; once the address is locked out, only at debug
    /// level, so a flood of attempts cannot flood the log).
    pub fn record_failure(&self, ip: IpAddr, mechanism: &str, failure: &SaslFailure) {
        self.limiter.record_failure(ip);
        if failure.kind == FailureKind::Throttled {
            tracing::debug!(peer = %ip, mechanism, "authentication refused: {}", failure.detail);
        } else {
            tracing::warn!(peer = %ip, mechanism, "authentication failed: {}", failure.detail);
        }
    }
}

/// One connection's SASL exchange in progress.
#[derive(Debug)]
pub enum SaslExchange {
    Plain,
    Scram(scram::ScramServer),
    OAuthBearer,
}

/// The outcome of a step that did not fail.
#[derive(Debug)]
pub enum SaslStep {
    /// Send these bytes, wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated.
    Done {
        principal: Principal,
        /// The last server message (SCRAM's server-final; empty for the others).
        reply: Vec<u8>,
        /// When the credential itself stops being valid (a token's `exp`), epoch ms.
        credential_expires_ms: Option<i64>,
    },
}

impl SaslExchange {
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            SaslExchange::Plain => "PLAIN",
            SaslExchange::Scram(s) => s.mechanism().name(),
            SaslExchange::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Processes one client message from `ip`.
    pub fn step(
        &mut self,
        auth: &Authenticator,
        ip: IpAddr,
        message: &[u8],
    ) -> Result<SaslStep, SaslFailure> {
        if auth.limiter.is_locked_out(ip) {
            return Err(SaslFailure::throttled());
        }
        match self {
            SaslExchange::Plain => {
                let user = plain(&auth.credentials, message)?;
                Ok(SaslStep::Done {
                    principal: Principal::user(user),
                    reply: Vec::new(),
                    credential_expires_ms: None,
                })
            }
            SaslExchange::Scram(server) => {
                match server.step(&auth.credentials, &auth.decoy_key, message)? {
                    scram::ScramStep::Continue(reply) => Ok(SaslStep::Continue(reply)),
                    scram::ScramStep::Success { user, server_final } => Ok(SaslStep::Done {
                        principal: Principal::user(user),
                        reply: server_final,
                        credential_expires_ms: None,
                    }),
                }
            }
            SaslExchange::OAuthBearer => {
                let validator = auth.oauth.as_ref().ok_or_else(SaslFailure::internal)?;
                let token = validator.authenticate(message)?;
                Ok(SaslStep::Done {
                    principal: Principal::user(token.subject),
                    reply: Vec::new(),
                    credential_expires_ms: Some(token.expires_at_ms),
                })
            }
        }
    }
}

/// Longest PLAIN message accepted.
const MAX_PLAIN: usize = 4096;

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the SCRAM credentials.
fn plain(store: &CredentialStore, message: &[u8]) -> Result<String, SaslFailure> {
    if message.len() > MAX_PLAIN {
        return Err(SaslFailure::malformed("PLAIN message too long"));
    }
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::malformed("PLAIN message is malformed"));
    };
    let user = std::str::from_utf8(user)
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| SaslFailure::malformed("PLAIN user name is malformed"))?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslFailure::bad_credentials(
            user,
            "authorization id differs from the user",
        ));
    }
    match store.any(user) {
        Some((mechanism, credential)) if credential.matches_password(mechanism, password) => {
            Ok(user.to_string())
        }
        Some(_) => Err(SaslFailure::bad_credentials(user, "wrong password")),
        None => {
            // Spend the same work as a real check so timing does not tell that the user is
            // unknown.
            let _ = ScramMechanism::Sha256.salted_password(
                password,
                b"sluice-unknown-user",
                credentials::MIN_ITERATIONS,
            );
            Err(SaslFailure::bad_credentials(user, "unknown user"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(max_failures: u32) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CredentialStore::open(dir.path()).unwrap());
        let cred = credentials::ScramCredential::new(ScramMechanism::Sha512, b"pw", 4096).unwrap();
        store
            .apply(&[], vec![("alice".into(), ScramMechanism::Sha512, cred)])
            .unwrap();
        let settings = SaslSettings {
            max_failures_per_minute: max_failures,
            ..SaslSettings::default()
        };
        (dir, Authenticator::new(store, &settings).unwrap())
    }

    #[test]
    fn plain_checks_the_scram_credential_and_hides_unknown_users() {
        let (_dir, auth) = authenticator(100);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut ok = auth.start("PLAIN").unwrap();
        match ok.step(&auth, ip, b"\0alice\0pw").unwrap() {
            SaslStep::Done { principal, .. } => assert_eq!(principal.to_string(), "User:alice"),
            other => panic!("{other:?}"),
        }
        let wrong = auth
            .start("PLAIN")
            .unwrap()
            .step(&auth, ip, b"\0alice\0no")
            .unwrap_err();
        let unknown = auth
            .start("PLAIN")
            .unwrap()
            .step(&auth, ip, b"\0bob\0pw")
            .unwrap_err();
        assert_eq!(wrong.client_message(), unknown.client_message());
        for garbage in [&b""[..], b"alice", b"\0alice", b"\0\0pw", b"a\0b\0c\0d"] {
            assert!(auth
                .start("PLAIN")
                .unwrap()
                .step(&auth, ip, garbage)
                .is_err());
        }
    }

    #[test]
    fn an_address_with_too_many_failures_is_refused_even_with_the_right_password() {
        let (_dir, auth) = authenticator(3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            let failure = auth
                .start("PLAIN")
                .unwrap()
                .step(&auth, ip, b"\0alice\0no")
                .unwrap_err();
            auth.record_failure(ip, "PLAIN", &failure);
        }
        assert!(auth
            .start("PLAIN")
            .unwrap()
            .step(&auth, ip, b"\0alice\0pw")
            .is_err());
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(auth
            .start("PLAIN")
            .unwrap()
            .step(&auth, other, b"\0alice\0pw")
            .is_ok());
    }

    #[test]
    fn only_enabled_mechanisms_start() {
        let (_dir, auth) = authenticator(3);
        assert!(auth.start("OAUTHBEARER").is_none());
        assert!(auth.start("GSSAPI").is_none());
        assert!(auth.start("SCRAM-SHA-256").is_some());
    }
}
