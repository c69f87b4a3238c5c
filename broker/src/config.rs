//! The broker's settings: command-line flags, then `SLUICE_*` environment variables, then a TOML
//! file, then defaults (in that order of precedence).
//!
//! The TOML file uses Kafka's broker config names where Kafka has one (`num.partitions`,
//! `log.segment.bytes`, ...) so an operator can carry settings over from `server.properties`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::acl::AuthorizerSettings;
use crate::auth::tls::{ClientAuth, TlsSettings};
use crate::auth::SaslSettings;
use crate::catalog::{
    topic_config_defaulted_by, topic_config_of_broker_setting, TopicDefaults, TopicError,
};
use crate::cluster::config::{ClusterConfig, ClusterSettings};
use crate::group::GroupConfig;
use crate::log::cleaner::CleanerConfig;
use crate::log::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
use crate::quota::limits::{parse_overrides, ConnectionLimitsConfig};
use crate::quota::Window;
use crate::txn::TxnConfig;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A settings problem, named precisely enough for the operator to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: unknown setting '{key}'")]
    UnknownKey { path: PathBuf, key: String },
    #[error("setting '{key}': {message}")]
    Invalid { key: String, message: String },
}

/// Values given on the command line or in the environment; `None` falls through to the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub kafka_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub flush: Option<FlushPolicy>,
    pub advertised_host: Option<String>,
    pub metrics_enabled: Option<bool>,
    /// `--metadata` (cluster mode's PostgreSQL URL).
    pub metadata: Option<String>,
    /// `--objects` (cluster mode's object store URL).
    pub objects: Option<String>,
    /// `--rack` (cluster mode's `cluster.rack`).
    pub rack: Option<String>,
}

/// How a listener's connections are secured (Kafka's `security.protocol` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One named Kafka listener, resolved from `listeners`, `listener.security.protocol.map` and
/// `advertised.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener name (`PLAINTEXT`, `SSL`, or a custom name from the protocol map).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where it binds (port 0: an ephemeral port).
    pub bind: SocketAddr,
    /// `advertised.listeners` host and port; `None` advertises the bound address.
    pub advertised: Option<(String, u16)>,
    /// The `ssl.*` settings with this listener's `listener.name.<name>.ssl.*` overrides.
    pub tls: TlsSettings,
    /// The SASL settings with this listener's `listener.name.<name>.*` overrides.
    pub sasl: SaslSettings,
}

/// Everything `sluice serve` runs with.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where the Kafka protocol listener binds (the first of `listeners` when that is set).
    pub kafka_listen: SocketAddr,
    /// Whether `kafka_listen` was given (flag, env or file) rather than defaulted.
    pub kafka_listen_set: bool,
    /// `listeners`, as written (`NAME://host:port,...`).
    pub listeners: Option<String>,
    /// `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
    pub protocol_map: Option<String>,
    /// `advertised.listeners` (`NAME://host:port,...`).
    pub advertised_listeners: Option<String>,
    /// `ssl.*`: the TLS of SSL and SASL_SSL listeners.
    pub tls: TlsSettings,
    /// `sasl.*` and friends: authentication on SASL listeners.
    pub sasl: SaslSettings,
    /// `listener.name.<name>.<setting>`: per-listener TLS and SASL settings, as
    /// `(lower-cased listener name, setting, value)`.
    pub listener_overrides: Vec<(String, String, toml::Value)>,
    /// Where the HTTP listener (health, admin, Connect REST) binds.
    pub http_listen: SocketAddr,
    /// Root of all durable state.
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// Host named to clients in Metadata; defaults to the Kafka listener's IP.
    pub advertised_host: Option<String>,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub max_request_bytes: usize,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// Topic defaults: `num.partitions`, `auto.create.topics.enable` and the `log.*` settings.
    pub topics: TopicDefaults,
    /// Consumer-group coordinator settings (`group.*`).
    pub groups: GroupConfig,
    /// Transaction coordinator settings (`transaction.*`).
    pub transactions: TxnConfig,
    /// The log cleaner (`log.cleaner.*`).
    pub cleaner: CleanerConfig,
    /// `metrics.enabled`: keep the hot-path counters and histograms of `/metrics` (state read
    /// at scrape time is always there).
    pub metrics_enabled: bool,
    /// `quota.window.num` × `quota.window.size.seconds`: how client quotas are measured.
    pub quota_window: Window,
    /// `max.connections`, `max.connections.per.ip`, `max.connections.per.ip.overrides`.
    pub connection_limits: ConnectionLimitsConfig,
    /// `queued.max.request.bytes`; `None` (Kafka's -1) is unbounded.
    pub queued_max_request_bytes: Option<u32>,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: AuthorizerSettings,
    /// `http.authentication`, `http.metrics.authentication`, `http.ssl.enabled`.
    pub http: HttpSecurity,
    /// `http.ssl.<setting>`: the HTTP listener's own `ssl.*` settings, over the broker-wide ones.
    pub http_tls_overrides: Vec<(String, toml::Value)>,
    /// Cluster mode (`metadata`, `objects`, `cluster.*`); `None` is the single-node broker.
    pub cluster: Option<ClusterConfig>,
    /// The cluster settings as read so far, checked into `cluster` once all are in.
    cluster_settings: ClusterSettings,
}

