//! `--metadata` and `--objects`: parsing and checking the cluster-mode settings.
//!
//! The settings arrive one by one (TOML keys `metadata`, `objects`, `cluster.*`, then the flags
//! and their `SLUICE_*` variables) into [`ClusterSettings`]; [`ClusterSettings::resolve`] turns
//! them into a checked [`ClusterConfig`], or `None` when cluster mode is off.

use std::fmt;

use percent_encoding::percent_decode_str;

/// Why a cluster setting was refused; `setting` is its TOML name (`metadata`, `objects`,
/// `cluster.lease.ms`, ...), the caller maps it to its own error for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting '{setting}': {message}")]
pub struct ClusterConfigError {
    pub setting: String,
    pub message: String,
}

fn refuse(setting: &str, message: impl Into<String>) -> ClusterConfigError {
    ClusterConfigError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

// Defaults. The linger is the WarpStream-like trade-off at the heart of cluster mode: a broker
// holds produced batches (of every partition) until the linger deadline or the size limit, then
// writes one object and commits it in one transaction. A longer linger means fewer, larger
// objects (fewer PUTs to pay for, fewer coordinate rows, cheaper reads) but an acks=all produce
// waits for it on top of the PUT and the commit. 250 ms keeps the produce latency well under a
// second while bounding PUTs to 4 a second per broker under any load.
/// `cluster.upload.linger.ms`.
pub const DEFAULT_UPLOAD_LINGER_MS: u64 = 250;
/// `cluster.upload.max.bytes`: 8 MiB uploads at once, before the linger deadline: large enough
/// that the PUT's fixed cost is amortised, small enough that a busy broker's buffer stays small
/// and one upload's PUT stays around a second even on a slow link.
pub const DEFAULT_UPLOAD_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// `cluster.lease.ms`: how long a broker's registration lives without renewal. Like Kafka's
/// broker session timeout (9 s): a crashed broker's leadership moves within seconds, yet a GC
/// pause or a slow database round trip does not cost a live broker its lease.
pub const DEFAULT_LEASE_MS: u64 = 10_000;
/// `cluster.cache.bytes`: the read cache of object ranges (fetches of recent data are served
/// from it instead of ranged GETs).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Bounds, checked with messages naming the setting.
const MAX_UPLOAD_LINGER_MS: u64 = 60_000;
const MIN_UPLOAD_MAX_BYTES: u64 = 1024;
/// A single S3 PUT takes at most 5 GiB.
const MAX_UPLOAD_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
const MIN_LEASE_MS: u64 = 100;
const MAX_LEASE_MS: u64 = 3_600_000;
/// Rounds of maintenance closer than a second would only spin on the database; a day apart,
/// uncommitted objects and small-object merges pile up for a day.
const MIN_MAINTENANCE_INTERVAL_MS: u64 = 1_000;
const MAX_MAINTENANCE_INTERVAL_MS: u64 = 86_400_000;

/// Everything cluster mode runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `--metadata`: the PostgreSQL database (sequencer and metadata store).
    pub metadata_url: MetadataUrl,
    /// `--objects`: where record batches are stored.
    pub objects_url: ObjectsUrl,
    /// `cluster.upload.linger.ms`: the longest a produced batch waits for its upload.
    pub upload_linger_ms: u64,
    /// `cluster.upload.max.bytes`: an upload starts once this much is buffered.
    pub upload_max_bytes: u64,
    /// `cluster.lease.ms`: a broker's registration lapses after this long without renewal.
    pub lease_ms: u64,
    /// `cluster.cache.bytes`: the bound of the read cache of object ranges (0: no cache).
    pub cache_bytes: u64,
    /// `cluster.maintenance.interval.ms`: between rounds of retention, merging and collection.
    pub maintenance_interval_ms: u64,
    /// `cluster.rack` (or Kafka's `broker.rack`): the rack or zone this broker is in, shown in
    /// Metadata; leaders and read replicas are spread over racks.
    pub rack: Option<String>,
}

