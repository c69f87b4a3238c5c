//! The Kafka listener: one task per connection, responses in request order, graceful shutdown.
//!
//! A connection's reader decodes and dispatches requests one after another (so appends happen in
//! the order the client pipelined them); replies that must wait (fsync, fetch long-poll) run as
//! their own tasks, and a writer task sends every reply in request order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::Broker;
use crate::metrics;
use crate::protocol::frame::read_frame;
use crate::protocol::{handle_request, Reply, RequestError};

/// Most requests a connection may have outstanding before we stop reading more from it
/// (Kafka clients pipeline up to 5 by default).
const MAX_IN_FLIGHT: usize = 32;
/// Most simultaneous client connections.
const MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for in-flight requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// Accepts connections until `shutdown` turns true, then lets every connection finish the
/// requests it has read and returns.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    max_request_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _open = metrics::connection_opened();
            tracing::debug!(%peer, "connection opened");
            if let Err(e) =
                serve_connection(stream, peer, broker, max_request_bytes, shutdown).await
            {
                tracing::info!(%peer, "connection closed: {e}");
            }
            drop(permit);
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
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    broker: Arc<Broker>,
    max_request_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
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
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max_request_bytes) => frame,
            _ = shutdown.changed() => break Ok(()),
        };
        let frame = match frame {
            Ok(Some(frame)) => frame.freeze(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        };
        let mut timer = metrics::RequestTimer::start(&frame);
        let reply = match handle_request(&broker, frame, peer) {
            Ok(Reply::First(work)) => work.await,
            other => other,
        };
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
        if tx.send(Outgoing { reply, timer }).await.is_err() {
            // The writer stopped: the peer is gone.
            break Ok(());
        }
    };
    // Let the writer send every reply already promised, then end.
    drop(tx);
    let _ = writer.await;
    result
}

async fn write_replies(
    mut rx: mpsc::Receiver<Outgoing>,
    mut out: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
) {
    while let Some(Outgoing { reply, mut timer }) = rx.recv().await {
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
    }
    let _ = out.flush().await;
}