/// How the HTTP listener authenticates and encrypts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSecurity {
    /// `http.authentication=basic`: HTTP Basic against the SCRAM credentials; `none` (the
    /// default) makes every request `User:ANONYMOUS`.
    pub basic: bool,
    /// `http.metrics.authentication`: `/metrics` asks for credentials too (default false).
    pub metrics_authentication: bool,
    /// `http.ssl.enabled`: HTTPS, with the `http.ssl.*` keystore or else the Kafka one.
    pub tls: bool,
}

impl BrokerConfig {
    /// Kafka's defaults, except listeners on loopback and the fsync-on-ack durability policy.
    pub fn defaults() -> BrokerConfig {
        BrokerConfig {
            kafka_listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            kafka_listen_set: false,
            listeners: None,
            protocol_map: None,
            advertised_listeners: None,
            tls: TlsSettings::default(),
            sasl: SaslSettings::default(),
            listener_overrides: Vec::new(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Text,
            advertised_host: None,
            max_request_bytes: 100 * 1024 * 1024,
            retention_check_interval_ms: 300_000,
            groups: GroupConfig::default(),
            transactions: TxnConfig::default(),
            cleaner: CleanerConfig::default(),
            metrics_enabled: true,
            quota_window: Window::default(),
            connection_limits: ConnectionLimitsConfig::default(),
            queued_max_request_bytes: None,
            authorizer: AuthorizerSettings::default(),
            http: HttpSecurity::default(),
            http_tls_overrides: Vec::new(),
            cluster: None,
            cluster_settings: ClusterSettings::default(),
            topics: TopicDefaults {
                num_partitions: 1,
                auto_create_topics: true,
                log: LogConfig {
                    segment_bytes: 1024 * 1024 * 1024,
                    segment_ms: 7 * 24 * 3600 * 1000,
                    retention_ms: 7 * 24 * 3600 * 1000,
                    retention_bytes: -1,
                    index_interval_bytes: 4096,
                    segment_index_bytes: 10 * 1024 * 1024,
                    max_message_bytes: 1_048_588,
                    timestamp_type: TimestampType::CreateTime,
                    flush: FlushPolicy::Fsync,
                    cleanup_policy: CleanupPolicy::DELETE,
                    min_compaction_lag_ms: 0,
                    max_compaction_lag_ms: i64::MAX,
                    min_cleanable_dirty_ratio: 0.5,
                    delete_retention_ms: 24 * 3600 * 1000,
                },
                configs: Default::default(),
                static_settings: Default::default(),
            },
        }
    }

    /// Defaults, overlaid by the TOML file (if any), overlaid by flags and environment.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::defaults();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            config.apply_toml(path, &text)?;
        }
        if let Some(v) = overrides.kafka_listen {
            config.kafka_listen = v;
            config.kafka_listen_set = true;
        }
        if let Some(v) = overrides.http_listen {
            config.http_listen = v;
        }
        if let Some(v) = overrides.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = overrides.log_format {
            config.log_format = v;
        }
        if let Some(v) = overrides.flush {
            config.topics.log.flush = v;
        }
        if let Some(v) = overrides.advertised_host {
            config.advertised_host = Some(v);
        }
        // Listener mistakes stop the broker at start, not at the first connection.
        config.resolve_listeners()?;
        if let Some(v) = overrides.metrics_enabled {
            config.metrics_enabled = v;
        }
        if let Some(v) = overrides.metadata {
            config.cluster_settings.metadata = Some(v);
        }
        if let Some(v) = overrides.objects {
            config.cluster_settings.objects = Some(v);
        }
        if let Some(v) = overrides.rack {
            config.cluster_settings.rack = Some(v);
        }
        config.cluster = config
            .cluster_settings
            .resolve()
            .map_err(|e| ConfigError::Invalid {
                key: e.setting,
                message: e.message,
            })?;
        Ok(config)
    }

    fn apply_toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            })?;
        for (key, value) in &table {
            self.apply_setting(key, value).map_err(|e| match e {
                ConfigError::UnknownKey { key, .. } => ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key,
                },
                other => other,
            })?;
            // DescribeConfigs names the setting a topic config's default came from.
            if let Some(topic_name) = topic_config_defaulted_by(key) {
                self.topics
                    .static_settings
                    .insert(topic_name.to_owned(), (key.clone(), toml_text(value)));
            }
        }
        Ok(())
    }

    /// Applies one `key = value` of the file.
    fn apply_setting(&mut self, key: &str, value: &toml::Value) -> Result<(), ConfigError> {
        let log = &mut self.topics.log;
        match key {
            "kafka.listen" => {
                self.kafka_listen = parse_str(key, value)?;
                self.kafka_listen_set = true;
            }
            "listeners" => self.listeners = Some(string(key, value)?.to_string()),
            "listener.security.protocol.map" => {
                self.protocol_map = Some(string(key, value)?.to_string())
            }
            "advertised.listeners" => {
                self.advertised_listeners = Some(string(key, value)?.to_string())
            }
            "ssl.keystore.type" | "ssl.truststore.type" => {
                let kind = string(key, value)?;
                if !kind.eq_ignore_ascii_case("PEM") {
                    return Err(invalid(key, format!("'{kind}': only PEM is supported")));
                }
            }
            "ssl.keystore.location" => {
                self.tls.keystore_location = Some(PathBuf::from(string(key, value)?))
            }
            "ssl.keystore.certificate.chain" => {
                self.tls.keystore_certificate_chain = Some(string(key, value)?.to_string())
            }
            "ssl.keystore.key" => self.tls.keystore_key = Some(string(key, value)?.to_string()),
            "ssl.key.password" | "ssl.keystore.password" => {
                if !string(key, value)?.is_empty() {
                    return Err(invalid(
                        key,
                        "encrypted keys are not supported; give an unencrypted PEM key".into(),
                    ));
                }
            }
            "ssl.truststore.location" => {
                self.tls.truststore_location = Some(PathBuf::from(string(key, value)?))
            }
            "ssl.truststore.certificates" => {
                self.tls.truststore_certificates = Some(string(key, value)?.to_string())
            }
            "ssl.client.auth" => {
                self.tls.client_auth = match string(key, value)? {
                    "none" => ClientAuth::None,
                    "requested" => ClientAuth::Requested,
                    "required" => ClientAuth::Required,
                    other => {
                        return Err(invalid(
                            key,
                            format!("'{other}' is not none, requested or required"),
                        ))
                    }
                }
            }
            "ssl.principal.mapping.rules" => {
                let rules = string(key, value)?;
                crate::auth::principal_rules::PrincipalRules::parse(rules)
                    .map_err(|e| invalid(key, e))?;
                self.tls.principal_mapping_rules = rules.to_string();
            }
            "sasl.enabled.mechanisms" => {
                self.sasl.enabled_mechanisms = string(key, value)?
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect()
            }
            "connections.max.reauth.ms" => {
                self.sasl.max_reauth_ms = int_in(key, value, 0, i64::MAX)?
            }
            "connection.failed.authentication.delay.ms" => {
                self.sasl.failed_delay_ms = int_in(key, value, 0, 60_000)? as u64
            }
            "sasl.failed.authentications.max.per.minute" => {
                self.sasl.max_failures_per_minute = int_in(key, value, 0, 1_000_000)? as u32
            }
            "sasl.oauthbearer.jwks.endpoint.url" => {
                self.sasl.oauth.jwks_url = Some(string(key, value)?.to_string())
            }
            "sasl.oauthbearer.expected.issuer" => {
                self.sasl.oauth.expected_issuer = Some(string(key, value)?.to_string())
            }
            "sasl.oauthbearer.expected.audience" => {
                self.sasl.oauth.expected_audience = string(key, value)?
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect()
            }
            "sasl.oauthbearer.sub.claim.name" => {
                self.sasl.oauth.sub_claim = string(key, value)?.to_string()
            }
            "sasl.oauthbearer.clock.skew.seconds" => {
                self.sasl.oauth.clock_skew_seconds = int_in(key, value, 0, 3600)? as u64
            }
            "http.listen" => self.http_listen = parse_str(key, value)?,
            "http.authentication" => {
                self.http.basic = match string(key, value)? {
                    "basic" => true,
                    "none" => false,
                    other => return Err(invalid(key, format!("'{other}' is not basic or none"))),
                }
            }
            "http.metrics.authentication" => {
                self.http.metrics_authentication = boolean(key, value)?
            }
            "http.ssl.enabled" => self.http.tls = boolean(key, value)?,
            _ if key.starts_with("http.ssl.") => {
                let setting = &key["http.".len()..];
                // Checked now, applied over the broker-wide ssl.* when the listener starts.
                BrokerConfig::defaults()
                    .apply_setting(setting, value)
                    .map_err(|e| match e {
                        ConfigError::UnknownKey { .. } => {
                            invalid(key, format!("unknown setting '{setting}'"))
                        }
                        other => other,
                    })?;
                self.http_tls_overrides
                    .push((setting.to_string(), value.clone()));
            }
            _ if ClusterSettings::is_setting(key) => self
                .cluster_settings
                .apply_toml(key, value)
                .map_err(|e| invalid(key, e.message))?,
            "data.dir" => self.data_dir = PathBuf::from(string(key, value)?),
            "advertised.host" => self.advertised_host = Some(string(key, value)?.to_string()),
            "log.format" => {
                self.log_format = match string(key, value)? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => return Err(invalid(key, format!("'{other}' is not text or json"))),
                }
            }
            "flush" => {
                log.flush = match string(key, value)? {
                    "fsync" => FlushPolicy::Fsync,
                    "page-cache" => FlushPolicy::PageCache,
                    other => {
                        return Err(invalid(
                            key,
                            format!("'{other}' is not fsync or page-cache"),
                        ))
                    }
                }
            }
            _ if key.starts_with("listener.name.") => {
                let rest = &key["listener.name.".len()..];
                let (name, setting) = rest.split_once('.').ok_or_else(|| {
                    invalid(key, "expected listener.name.<listener>.<setting>".into())
                })?;
                let per_listener = setting.starts_with("ssl.")
                    || setting.starts_with("sasl.")
                    || setting == "connections.max.reauth.ms"
                    || setting == "connection.failed.authentication.delay.ms";
                if !per_listener {
                    return Err(invalid(
                        key,
                        format!("'{setting}' cannot be set per listener (ssl.*, sasl.* and connections.max.reauth.ms can)"),
                    ));
                }
                // Checked now, applied per listener when listeners are resolved.
                BrokerConfig::defaults()
                    .apply_setting(setting, value)
                    .map_err(|e| match e {
                        ConfigError::UnknownKey { .. } => {
                            invalid(key, format!("unknown setting '{setting}'"))
                        }
                        other => other,
                    })?;
                self.listener_overrides.push((
                    name.to_lowercase(),
                    setting.to_string(),
                    value.clone(),
                ));
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay =
                    Duration::from_millis(int_in(key, value, 0, i32::MAX as i64)? as u64)
            }
            "group.min.session.timeout.ms" => {
                self.groups.min_session_timeout =
                    Duration::from_millis(int_in(key, value, 1, i32::MAX as i64)? as u64)
            }
            "group.max.session.timeout.ms" => {
                self.groups.max_session_timeout =
                    Duration::from_millis(int_in(key, value, 1, i32::MAX as i64)? as u64)
            }
            "transaction.max.timeout.ms" => {
                self.transactions.max_timeout_ms = int_in(key, value, 1, i32::MAX as i64)? as i32
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transactions.abort_interval_ms = int_in(key, value, 1, i32::MAX as i64)? as u64
            }
            "transactional.id.expiration.ms" => {
                self.transactions.id_expiration_ms = int_in(key, value, 1, i64::MAX)?
            }
            "metrics.enabled" => self.metrics_enabled = boolean(key, value)?,
            "authorizer.class.name" => {
                let name = string(key, value)?.trim();
                if name.is_empty() {
                    self.authorizer.class_name = None;
                } else if crate::acl::ACCEPTED_CLASS_NAMES.contains(&name) {
                    self.authorizer.class_name = Some(name.to_string());
                } else {
                    return Err(invalid(
                        key,
                        format!(
                            "'{name}' is not an authorizer Sluice has (accepted: {})",
                            crate::acl::ACCEPTED_CLASS_NAMES.join(", ")
                        ),
                    ));
                }
            }
            "super.users" => {
                let mut users = Vec::new();
                for user in string(key, value)?.split(';').map(str::trim) {
                    if user.is_empty() {
                        continue;
                    }
                    match user.split_once(':') {
                        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                            users.push(user.to_string())
                        }
                        _ => {
                            return Err(invalid(
                                key,
                                format!("'{user}' is not a principal (User:NAME)"),
                            ))
                        }
                    }
                }
                self.authorizer.super_users = users;
            }
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_everyone_if_no_acl_found = boolean(key, value)?
            }
            "quota.window.num" => self.quota_window.samples = int_in(key, value, 2, 1_000)? as u32,
            "quota.window.size.seconds" => {
                self.quota_window.size = Duration::from_secs(int_in(key, value, 1, 3_600)? as u64)
            }
            "max.connections" => {
                self.connection_limits.max_connections =
                    int_in(key, value, 0, i32::MAX as i64)? as usize
            }
            "max.connections.per.ip" => {
                self.connection_limits.max_per_ip = int_in(key, value, 0, i32::MAX as i64)? as usize
            }
            "max.connections.per.ip.overrides" => {
                self.connection_limits.per_ip_overrides =
                    parse_overrides(string(key, value)?).map_err(|m| invalid(key, m))?
            }
            "queued.max.request.bytes" => {
                let bytes = int_in(key, value, -1, u32::MAX as i64)?;
                self.queued_max_request_bytes = match bytes {
                    -1 => None,
                    0 => {
                        return Err(invalid(
                            key,
                            "0 would admit no request; give -1 (unbounded) or a byte count".into(),
                        ))
                    }
                    n => Some(n as u32),
                };
            }
            "num.partitions" => self.topics.num_partitions = int_in(key, value, 1, 100_000)? as i32,
            "auto.create.topics.enable" => self.topics.auto_create_topics = boolean(key, value)?,
            "socket.request.max.bytes" => {
                self.max_request_bytes = int_in(key, value, 1024, i32::MAX as i64)? as usize
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = int_in(key, value, 1, i64::MAX)? as u64
            }
            "log.segment.bytes" => {
                log.segment_bytes = int_in(key, value, 14, i32::MAX as i64)? as u64
            }
            "log.roll.ms" => log.segment_ms = int_in(key, value, 1, i64::MAX)?,
            "log.roll.hours" => {
                log.segment_ms = int_in(key, value, 1, i32::MAX as i64)? * 3_600_000
            }
            "log.retention.ms" => log.retention_ms = int_in(key, value, -1, i64::MAX)?,
            "log.retention.minutes" => {
                log.retention_ms = int_in(key, value, -1, i32::MAX as i64)?.saturating_mul(60_000)
            }
            "log.retention.hours" => {
                log.retention_ms =
                    int_in(key, value, -1, i32::MAX as i64)?.saturating_mul(3_600_000)
            }
            "log.retention.bytes" => log.retention_bytes = int_in(key, value, -1, i64::MAX)?,
            "log.index.interval.bytes" => {
                log.index_interval_bytes = int_in(key, value, 0, i32::MAX as i64)? as u32
            }
            "log.index.size.max.bytes" => {
                log.segment_index_bytes = int_in(key, value, 4, i32::MAX as i64)? as u32
            }
            "message.max.bytes" => {
                log.max_message_bytes = int_in(key, value, 0, i32::MAX as i64)? as u32
            }
            "log.cleanup.policy" => {
                let text = match value {
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| string(key, i))
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => string(key, other)?.to_owned(),
                };
                log.cleanup_policy =
                    crate::catalog::parse_cleanup_policy(&text).ok_or_else(|| {
                        invalid(key, format!("'{text}' is not compact, delete or both"))
                    })?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                log.min_compaction_lag_ms = int_in(key, value, 0, i64::MAX)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                log.max_compaction_lag_ms = int_in(key, value, 1, i64::MAX)?
            }
            "log.cleaner.delete.retention.ms" => {
                log.delete_retention_ms = int_in(key, value, 0, i64::MAX)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                log.min_cleanable_dirty_ratio = float_in(key, value, 0.0, 1.0)?
            }
            "log.cleaner.enable" => self.cleaner.enable = boolean(key, value)?,
            "log.cleaner.threads" => self.cleaner.threads = int_in(key, value, 1, 64)? as usize,
            "log.cleaner.backoff.ms" => {
                self.cleaner.backoff =
                    Duration::from_millis(int_in(key, value, 1, i64::MAX)? as u64)
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.cleaner.dedupe_buffer_size =
                    usize::try_from(int_in(key, value, 1024, i64::MAX)?).unwrap_or(usize::MAX)
            }
            "log.cleaner.io.max.bytes.per.second" => {
                self.cleaner.io_max_bytes_per_second = float_in(key, value, 1.0, f64::MAX)?
            }
            "log.cleaner.io.buffer.load.factor" => {
                self.cleaner.load_factor = float_in(key, value, 0.1, 1.0)?
            }
            "log.message.timestamp.type" => {
                log.timestamp_type = match string(key, value)? {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(invalid(
                            key,
                            format!("'{other}' is not CreateTime or LogAppendTime"),
                        ))
                    }
                }
            }
            _ => {
                // `compression.type`, `compression.*.level`, `log.message.timestamp.*.max.ms`:
                // the broker defaults of topic configs, validated by the topic config's rules.
                let Some(topic_name) = topic_config_of_broker_setting(key) else {
                    return Err(ConfigError::UnknownKey {
                        path: PathBuf::new(),
                        key: key.to_string(),
                    });
                };
                if !matches!(
                    value,
                    toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_)
                ) {
                    return Err(invalid(
                        key,
                        format!("expected a string or number, got {value}"),
                    ));
                }
                let text = toml_text(value);
                self.topics
                    .set_config_default(topic_name, &text)
                    .map_err(|e| match e {
                        TopicError::InvalidConfig(m) => invalid(key, m),
                        other => invalid(key, other.to_string()),
                    })?;
            }
        }
        Ok(())
    }

    /// The Kafka listeners. Without `listeners`, one PLAINTEXT listener on `kafka_listen`; with
    /// it, `kafka_listen` (when given) replaces the first listener's address, so
    /// `--kafka-listen` keeps meaning "the main listener".
    pub fn resolve_listeners(&self) -> Result<Vec<ListenerConfig>, ConfigError> {
        let Some(spec) = &self.listeners else {
            return Ok(vec![ListenerConfig {
                name: "PLAINTEXT".to_string(),
                protocol: SecurityProtocol::Plaintext,
                bind: self.kafka_listen,
                advertised: None,
                tls: self.tls.clone(),
                sasl: self.sasl.clone(),
            }]);
        };
        let mut map = std::collections::HashMap::new();
        if let Some(text) = &self.protocol_map {
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        format!("'{entry}' is not NAME:PROTOCOL"),
                    )
                })?;
                let protocol = SecurityProtocol::from_name(protocol.trim()).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        format!("'{protocol}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                    )
                })?;
                map.insert(name.trim().to_string(), protocol);
            }
        }
        let mut listeners: Vec<ListenerConfig> = Vec::new();
        for (i, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (name, host, port) = split_listener("listeners", entry)?;
            let protocol = map
                .get(&name)
                .copied()
                .or_else(|| SecurityProtocol::from_name(&name))
                .ok_or_else(|| {
                    invalid(
                        "listeners",
                        format!(
                            "listener '{name}' has no protocol in listener.security.protocol.map"
                        ),
                    )
                })?;
            let bind = if i == 0 && self.kafka_listen_set {
                self.kafka_listen
            } else {
                let ip: std::net::IpAddr = match host.as_str() {
                    "" | "0.0.0.0" => [0, 0, 0, 0].into(),
                    "localhost" => [127, 0, 0, 1].into(),
                    other => other.parse().map_err(|_| {
                        invalid(
                            "listeners",
                            format!("'{entry}': bind to an IP address (or localhost, or nothing for all interfaces)"),
                        )
                    })?,
                };
                SocketAddr::new(ip, port)
            };
            if listeners.iter().any(|l| l.name == name) {
                return Err(invalid(
                    "listeners",
                    format!("listener '{name}' is named twice"),
                ));
            }
            let (tls, sasl) = self.listener_security(&name)?;
            listeners.push(ListenerConfig {
                name,
                protocol,
                bind,
                advertised: None,
                tls,
                sasl,
            });
        }
        if listeners.is_empty() {
            return Err(invalid("listeners", "no listener given".into()));
        }
        if let Some(text) = &self.advertised_listeners {
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (name, host, port) = split_listener("advertised.listeners", entry)?;
                let listener = listeners
                    .iter_mut()
                    .find(|l| l.name == name)
                    .ok_or_else(|| {
                        invalid(
                            "advertised.listeners",
                            format!("'{name}' is not one of the listeners"),
                        )
                    })?;
                listener.advertised = Some((host, port));
            }
        }
        for l in &listeners {
            if l.protocol.uses_tls()
                && l.tls.keystore_location.is_none()
                && l.tls.keystore_certificate_chain.is_none()
            {
                return Err(invalid(
                    "listeners",
                    format!("listener {} ({}) needs ssl.keystore.location or ssl.keystore.certificate.chain and ssl.keystore.key", l.name, l.protocol.name()),
                ));
            }
        }
        Ok(listeners)
    }

    /// The TLS and SASL settings of listener `name`: the broker-wide ones with its
    /// `listener.name.<name>.*` overrides applied.
    /// The HTTP listener's TLS settings: the broker-wide `ssl.*` with the `http.ssl.*` ones over
    /// them. Client certificates are never asked for on HTTP (Basic authentication names users).
    pub fn http_tls(&self) -> Result<TlsSettings, ConfigError> {
        let mut scoped = self.clone();
        for (setting, value) in &self.http_tls_overrides {
            scoped.apply_setting(setting, value)?;
        }
        let mut tls = scoped.tls;
        tls.client_auth = ClientAuth::None;
        Ok(tls)
    }

    fn listener_security(&self, name: &str) -> Result<(TlsSettings, SaslSettings), ConfigError> {
        let lower = name.to_lowercase();
        let mut scoped = self.clone();
        for (listener, setting, value) in &self.listener_overrides {
            if *listener == lower {
                scoped.apply_setting(setting, value)?;
            }
        }
        Ok((scoped.tls, scoped.sasl))
    }

    /// The host advertised for a listener bound at `bound` without an `advertised.listeners`
    /// entry: `advertised.host` if set, else the bound IP (loopback for a wildcard bind).
    pub fn advertised_host_for(&self, bound: SocketAddr) -> String {
        match &self.advertised_host {
            Some(host) => host.clone(),
            None if bound.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => bound.ip().to_string(),
        }
    }

    /// The host clients are told to connect to.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(host) => host.clone(),
            None if self.kafka_listen.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => self.kafka_listen.ip().to_string(),
        }
    }
}

