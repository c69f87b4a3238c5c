//! The commit feed: one connection of its own LISTENing on `sluice_commits` (which every
//! commit notifies, one notice per partition it grew; admin calls add a notice per topic they
//! change and per log start they move) and `sluice_deployments` (transform deployment
//! changes), turned into a broadcast of [`CommitEvent`]s that long polls and caches wait on.
//! When the database goes away the connection is
//! made again with backoff, then [`CommitEvent::Resync`] tells readers to re-read what they
//! may have missed.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::{Db, DbError};
use crate::cluster::types::{CommitEvent, CommitNotice};

/// The channel commits notify.
pub const CHANNEL: &str = "sluice_commits";
/// The feed connection's `application_name`, so an operator (or a test) can tell it apart.
pub const FEED_APPLICATION_NAME: &str = "sluice-commit-feed";
/// Events kept for slow receivers; past it they see `Lagged` and must resync.
const FEED_CAPACITY: usize = 4096;
/// The first wait before reconnecting, doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A notice's payload: `TOPIC_ID PARTITION HIGH_WATERMARK`.
pub fn notice_payload(n: &CommitNotice) -> String {
    format!("{} {} {}", n.topic_id, n.partition, n.high_watermark)
}

/// Notifies one payload on [`CHANNEL`] (delivered when the transaction it runs in commits).
pub(crate) const NOTIFY_ONE_SQL: &str = "SELECT pg_notify('sluice_commits', $1)";

/// The tag that starts a topic-change payload: `topic NAME` (a topic name has no spaces).
const TOPIC_TAG: &str = "topic ";
/// The tag that starts a log-start payload: `start TOPIC_ID PARTITION LOG_START_OFFSET`.
const LOG_START_TAG: &str = "start ";

/// A topic-change notice's payload.
pub fn topic_changed_payload(name: &str) -> String {
    format!("{TOPIC_TAG}{name}")
}

/// A log-start notice's payload.
pub fn log_start_payload(topic_id: Uuid, partition: i32, log_start_offset: i64) -> String {
    format!("{LOG_START_TAG}{topic_id} {partition} {log_start_offset}")
}

/// The event of any payload on the channel; `None` for one that is not ours.
pub fn parse_event(payload: &str) -> Option<CommitEvent> {
    if let Some(name) = payload.strip_prefix(TOPIC_TAG) {
        return (!name.is_empty() && !name.contains(' '))
            .then(|| CommitEvent::TopicChanged(name.to_string()));
    }
    if let Some(rest) = payload.strip_prefix(LOG_START_TAG) {
        // The same three fields as a commit notice, the last one the new log start.
        return parse_notice(rest).map(|n| CommitEvent::LogStartMoved {
            topic_id: n.topic_id,
            partition: n.partition,
            log_start_offset: n.high_watermark,
        });
    }
    parse_notice(payload).map(CommitEvent::Commit)
}

/// The notice of a commit payload; `None` for one that is not ours (anyone may NOTIFY the
/// channel).
pub fn parse_notice(payload: &str) -> Option<CommitNotice> {
    let mut parts = payload.split(' ');
    let topic_id = Uuid::parse_str(parts.next()?).ok()?;
    let partition = parts.next()?.parse().ok()?;
    let high_watermark = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(CommitNotice {
        topic_id,
        partition,
        high_watermark,
    })
}

/// The running feed; dropping it stops listening.
pub struct CommitFeed {
    sender: broadcast::Sender<CommitEvent>,
    task: JoinHandle<()>,
}

impl CommitFeed {
    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CommitEvent> {
        self.sender.subscribe()
    }
}

impl Drop for CommitFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Db {
    /// Starts listening for commits (in a task of its own, reconnecting for as long as the
    /// feed lives). Call once per broker and share the feed.
    pub fn commit_feed(&self) -> CommitFeed {
        let (sender, _) = broadcast::channel(FEED_CAPACITY);
        let mut config = self.config.clone();
        config.application_name(FEED_APPLICATION_NAME);
        let task = tokio::spawn(listen_forever(config, sender.clone()));
        CommitFeed { sender, task }
    }
}

