//! How the CLI reaches the broker's HTTP admin API: its address, HTTP Basic credentials and the
//! CA to trust for `https://`, from flags, `SLUICE_*` env vars or a profile file (in that order),
//! and the one place requests are sent and answers turned into values or one-line errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// The admin API when nothing says otherwise.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:8083";

/// Where the broker's HTTP admin API is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub(super) struct Admin {
    /// Broker HTTP address [default: the profile's `admin`, else http://127.0.0.1:8083].
    #[arg(long = "admin", env = "SLUICE_ADMIN")]
    url: Option<String>,
    /// User for the HTTP listener's Basic authentication (`http.authentication = "basic"`).
    #[arg(long, env = "SLUICE_USER")]
    user: Option<String>,
    /// That user's password (a flag shows in `ps`: prefer SLUICE_PASSWORD or a profile).
    #[arg(long, env = "SLUICE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// PEM file of the CA certificates to trust for an https:// address (default: the public
    /// web roots).
    #[arg(long, env = "SLUICE_CA")]
    ca: Option<PathBuf>,
    /// TOML profile with any of `admin`, `user`, `password`, `ca` [default:
    /// ~/.config/sluice/profile.toml when it exists].
    #[arg(long, env = "SLUICE_PROFILE")]
    profile: Option<PathBuf>,
}

/// A profile file: what flags and env vars leave unset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    admin: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ca: Option<PathBuf>,
}

/// A resolved connection to the admin API.
pub(super) struct Http {
    /// The base URL, without a trailing slash.
    pub(super) base: String,
    pub(super) agent: ureq::Agent,
}

impl Admin {
    /// Resolves flags, env vars and the profile into a connection.
    pub(super) fn connect(&self) -> anyhow::Result<Http> {
        let profile = self.profile()?;
        let base = self
            .url
            .clone()
            .or(profile.admin)
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string())
            .trim_end_matches('/')
            .to_string();
        let user = self.user.clone().or(profile.user);
        let password = self.password.clone().or(profile.password);
        let ca = self.ca.clone().or(profile.ca);
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(ca) = &ca {
            config = config.tls_config(tls_trusting(ca)?);
        }
        match (user, password) {
            (Some(user), Some(password)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let value = ureq::http::HeaderValue::from_str(&format!("Basic {token}"))
                    .context("the user or password holds characters HTTP headers cannot")?;
                config = config.middleware(
                    move |mut request: ureq::http::Request<ureq::SendBody>,
                          next: ureq::middleware::MiddlewareNext| {
                        request
                            .headers_mut()
                            .insert(ureq::http::header::AUTHORIZATION, value.clone());
                        next.handle(request)
                    },
                );
            }
            (Some(user), None) => {
                bail!("user {user} has no password: give --password, SLUICE_PASSWORD or a profile's `password`")
            }
            (None, Some(_)) => bail!("a password was given without a user (--user or SLUICE_USER)"),
            (None, None) => {}
        }
        Ok(Http {
            base,
            agent: config.build().into(),
        })
    }

    fn profile(&self) -> anyhow::Result<Profile> {
        let (path, explicit) = match &self.profile {
            Some(path) => (path.clone(), true),
            None => match std::env::var_os("HOME") {
                Some(home) => (Path::new(&home).join(".config/sluice/profile.toml"), false),
                None => return Ok(Profile::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profile::default())
            }
            Err(e) => bail!("cannot read the profile {}: {e}", path.display()),
        };
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()))
    }
}

/// A TLS config trusting exactly the certificates in the PEM file `ca`.
fn tls_trusting(ca: &Path) -> anyhow::Result<ureq::tls::TlsConfig> {
    let pem =
        std::fs::read(ca).with_context(|| format!("cannot read the CA file {}", ca.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.with_context(|| format!("{}: not PEM", ca.display()))? {
            ureq::tls::PemItem::Certificate(cert) => certs.push(cert),
            _ => continue,
        }
    }
    if certs.is_empty() {
        bail!("{} holds no certificate", ca.display());
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
        .build())
}

/// Sends a request; a non-2xx answer becomes an error carrying the broker's message.
pub(super) fn call(
    request: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> anyhow::Result<Value> {
    let mut response =
        request.with_context(|| format!("{what}: cannot reach the broker's HTTP API"))?;
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        bail!("{what}: {message} (HTTP {})", status.as_u16());
    }
    Ok(body)
}