impl fmt::Display for ClusterConfig {
    /// One line for the startup log, passwords redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata={} objects={} cluster.upload.linger.ms={} cluster.upload.max.bytes={} \
             cluster.lease.ms={} cluster.cache.bytes={} cluster.maintenance.interval.ms={}",
            self.metadata_url,
            self.objects_url,
            self.upload_linger_ms,
            self.upload_max_bytes,
            self.lease_ms,
            self.cache_bytes,
            self.maintenance_interval_ms
        )?;
        if let Some(rack) = &self.rack {
            write!(f, " cluster.rack={rack}")?;
        }
        Ok(())
    }
}

/// The cluster settings as given so far; later ones (flags) replace earlier ones (the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    pub metadata: Option<String>,
    pub objects: Option<String>,
    pub upload_linger_ms: Option<u64>,
    pub upload_max_bytes: Option<u64>,
    pub lease_ms: Option<u64>,
    pub cache_bytes: Option<u64>,
    pub maintenance_interval_ms: Option<u64>,
    pub rack: Option<String>,
}

/// The longest rack name accepted: room for any zone name, short enough for every Metadata.
const MAX_RACK_LEN: usize = 255;

/// Checks a rack name: not empty, at most [`MAX_RACK_LEN`] bytes, no control characters.
fn check_rack(rack: &str) -> Result<(), String> {
    if rack.trim().is_empty() {
        return Err("is empty; leave it out for no rack".into());
    }
    if rack.len() > MAX_RACK_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_RACK_LEN}",
            rack.len()
        ));
    }
    if rack.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(())
}

impl ClusterSettings {
    /// Whether `key` is a cluster setting of the TOML file.
    pub fn is_setting(key: &str) -> bool {
        matches!(key, "metadata" | "objects" | "broker.rack") || key.starts_with("cluster.")
    }

    /// Applies one TOML `key = value` (a key for which [`ClusterSettings::is_setting`] holds).
    pub fn apply_toml(&mut self, key: &str, value: &toml::Value) -> Result<(), ClusterConfigError> {
        let text = || match value {
            toml::Value::String(s) => Ok(s.clone()),
            other => Err(refuse(key, format!("expected a string, got {other}"))),
        };
        let number = || match value {
            toml::Value::Integer(n) => u64::try_from(*n)
                .map_err(|_| refuse(key, format!("{n} is negative; expected a count"))),
            toml::Value::String(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| refuse(key, format!("'{s}' is not a non-negative integer"))),
            other => Err(refuse(key, format!("expected an integer, got {other}"))),
        };
        match key {
            "metadata" => self.metadata = Some(text()?),
            "objects" => self.objects = Some(text()?),
            "cluster.upload.linger.ms" => self.upload_linger_ms = Some(number()?),
            "cluster.upload.max.bytes" => self.upload_max_bytes = Some(number()?),
            "cluster.lease.ms" => self.lease_ms = Some(number()?),
            "cluster.cache.bytes" => self.cache_bytes = Some(number()?),
            "cluster.maintenance.interval.ms" => self.maintenance_interval_ms = Some(number()?),
            // Kafka's name for it is accepted too, so a Kafka broker's file carries over.
            "cluster.rack" | "broker.rack" => self.rack = Some(text()?),
            _ => {
                return Err(refuse(
                    key,
                    "unknown cluster setting (cluster.upload.linger.ms, cluster.upload.max.bytes, \
                     cluster.lease.ms, cluster.cache.bytes, cluster.maintenance.interval.ms and \
                     cluster.rack are)",
                ))
            }
        }
        Ok(())
    }

