//! The Kafka protocol front end: frames → request header → decoded request → handler → encoded
//! response. Record batches stay raw `Bytes` from the socket to the log and back.
//!
//! [`handle_request`] is the single place where an API key is routed to its handler in
//! [`crate::api`].

pub mod error_codes;
pub mod frame;
pub mod session;
pub mod throttle;
pub mod versions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::acl::Requester;
use crate::api;
use crate::broker::Broker;
use crate::quota::{throttle_ms, Client, QuotaKind};
use error_codes::ErrorCodes;
use session::{ListenerContext, Session};
use throttle::Throttled;

/// A response that is ready, one that comes later, or none at all (`acks=0`).
pub enum Reply {
    /// The encoded response frame.
    Now(BytesMut),
    /// The response after some waiting (an fsync for `acks=-1`, a fetch long-poll).
    Later(Pin<Box<dyn Future<Output = Result<BytesMut, RequestError>> + Send>>),
    /// The protocol says nothing is sent back (Produce with `acks=0`).
    Nothing,
    /// Work the connection must finish before it reads its next request — a produce whose
    /// guests run on the guest pool: pipelined produces are appended in the order sent (idempotent
    /// sequences depend on it) while the async worker stays free for other connections.
    First(Pin<Box<dyn Future<Output = Result<Reply, RequestError>> + Send>>),
}

/// A request that cannot be answered; the connection is closed, as Kafka does.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported (served: {served})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        served: String,
    },
    #[error("malformed {api:?} v{version} request: {message}")]
    Malformed {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{api:?} before authentication (only ApiVersions, SaslHandshake and SaslAuthenticate are served until then)")]
    NotAuthenticated { api: ApiKey },
    #[error(
        "{api:?} after the session expired (connections.max.reauth.ms) without re-authentication"
    )]
    SessionExpired { api: ApiKey },
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("cannot encode {api:?} v{version} response: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
}

/// What the rest of a request needs to know to answer it.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The `throttle_time_ms` its response carries (non-zero when the client is over a quota).
    pub throttle_ms: i32,
}

impl RequestContext {
    /// Sets the response's `throttle_time_ms`, counts its error codes, and encodes it.
    fn encode_throttled<R: Encodable + Throttled + ErrorCodes>(
        &self,
        mut body: R,
    ) -> Result<BytesMut, RequestError> {
        body.set_throttle_time_ms(self.throttle_ms);
        body.error_codes(&mut |code| crate::metrics::request_error(self.api, code));
        self.encode(&body)
    }

    /// Encodes `body` as this request's response frame.
    pub fn encode<R: Encodable>(&self, body: &R) -> Result<BytesMut, RequestError> {
        let fail = |e: anyhow::Error| RequestError::Encode {
            api: self.api,
            version: self.version,
            message: e.to_string(),
        };
        let size = body.compute_size(self.version).map_err(fail)?;
        let mut buf = BytesMut::with_capacity(size + 16);
        let start = frame::start_frame(&mut buf);
        ResponseHeader::default()
            .with_correlation_id(self.correlation_id)
            .encode(&mut buf, self.api.response_header_version(self.version))
            .map_err(fail)?;
        body.encode(&mut buf, self.version).map_err(fail)?;
        frame::finish_frame(&mut buf, start);
        Ok(buf)
    }

    fn decode<R: Decodable>(&self, body: &mut Bytes) -> Result<R, RequestError> {
        R::decode(body, self.version).map_err(|e| RequestError::Malformed {
            api: self.api,
            version: self.version,
            message: e.to_string(),
        })
    }
}