async fn listen_forever(config: tokio_postgres::Config, sender: broadcast::Sender<CommitEvent>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen(&config, &sender).await {
            Listened::Lost(e) => {
                tracing::warn!(error = %e, "lost the commit feed's connection; reconnecting");
                backoff = MIN_BACKOFF;
            }
            Listened::NeverStarted(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen for commits");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// How one connection of the feed ended.
enum Listened {
    /// It listened, then went away.
    Lost(DbError),
    /// It never got to LISTEN.
    NeverStarted(DbError),
}

/// Connects, LISTENs, sends `Resync`, then forwards notices until the connection ends.
async fn listen(
    config: &tokio_postgres::Config,
    sender: &broadcast::Sender<CommitEvent>,
) -> Listened {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => return Listened::NeverStarted(e.into()),
    };
    // The connection's messages (notices among them) arrive only while it is polled, and the
    // LISTEN below completes only then too: both are driven here.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen_sql = format!("LISTEN {CHANNEL}; LISTEN {}", super::deployments::CHANNEL);
    let listening = client.batch_execute(&listen_sql);
    tokio::pin!(listening);
    loop {
        tokio::select! {
            done = &mut listening => match done {
                Ok(()) => break,
                Err(e) => return Listened::NeverStarted(e.into()),
            },
            message = messages.next() => match message {
                Some(Ok(m)) => forward(m, sender),
                Some(Err(e)) => return Listened::NeverStarted(e.into()),
                None => return Listened::NeverStarted(DbError::Unavailable("connection closed".into())),
            },
        }
    }
    // Nobody subscribed yet is not an error: the event is for whoever listens later.
    let _ = sender.send(CommitEvent::Resync);
    while let Some(message) = messages.next().await {
        match message {
            Ok(m) => forward(m, sender),
            Err(e) => return Listened::Lost(e.into()),
        }
    }
    Listened::Lost(DbError::Unavailable("connection closed".into()))
}

fn forward(message: AsyncMessage, sender: &broadcast::Sender<CommitEvent>) {
    if let AsyncMessage::Notification(n) = message {
        if n.channel() == super::deployments::CHANNEL {
            let _ = sender.send(CommitEvent::Deployments);
            return;
        }
        if n.channel() != CHANNEL {
            return;
        }
        match parse_event(n.payload()) {
            Some(event) => {
                let _ = sender.send(event);
            }
            None => tracing::debug!(payload = n.payload(), "ignored a foreign commit notice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::{postgres_installed, TestDb};
    use crate::cluster::types::{BatchAppend, UploadCommit};
    use sluice_engines::Postgres;

    async fn next(events: &mut broadcast::Receiver<CommitEvent>) -> CommitEvent {
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an event in time")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn the_feed_and_the_pool_recover_after_a_postgresql_restart() {
        if !postgres_installed() {
            return;
        }
        // A server of its own: the restart would cut every other test's connections.
        let pg = tokio::task::spawn_blocking(Postgres::start)
            .await
            .unwrap()
            .unwrap();
        let t = TestDb::on(&pg.url()).await;
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let lease = db
            .register("a", 1, None, Duration::from_secs(60))
            .await
            .unwrap();
        let feed = db.commit_feed();
        let mut events = feed.subscribe();
        assert_eq!(next(&mut events).await, CommitEvent::Resync);
        let upload = |records| UploadCommit {
            object_key: format!("test/{}", Uuid::new_v4()),
            object_size: 10,
            batches: vec![BatchAppend {
                topic_id: topic.topic_id,
                partition: 0,
                byte_offset: 0,
                byte_length: 10,
                record_count: records,
                base_timestamp: 0,
                max_timestamp: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                is_transactional: false,
                is_control: false,
                follows: None,
            }],
        };

        let mut pg = tokio::task::spawn_blocking(move || {
            let mut pg = pg;
            pg.stop();
            pg
        })
        .await
        .unwrap();
        // Down: a commit fails, retriable, and claims nothing.
        let e = db.commit_upload(&lease, &upload(1)).await.unwrap_err();
        assert!(e.is_retriable(), "{e}");
        let pg = tokio::task::spawn_blocking(move || {
            pg.start_again().unwrap();
            pg
        })
        .await
        .unwrap();

        // Back: the feed reconnects and says so; commits go through again (the pool drops its
        // dead connections, possibly after one more retriable failure).
        assert_eq!(next(&mut events).await, CommitEvent::Resync);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let out = loop {
            match db.commit_upload(&lease, &upload(3)).await {
                Ok(out) => break out,
                Err(e) if e.is_retriable() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            out,
            vec![crate::cluster::types::BatchOutcome::Appended {
                base_offset: 0,
                log_start_offset: 0
            }]
        );
        assert!(matches!(
            next(&mut events).await,
            CommitEvent::Commit(n) if n.high_watermark == 3
        ));
        drop(pg);
    }

    #[test]
    fn payloads_round_trip_and_foreign_ones_are_ignored() {
        let n = CommitNotice {
            topic_id: Uuid::new_v4(),
            partition: 7,
            high_watermark: 1234,
        };
        assert_eq!(parse_notice(&notice_payload(&n)), Some(n));
        assert_eq!(parse_notice("hello"), None);
        assert_eq!(parse_notice(&format!("{} 1 2 3", n.topic_id)), None);
        assert_eq!(parse_notice(&format!("{} x 2", n.topic_id)), None);
        assert_eq!(
            parse_event(&notice_payload(&n)),
            Some(CommitEvent::Commit(n))
        );
        assert_eq!(
            parse_event(&topic_changed_payload("orders")),
            Some(CommitEvent::TopicChanged("orders".into()))
        );
        assert_eq!(
            parse_event(&log_start_payload(n.topic_id, 3, 42)),
            Some(CommitEvent::LogStartMoved {
                topic_id: n.topic_id,
                partition: 3,
                log_start_offset: 42
            })
        );
        assert_eq!(parse_event("topic "), None);
        assert_eq!(parse_event("topic a b"), None);
        assert_eq!(parse_event("start nope 1 2"), None);
    }
}
