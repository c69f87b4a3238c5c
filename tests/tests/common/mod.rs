//! The harness: start the real `sluice` binary, find its ports, stop, kill -9 and restart it, and
//! run client scripts against it.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cluster;

/// The workspace root (this crate is `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The target directory: `$CARGO_TARGET_DIR` (relative to the workspace root, as cargo reads it
/// there) or `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace_root().join(dir))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The `sluice` binary. `cargo test` cannot hand one crate's binary to another crate's tests
/// (`CARGO_BIN_EXE_*` is per crate), so the first test of each test binary runs
/// `cargo build --workspace --bins` (a no-op when it is up to date: the same build as the test
/// command's build step, whose workspace-wide feature set a `-p sluice` build would not share,
/// recompiling dependencies) and uses `<target dir>/debug/sluice`.
pub fn sluice_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--bins"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the sluice binary failed");
        target.join("debug").join("sluice")
    })
    .clone()
}

/// Options for a broker.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Fixed Kafka port (the seed scripts need 9092); ephemeral when `None`.
    pub kafka_port: Option<u16>,
    /// Fixed HTTP port; ephemeral when `None`.
    pub http_port: Option<u16>,
    /// Extra TOML settings (Kafka broker names).
    pub toml: String,
    /// `--flush` value.
    pub flush: Option<&'static str>,
    /// More `sluice serve` arguments (cluster mode: `--metadata`, `--objects`).
    pub args: Vec<String>,
    /// More environment variables (cluster mode: the object store's credentials).
    pub env: Vec<(String, String)>,
}

/// A running broker and its data directory.
pub struct Broker {
    pub kafka: String,
    pub http: String,
    /// The line the broker printed on stdout once both listeners were bound.
    pub startup_line: String,
    pub data: TempDir,
    child: Option<Child>,
    options: Options,
    stderr_log: PathBuf,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Broker {
        let data = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            kafka: String::new(),
            http: String::new(),
            startup_line: String::new(),
            stderr_log: data.path().join("broker.stderr"),
            data,
            child: None,
            options,
        };
        broker.spawn();
        broker
    }

    /// The partition directory of `topic`-`partition`.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data
            .path()
            .join("data")
            .join(format!("{topic}-{partition}"))
    }

    fn spawn(&mut self) {
        for port in [self.options.kafka_port, self.options.http_port]
            .into_iter()
            .flatten()
        {
            wait_port_free(port);
        }
        let data_dir = self.data.path().join("data");
        let config = self.data.path().join("sluice.toml");
        std::fs::write(&config, &self.options.toml).expect("write config");
        let kafka = format!("127.0.0.1:{}", self.options.kafka_port.unwrap_or(0));
        let http = format!("127.0.0.1:{}", self.options.http_port.unwrap_or(0));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("stderr log");
        let mut cmd = Command::new(sluice_binary());
        cmd.args(["serve", "--kafka-listen", &kafka, "--http-listen", &http])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&config)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(flush) = self.options.flush {
            cmd.args(["--flush", flush]);
        }
        cmd.args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("start sluice");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sluice did not report its ports within 60 s:\n{}",
                    self.stderr()
                );
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        self.kafka = field("kafka=");
        self.http = field("http=");
        self.startup_line = line;
        self.child = Some(child);
    }

    /// What the broker logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "sluice exited with {status}:\n{}",
                        self.stderr()
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("sluice did not stop within 30 s:\n{}", self.stderr());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: a crash, nothing flushed by the broker itself.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data directory (and the same fixed ports, if any).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts again after `kill9`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker still running");
        self.spawn();
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the broker process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("broker running").to_string();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- broker stderr ----\n{}", self.stderr());
        }
    }
}

/// Waits until a fixed port can be bound: after a restart the old process's socket may linger
/// for a moment, and another test run on this machine may be using the seed ports.
fn wait_port_free(port: u16) {
    let free = eventually(Duration::from_secs(120), || {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    });
    assert!(
        free.is_some(),
        "127.0.0.1:{port} stayed in use for 120 s (is scripts/run.sh or another test run using it?)"
    );
}