    /// The checked configuration: `None` without `metadata` and `objects` (single-node mode);
    /// an error when only one of them is given, when a `cluster.*` setting is given without
    /// them, or when a value is out of range.
    pub fn resolve(&self) -> Result<Option<ClusterConfig>, ClusterConfigError> {
        let tuned = [
            ("cluster.upload.linger.ms", self.upload_linger_ms),
            ("cluster.upload.max.bytes", self.upload_max_bytes),
            ("cluster.lease.ms", self.lease_ms),
            ("cluster.cache.bytes", self.cache_bytes),
            (
                "cluster.maintenance.interval.ms",
                self.maintenance_interval_ms,
            ),
        ];
        let (metadata, objects) = match (&self.metadata, &self.objects) {
            (None, None) => {
                let rack = self.rack.as_ref().map(|_| ("cluster.rack", Some(0_u64)));
                if let Some((setting, _)) = tuned.iter().chain(&rack).find(|(_, v)| v.is_some()) {
                    return Err(refuse(
                        setting,
                        "only applies in cluster mode: give --metadata and --objects too",
                    ));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(refuse(
                    "objects",
                    "--metadata needs --objects (s3://BUCKET?endpoint=URL&region=R): cluster \
                     mode stores record batches in an object store",
                ))
            }
            (None, Some(_)) => {
                return Err(refuse(
                    "metadata",
                    "--objects needs --metadata (postgres://USER:PASS@HOST:PORT/DB): cluster \
                     mode keeps offsets and metadata in PostgreSQL",
                ))
            }
            (Some(m), Some(o)) => (m, o),
        };
        let config = ClusterConfig {
            metadata_url: MetadataUrl::parse(metadata).map_err(|m| refuse("metadata", m))?,
            objects_url: ObjectsUrl::parse(objects).map_err(|m| refuse("objects", m))?,
            upload_linger_ms: self.upload_linger_ms.unwrap_or(DEFAULT_UPLOAD_LINGER_MS),
            upload_max_bytes: self.upload_max_bytes.unwrap_or(DEFAULT_UPLOAD_MAX_BYTES),
            lease_ms: self.lease_ms.unwrap_or(DEFAULT_LEASE_MS),
            cache_bytes: self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES),
            maintenance_interval_ms: self
                .maintenance_interval_ms
                .unwrap_or(crate::cluster::maintenance::DEFAULT_INTERVAL_MS),
            rack: self.rack.clone(),
        };
        if let Some(rack) = &config.rack {
            check_rack(rack).map_err(|m| refuse("cluster.rack", format!("'{rack}' {m}")))?;
        }
        in_range(
            "cluster.upload.linger.ms",
            config.upload_linger_ms,
            0,
            MAX_UPLOAD_LINGER_MS,
        )?;
        in_range(
            "cluster.upload.max.bytes",
            config.upload_max_bytes,
            MIN_UPLOAD_MAX_BYTES,
            MAX_UPLOAD_MAX_BYTES,
        )?;
        in_range(
            "cluster.lease.ms",
            config.lease_ms,
            MIN_LEASE_MS,
            MAX_LEASE_MS,
        )?;
        in_range(
            "cluster.maintenance.interval.ms",
            config.maintenance_interval_ms,
            MIN_MAINTENANCE_INTERVAL_MS,
            MAX_MAINTENANCE_INTERVAL_MS,
        )?;
        // An upload that lingers past the lease would be committed by a broker that may have
        // lost its lease meanwhile: every upload would be fenced.
        if config.upload_linger_ms >= config.lease_ms {
            return Err(refuse(
                "cluster.upload.linger.ms",
                format!(
                    "{} must be below cluster.lease.ms ({}): an upload must commit within the \
                     broker's lease",
                    config.upload_linger_ms, config.lease_ms
                ),
            ));
        }
        Ok(Some(config))
    }
}

fn in_range(setting: &str, value: u64, min: u64, max: u64) -> Result<(), ClusterConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(refuse(
            setting,
            format!("{value} is out of range [{min}, {max}]"),
        ))
    }
}

/// A password: never printed, by `Debug` nor `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `postgres://USER[:PASS]@HOST[:PORT]/DB` (or `postgresql://`), user and password
/// percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataUrl {
    pub user: String,
    pub password: Option<Secret>,
    pub host: String,
    /// 5432 when the URL names none.
    pub port: u16,
    pub database: String,
}

