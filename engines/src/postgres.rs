//! A throwaway PostgreSQL cluster: `initdb` in a temp dir (trust auth, user `postgres`), the
//! server on an unused 127.0.0.1 port with its socket in that dir, waited for until it accepts
//! connections; stop, kill -9 and start again on the same dir and port.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::process::{self, User};

/// How long a (re)start may take before it is an error: initdb and the first start on a busy
/// 2-core machine take a few seconds; recovery after a kill -9 replays the WAL.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped) PostgreSQL cluster, killed and removed on drop.
pub struct Postgres {
    /// Holds `data/` (the cluster), the Unix socket and `postgres.log`; removed on drop.
    dir: TempDir,
    /// The directory of `initdb`, `postgres` and `pg_isready` (one installation, one version).
    bin: PathBuf,
    /// The 127.0.0.1 port, kept across restarts so clients reconnect to the same URL.
    port: u16,
    /// Who the server runs as when the tests run as root (PostgreSQL refuses to run as root).
    user: Option<User>,
    /// The postmaster while it runs.
    child: Option<Child>,
}

impl Postgres {
    /// `initdb` in a fresh temp dir and starts the server; returns once it accepts connections.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = find_bin_dir().context(
            "PostgreSQL not found in /usr/lib/postgresql/*/bin nor on PATH \
             (scripts/test.sh installs Debian's postgresql package)",
        )?;
        let user = process::unprivileged_user(&["postgres", "nobody"])?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .context("creating a temp dir")?;
        process::give_to(dir.path(), user)?;
        let port = process::unused_ports(1)?[0];
        let mut pg = Postgres {
            dir,
            bin,
            port,
            user,
            child: None,
        };
        pg.initdb()?;
        pg.start_again()?;
        Ok(pg)
    }

    /// Whether PostgreSQL's binaries can be found (see [`crate::require`]).
    pub fn installed() -> bool {
        find_bin_dir().is_some()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth: no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The 127.0.0.1 port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (the cluster `initdb` made).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the postmaster is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// A fast shutdown (SIGINT: open transactions roll back, committed ones are on disk), waited
    /// for; the server is killed if it takes longer than 30 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, "INT", STOP_TIMEOUT);
        }
    }

    /// SIGKILL of the postmaster: a crash. Its backends notice and exit; the next start recovers
    /// from the WAL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Stop, then start again on the same dir and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again()
    }

    /// Starts the server (again) on the same dir and port, after [`Postgres::stop`] or
    /// [`Postgres::kill9`]; returns once it accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("PostgreSQL is already running");
        }
        // After a kill -9 the old backends may hold the shared memory (or the port) for a
        // moment, and the new postmaster exits at once: start it again until it stays up.
        let mut spawned = self.spawn()?;
        let ready = process::poll(START_TIMEOUT, "PostgreSQL", || {
            if let Some(status) = spawned.try_wait()? {
                let why = format!("postgres exited ({status}): {}", self.log_tail());
                spawned = self.spawn()?;
                return Ok(Err(why));
            }
            Ok(self.accepts_connections())
        });
        match ready {
            Ok(()) => {
                self.child = Some(spawned);
                Ok(())
            }
            Err(err) => {
                process::kill(&mut spawned);
                Err(err)
            }
        }
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            // A throwaway cluster: no fsync of the fresh files (the server itself still fsyncs).
            .arg("--no-sync")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening postgres.log")?;
        self.command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Brokers of a test each keep a pool; a few test binaries may share one server.
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log)
            .spawn()
            .context("starting postgres")
    }

    /// `Ok` once `pg_isready` says the server accepts connections, else why not.
    fn accepts_connections(&self) -> Result<(), String> {
        let output = self
            .command("pg_isready")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-p"])
            .arg(self.port.to_string())
            .output()
            .map_err(|e| format!("running pg_isready: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stdout).trim().to_string())
        }
    }

    /// A command of this installation, run as the unprivileged user when we are root.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.dir.path());
        if let Some(user) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        process::log_tail(&self.log_path())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster takes its backends down with it.
            process::stop(&mut child, "QUIT", Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!("---- postgres log ----\n{}", self.log_tail());
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `postgres`, else the directory of
/// `postgres` on PATH.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    let dirs: Vec<PathBuf> = versions.into_iter().rev().map(|(_, dir)| dir).collect();
    process::find_binary("postgres", &dirs)
        .and_then(|postgres| std::fs::canonicalize(postgres).ok())
        .and_then(|postgres| postgres.parent().map(Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn query_one(url: &str, sql: &str) -> anyhow::Result<String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let row = client.query_one(sql, &[]).await?;
        Ok(row.try_get(0)?)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn starts_accepts_sql_and_keeps_committed_rows_across_restart_and_kill9() {
        if !crate::require("PostgreSQL", Postgres::installed()) {
            return;
        }
        let mut pg = Postgres::start().unwrap();
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(connection);
        client
            .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')")
            .await
            .unwrap();
        drop(client);
        let _ = conn.await;

        pg.restart().unwrap();
        let v = query_one(&pg.url(), "SELECT v FROM t").await.unwrap();
        assert_eq!(v, "committed");

        pg.kill9();
        assert!(query_one(&pg.url(), "SELECT v FROM t").await.is_err());
        pg.start_again().unwrap();
        let v = query_one(&pg.url(), "SELECT v FROM t").await.unwrap();
        assert_eq!(v, "committed");

        let listen = query_one(&pg.url(), "SHOW listen_addresses").await.unwrap();
        assert_eq!(listen, "127.0.0.1");
    }

    #[test]
    fn drop_stops_the_server_and_removes_its_dir() {
        if !crate::require("PostgreSQL", Postgres::installed()) {
            return;
        }
        let pg = Postgres::start().unwrap();
        let dir = pg.dir.path().to_path_buf();
        let port = pg.port();
        drop(pg);
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
