//! Test support: one throwaway PostgreSQL ([`sluice_engines::Postgres`]) per test binary and
//! a fresh database on it per test, so tests run in parallel without seeing each other's rows.
//! The server is stopped when the test binary exits.

use std::sync::{Mutex, OnceLock};

use sluice_engines::Postgres;

use super::{Db, DbError};

/// The shared server, once started; `None` inside after it was stopped at exit.
static SERVER: OnceLock<Mutex<Option<Postgres>>> = OnceLock::new();

/// Databases are created one at a time: concurrent CREATE DATABASE from one template fails.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether PostgreSQL is here to test against (see [`sluice_engines::require`]).
pub(crate) fn postgres_installed() -> bool {
    sluice_engines::require("PostgreSQL", Postgres::installed())
}

extern "C" fn stop_server() {
    if let Some(server) = SERVER.get() {
        if let Ok(mut guard) = server.lock() {
            // Dropping it stops the server and removes its directory.
            guard.take();
        }
    }
}

/// The shared server's URL, starting it on first use.
fn server_url() -> String {
    let server = SERVER.get_or_init(|| {
        let pg = Postgres::start().expect("start PostgreSQL for the tests");
        // The static is never dropped: stop the server when the test binary exits.
        // SAFETY: `stop_server` is an `extern "C" fn()` that does not unwind past its frame
        // (no panics: lock errors are ignored) and only touches this process's statics.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(stop_server);
        }
        Mutex::new(Some(pg))
    });
    let guard = server.lock().expect("the test server lock");
    guard.as_ref().expect("the test server is running").url()
}

/// A database of its own for one test.
pub(crate) struct TestDb {
    pub(crate) url: String,
}

impl TestDb {
    /// A fresh database; `None` (the test skips) when PostgreSQL is not installed outside CI.
    pub(crate) async fn if_installed() -> Option<TestDb> {
        if !postgres_installed() {
            return None;
        }
        Some(TestDb::new().await)
    }

    /// A fresh database on the shared server, which must be installed.
    pub(crate) async fn new() -> TestDb {
        let server = tokio::task::spawn_blocking(server_url)
            .await
            .expect("start the test server");
        TestDb::on(&server).await
    }

    /// A fresh database on the server at `server`.
    pub(crate) async fn on(server: &str) -> TestDb {
        let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
        let _one_at_a_time = CREATING.lock().await;
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL server");
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = conn.await;
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("a test server URL without a database: {server}"),
        };
        TestDb { url }
    }

    pub(crate) async fn try_connect(&self) -> Result<Db, DbError> {
        Db::connect(&self.url).await
    }

    pub(crate) async fn connect(&self) -> Db {
        self.try_connect()
            .await
            .expect("connect to the test database")
    }
}