/// A TOML value as `server.properties` would spell it.
fn toml_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    }
}

/// `NAME://host:port` (host may be empty or a bracketed IPv6 address).
fn split_listener(key: &str, entry: &str) -> Result<(String, String, u16), ConfigError> {
    let bad = || invalid(key, format!("'{entry}' is not NAME://host:port"));
    let (name, address) = entry.split_once("://").ok_or_else(bad)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), host.to_string(), port))
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message,
    }
}

fn string<'a>(key: &str, value: &'a toml::Value) -> Result<&'a str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| invalid(key, format!("expected a string, got {value}")))
}

fn parse_str<T: std::str::FromStr>(key: &str, value: &toml::Value) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let text = string(key, value)?;
    text.parse()
        .map_err(|e| invalid(key, format!("'{text}': {e}")))
}

fn boolean(key: &str, value: &toml::Value) -> Result<bool, ConfigError> {
    match value {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) if s == "true" => Ok(true),
        toml::Value::String(s) if s == "false" => Ok(false),
        other => Err(invalid(key, format!("expected true or false, got {other}"))),
    }
}

/// A number (or a string holding one) within `[min, max]`.
fn float_in(key: &str, value: &toml::Value, min: f64, max: f64) -> Result<f64, ConfigError> {
    let n = match value {
        toml::Value::Float(n) => *n,
        toml::Value::Integer(n) => *n as f64,
        toml::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(key, format!("'{s}' is not a number")))?,
        other => return Err(invalid(key, format!("expected a number, got {other}"))),
    };
    if !(min..=max).contains(&n) {
        return Err(invalid(key, format!("{n} is outside [{min}, {max}]")));
    }
    Ok(n)
}