/// Whether `api` may be sent before the connection has authenticated.
fn allowed_before_authentication(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// Whether `api` is exempt from `request_percentage` quotas (Kafka exempts the requests a client
/// needs to learn versions and authenticate).
fn exempt_from_quotas(api: ApiKey) -> bool {
    allowed_before_authentication(api)
}

/// The throttle a request earns before it is handled: the client's request-time quota, and for
/// Produce its byte quota on the request's size. Zero (and no work) without quotas.
fn throttle_before(broker: &Broker, session: &Session, api: ApiKey, size: usize) -> Duration {
    let quotas = &broker.quotas;
    if quotas.is_off() || exempt_from_quotas(api) {
        return Duration::ZERO;
    }
    let client = session.quota_client();
    let mut throttle = quotas.record(QuotaKind::Request, client, 0.0);
    if api == ApiKey::Produce {
        throttle = throttle.max(quotas.record(QuotaKind::Produce, client, size as f64));
    }
    throttle
}

/// Records the time the broker spent handling a request of `api` against the connection's
/// `request_percentage` quota (the waiting of a long-poll or an fsync is not handling).
pub fn record_handling(broker: &Broker, session: &Session, api: ApiKey, handling: Duration) {
    if broker.quotas.is_off() || exempt_from_quotas(api) {
        return;
    }
    let throttle = broker
        .quotas
        .record_handling(session.quota_client(), handling);
    session.gate.hold(throttle);
}

/// Decodes one request frame and routes it to its handler, within the connection's `session`
/// (its listener, its principal, its SASL exchange, its quota hold).
pub fn handle_request(
    broker: &Arc<Broker>,
    frame: Bytes,
    session: &mut Session,
) -> Result<Reply, RequestError> {
    if session.raw_tokens {
        return raw_sasl_token(session, &frame);
    }
    let peer = session.peer;
    let size = frame.len();
    let (mut ctx, header, mut body) = parse_header(frame)?;
    if !allowed_before_authentication(ctx.api) {
        if !session.is_authenticated() {
            return Err(RequestError::NotAuthenticated { api: ctx.api });
        }
        if session.is_expired() {
            return Err(RequestError::SessionExpired { api: ctx.api });
        }
    }
    if !versions::is_served(ctx.api, ctx.version) {
        if ctx.api == ApiKey::ApiVersions {
            // KIP-511: a client newer than us asks with a version we lack; answer in v0 so it can
            // read the error and retry with one we list.
            let v0 = RequestContext { version: 0, ..ctx };
            let response = api::api_versions::unsupported_version();
            return Ok(Reply::Now(v0.encode::<ApiVersionsResponse>(&response)?));
        }
        return Err(RequestError::UnsupportedVersion {
            api: ctx.api,
            version: ctx.version,
            served: match versions::served_range(ctx.api) {
                Some((min, max)) => format!("{min}..={max}"),
                None => "none".to_string(),
            },
        });
    }
    let client_id = header.client_id.as_deref().unwrap_or_default();
    if session.client_id != client_id {
        session.client_id = client_id.to_string();
    }
    let throttle = throttle_before(broker, session, ctx.api, size);
    ctx.throttle_ms = throttle_ms(throttle);
    // The reply carries the throttle; the connection's next request waits it out (KIP-219).
    session.gate.hold(throttle);
    let body = &mut body;
    let b = broker.as_ref();
    let v = ctx.version;
    let who = match &session.principal {
        Some(principal) => Requester::new(principal, peer.ip()),
        None => Requester::new(&crate::auth::Principal::anonymous(), peer.ip()),
    };
    let w = &who;
    let reply = match ctx.api {
        ApiKey::ApiVersions => now(&ctx, api::api_versions::handle(b, v, ctx.decode(body)?))?,
        ApiKey::Metadata if b.cluster.is_some() => {
            let request = ctx.decode(body)?;
            let broker = broker.clone();
            let listener = session.listener.clone();
            let who = who.clone();
            later(ctx, async move {
                let Some(cluster) = broker.cluster.clone() else {
                    return api::metadata::handle(&broker, &who, v, request);
                };
                let mut response =
                    api::metadata::handle_cluster(&broker, &cluster, &who, v, request).await;
                // This broker as the listener the client came in on advertises itself.
                for entry in &mut response.brokers {
                    if entry.node_id.0 == broker.node_id {
                        entry.host = StrBytes::from_string(listener.advertised_host.clone());
                        entry.port = listener.advertised_port;
                    }
                }
                response
            })
        }
        ApiKey::Metadata => {
            let mut response = api::metadata::handle(b, w, v, ctx.decode(body)?);
            for entry in &mut response.brokers {
                if entry.node_id.0 == b.node_id {
                    entry.host = StrBytes::from_string(session.listener.advertised_host.clone());
                    entry.port = session.listener.advertised_port;
                }
            }
            now(&ctx, response)?
        }
        ApiKey::DescribeCluster => {
            let request = ctx.decode(body)?;
            let broker = broker.clone();
            let listener = session.listener.clone();
            let who = who.clone();
            later(ctx, async move {
                let mut response = match broker.cluster.clone() {
                    Some(cluster) => {
                        api::describe_cluster::handle_cluster(&broker, &cluster, &who, v, request)
                            .await
                    }
                    None => api::describe_cluster::handle(&broker, &who, v, request),
                };
                // This broker as the listener the client came in on advertises itself.
                for entry in &mut response.brokers {
                    if entry.broker_id.0 == broker.node_id {
                        entry.host = StrBytes::from_string(listener.advertised_host.clone());
                        entry.port = listener.advertised_port;
                    }
                }
                response
            })
        }
        ApiKey::SaslHandshake => now(&ctx, api::sasl::handshake(session, v, ctx.decode(body)?))?,
        ApiKey::SaslAuthenticate => {
            let (response, delay) = api::sasl::authenticate(session, ctx.decode(body)?);
            if delay.is_zero() {
                now(&ctx, response)?
            } else {
                later(ctx, async move {
                    tokio::time::sleep(delay).await;
                    response
                })
            }
        }
        ApiKey::AlterUserScramCredentials => {
            now(&ctx, api::scram_credentials::alter(b, w, ctx.decode(body)?))?
        }
        ApiKey::DescribeUserScramCredentials => now(
            &ctx,
            api::scram_credentials::describe(b, w, ctx.decode(body)?),
        )?,
        ApiKey::CreateAcls => now(&ctx, api::acls::create_acls(b, w, v, ctx.decode(body)?))?,
        ApiKey::DescribeAcls => now(&ctx, api::acls::describe_acls(b, w, v, ctx.decode(body)?))?,
        ApiKey::DeleteAcls => now(&ctx, api::acls::delete_acls(b, w, v, ctx.decode(body)?))?,
        ApiKey::Produce => {
            let request: kafka_protocol::messages::ProduceRequest = ctx.decode(body)?;
            let acks = request.acks;
            let answer = move |pending| {
                if acks == 0 {
                    Reply::Nothing
                } else {
                    later(ctx, api::produce::complete(pending))
                }
            };
            if let Some(cluster) = &b.cluster {
                // Submitted in full before the next request is read: the order sent is the
                // order committed.
                let broker = broker.clone();
                let cluster = cluster.clone();
                Reply::First(Box::pin(async move {
                    let pending =
                        api::produce::append_cluster(&broker, &cluster, &who, v, request).await;
                    Ok(answer(pending))
                }))
            } else if api::produce::runs_guests(b, &request) {
                let broker = broker.clone();
                let guests = broker.guests.clone();
                Reply::First(Box::pin(async move {
                    let pending = guests
                        .run(move || api::produce::append(&broker, &who, v, request))
                        .await
                        .map_err(|e| RequestError::Encode {
                            api: ApiKey::Produce,
                            version: v,
                            message: e.to_string(),
                        })?;
                    Ok(answer(pending))
                }))
            } else {
                answer(api::produce::append(b, w, v, request))
            }
        }
        ApiKey::Fetch => {
            let fetch = api::fetch::handle(broker.clone(), who.clone(), v, ctx.decode(body)?);
            if broker.quotas.is_off() {
                later(ctx, fetch)
            } else {
                fetch_within_quota(broker.clone(), session, ctx, fetch)
            }
        }
        ApiKey::ListOffsets if b.cluster.is_some() => {
            let request = ctx.decode(body)?;
            let broker = broker.clone();
            let who = who.clone();
            later(ctx, async move {
                match broker.cluster.clone() {
                    Some(cluster) => {
                        api::list_offsets::handle_cluster(&broker, &cluster, &who, v, request).await
                    }
                    None => api::list_offsets::handle(&broker, &who, v, request),
                }
            })
        }
        ApiKey::ListOffsets => now(&ctx, api::list_offsets::handle(b, w, v, ctx.decode(body)?))?,
        ApiKey::DescribeProducers => now(
            &ctx,
            api::describe_producers::handle(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::DeleteRecords if b.cluster.is_some() => later(
            ctx,
            api::delete_records::handle_cluster(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::DeleteRecords => now(
            &ctx,
            api::delete_records::handle(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::InitProducerId => later(
            ctx,
            api::init_producer_id::handle(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::AddPartitionsToTxn => later(
            ctx,
            api::transactions::add_partitions_to_txn(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::AddOffsetsToTxn => later(
            ctx,
            api::transactions::add_offsets_to_txn(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::TxnOffsetCommit => later(
            ctx,
            api::transactions::txn_offset_commit(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::EndTxn => later(
            ctx,
            api::transactions::end_txn(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::DescribeTransactions => now(
            &ctx,
            api::transactions::describe_transactions(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::ListTransactions => now(
            &ctx,
            api::transactions::list_transactions(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::CreateTopics if b.cluster.is_some() => later(
            ctx,
            api::topics::create_topics_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::DeleteTopics if b.cluster.is_some() => later(
            ctx,
            api::topics::delete_topics_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::CreateTopics => now(&ctx, api::topics::create_topics(b, w, v, ctx.decode(body)?))?,
        ApiKey::DeleteTopics => now(&ctx, api::topics::delete_topics(b, w, v, ctx.decode(body)?))?,
        ApiKey::DescribeConfigs if b.cluster.is_some() => later(
            ctx,
            api::configs::describe_configs_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::AlterConfigs if b.cluster.is_some() => later(
            ctx,
            api::configs::alter_configs_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::IncrementalAlterConfigs if b.cluster.is_some() => later(
            ctx,
            api::configs::incremental_alter_configs_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::CreatePartitions if b.cluster.is_some() => later(
            ctx,
            api::topics::create_partitions_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::CreatePartitions => now(
            &ctx,
            api::topics::create_partitions(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::DescribeConfigs => now(
            &ctx,
            api::configs::describe_configs(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::AlterConfigs => now(
            &ctx,
            api::configs::alter_configs(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::IncrementalAlterConfigs => now(
            &ctx,
            api::configs::incremental_alter_configs(b, w, v, ctx.decode(body)?),
        )?,
        // Cluster mode: group coordination asks the cluster's store (the *_in_cluster handlers).
        ApiKey::FindCoordinator if b.groups.remote().is_some() => later(
            ctx,
            api::groups::find_coordinator_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::DescribeGroups if b.groups.remote().is_some() => later(
            ctx,
            api::groups::describe_groups_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::ListGroups if b.groups.remote().is_some() => later(
            ctx,
            api::groups::list_groups_in_cluster(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::OffsetFetch if b.groups.remote().is_some() => later(
            ctx,
            api::group_offsets::offset_fetch_in_cluster(
                broker.clone(),
                who.clone(),
                v,
                ctx.decode(body)?,
            ),
        ),
        ApiKey::FindCoordinator => {
            let mut response = api::groups::find_coordinator(b, w, v, ctx.decode(body)?);
            advertise_coordinator(&mut response, b.node_id, &session.listener);
            now(&ctx, response)?
        }
        ApiKey::JoinGroup => {
            let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
            let host = format!("/{}", peer.ip());
            later(
                ctx,
                api::groups::join_group(
                    broker.clone(),
                    who.clone(),
                    v,
                    ctx.decode(body)?,
                    client_id,
                    host,
                ),
            )
        }
        ApiKey::SyncGroup => later(
            ctx,
            api::groups::sync_group(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::Heartbeat => now(&ctx, api::groups::heartbeat(b, w, v, ctx.decode(body)?))?,
        ApiKey::LeaveGroup => now(&ctx, api::groups::leave_group(b, w, v, ctx.decode(body)?))?,
        ApiKey::DescribeGroups => now(
            &ctx,
            api::groups::describe_groups(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::ListGroups => now(&ctx, api::groups::list_groups(b, w, v, ctx.decode(body)?))?,
        ApiKey::DeleteGroups => later(
            ctx,
            api::groups::delete_groups(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::OffsetCommit => later(
            ctx,
            api::group_offsets::offset_commit(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::OffsetFetch => now(
            &ctx,
            api::group_offsets::offset_fetch(b, w, v, ctx.decode(body)?),
        )?,
        ApiKey::OffsetDelete => later(
            ctx,
            api::group_offsets::offset_delete(broker.clone(), who.clone(), v, ctx.decode(body)?),
        ),
        ApiKey::AlterClientQuotas => now(&ctx, api::client_quotas::alter(b, w, ctx.decode(body)?))?,
        ApiKey::DescribeClientQuotas => {
            now(&ctx, api::client_quotas::describe(b, w, ctx.decode(body)?))?
        }
        other => {
            // `is_served` admitted it, so the table and this match disagree: a bug, reported as
            // an unsupported version rather than a panic.
            return Err(RequestError::UnsupportedVersion {
                api: other,
                version: v,
                served: "none (not routed)".to_string(),
            });
        }
    };
    Ok(reply)
}

/// Points FindCoordinator answers naming this broker at the listener the client came in on.
fn advertise_coordinator(
    response: &mut kafka_protocol::messages::FindCoordinatorResponse,
    node_id: i32,
    listener: &ListenerContext,
) {
    let host = StrBytes::from_string(listener.advertised_host.clone());
    if response.node_id.0 == node_id {
        response.host = host.clone();
        response.port = listener.advertised_port;
    }
    for c in &mut response.coordinators {
        if c.node_id.0 == node_id {
            c.host = host.clone();
            c.port = listener.advertised_port;
        }
    }
}

/// A bare SASL token after SaslHandshake v0: answered with a bare length-prefixed token; a
/// failure closes the connection (the v0 framing has no way to say why).
fn raw_sasl_token(session: &mut Session, token: &[u8]) -> Result<Reply, RequestError> {
    match api::sasl::step(session, token) {
        api::sasl::Outcome::Reply { bytes, .. } => {
            let mut buf = BytesMut::with_capacity(bytes.len() + 4);
            let start = frame::start_frame(&mut buf);
            buf.extend_from_slice(&bytes);
            frame::finish_frame(&mut buf, start);
            Ok(Reply::Now(buf))
        }
        api::sasl::Outcome::Failed { .. } => Err(RequestError::AuthenticationFailed),
    }
}

/// A Fetch answered under a `consumer_byte_rate` quota: the response's size is recorded once it
/// is known, and its throttle (or the request quota's, if longer) goes in the response and holds
/// the connection.
fn fetch_within_quota<F>(
    broker: Arc<Broker>,
    session: &Session,
    mut ctx: RequestContext,
    fetch: F,
) -> Reply
where
    F: Future<Output = kafka_protocol::messages::FetchResponse> + Send + 'static,
{
    let gate = session.gate.clone();
    let user = session.quota_client().user.to_string();
    let client_id = session.client_id.clone();
    let before = Duration::from_millis(u64::try_from(ctx.throttle_ms).unwrap_or(0));
    Reply::Later(Box::pin(async move {
        let response = fetch.await;
        let size = response.compute_size(ctx.version).unwrap_or(0);
        let client = Client {
            user: &user,
            client_id: &client_id,
        };
        let throttle = broker
            .quotas
            .record(QuotaKind::Fetch, client, size as f64)
            .max(before);
        gate.hold(throttle);
        ctx.throttle_ms = throttle_ms(throttle);
        ctx.encode_throttled(response)
    }))
}

fn now<R: Encodable + Throttled + ErrorCodes>(
    ctx: &RequestContext,
    response: R,
) -> Result<Reply, RequestError> {
    Ok(Reply::Now(ctx.encode_throttled(response)?))
}

fn later<R, F>(ctx: RequestContext, response: F) -> Reply
where
    R: Encodable + Throttled + ErrorCodes,
    F: Future<Output = R> + Send + 'static,
{
    Reply::Later(Box::pin(
        async move { ctx.encode_throttled(response.await) },
    ))
}

/// Splits a frame into its parsed header and the request body.
pub fn parse_header(
    mut frame: Bytes,
) -> Result<(RequestContext, RequestHeader, Bytes), RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort(frame.len()));
    }
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api = ApiKey::try_from(key).map_err(|_| RequestError::UnknownApiKey(key))?;
    let header =
        RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(|e| {
            RequestError::Malformed {
                api,
                version,
                message: format!("request header: {e}"),
            }
        })?;
    let ctx = RequestContext {
        api,
        version,
        correlation_id: header.correlation_id,
        throttle_ms: 0,
    };
    Ok((ctx, header, frame))
}

/// Decodes a request frame the way the broker does, without a broker: the fuzzing entry point.
pub fn decode_only(frame: Bytes) -> Result<(), RequestError> {
    use kafka_protocol::messages::*;
    let (ctx, _header, mut body) = parse_header(frame)?;
    if !versions::is_served(ctx.api, ctx.version) {
        return Ok(());
    }
    let body = &mut body;
    match ctx.api {
        ApiKey::ApiVersions => ctx.decode::<ApiVersionsRequest>(body).map(drop),
        ApiKey::Metadata => ctx.decode::<MetadataRequest>(body).map(drop),
        ApiKey::Produce => ctx.decode::<ProduceRequest>(body).map(drop),
        ApiKey::Fetch => ctx.decode::<FetchRequest>(body).map(drop),
        ApiKey::ListOffsets => ctx.decode::<ListOffsetsRequest>(body).map(drop),
        ApiKey::DescribeProducers => ctx.decode::<DescribeProducersRequest>(body).map(drop),
        ApiKey::DeleteRecords => ctx.decode::<DeleteRecordsRequest>(body).map(drop),
        ApiKey::InitProducerId => ctx.decode::<InitProducerIdRequest>(body).map(drop),
        ApiKey::CreateTopics => ctx.decode::<CreateTopicsRequest>(body).map(drop),
        ApiKey::DeleteTopics => ctx.decode::<DeleteTopicsRequest>(body).map(drop),
        ApiKey::CreatePartitions => ctx.decode::<CreatePartitionsRequest>(body).map(drop),
        ApiKey::DescribeConfigs => ctx.decode::<DescribeConfigsRequest>(body).map(drop),
        ApiKey::AlterConfigs => ctx.decode::<AlterConfigsRequest>(body).map(drop),
        ApiKey::IncrementalAlterConfigs => {
            ctx.decode::<IncrementalAlterConfigsRequest>(body).map(drop)
        }
        ApiKey::FindCoordinator => ctx.decode::<FindCoordinatorRequest>(body).map(drop),
        ApiKey::JoinGroup => ctx.decode::<JoinGroupRequest>(body).map(drop),
        ApiKey::SyncGroup => ctx.decode::<SyncGroupRequest>(body).map(drop),
        ApiKey::Heartbeat => ctx.decode::<HeartbeatRequest>(body).map(drop),
        ApiKey::LeaveGroup => ctx.decode::<LeaveGroupRequest>(body).map(drop),
        ApiKey::OffsetCommit => ctx.decode::<OffsetCommitRequest>(body).map(drop),
        ApiKey::OffsetFetch => ctx.decode::<OffsetFetchRequest>(body).map(drop),
        ApiKey::DescribeGroups => ctx.decode::<DescribeGroupsRequest>(body).map(drop),
        ApiKey::ListGroups => ctx.decode::<ListGroupsRequest>(body).map(drop),
        ApiKey::DeleteGroups => ctx.decode::<DeleteGroupsRequest>(body).map(drop),
        ApiKey::OffsetDelete => ctx.decode::<OffsetDeleteRequest>(body).map(drop),
        ApiKey::AddPartitionsToTxn => ctx.decode::<AddPartitionsToTxnRequest>(body).map(drop),
        ApiKey::AddOffsetsToTxn => ctx.decode::<AddOffsetsToTxnRequest>(body).map(drop),
        ApiKey::TxnOffsetCommit => ctx.decode::<TxnOffsetCommitRequest>(body).map(drop),
        ApiKey::EndTxn => ctx.decode::<EndTxnRequest>(body).map(drop),
        ApiKey::DescribeTransactions => ctx.decode::<DescribeTransactionsRequest>(body).map(drop),
        ApiKey::ListTransactions => ctx.decode::<ListTransactionsRequest>(body).map(drop),
        ApiKey::SaslHandshake => ctx.decode::<SaslHandshakeRequest>(body).map(drop),
        ApiKey::SaslAuthenticate => ctx.decode::<SaslAuthenticateRequest>(body).map(drop),
        ApiKey::AlterUserScramCredentials => ctx
            .decode::<AlterUserScramCredentialsRequest>(body)
            .map(drop),
        ApiKey::DescribeUserScramCredentials => ctx
            .decode::<DescribeUserScramCredentialsRequest>(body)
            .map(drop),
        ApiKey::AlterClientQuotas => ctx.decode::<AlterClientQuotasRequest>(body).map(drop),
        ApiKey::DescribeClientQuotas => ctx.decode::<DescribeClientQuotasRequest>(body).map(drop),
        ApiKey::CreateAcls => ctx.decode::<CreateAclsRequest>(body).map(drop),
        ApiKey::DescribeAcls => ctx.decode::<DescribeAclsRequest>(body).map(drop),
        ApiKey::DeleteAcls => ctx.decode::<DeleteAclsRequest>(body).map(drop),
        ApiKey::DescribeCluster => ctx.decode::<DescribeClusterRequest>(body).map(drop),
        _ => Ok(()),
    }
}
