//! PostgreSQL, the cluster's sequencer and metadata store: [`Db`] is a connection pool on the
//! metadata database with the schema migrated, and every query the cluster makes is a method on
//! it, grouped by what it touches:
//!
//! - [`migrations`]: the versioned schema, applied once under an advisory lock.
//! - [`brokers`]: registrations, leases (epochs that fence a zombie) and the live brokers.
//! - [`cluster`]: the cluster id, one for every broker.
//! - [`topics`]: topics, partitions, topic configs, producer id allocation.
//! - [`lease`]: the fenced lease (bound to a broker epoch) that groups and connector tasks share.
//! - [`groups`]: group coordinator leases and committed offsets.
//! - [`connectors`]: connector configs and target states, task leases and statuses, source
//!   positions, sink offsets committed under the task lease.
//! - [`deployments`]: transform deployments, cluster-wide, with a notice per change.
//! - [`commit`]: the commit of one upload (offsets, idempotent sequences, notifications).
//! - [`reads`]: partition offsets and batch coordinates for fetches and ListOffsets.
//! - [`notify`]: the LISTEN connection turning commit notifications into a broadcast.
//! - [`maintenance`]: retention, record deletion, orphaned objects, object rewrites.

pub mod brokers;
pub mod cluster;
pub mod commit;
pub mod connectors;
pub mod deployments;
pub mod groups;
pub(crate) mod lease;
pub mod maintenance;
pub mod migrations;
pub mod notify;
pub mod reads;
pub mod topics;

#[cfg(test)]
pub(crate) mod testing;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Connections the pool keeps at most: commits, reads and admin calls of one broker share them.
const POOL_SIZE: usize = 16;
/// How long a query waits for a pooled connection, or a new connection for PostgreSQL's answer,
/// before the caller is told the database is unavailable (a retriable error, not a hang).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session may sit idle inside a transaction before PostgreSQL ends it: longer
/// than any pause between the statements of a commit of a live broker.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);
/// How long a statement waits for a row lock (another broker's commit on the same partitions
/// holds it for milliseconds; a stalled one until [`IDLE_IN_TRANSACTION`]).
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// The longest any one statement may run.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a metadata database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The `--metadata` URL does not parse (its text is not repeated: it may hold a password).
    #[error("invalid metadata database URL: {0}")]
    InvalidUrl(String),
    /// The database cannot be reached, went away mid-call, or refused for now (shutting down,
    /// too many connections, a serialization conflict): the call may succeed if retried.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// The database was migrated by a newer Sluice.
    #[error(
        "the metadata database is at schema version {found}, this sluice knows up to {known}: \
         upgrade sluice"
    )]
    SchemaTooNew { found: i32, known: i32 },
    /// The broker's lease was superseded (a newer registration of the same host:port) or has
    /// lapsed: nothing was committed, and the broker must register again.
    #[error("this broker's lease is no longer current (superseded or lapsed): nothing committed")]
    Fenced,
    #[error("topic {0:?} already exists")]
    TopicAlreadyExists(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("unknown partition {partition} of topic {topic_id}")]
    UnknownPartition {
        topic_id: uuid::Uuid,
        partition: i32,
    },
    /// An offset past the partition's high watermark (DeleteRecords).
    #[error("offset {offset} is past the high watermark {high_watermark}")]
    OffsetOutOfRange { offset: i64, high_watermark: i64 },
    /// A partition count that is not positive, or not above the current one.
    #[error("invalid partition count for topic {topic:?}: {reason}")]
    InvalidPartitions { topic: String, reason: String },
    /// A caller handed the database something it cannot store (a bug upstream, named).
    #[error("invalid request to the metadata database: {0}")]
    Invalid(String),
    /// What the database holds does not parse (edited by hand, or another program's table).
    #[error("the metadata database holds invalid data: {0}")]
    Corrupt(String),
    /// Any other error PostgreSQL answered (a constraint, a permission): not retriable.
    #[error("metadata database error: {0}")]
    Query(String),
}

