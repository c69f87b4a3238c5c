//! TLS for the Kafka listeners: a rustls server config built from Kafka's `ssl.*` settings (PEM
//! keystore and truststore, from files or inline), swapped atomically when the files change, and
//! the principal a client certificate maps to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::principal_rules::PrincipalRules;
use super::Principal;

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

/// Kafka's `ssl.*` settings (PEM only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.certificate.chain`: the chain as inline PEM.
    pub keystore_certificate_chain: Option<String>,
    /// `ssl.keystore.key`: the private key as inline PEM.
    pub keystore_key: Option<String>,
    /// `ssl.truststore.location`: a PEM file of CA certificates for client certificates.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.truststore.certificates`: the same, inline.
    pub truststore_certificates: Option<String>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.principal.mapping.rules`.
    pub principal_mapping_rules: String,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            keystore_location: None,
            keystore_certificate_chain: None,
            keystore_key: None,
            truststore_location: None,
            truststore_certificates: None,
            client_auth: ClientAuth::None,
            principal_mapping_rules: "DEFAULT".to_string(),
        }
    }
}

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The live TLS config of the SSL and SASL_SSL listeners.
#[derive(Debug)]
pub struct TlsServer {
    settings: TlsSettings,
    rules: PrincipalRules,
    /// The config new connections use; replaced whole on reload.
    current: RwLock<Arc<ServerConfig>>,
    /// Modification times of the files the config was built from, as last seen.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsServer {
    pub fn load(settings: TlsSettings) -> Result<TlsServer, String> {
        let rules = PrincipalRules::parse(&settings.principal_mapping_rules)
            .map_err(|e| format!("ssl.principal.mapping.rules: {e}"))?;
        let stamps = file_stamps(&settings);
        let config = build(&settings)?;
        Ok(TlsServer {
            settings,
            rules,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// An acceptor on the current config.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Rebuilds the config when a keystore or truststore file changed. A file caught half
    /// written, or a broken new one, leaves the old config in place (and is retried next time).
    pub fn reload_if_changed(&self) -> bool {
        let now = file_stamps(&self.settings);
        let mut stamps = self.stamps.lock();
        if *stamps == now {
            return false;
        }
        match build(&self.settings) {
            Ok(config) => {
                *self.current.write() = Arc::new(config);
                *stamps = now;
                tracing::info!("TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    "TLS certificates changed but cannot be loaded (keeping the old ones): {e}"
                );
                false
            }
        }
    }

    /// Polls the files every `every` until `shutdown`.
    pub async fn watch(
        self: Arc<TlsServer>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            self.reload_if_changed();
        }
    }

    /// The principal of an SSL connection: from the client certificate's subject through the
    /// mapping rules, `User:ANONYMOUS` without one.
    pub fn principal(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<Principal, String> {
        let Some(leaf) = peer_certificates.and_then(|c| c.first()) else {
            return Ok(Principal::anonymous());
        };
        let subject = subject_name(leaf)?;
        self.rules
            .apply(&subject)
            .map(Principal::user)
            .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches '{subject}'"))
    }
}

fn file_stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [&settings.keystore_location, &settings.truststore_location]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn read_pem(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn build(settings: &TlsSettings) -> Result<ServerConfig, String> {
    let (chain_pem, key_pem) = match (
        &settings.keystore_location,
        &settings.keystore_certificate_chain,
        &settings.keystore_key,
    ) {
        (Some(path), None, None) => {
            let pem = read_pem(path, "ssl.keystore.location")?;
            (pem.clone(), pem)
        }
        (None, Some(chain), Some(key)) => (chain.as_bytes().to_vec(), key.as_bytes().to_vec()),
        (None, None, None) => {
            return Err("TLS needs ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key".into())
        }
        _ => {
            return Err("set either ssl.keystore.location or both ssl.keystore.certificate.chain and ssl.keystore.key".into())
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("keystore certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("the keystore holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("keystore private key (unencrypted PEM expected): {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let roots = trust_roots(settings)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("ssl.truststore: {e}"))?,
            )
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("keystore: {e}"))
}

fn trust_roots(settings: &TlsSettings) -> Result<rustls::RootCertStore, String> {
    let pem = match (
        &settings.truststore_location,
        &settings.truststore_certificates,
    ) {
        (Some(path), None) => read_pem(path, "ssl.truststore.location")?,
        (None, Some(inline)) => inline.as_bytes().to_vec(),
        (None, None) => {
            return Err(
                "ssl.client.auth needs ssl.truststore.location or ssl.truststore.certificates"
                    .into(),
            )
        }
        (Some(_), Some(_)) => {
            return Err(
                "set ssl.truststore.location or ssl.truststore.certificates, not both".into(),
            )
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("truststore: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("truststore certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the truststore holds no certificate".into());
    }
    Ok(roots)
}

/// The subject as Java's `X500Principal.getName()` writes it (RFC 2253: most specific RDN first,
/// `,` between), which is what Kafka's mapping rules are written against.
pub fn subject_name(der: &CertificateDer<'_>) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("client certificate cannot be parsed: {e}"))?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let key = match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                Ok("Email") => "EMAILADDRESS".to_string(),
                Ok(abbrev) => abbrev.to_string(),
                Err(_) => attr.attr_type().to_id_string(),
            };
            let value = attr
                .as_str()
                .map(escape_rfc2253)
                .unwrap_or_else(|_| String::from("#"));
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings {
            keystore_location: Some(dir.path().join("nope.pem")),
            ..TlsSettings::default()
        };
        let err = TlsServer::load(missing).unwrap_err();
        assert!(err.contains("nope.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file").unwrap();
        let err = TlsServer::load(TlsSettings {
            keystore_location: Some(garbage),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let err = TlsServer::load(TlsSettings {
            keystore_certificate_chain: Some("x".into()),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert!(err.contains("ssl.keystore.key"), "{err}");
    }

    #[test]
    fn rfc2253_values_are_escaped() {
        assert_eq!(escape_rfc2253("Acme, Inc"), "Acme\\, Inc");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }
}
