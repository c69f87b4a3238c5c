//! A small blocking Kafka client for the CLI: bootstrap from `--brokers`, negotiate versions
//! with ApiVersions, then talk to the broker Metadata advertises (the controller, a partition's
//! leader, a group's coordinator). Requests and responses are encoded with the kafka-protocol
//! crate; every connect, write and read is bounded by the `--timeout` deadline.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The largest response frame accepted: a broker is trusted to speak Kafka, not to be sane.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
const CLIENT_ID: &str = "sluice-cli";

/// Why a call to the cluster failed; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KafkaError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("{addr} does not serve {api:?} in a version this CLI speaks ({min}..={max})")]
    Unsupported {
        addr: String,
        api: ApiKey,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} response from {addr}: {reason}")]
    Malformed {
        addr: String,
        api: ApiKey,
        reason: String,
    },
    /// A Kafka error code in a response, with what it was about and the broker's message.
    #[error("{subject}: {}{}", error_name(*.code), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Code {
        subject: String,
        code: i16,
        message: Option<String>,
    },
    #[error("{0}")]
    Other(String),
}

/// Kafka's name for an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub(crate) fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("error code {code}"),
        Some(known) => {
            let camel = known.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// The error of a topic Metadata does not list.
pub(crate) fn unknown_topic(topic: &str) -> KafkaError {
    KafkaError::Code {
        subject: format!("topic {topic:?}"),
        code: ResponseError::UnknownTopicOrPartition.code(),
        message: None,
    }
}

/// `Err(Code)` for a non-zero error code.
pub(crate) fn check(
    code: i16,
    subject: impl Into<String>,
    message: Option<&StrBytes>,
) -> Result<(), KafkaError> {
    if code == 0 {
        return Ok(());
    }
    Err(KafkaError::Code {
        subject: subject.into(),
        code,
        message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
    })
}

/// A short reason for an I/O error, in the words people expect ("connection refused").
fn io_reason(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!("no answer within {}", humantime(timeout))
        }
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
            "the broker closed the connection".into()
        }
        _ => {
            // Drop the "(os error N)" suffix std adds; the words are enough on one line.
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// `1.5s`, `10s`, `250ms`.
pub(crate) fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One connection to one broker, with the API versions it announced.
pub(crate) struct Connection {
    /// Where it goes, for messages.
    addr: String,
    stream: TcpStream,
    /// api key -> (min, max) the broker serves.
    versions: HashMap<i16, (i16, i16)>,
    correlation_id: i32,
    /// Bound on each call (connect, or one request and its response).
    timeout: Duration,
}

impl Connection {
    /// Connects (trying each address the name resolves to) and negotiates versions.
    pub(crate) fn open(addr: &str, timeout: Duration) -> Result<Connection, KafkaError> {
        let connect_error = |reason: String| KafkaError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let targets: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| connect_error(io_reason(&e, timeout)))?
            .collect();
        let mut last = connect_error("the name resolves to no address".into());
        let mut stream = None;
        for target in targets {
            match TcpStream::connect_timeout(&target, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = connect_error(io_reason(&e, timeout)),
            }
        }
        let stream = stream.ok_or(last)?;
        // Small requests and their answers: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            versions: HashMap::new(),
            correlation_id: 0,
            timeout,
        };
        conn.negotiate()?;
        Ok(conn)
    }

    fn negotiate(&mut self) -> Result<(), KafkaError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3; a broker that does not serve it answers in v0 with its versions (KIP-511).
        let mut body = self.exchange(ApiKey::ApiVersions, 3, &request, self.timeout)?;
        // ApiVersions answers carry a v0 header whatever the version (so KIP-511's fallback
        // can be read by any client).
        ResponseHeader::decode(&mut body, 0).map_err(|e| self.malformed(ApiKey::ApiVersions, e))?;
        let mut buf = body.clone();
        let parsed = match ApiVersionsResponse::decode(&mut buf, 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => {
                let mut buf = body;
                ApiVersionsResponse::decode(&mut buf, 0)
                    .map_err(|e| self.malformed(ApiKey::ApiVersions, e))?
            }
        };
        self.versions = parsed
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    fn malformed(&self, api: ApiKey, e: impl std::fmt::Display) -> KafkaError {
        KafkaError::Malformed {
            addr: self.addr.clone(),
            api,
            reason: e.to_string(),
        }
    }

    fn io(&self, e: &std::io::Error, bound: Duration) -> KafkaError {
        KafkaError::Io {
            addr: self.addr.clone(),
            reason: io_reason(e, bound),
        }
    }

    /// The version to use: the highest both sides serve, at most `cap` (the newest version
    /// whose fields the caller fills in).
    fn version<R: Request>(&self, cap: i16) -> Result<(ApiKey, i16), KafkaError> {
        let api = ApiKey::try_from(R::KEY)
            .map_err(|_| KafkaError::Other(format!("unknown API key {}", R::KEY)))?;
        let ours = (R::VERSIONS.min, R::VERSIONS.max.min(cap));
        let unsupported = KafkaError::Unsupported {
            addr: self.addr.clone(),
            api,
            min: ours.0,
            max: ours.1,
        };
        match self.versions.get(&R::KEY) {
            Some(&(theirs_min, theirs_max)) if ours.1.min(theirs_max) >= ours.0.max(theirs_min) => {
                Ok((api, ours.1.min(theirs_max)))
            }
            _ => Err(unsupported),
        }
    }

    /// Sends `request` and decodes its response, using at most version `cap`.
    pub(crate) fn call<R: Request>(
        &mut self,
        request: &R,
        cap: i16,
    ) -> Result<R::Response, KafkaError> {
        self.call_waiting(request, cap, Duration::ZERO)
    }

    /// As `call`, for a request the broker may hold for `wait` (a long-polling Fetch).
    pub(crate) fn call_waiting<R: Request>(
        &mut self,
        request: &R,
        cap: i16,
        wait: Duration,
    ) -> Result<R::Response, KafkaError> {
        let (api, version) = self.version::<R>(cap)?;
        let mut body = self.exchange(api, version, request, self.timeout + wait)?;
        ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.malformed(api, e))?;
        R::Response::decode(&mut body, version).map_err(|e| self.malformed(api, e))
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub(crate) fn send_only<R: Request>(
        &mut self,
        request: &R,
        cap: i16,
    ) -> Result<(), KafkaError> {
        let (api, version) = self.version::<R>(cap)?;
        let frame = self.frame(api, version, request)?;
        self.write(&frame, Instant::now() + self.timeout)
    }

    fn frame<R: Encodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<BytesMut, KafkaError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| KafkaError::Other(format!("cannot encode {api:?} v{version}: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        let len = i32::try_from(body.len()).map_err(|_| {
            KafkaError::Other(format!(
                "{api:?} request of {} bytes is too large",
                body.len()
            ))
        })?;
        frame.put_i32(len);
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Writes one request frame and reads the matching response (header and body).
    fn exchange<R: Encodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &R,
        bound: Duration,
    ) -> Result<Bytes, KafkaError> {
        let frame = self.frame(api, version, request)?;
        let deadline = Instant::now() + bound;
        self.write(&frame, deadline)?;
        let mut len = [0u8; 4];
        self.read(&mut len, deadline, bound)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| (4..=MAX_RESPONSE_BYTES).contains(&l))
            .ok_or_else(|| self.malformed(api, format!("frame length {len}")))?;
        let mut body = vec![0u8; len];
        self.read(&mut body, deadline, bound)?;
        let correlation = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if correlation != self.correlation_id {
            let expected = self.correlation_id;
            return Err(self.malformed(
                api,
                format!("correlation id {correlation}, expected {expected}"),
            ));
        }
        Ok(Bytes::from(body))
    }

    fn remaining(&self, deadline: Instant, bound: Duration) -> Result<Duration, KafkaError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.io(&std::io::Error::from(ErrorKind::TimedOut), bound));
        }
        Ok(left)
    }

    fn write(&mut self, frame: &[u8], deadline: Instant) -> Result<(), KafkaError> {
        let bound = self.timeout;
        let mut at = 0;
        while at < frame.len() {
            let left = self.remaining(deadline, bound)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io(&e, bound))?;
            match self.stream.write(&frame[at..]) {
                Ok(0) => return Err(self.io(&ErrorKind::WriteZero.into(), bound)),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(&e, bound)),
            }
        }
        Ok(())
    }

    /// Fills `buf`, giving up at `deadline` even when the broker trickles bytes.
    fn read(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        bound: Duration,
    ) -> Result<(), KafkaError> {
        let mut at = 0;
        while at < buf.len() {
            let left = self.remaining(deadline, bound)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(&e, bound))?;
            match self.stream.read(&mut buf[at..]) {
                Ok(0) => return Err(self.io(&ErrorKind::UnexpectedEof.into(), bound)),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(&e, bound)),
            }
        }
        Ok(())
    }
}

