//! The Kafka listeners: one task per connection, responses in request order, graceful shutdown.
//! SSL and SASL_SSL listeners run the TLS handshake first (with the TLS config current at accept
//! time, so reloaded certificates apply to new connections); SASL listeners start each connection
//! unauthenticated.
//!
//! A connection's reader decodes and dispatches requests one after another (so appends happen in
//! the order the client pipelined them); replies that must wait (fsync, fetch long-poll) run as
//! their own tasks, and a writer task sends every reply in request order.
//!
//! Limits: a connection over `max.connections` or `max.connections.per.ip` is closed right after
//! accept; a request's body is read only once its bytes fit under `queued.max.request.bytes`
//! (held until its reply is written); a connection over a client quota has its next request
//! handled only after its throttle time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::tls::{TlsServer, HANDSHAKE_TIMEOUT};
use crate::auth::Principal;
use crate::broker::Broker;
use crate::metrics;
use crate::protocol::frame::{read_frame_body, read_frame_size};
use crate::protocol::session::{ListenerContext, Session};
use crate::protocol::{handle_request, record_handling, Reply, RequestError};
use crate::quota::limits::{ConnectionLimits, QueuedBytes};

/// Most requests a connection may have outstanding before we stop reading more from it
/// (Kafka clients pipeline up to 5 by default).
const MAX_IN_FLIGHT: usize = 32;
/// How long shutdown waits for in-flight requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest frame an unauthenticated connection may send (Kafka's `sasl.server.max.receive.size`
/// default), so a stranger cannot make the broker buffer 100 MiB.
const PRE_AUTH_MAX_FRAME: usize = 512 * 1024;

fn frame_limit(session: &Session, max_request_bytes: usize) -> usize {
    if session.is_authenticated() {
        max_request_bytes
    } else {
        PRE_AUTH_MAX_FRAME.min(max_request_bytes)
    }
}

/// A reply on its way to the writer.
enum Pending {
    Ready(BytesMut),
    /// Deferred work, and when it finished (when metrics are on).
    Waiting(JoinHandle<(Result<BytesMut, RequestError>, Option<Instant>)>),
}

/// A reply and its request's timings.
struct Outgoing {
    reply: Pending,
    timer: metrics::RequestTimer,
    /// The request's share of `queued.max.request.bytes`, given back once the reply is written.
    _memory: Option<OwnedSemaphorePermit>,
}

/// What every listener's connections are bounded by.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `socket.request.max.bytes`: the largest request frame.
    pub max_request_bytes: usize,
    /// `max.connections`, `max.connections.per.ip`, shared by every listener.
    pub connections: Arc<ConnectionLimits>,
    /// `queued.max.request.bytes`, shared by every connection.
    pub queued: QueuedBytes,
}

/// One bound Kafka listener.
pub struct Listener {
    pub tcp: TcpListener,
    /// Its name, protocol, advertised address and (SASL) authenticator.
    pub context: Arc<ListenerContext>,
    /// The TLS config of an SSL or SASL_SSL listener.
    pub tls: Option<Arc<TlsServer>>,
}

/// Accepts connections until `shutdown` turns true, then lets every connection finish the
/// requests it has read and returns.
pub async fn run(
    listener: Listener,
    broker: Arc<Broker>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let slot = match limits.connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::info!(%peer, listener = %listener.context.name, limit = refusal.setting(), "connection refused: over the connection limit");
                metrics::connection_refused(refusal.setting());
                drop(stream);
                continue;
            }
        };
        let broker = broker.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let context = listener.context.clone();
        let tls = listener.tls.clone();
        connections.spawn(async move {
            let _open = metrics::connection_opened();
            tracing::debug!(%peer, listener = %context.name, "connection opened");
            let _ = stream.set_nodelay(true);
            let result = match tls {
                None => {
                    let principal = (!context.protocol.uses_sasl()).then(Principal::anonymous);
                    let session = Session::new(context, peer, principal);
                    let (read_half, write_half) = stream.into_split();
                    serve_connection(read_half, write_half, session, broker, &limits, shutdown)
                        .await
                }
                Some(tls) => {
                    serve_tls(stream, peer, context, &tls, broker, &limits, shutdown).await
                }
            };
            if let Err(e) = result {
                tracing::info!(%peer, "connection closed: {e}");
            }
            drop(slot);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown: connections still busy after {DRAIN_TIMEOUT:?}; closing them");
        connections.abort_all();
    }
}

/// Why a connection ended other than a clean close.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] crate::protocol::frame::FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{0}")]
    Tls(String),
}