/// The compression codecs, by Kafka's names, of the batches stored in `topic`-`partition`.
/// Batches are stored as produced (the README's storage layout), so these are the codecs the
/// client really used (clients send a batch uncompressed when compressing would not shrink it).
/// A v2 batch: base offset (8 bytes), batch length (4, counting what follows it), leader epoch
/// (4), magic (1), CRC (4), attributes (2; bits 0-2 the codec).
pub fn stored_codecs(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> std::collections::BTreeSet<&'static str> {
    let mut codecs = std::collections::BTreeSet::new();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(broker.partition_dir(topic, partition))
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    for segment in segments {
        let bytes = std::fs::read(&segment).expect("segment");
        let mut at = 0;
        while at + 23 <= bytes.len() {
            let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            assert_eq!(bytes[at + 16], 2, "magic 2 in {}", segment.display());
            codecs.insert(
                match i16::from_be_bytes([bytes[at + 21], bytes[at + 22]]) & 0x7 {
                    0 => "none",
                    1 => "gzip",
                    2 => "snappy",
                    3 => "lz4",
                    4 => "zstd",
                    other => panic!("codec {other} in {}", segment.display()),
                },
            );
            at += 12 + usize::try_from(length).expect("batch length");
        }
    }
    codecs
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Output of a finished client program.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program with a timeout, returning what it printed.
pub fn run(mut cmd: Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                out_thread.join().unwrap_or_default(),
                err_thread.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// A command for a tool that the test command installs; in CI its absence is a failure, on a
/// developer machine the test says so and is skipped.
pub fn tool(name: &str) -> Option<Command> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        Some(Command::new(name))
    } else if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed; scripts/test.sh installs it");
    } else {
        eprintln!("SKIPPED: {name} is not installed (run scripts/test.sh to install it)");
        None
    }
}

/// Builds the guest examples for wasm32-wasip1 once per test run; returns the module path of
/// `name` (a crate of `guest-examples/`).
pub fn guest_module(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--profile", "guest", "--target", "wasm32-wasip1"])
            .args([
                "-p",
                "uppercase",
                "-p",
                "mask-email",
                "-p",
                "router",
                "-p",
                "hostile",
                "-p",
                "jsonl-sink",
                "-p",
                "webhook-sink",
                "-p",
                "counter",
                "-p",
                "dedup",
                "-p",
                "enrich",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build for the guests");
        assert!(
            status.success(),
            "building the guest examples failed (is wasm32-wasip1 installed?)"
        );
        target_dir().join("wasm32-wasip1").join("guest")
    });
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Runs `sluice transform ARGS... --admin http://<broker http>`.
pub fn transform_cli(broker: &Broker, args: &[&str]) -> Run {
    let mut cmd = Command::new(sluice_binary());
    cmd.arg("transform")
        .args(args)
        .arg("--admin")
        .arg(format!("http://{}", broker.http));
    run(cmd, Duration::from_secs(60))
}

/// An HTTP call with curl: `(status, body)`.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    let out = run(cmd, Duration::from_secs(30));
    let text = out.stdout;
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Broker options for group tests: no initial rebalance delay, so members join at once.
pub fn fast_groups() -> Options {
    Options {
        toml: "\"group.initial.rebalance.delay.ms\" = 0\n".into(),
        ..Options::default()
    }
}

/// Creates `topic` with `partitions` partitions through librdkafka's admin client.
pub fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topic");
    assert!(result[0].is_ok(), "{result:?}");
}

/// A port nothing listens on right now, for a broker that must come back on the same address
/// (a client that keeps its connection settings across a broker restart).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// `python` if it can import `modules` (e.g. `"confluent_kafka, kafka"`), else `None`: the
/// test is skipped outside CI, and fails under CI (`CI` set), where scripts/test.sh installs
/// every Python client the tests use.
pub fn python_importing(python: &str, modules: &str) -> Option<String> {
    let found = Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(python.to_string());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{python} cannot import {modules}: scripts/test.sh installs them"
    );
    eprintln!("SKIPPED: {python} cannot import {modules} (run scripts/test.sh)");
    None
}

/// The Python of the client tests: `$PYTHON`, or `python3`.
pub fn default_python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Sends `record` through a librdkafka producer, serving delivery reports while its queue is
/// full (a load test outruns the queue), then serves the reports ready now.
pub fn send_queued<'a, C, K, P>(
    producer: &rdkafka::producer::BaseProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'a, K, P, C::DeliveryOpaque>,
) where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((_, r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
        }
    }
    producer.poll(Duration::ZERO);
}