/// A broker from Metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct BrokerInfo {
    pub(crate) id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

impl BrokerInfo {
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A cluster seen through its bootstrap brokers; connections to advertised brokers are opened
/// when first needed and kept.
pub(crate) struct Client {
    bootstrap: Connection,
    brokers: Vec<BrokerInfo>,
    controller: i32,
    cluster_id: Option<String>,
    connections: HashMap<i32, Connection>,
    timeout: Duration,
}

/// The newest Metadata version whose request fields are filled in here (v13 adds nothing used).
const METADATA_MAX: i16 = 12;

impl Client {
    /// Connects to the first reachable bootstrap broker and reads the cluster's brokers.
    pub(crate) fn connect(bootstrap: &[String], timeout: Duration) -> Result<Client, KafkaError> {
        let mut failure =
            KafkaError::Other("no brokers given (--brokers or SLUICE_BROKERS)".into());
        for addr in bootstrap {
            match Connection::open(addr, timeout) {
                Ok(conn) => {
                    let mut client = Client {
                        bootstrap: conn,
                        brokers: Vec::new(),
                        controller: -1,
                        cluster_id: None,
                        connections: HashMap::new(),
                        timeout,
                    };
                    client.metadata(Some(&[]))?;
                    return Ok(client);
                }
                Err(e) => failure = e,
            }
        }
        Err(failure)
    }