/// Runs the TLS handshake (bounded in time), takes an SSL connection's principal from its client
/// certificate, then serves it.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    context: Arc<ListenerContext>,
    tls: &TlsServer,
    broker: Arc<Broker>,
    limits: &Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ConnectionError::Tls(format!("TLS handshake failed: {e}"))),
        Err(_) => return Err(ConnectionError::Tls("TLS handshake timed out".to_string())),
    };
    // On SASL_SSL the principal comes from SASL, whatever certificate was shown.
    let principal = if context.protocol.uses_sasl() {
        None
    } else {
        let principal = tls
            .principal(stream.get_ref().1.peer_certificates())
            .map_err(ConnectionError::Tls)?;
        if principal != Principal::anonymous() {
            tracing::info!(%peer, listener = %context.name, %principal, "client certificate accepted");
        }
        Some(principal)
    };
    let session = Session::new(context, peer, principal);
    let (read_half, write_half) = tokio::io::split(stream);
    serve_connection(read_half, write_half, session, broker, limits, shutdown).await
}

async fn serve_connection<R, W>(
    read_half: R,
    write_half: W,
    mut session: Session,
    broker: Arc<Broker>,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let (tx, rx) = mpsc::channel::<Outgoing>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(
        rx,
        BufWriter::with_capacity(64 * 1024, write_half),
    ));
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        let size = tokio::select! {
            size = read_frame_size(&mut reader, frame_limit(&session, limits.max_request_bytes)) => size,
            _ = shutdown.changed() => break Ok(()),
        };
        let size = match size {
            Ok(Some(size)) => size,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let (memory, frame) = tokio::select! {
            read = async {
                let memory = limits.queued.reserve(size).await;
                (memory, read_frame_body(&mut reader, size).await)
            } => read,
            _ = shutdown.changed() => break Ok(()),
        };
        let frame = match frame {
            Ok(frame) => frame.freeze(),
            Err(e) => break Err(e.into()),
        };
        // Over a quota: the request waits out the connection's throttle time (KIP-219).
        tokio::select! {
            _ = session.gate.wait() => {}
            _ = shutdown.changed() => break Ok(()),
        }
        let mut timer = metrics::RequestTimer::start(&frame);
        let api = frame
            .get(..2)
            .filter(|_| !session.raw_tokens)
            .and_then(|k| {
                kafka_protocol::messages::ApiKey::try_from(i16::from_be_bytes([k[0], k[1]])).ok()
            });
        let started = Instant::now();
        let reply = match handle_request(&broker, frame, &mut session) {
            Ok(Reply::First(work)) => work.await,
            other => other,
        };
        if let Some(api) = api {
            record_handling(&broker, &session, api, started.elapsed());
        }
        let reply = match reply {
            Ok(Reply::Now(bytes)) => {
                timer.handled();
                Pending::Ready(bytes)
            }
            Ok(Reply::Later(future)) => Pending::Waiting(tokio::spawn(async move {
                let reply = future.await;
                (reply, metrics::clock())
            })),
            Ok(Reply::Nothing) => {
                timer.handled();
                continue;
            }
            Ok(Reply::First(_)) => {
                // `First` work never answers with more `First` work.
                break Err(RequestError::Encode {
                    api: kafka_protocol::messages::ApiKey::Produce,
                    version: 0,
                    message: "nested deferred work".into(),
                }
                .into());
            }
            Err(e) => break Err(e.into()),
        };
        let outgoing = Outgoing {
            reply,
            timer,
            _memory: memory,
        };
        if tx.send(outgoing).await.is_err() {
            // The writer stopped: the peer is gone.
            break Ok(());
        }
        if session.close_after_reply {
            break Ok(());
        }
    };
    // Let the writer send every reply already promised, then end.
    drop(tx);
    let _ = writer.await;
    result
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Outgoing>,
    mut out: BufWriter<W>,
) {
    while let Some(Outgoing {
        reply,
        mut timer,
        _memory: memory,
    }) = rx.recv().await
    {
        let bytes = match reply {
            Pending::Ready(bytes) => bytes,
            Pending::Waiting(handle) => match handle.await {
                Ok((Ok(bytes), done)) => {
                    timer.handled_at(done);
                    bytes
                }
                Ok((Err(e), _)) => {
                    tracing::error!("dropping connection: {e}");
                    return;
                }
                Err(e) => {
                    tracing::error!("request task failed: {e}");
                    return;
                }
            },
        };
        let writing = timer.writing();
        if out.write_all(&bytes).await.is_err() {
            return;
        }
        // Flush when nothing else is queued, so pipelined replies share a write.
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
        timer.written(writing);
        drop(memory);
    }
    let _ = out.flush().await;
    // A TLS stream sends close_notify here, so the peer sees a clean end.
    let _ = out.shutdown().await;
}