impl DbError {
    /// Whether the same call may succeed later (the database is down or busy), so that the
    /// Kafka edge answers a retriable error code rather than a final one.
    pub fn is_retriable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // No SQLSTATE: the socket closed, timed out or never opened.
            return DbError::Unavailable(e.to_string());
        };
        let message = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        if is_transient(code) {
            DbError::Unavailable(format!("{message} (SQLSTATE {})", code.code()))
        } else {
            DbError::Query(format!("{message} (SQLSTATE {})", code.code()))
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

/// SQLSTATEs after which the same call can succeed: connection trouble (class 08), the server
/// shutting down or starting (57P0x), lack of resources (class 53), our own timeouts (a lock
/// wait, a statement, a session idle in a transaction), and the conflicts PostgreSQL resolves
/// by aborting one side (serialization failure, deadlock).
fn is_transient(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("57P")
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// The metadata database: a pool of connections on a migrated schema. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// Connections for every query but LISTEN (which needs one of its own, see [`notify`]).
    pool: Pool,
    /// Where to connect, for the LISTEN connection.
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config itself: its Debug would show the password.
        f.debug_struct("Db")
            .field("target", &target(&self.config))
            .finish()
    }
}

impl Db {
    /// Connects to `url` (`postgres://USER:PASS@HOST:PORT/DB`), and migrates the schema to this
    /// binary's version (see [`migrations`]). Fails if the database cannot be reached now.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| DbError::InvalidUrl(e.to_string()))?;
        Db::connect_config(config).await
    }

    /// [`Db::connect`] with the settings already parsed (`--metadata`, see
    /// [`crate::cluster::config::MetadataUrl::pg_config`]).
    pub async fn connect_config(mut config: tokio_postgres::Config) -> Result<Db, DbError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sluice");
        }
        // A broker stalled inside a commit (SIGSTOP, a frozen VM) must not hold its partition
        // locks for ever: PostgreSQL ends a session idle in a transaction, rolling it back, and
        // a commit waiting on locks gives up (retriable) instead of hanging its producers.
        let ours = format!(
            "-c idle_in_transaction_session_timeout={} -c lock_timeout={} -c statement_timeout={}",
            IDLE_IN_TRANSACTION.as_millis(),
            LOCK_WAIT.as_millis(),
            STATEMENT_TIMEOUT.as_millis()
        );
        let options = match config.get_options() {
            Some(theirs) => format!("{ours} {theirs}"),
            None => ours,
        };
        config.options(&options);
        // Dead peers (a PostgreSQL host that vanished) are noticed instead of hanging forever.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 2))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| DbError::InvalidUrl(e.to_string()))?;
        let db = Db { pool, config };
        db.migrate().await.map_err(|e| match e {
            DbError::Unavailable(reason) => {
                DbError::Unavailable(format!("cannot reach {}: {reason}", target(&db.config)))
            }
            other => other,
        })?;
        Ok(db)
    }

    /// Where this database is, for messages: host, port and database name, never the password.
    pub fn target(&self) -> String {
        target(&self.config)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }
}

/// `user@host:port/db` of a config, for messages.
fn target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// A byte offset or size as PostgreSQL's BIGINT.
fn to_i64(what: &str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Invalid(format!("{what} {v} is past i64::MAX")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_url_is_named_without_its_password() {
        let e = Db::connect("postgres://u:s3cret@host:notaport/db")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DbError::InvalidUrl(_)), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(!e.is_retriable());
    }

    #[tokio::test]
    async fn unreachable_database_is_retriable_and_hides_the_password() {
        // A port nothing listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://u:s3cret@127.0.0.1:{port}/db");
        let e = Db::connect(&url).await.unwrap_err();
        let msg = e.to_string();
        assert!(e.is_retriable(), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(msg.contains(&format!("127.0.0.1:{port}/db")), "{msg}");
    }
}