    /// Metadata for `topics` (all of them when `None`), never auto-creating a topic; refreshes
    /// the broker list.
    pub(crate) fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, KafkaError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let response = self.bootstrap.call(&request, METADATA_MAX)?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        self.controller = response.controller_id.0;
        self.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
        Ok(response)
    }

    pub(crate) fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    pub(crate) fn controller_id(&self) -> i32 {
        self.controller
    }

    pub(crate) fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The connection to broker `id` as Metadata advertises it.
    pub(crate) fn broker(&mut self, id: i32) -> Result<&mut Connection, KafkaError> {
        if !self.connections.contains_key(&id) {
            let info = self.brokers.iter().find(|b| b.id == id).ok_or_else(|| {
                KafkaError::Other(format!("broker {id} is not in the cluster's metadata"))
            })?;
            let conn = Connection::open(&info.addr(), self.timeout)?;
            self.connections.insert(id, conn);
        }
        self.connections
            .get_mut(&id)
            .ok_or_else(|| KafkaError::Other(format!("broker {id} connection lost")))
    }

    /// The controller, where admin requests go (any broker when none is named).
    pub(crate) fn controller(&mut self) -> Result<&mut Connection, KafkaError> {
        let id = if self.brokers.iter().any(|b| b.id == self.controller) {
            self.controller
        } else {
            self.brokers.first().map(|b| b.id).ok_or_else(|| {
                KafkaError::Other("the cluster's metadata lists no brokers".into())
            })?
        };
        self.broker(id)
    }

    /// The coordinator of consumer group `group`.
    pub(crate) fn coordinator(&mut self, group: &str) -> Result<&mut Connection, KafkaError> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        // v4 moves the key into a batch; v3 is the newest with a single key.
        let response = self.bootstrap.call(&request, 3)?;
        check(
            response.error_code,
            format!("group {group:?}"),
            response.error_message.as_ref(),
        )?;
        let id = response.node_id.0;
        if !self.brokers.iter().any(|b| b.id == id) {
            self.brokers.push(BrokerInfo {
                id,
                host: response.host.to_string(),
                port: response.port,
                rack: None,
            });
        }
        self.broker(id)
    }
}

/// The flags every Kafka command takes: where the cluster is, how long to wait, how to print.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(
        long,
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:9092",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) brokers: Vec<String>,
    /// Bound on connecting and on each request (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub(crate) timeout: Duration,
    /// Output: aligned tables for people or JSON for scripts.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub(crate) format: super::output::Format,
}

impl ClusterArgs {
    pub(crate) fn client(&self) -> Result<Client, KafkaError> {
        Client::connect(&self.brokers, self.timeout)
    }
}

/// `10s`, `500ms`, `2m` or a plain number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 10s, 500ms or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("'{text}' is not a duration like 10s, 500ms or 1m")),
    };
    if d.is_zero() {
        return Err("the timeout must be more than zero".into());
    }
    Ok(d)
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(40), "INVALID_CONFIG");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "error code 9999");
    }

    #[test]
    fn a_refused_connection_says_so_in_one_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = Connection::open(&addr, Duration::from_secs(2))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("cannot connect to {addr}: connection refused"))
        );
    }

    #[test]
    fn a_silent_broker_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let started = Instant::now();
        let err = Connection::open(&addr, Duration::from_millis(300))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err, Some(format!("{addr}: no answer within 300ms")));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
