//! Kafka transactions against the real broker with stock clients: confluent-kafka (librdkafka)
//! transactional producers committing, aborting, fenced by a newer producer and aborted at their
//! timeout; kafkajs consume-transform-produce with `sendOffsets`; `kill -9` mid-transaction and
//! under transactional load, after which every transaction is whole or absent.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{run, tool, workspace_root, Broker, Options};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Broker settings: the timed-out transaction scan runs every 200 ms instead of 10 s.
fn options() -> Options {
    Options {
        toml: "\"transaction.abort.timed.out.transaction.cleanup.interval.ms\" = 200\n\
               \"group.initial.rebalance.delay.ms\" = 0\n"
            .into(),
        ..Options::default()
    }
}

/// The same on a fixed port, so clients started after a restart find the broker where it was.
fn options_on_fixed_port() -> Options {
    Options {
        kafka_port: Some(common::unused_port()),
        ..options()
    }
}

/// The Python interpreter with confluent-kafka, or `None` (skipped) outside CI.
fn python() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let found = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "confluent-kafka missing: scripts/test.sh installs it"
    );
    eprintln!("SKIPPED: confluent-kafka not installed (run scripts/test.sh)");
    None
}

fn script(python: &str, broker: &Broker, args: &[&str]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/transactions_check.py"))
        .args(args)
        .env("KAFKA_BROKER", &broker.kafka);
    cmd
}

/// Runs a subcommand that must print "ok".
fn check(python: &str, broker: &Broker, args: &[&str]) {
    let out = run(script(python, broker, args), TIMEOUT);
    assert!(
        out.status.success() && out.stdout.trim() == "ok",
        "{args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// Every value of `topic` as a consumer with `isolation` sees it.
fn read(
    python: &str,
    broker: &Broker,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<String> {
    let out = run(
        script(
            python,
            broker,
            &["read", topic, &partitions.to_string(), isolation],
        ),
        TIMEOUT,
    );
    assert!(out.status.success(), "read {topic}: {}", out.stderr);
    out.stdout.lines().map(str::to_string).collect()
}

/// A client that runs until killed, with its stdout lines delivered as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// Waits for a line satisfying `want`; returns every line read up to it.
    fn wait_for(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = want(&line);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("client line never came ({e}); got {seen:?}"),
            }
        }
    }

    /// Waits for the client to exit; returns the lines it printed since the last read.
    fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "client did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_transactional_producer_commits_and_aborts_and_read_committed_sees_only_the_commits() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    check(&py, &broker, &["commit-abort", "txn-commit-abort"]);
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    check(&py, &broker, &["fence", "txn-fence"]);
}

#[test]
fn an_abandoned_transaction_is_aborted_at_its_timeout_and_its_producer_fenced() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    check(&py, &broker, &["timeout", "txn-timeout"]);
}

#[test]
fn kill9_mid_transaction_then_a_new_producer_aborts_it_and_commits() {
    let Some(py) = python() else { return };
    let mut broker = Broker::start_with(options_on_fixed_port());
    let open = Running::start(script(&py, &broker, &["open", "txn-crash", "crash-tx"]));
    open.wait_for(|l| l == "open");
    broker.kill9();
    drop(open);
    broker.start_again();
    check(&py, &broker, &["resume", "txn-crash", "crash-tx"]);
    let mut committed = read(&py, &broker, "txn-crash", 2, "read_committed");
    committed.sort();
    assert_eq!(committed, ["resumed-0", "resumed-1", "resumed-2"]);
    let everything = read(&py, &broker, "txn-crash", 2, "read_uncommitted");
    assert_eq!(everything.len(), 13, "{everything:?}");
}

/// Transactions of one record on each of 3 partitions, committed back to back while the broker
/// is killed (-9) four times at different points; after each restart a new producer with the
/// same transactional id takes over. Afterwards read_committed holds every transaction whose
/// commit returned, and each transaction it holds is whole (all 3 partitions).
#[test]
fn kill9_under_transactional_load_leaves_every_transaction_whole_or_absent() {
    let Some(py) = python() else { return };
    let mut broker = Broker::start_with(options_on_fixed_port());
    let partitions = 3;
    let mut acknowledged = BTreeSet::new();
    for run in 0..4 {
        let load = Running::start(script(
            &py,
            &broker,
            &[
                "load",
                "txn-load",
                &partitions.to_string(),
                "load-tx",
                &format!("r{run}"),
            ],
        ));
        // A few commits, then a crash somewhere in the next transactions.
        let wanted = format!("committed r{run}-{}", 3 + run * 2);
        for line in load.wait_for(|l| l == wanted) {
            if let Some(txn) = line.strip_prefix("committed ") {
                acknowledged.insert(txn.to_string());
            }
        }
        broker.kill9();
        for line in load.finish() {
            if let Some(txn) = line.strip_prefix("committed ") {
                acknowledged.insert(txn.to_string());
            }
        }
        broker.start_again();
    }
    // The last run's producer may have left a transaction open: a new one with the id ends it.
    check(&py, &broker, &["resume", "txn-load", "load-tx"]);
    let mut by_txn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for value in read(&py, &broker, "txn-load", partitions, "read_committed") {
        if let Some((txn, part)) = value.rsplit_once('-') {
            if txn.starts_with('r') {
                assert!(
                    by_txn
                        .entry(txn.to_string())
                        .or_default()
                        .insert(part.to_string()),
                    "{value} seen twice"
                );
            }
        }
    }
    for (txn, parts) in &by_txn {
        assert_eq!(
            parts.len(),
            partitions as usize,
            "{txn} is partly visible: {parts:?}"
        );
    }
    for txn in &acknowledged {
        assert!(by_txn.contains_key(txn), "committed {txn} is not visible");
    }
}

#[test]
fn kafkajs_consume_transform_produce_with_send_offsets_is_exactly_once() {
    let Some(py) = python() else { return };
    let Some(mut node) = tool("node") else { return };
    let dir = workspace_root().join("tests/node");
    if !dir.join("node_modules/kafkajs").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/node has no node_modules: run scripts/test.sh"
        );
        eprintln!("SKIPPED: tests/node/node_modules missing (run scripts/test.sh)");
        return;
    }
    let broker = Broker::start_with(options());
    node.arg("transaction_check.js")
        .current_dir(dir)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(node, TIMEOUT);
    assert!(
        out.status.success() && out.stdout.trim() == "ok",
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut committed = read(&py, &broker, "eos-out", 2, "read_committed");
    committed.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("V{i}")).collect();
    want.sort();
    assert_eq!(
        committed, want,
        "each input exactly once in the committed output"
    );
    let everything = read(&py, &broker, "eos-out", 2, "read_uncommitted");
    assert!(
        everything.len() > 100,
        "the aborted first batch is stored but not committed ({} records)",
        everything.len()
    );
}