impl MetadataUrl {
    pub fn parse(text: &str) -> Result<MetadataUrl, String> {
        let form = "expected postgres://USER:PASS@HOST[:PORT]/DB";
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or_else(|| format!("'{}' is not a postgres:// URL; {form}", redact(text)))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "'{}': query parameters are not supported; {form}",
                redact(text)
            ));
        }
        // The password may contain '@' or '/' only percent-encoded; the last '@' ends it.
        let (userinfo, location) = rest
            .rsplit_once('@')
            .ok_or_else(|| format!("'{}' names no user; {form}", redact(text)))?;
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let user = decode(user).map_err(|e| format!("the user: {e}"))?;
        if user.is_empty() {
            return Err(format!("'{}' names no user; {form}", redact(text)));
        }
        let password = password
            .map(|p| decode(p).map(Secret))
            .transpose()
            .map_err(|e| format!("the password: {e}"))?;
        let (hostport, database) = location
            .split_once('/')
            .ok_or_else(|| format!("'{}' names no database; {form}", redact(text)))?;
        let database = decode(database).map_err(|e| format!("the database: {e}"))?;
        if database.is_empty() || database.contains('/') {
            return Err(format!(
                "'{}': '{database}' is not a database name; {form}",
                redact(text)
            ));
        }
        let (host, port) = split_host_port(hostport, 5432)
            .map_err(|e| format!("'{}': {e}; {form}", redact(text)))?;
        Ok(MetadataUrl {
            user,
            password,
            host,
            port,
            database,
        })
    }

    /// The connection settings for `tokio-postgres` (and `deadpool-postgres`).
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.user)
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .application_name("sluice");
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config
    }
}

impl fmt::Display for MetadataUrl {
    /// The URL with its password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_some() { ":***" } else { "" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}{password}@{host}:{}/{}",
            self.user, self.port, self.database
        )
    }
}

/// Where record batches are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectsUrl {
    /// `s3://BUCKET?endpoint=URL&region=R`; credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    S3 {
        bucket: String,
        /// `http(s)://host[:port]` of an S3-compatible store; `None` is AWS itself.
        endpoint: Option<String>,
        /// The region requests are signed for; `us-east-1` when not given (what
        /// S3-compatible stores accept).
        region: String,
    },
    /// `memory://`: a store in this process, gone when it exits. For tests only: with several
    /// brokers, each has its own.
    Memory,
}

impl ObjectsUrl {
    pub fn parse(text: &str) -> Result<ObjectsUrl, String> {
        let form = "expected s3://BUCKET?endpoint=URL&region=R or memory://";
        if text == "memory://" {
            return Ok(ObjectsUrl::Memory);
        }
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{text}' is not an s3:// or memory:// URL; {form}"))?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        check_bucket(bucket).map_err(|e| format!("'{text}': {e}; {form}"))?;
        let mut endpoint = None;
        let mut region = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{text}': '{pair}' is not NAME=VALUE; {form}"))?;
            let value = decode(value).map_err(|e| format!("'{text}': {name}: {e}"))?;
            let slot = match name {
                "endpoint" => &mut endpoint,
                "region" => &mut region,
                other => {
                    return Err(format!(
                        "'{text}': unknown parameter '{other}' (endpoint and region are known)"
                    ))
                }
            };
            if slot.replace(value).is_some() {
                return Err(format!("'{text}': '{name}' is given twice"));
            }
        }
        if let Some(url) = &endpoint {
            check_endpoint(url).map_err(|e| format!("'{text}': endpoint '{url}' {e}"))?;
        }
        let region = region.unwrap_or_else(|| "us-east-1".to_string());
        if region.is_empty() {
            return Err(format!("'{text}': region is empty"));
        }
        Ok(ObjectsUrl::S3 {
            bucket: bucket.to_string(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region,
        })
    }
}

impl fmt::Display for ObjectsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectsUrl::Memory => f.write_str("memory://"),
            ObjectsUrl::S3 {
                bucket,
                endpoint: Some(endpoint),
                region,
            } => write!(f, "s3://{bucket}?endpoint={endpoint}&region={region}"),
            ObjectsUrl::S3 {
                bucket,
                endpoint: None,
                region,
            } => write!(f, "s3://{bucket}?region={region}"),
        }
    }
}

