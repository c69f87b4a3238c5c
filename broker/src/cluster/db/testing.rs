//! Test support: a fresh database per test on one PostgreSQL server, so tests run in parallel
//! without seeing each other's rows.

use super::{Db, DbError};

/// The PostgreSQL server the tests share: `SLUICE_TEST_POSTGRES` (a URL of a superuser).
fn server_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES")
        .expect("SLUICE_TEST_POSTGRES must name a PostgreSQL server for the cluster db tests")
}

/// Databases are created one at a time: concurrent CREATE DATABASE from one template fails.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A database of its own for one test.
pub(crate) struct TestDb {
    pub(crate) url: String,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let server = server_url();
        let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
        let _one_at_a_time = CREATING.lock().await;
        let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL server");
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = conn.await;
        let mut config: tokio_postgres::Config = server.parse().expect("test server URL");
        config.dbname(&name);
        let url = url_of(&config);
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

/// A URL for a config of the test server (user, host, port, database; no password: trust).
fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/{db}")
}