/// An integer (or a string holding one, as in `server.properties`) within `[min, max]`.
fn int_in(key: &str, value: &toml::Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n = match value {
        toml::Value::Integer(n) => *n,
        toml::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(key, format!("'{s}' is not an integer")))?,
        other => return Err(invalid(key, format!("expected an integer, got {other}"))),
    };
    if n < min || n > max {
        return Err(invalid(key, format!("{n} is outside [{min}, {max}]")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::defaults();
        config.apply_toml(Path::new("sluice.toml"), text)?;
        Ok(config)
    }

    #[test]
    fn toml_uses_kafka_broker_names() {
        let config = load_text(
            "\"num.partitions\" = 3\n\"log.segment.bytes\" = \"1048576\"\n\"auto.create.topics.enable\" = false\n\"log.retention.hours\" = 1\n",
        )
        .unwrap();
        assert_eq!(config.topics.num_partitions, 3);
        assert_eq!(config.topics.log.segment_bytes, 1_048_576);
        assert!(!config.topics.auto_create_topics);
        assert_eq!(config.topics.log.retention_ms, 3_600_000);
    }

    #[test]
    fn topic_config_defaults_use_kafka_broker_names_and_topic_rules() {
        let config = load_text(
            "\"compression.type\" = \"zstd\"\n\"compression.zstd.level\" = 7\n\"log.message.timestamp.before.max.ms\" = \"3600000\"\n",
        )
        .unwrap();
        let configs = &config.topics.configs;
        assert_eq!(configs["compression.type"], "zstd");
        assert_eq!(configs["compression.zstd.level"], "7");
        assert_eq!(configs["message.timestamp.before.max.ms"], "3600000");
        let named = |topic: &str| config.topics.static_settings.get(topic).cloned();
        assert_eq!(
            named("compression.zstd.level"),
            Some(("compression.zstd.level".into(), "7".into()))
        );
        let hours =
            load_text("\"log.roll.hours\" = 2\n\"log.segment.bytes\" = \"1048576\"\n").unwrap();
        let named = |topic: &str| hours.topics.static_settings.get(topic).cloned();
        assert_eq!(
            named("segment.ms"),
            Some(("log.roll.hours".into(), "2".into()))
        );
        assert_eq!(
            named("segment.bytes"),
            Some(("log.segment.bytes".into(), "1048576".into()))
        );
        assert_eq!(named("retention.ms"), None);
        for bad in [
            "\"compression.type\" = \"brotli\"\n",
            "\"compression.gzip.level\" = 10\n",
            "\"log.message.timestamp.after.max.ms\" = -1\n",
        ] {
            let err = load_text(bad).unwrap_err().to_string();
            let key = bad.split('"').nth(1).unwrap();
            assert!(err.contains(key) && err.contains("Invalid value"), "{err}");
        }
    }

    #[test]
    fn cleaner_settings_use_kafka_names() {
        let config = load_text(
            "\"log.cleanup.policy\" = \"compact,delete\"\n\"log.cleaner.threads\" = 2\n\"log.cleaner.dedupe.buffer.size\" = 1048576\n\"log.cleaner.io.max.bytes.per.second\" = 1e6\n\"log.cleaner.backoff.ms\" = 50\n\"log.cleaner.enable\" = false\n\"log.cleaner.min.cleanable.ratio\" = 0.1\n\"log.cleaner.delete.retention.ms\" = 10\n\"log.cleaner.min.compaction.lag.ms\" = 5\n",
        )
        .unwrap();
        let log = &config.topics.log;
        assert!(log.cleanup_policy.compact && log.cleanup_policy.delete);
        assert_eq!(config.cleaner.threads, 2);
        assert_eq!(config.cleaner.dedupe_buffer_size, 1 << 20);
        assert_eq!(config.cleaner.io_max_bytes_per_second, 1e6);
        assert_eq!(config.cleaner.backoff, Duration::from_millis(50));
        assert!(!config.cleaner.enable);
        assert_eq!(log.min_cleanable_dirty_ratio, 0.1);
        assert_eq!(log.delete_retention_ms, 10);
        assert_eq!(log.min_compaction_lag_ms, 5);
        assert!(load_text("\"log.cleanup.policy\" = \"shred\"\n").is_err());
        assert!(load_text("\"log.cleaner.min.cleanable.ratio\" = 2\n").is_err());
    }

    #[test]
    fn quota_and_connection_settings_use_kafka_names() {
        let config = load_text(
            r#"
"quota.window.num" = 5
"quota.window.size.seconds" = 2
"max.connections" = 100
"max.connections.per.ip" = 3
"max.connections.per.ip.overrides" = "127.0.0.2:10"
"queued.max.request.bytes" = 1048576
"#,
        )
        .unwrap();
        assert_eq!(config.quota_window.samples, 5);
        assert_eq!(config.quota_window.size, Duration::from_secs(2));
        assert_eq!(config.connection_limits.max_connections, 100);
        assert_eq!(config.connection_limits.max_per_ip, 3);
        assert_eq!(config.connection_limits.per_ip_overrides.len(), 1);
        assert_eq!(config.queued_max_request_bytes, Some(1_048_576));
        let defaults = BrokerConfig::defaults();
        assert_eq!(defaults.queued_max_request_bytes, None);
        assert_eq!(defaults.connection_limits.max_per_ip, i32::MAX as usize);
        assert!(load_text("\"queued.max.request.bytes\" = 0").is_err());
        assert!(load_text("\"max.connections.per.ip.overrides\" = \"somehost:4\"").is_err());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_text("\"num.partitons\" = 3\n").unwrap_err();
        assert!(err.to_string().contains("num.partitons"), "{err}");
        assert!(err.to_string().contains("sluice.toml"), "{err}");
    }

    #[test]
    fn out_of_range_value_is_refused() {
        let err = load_text("\"num.partitions\" = 0\n").unwrap_err();
        assert!(err.to_string().contains("num.partitions"), "{err}");
    }

    #[test]
    fn listeners_resolve_names_protocols_and_advertised_addresses() {
        let config = load_text(
            "\"listeners\" = \"PLAINTEXT://127.0.0.1:9092,INTERNAL://:9093,SASL_PLAINTEXT://localhost:0\"\n\"listener.security.protocol.map\" = \"INTERNAL:SASL_PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT\"\n\"advertised.listeners\" = \"INTERNAL://broker.internal:19093\"\n",
        )
        .unwrap();
        let listeners = config.resolve_listeners().unwrap();
        assert_eq!(listeners.len(), 3);
        assert_eq!(listeners[1].name, "INTERNAL");
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(listeners[1].bind, "0.0.0.0:9093".parse().unwrap());
        assert_eq!(
            listeners[1].advertised,
            Some(("broker.internal".to_string(), 19093))
        );
        assert_eq!(listeners[2].bind, "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn listener_name_settings_override_the_broker_wide_ones() {
        let config = load_text(
            "\"listeners\" = \"SSL://127.0.0.1:0,MTLS://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0\"\n\"listener.security.protocol.map\" = \"SSL:SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT\"\n\"ssl.keystore.location\" = \"/k.pem\"\n\"listener.name.mtls.ssl.client.auth\" = \"required\"\n\"listener.name.sasl_plaintext.sasl.enabled.mechanisms\" = \"PLAIN\"\n",
        )
        .unwrap();
        let listeners = config.resolve_listeners().unwrap();
        assert_eq!(listeners[0].tls.client_auth, ClientAuth::None);
        assert_eq!(listeners[1].tls.client_auth, ClientAuth::Required);
        assert_eq!(listeners[2].sasl.enabled_mechanisms, ["PLAIN"]);
        assert_eq!(listeners[0].sasl.enabled_mechanisms.len(), 3);
        for (text, needle) in [
            (
                "\"listener.name.x.num.partitions\" = 3\n",
                "cannot be set per listener",
            ),
            (
                "\"listener.name.x.ssl.nonsense\" = 3\n",
                "unknown setting 'ssl.nonsense'",
            ),
            (
                "\"listener.name.x.ssl.client.auth\" = \"sometimes\"\n",
                "requested",
            ),
        ] {
            let err = load_text(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn listener_mistakes_are_named() {
        for (text, needle) in [
            ("\"listeners\" = \"FOO://127.0.0.1:1\"\n", "FOO"),
            ("\"listeners\" = \"PLAINTEXT//127.0.0.1:1\"\n", "NAME://host:port"),
            ("\"listeners\" = \"SSL://127.0.0.1:1\"\n", "ssl.keystore"),
            ("\"listeners\" = \"PLAINTEXT://example.com:1\"\n", "IP address"),
            ("\"listeners\" = \"PLAINTEXT://127.0.0.1:1\"\n\"advertised.listeners\" = \"SSL://h:1\"\n", "SSL"),
        ] {
            let err = load_text(text).unwrap().resolve_listeners().unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn security_settings_are_checked_when_read() {
        for (text, needle) in [
            ("\"ssl.keystore.type\" = \"JKS\"\n", "only PEM"),
            ("\"ssl.client.auth\" = \"maybe\"\n", "requested"),
            ("\"ssl.key.password\" = \"x\"\n", "unencrypted"),
            ("\"ssl.principal.mapping.rules\" = \"RULE:x\"\n", "'/'"),
        ] {
            let err = load_text(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let config = load_text(
            "\"sasl.enabled.mechanisms\" = \"SCRAM-SHA-512, PLAIN\"\n\"connections.max.reauth.ms\" = 60000\n",
        )
        .unwrap();
        assert_eq!(config.sasl.enabled_mechanisms, ["SCRAM-SHA-512", "PLAIN"]);
        assert_eq!(config.sasl.max_reauth_ms, 60_000);
    }

    #[test]
    fn http_security_settings_overlay_the_kafka_keystore() {
        let config = load_text(
            "\"ssl.keystore.location\" = \"/kafka.pem\"\n\"ssl.client.auth\" = \"required\"\n\"http.ssl.enabled\" = true\n\"http.authentication\" = \"basic\"\n",
        )
        .unwrap();
        assert!(config.http.tls && config.http.basic && !config.http.metrics_authentication);
        let tls = config.http_tls().unwrap();
        assert_eq!(tls.keystore_location, Some(PathBuf::from("/kafka.pem")));
        assert_eq!(tls.client_auth, ClientAuth::None);
        let own = load_text("\"http.ssl.keystore.location\" = \"/http.pem\"\n").unwrap();
        assert_eq!(
            own.http_tls().unwrap().keystore_location,
            Some(PathBuf::from("/http.pem"))
        );
        let err = load_text("\"http.authentication\" = \"digest\"\n").unwrap_err();
        assert!(err.to_string().contains("basic or none"), "{err}");
        let err = load_text("\"http.ssl.nonsense\" = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown setting"), "{err}");
    }

    #[test]
    fn authorizer_settings_accept_kafkas_class_names_only() {
        let config = load_text(
            "\"authorizer.class.name\" = \"kafka.security.authorizer.AclAuthorizer\"\n\"super.users\" = \"User:admin; User:ops\"\n\"allow.everyone.if.no.acl.found\" = true\n",
        )
        .unwrap();
        assert!(config.authorizer.class_name.is_some());
        assert_eq!(config.authorizer.super_users, ["User:admin", "User:ops"]);
        assert!(config.authorizer.allow_everyone_if_no_acl_found);
        assert!(BrokerConfig::defaults().authorizer.class_name.is_none());
        let err = load_text("\"authorizer.class.name\" = \"com.example.Mine\"\n").unwrap_err();
        assert!(err.to_string().contains("StandardAuthorizer"), "{err}");
        let err = load_text("\"super.users\" = \"admin\"\n").unwrap_err();
        assert!(err.to_string().contains("User:NAME"), "{err}");
    }

    #[test]
    fn cluster_mode_from_file_and_flags() {
        assert!(BrokerConfig::load(None, Overrides::default())
            .unwrap()
            .cluster
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "metadata = \"postgres://file@h/db\"\n\"cluster.lease.ms\" = 4000\n",
        )
        .unwrap();
        let err = BrokerConfig::load(Some(&file), Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("--metadata needs --objects"),
            "{err}"
        );
        let config = BrokerConfig::load(
            Some(&file),
            Overrides {
                metadata: Some("postgres://flag@h/db".into()),
                objects: Some("memory://".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.metadata_url.user, "flag");
        assert_eq!(cluster.lease_ms, 4000);
        let err = load_text("\"cluster.lease.ms\" = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("'cluster.lease.ms'"), "{err}");
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "\"kafka.listen\" = \"127.0.0.1:1111\"\n\"flush\" = \"page-cache\"\n",
        )
        .unwrap();
        let config = BrokerConfig::load(
            Some(&file),
            Overrides {
                kafka_listen: Some("127.0.0.1:2222".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.kafka_listen.port(), 2222);
        assert_eq!(config.topics.log.flush, FlushPolicy::PageCache);
    }
}