/// S3's bucket naming rules (3-63 lower-case letters, digits, dots and hyphens, starting and
/// ending with a letter or digit).
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket".into());
    }
    let allowed = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let edges = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !allowed
        || !edges(bucket.bytes().next())
        || !edges(bucket.bytes().last())
    {
        return Err(format!(
            "'{bucket}' is not a bucket name (3-63 lower-case letters, digits, dots, hyphens)"
        ));
    }
    Ok(())
}

/// `http(s)://HOST[:PORT]`, nothing after but a `/`.
fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("is not an http:// or https:// URL")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err("must be http(s)://HOST[:PORT], without a path".into());
    }
    split_host_port(rest, 80).map(|_| ())
}

/// `host`, `host:port` or `[v6]:port`.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an unclosed '[' in the host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("junk after the ']' of the host")?,
                ),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("'{p}' is not a port")),
        },
    };
    Ok((host.to_string(), port))
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "not UTF-8 once percent-decoded".to_string())
}

/// `text` with whatever stands between `://USER:` and `@` replaced, for error messages about a
/// URL that could not be parsed (and so may hold a password anywhere).
fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, location)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{location}"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(metadata: &str, objects: &str) -> ClusterSettings {
        ClusterSettings {
            metadata: Some(metadata.into()),
            objects: Some(objects.into()),
            ..ClusterSettings::default()
        }
    }

    const PG: &str = "postgres://sluice:s3cr%40t@db.example:6543/meta";
    const S3: &str = "s3://batches?endpoint=http://127.0.0.1:8333&region=eu-west-1";

    #[test]
    fn no_metadata_and_no_objects_is_single_node_mode() {
        assert_eq!(ClusterSettings::default().resolve(), Ok(None));
    }

    #[test]
    fn parses_both_urls_and_fills_defaults() {
        let config = settings(PG, S3).resolve().unwrap().unwrap();
        let m = &config.metadata_url;
        assert_eq!(
            (
                m.user.as_str(),
                m.host.as_str(),
                m.port,
                m.database.as_str()
            ),
            ("sluice", "db.example", 6543, "meta")
        );
        assert_eq!(m.password.as_ref().map(Secret::expose), Some("s3cr@t"));
        assert_eq!(
            config.objects_url,
            ObjectsUrl::S3 {
                bucket: "batches".into(),
                endpoint: Some("http://127.0.0.1:8333".into()),
                region: "eu-west-1".into()
            }
        );
        assert_eq!(config.upload_linger_ms, DEFAULT_UPLOAD_LINGER_MS);
        assert_eq!(config.upload_max_bytes, DEFAULT_UPLOAD_MAX_BYTES);
        assert_eq!(config.lease_ms, DEFAULT_LEASE_MS);
        assert_eq!(config.cache_bytes, DEFAULT_CACHE_BYTES);
    }

    #[test]
    fn metadata_url_forms() {
        let m = MetadataUrl::parse("postgresql://postgres@127.0.0.1/postgres").unwrap();
        assert_eq!((m.port, m.password.is_none()), (5432, true));
        let m = MetadataUrl::parse("postgres://u:p@[::1]:5433/db").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("::1", 5433));
        assert_eq!(m.to_string(), "postgres://u:***@[::1]:5433/db");
        let pg = m.pg_config();
        assert_eq!(pg.get_user(), Some("u"));
        assert_eq!(pg.get_password(), Some(&b"p"[..]));
        assert_eq!(pg.get_dbname(), Some("db"));
        assert_eq!(pg.get_ports(), [5433]);
    }

    #[test]
    fn bad_metadata_urls_are_refused_with_the_password_hidden() {
        for (url, says) in [
            ("mysql://u:hunter2@h/db", "not a postgres:// URL"),
            ("postgres://u:hunter2@h", "names no database"),
            ("postgres://h/db", "names no user"),
            ("postgres://u:hunter2@h:99999/db", "not a port"),
            ("postgres://u:hunter2@h:0/db", "not a port"),
            ("postgres://u:hunter2@:5432/db", "no host"),
            (
                "postgres://u:hunter2@h/db?sslmode=require",
                "query parameters",
            ),
            ("postgres://u:hunter2@h/", "not a database name"),
        ] {
            let err = settings(url, S3).resolve().unwrap_err();
            assert_eq!(err.setting, "metadata", "{url}");
            let message = err.to_string();
            assert!(message.contains(says), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
        }
    }

    #[test]
    fn objects_url_forms() {
        assert_eq!(ObjectsUrl::parse("memory://"), Ok(ObjectsUrl::Memory));
        let aws = ObjectsUrl::parse("s3://my.bucket-1").unwrap();
        assert_eq!(
            aws,
            ObjectsUrl::S3 {
                bucket: "my.bucket-1".into(),
                endpoint: None,
                region: "us-east-1".into()
            }
        );
        assert_eq!(aws.to_string(), "s3://my.bucket-1?region=us-east-1");
        let encoded =
            ObjectsUrl::parse("s3://b12?region=r&endpoint=https%3A%2F%2Fs3.example%3A9000%2F")
                .unwrap();
        assert_eq!(
            encoded.to_string(),
            "s3://b12?endpoint=https://s3.example:9000&region=r"
        );
    }

    #[test]
    fn bad_objects_urls_are_refused_naming_the_problem() {
        for (url, says) in [
            ("gs://bucket", "not an s3:// or memory:// URL"),
            ("s3://", "no bucket"),
            ("s3://Upper", "not a bucket name"),
            ("s3://ab", "not a bucket name"),
            ("s3://-ab", "not a bucket name"),
            ("s3://bucket?endpoint=ftp://h", "not an http:// or https://"),
            ("s3://bucket?endpoint=http://h:1/path", "without a path"),
            ("s3://bucket?endpoint=http://h:port", "not a port"),
            ("s3://bucket?bogus=1", "unknown parameter 'bogus'"),
            ("s3://bucket?region=a&region=b", "given twice"),
            ("s3://bucket?region", "not NAME=VALUE"),
            ("s3://bucket?region=", "region is empty"),
            ("memory://x", "not an s3:// or memory:// URL"),
        ] {
            let err = settings(PG, url).resolve().unwrap_err();
            assert_eq!(err.setting, "objects", "{url}");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn one_without_the_other_is_refused() {
        let only_metadata = ClusterSettings {
            metadata: Some(PG.into()),
            ..ClusterSettings::default()
        };
        let err = only_metadata.resolve().unwrap_err();
        assert!(err.message.contains("--metadata needs --objects"), "{err}");
        let only_objects = ClusterSettings {
            objects: Some("memory://".into()),
            ..ClusterSettings::default()
        };
        let err = only_objects.resolve().unwrap_err();
        assert!(err.message.contains("--objects needs --metadata"), "{err}");
        let tuned_single_node = [
            (
                "cluster.lease.ms",
                ClusterSettings {
                    lease_ms: Some(5000),
                    ..ClusterSettings::default()
                },
            ),
            (
                "cluster.maintenance.interval.ms",
                ClusterSettings {
                    maintenance_interval_ms: Some(5000),
                    ..ClusterSettings::default()
                },
            ),
            (
                "cluster.rack",
                ClusterSettings {
                    rack: Some("zone-a".into()),
                    ..ClusterSettings::default()
                },
            ),
        ];
        for (setting, tuned) in tuned_single_node {
            let err = tuned.resolve().unwrap_err();
            assert_eq!(err.setting, setting);
            assert!(
                err.message.contains("only applies in cluster mode"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_rack_is_taken_under_either_name_and_checked() {
        let mut s = settings(PG, "memory://");
        assert_eq!(s.resolve().unwrap().unwrap().rack, None);
        for key in ["cluster.rack", "broker.rack"] {
            assert!(ClusterSettings::is_setting(key));
            s.apply_toml(key, &toml::Value::String("zone-b".into()))
                .unwrap();
            let config = s.resolve().unwrap().unwrap();
            assert_eq!(config.rack.as_deref(), Some("zone-b"));
            assert!(config.to_string().contains("cluster.rack=zone-b"));
        }
        for bad in ["", " ", "a\nb"] {
            s.rack = Some(bad.into());
            let err = s.resolve().unwrap_err();
            assert_eq!(err.setting, "cluster.rack");
        }
        s.rack = Some("x".repeat(MAX_RACK_LEN + 1));
        assert!(s.resolve().unwrap_err().message.contains("at most"));
    }

    #[test]
    fn out_of_range_values_name_the_setting() {
        let mut s = settings(PG, "memory://");
        s.lease_ms = Some(50);
        assert_eq!(s.resolve().unwrap_err().setting, "cluster.lease.ms");
        let mut s = settings(PG, "memory://");
        s.upload_max_bytes = Some(10);
        assert_eq!(s.resolve().unwrap_err().setting, "cluster.upload.max.bytes");
        let mut s = settings(PG, "memory://");
        s.upload_linger_ms = Some(120_000);
        assert_eq!(s.resolve().unwrap_err().setting, "cluster.upload.linger.ms");
        let mut s = settings(PG, "memory://");
        s.upload_linger_ms = Some(2_000);
        s.lease_ms = Some(1_000);
        let err = s.resolve().unwrap_err();
        assert_eq!(err.setting, "cluster.upload.linger.ms");
        assert!(err.message.contains("below cluster.lease.ms"), "{err}");
        let mut s = settings(PG, "memory://");
        s.upload_linger_ms = Some(0);
        s.cache_bytes = Some(0);
        assert!(s.resolve().unwrap().is_some());
    }

    #[test]
    fn maintenance_interval_defaults_to_a_minute_and_is_bounded() {
        let s = settings(PG, "memory://");
        let config = s.resolve().unwrap().unwrap();
        assert_eq!(config.maintenance_interval_ms, 60_000);
        let mut s = settings(PG, "memory://");
        s.apply_toml(
            "cluster.maintenance.interval.ms",
            &toml::Value::Integer(5_000),
        )
        .unwrap();
        let config = s.resolve().unwrap().unwrap();
        assert_eq!(config.maintenance_interval_ms, 5_000);
        assert!(config
            .to_string()
            .contains("cluster.maintenance.interval.ms=5000"));
        s.maintenance_interval_ms = Some(10);
        let err = s.resolve().unwrap_err();
        assert_eq!(err.setting, "cluster.maintenance.interval.ms");
        assert!(err.message.contains("out of range"), "{err}");
    }

    #[test]
    fn toml_values_are_checked() {
        let mut s = ClusterSettings::default();
        s.apply_toml("cluster.lease.ms", &toml::Value::Integer(3000))
            .unwrap();
        s.apply_toml("cluster.cache.bytes", &toml::Value::String("1024".into()))
            .unwrap();
        assert_eq!((s.lease_ms, s.cache_bytes), (Some(3000), Some(1024)));
        let err = s
            .apply_toml("cluster.lease.ms", &toml::Value::Integer(-1))
            .unwrap_err();
        assert!(err.message.contains("negative"), "{err}");
        let err = s
            .apply_toml("metadata", &toml::Value::Integer(1))
            .unwrap_err();
        assert!(err.message.contains("expected a string"), "{err}");
        let err = s
            .apply_toml("cluster.bogus", &toml::Value::Integer(1))
            .unwrap_err();
        assert!(err.message.contains("unknown cluster setting"), "{err}");
        assert!(ClusterSettings::is_setting("objects"));
        assert!(!ClusterSettings::is_setting("num.partitions"));
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let config = settings(PG, S3).resolve().unwrap().unwrap();
        let shown = format!("{config} {config:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("metadata=postgres://sluice:***@db.example:6543/meta"),
            "{shown}"
        );
    }
}
