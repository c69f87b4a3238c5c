//! Transforms inside Kafka transactions, against the real binary with confluent-kafka
//! transactional producers: an uppercase transform's outputs of a transactional input belong to
//! the input's transaction (visible to read_committed only if it commits, never if it aborts);
//! an in-place transform keeps the transaction; `kill -9` mid-transaction, after the outputs are
//! written, then restart: the broker aborts the transaction at its timeout on the output
//! partition too, and the producer's id carries on; a stateful transform refuses transactional
//! writes (its store could not take back an abort's changes). (A crash between the input's and
//! the outputs' markers is `txn_markers`' unit test: the restarted coordinator completes both.)

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, guest_module, run, transform_cli, workspace_root, Broker, Options};

const TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka")
}

/// The transaction scan every 200 ms (not 10 s), on a fixed port so clients find the broker
/// where it was after a restart.
fn options() -> Options {
    Options {
        kafka_port: Some(common::unused_port()),
        toml: "\"transaction.abort.timed.out.transaction.cleanup.interval.ms\" = 200\n".into(),
        ..Options::default()
    }
}

fn script(python: &str, broker: &Broker, args: &[&str]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/txn_transforms_check.py"))
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

/// What a subcommand printed, one entry a line.
fn lines(python: &str, broker: &Broker, args: &[&str]) -> Vec<String> {
    let out = run(script(python, broker, args), TIMEOUT);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    out.stdout.lines().map(str::to_string).collect()
}

/// Deploys the uppercase guest with `args` (name, input, output or --in-place).
fn deploy_uppercase(broker: &Broker, args: &[&str]) {
    let module = guest_module("uppercase").to_string_lossy().to_string();
    let mut all = vec!["deploy", module.as_str()];
    all.extend_from_slice(args);
    let out = transform_cli(broker, &all);
    assert!(
        out.status.success(),
        "deploy: {}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn outputs_of_a_transactional_input_are_read_committed_only_if_it_commits() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    deploy_uppercase(
        &broker,
        &["--name", "up", "--input", "txf-in", "--output", "txf-out"],
    );
    check(&py, &broker, &["commit-abort", "txf-in", "txf-out"]);
}

#[test]
fn an_in_place_transform_keeps_the_transaction_of_what_it_rewrites() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    deploy_uppercase(
        &broker,
        &["--name", "mask", "--input", "txf-inplace", "--in-place"],
    );
    check(&py, &broker, &["in-place", "txf-inplace"]);
}

#[test]
fn a_stateful_transform_refuses_transactional_writes_with_invalid_record() {
    let Some(py) = python() else { return };
    let broker = Broker::start_with(options());
    let module = guest_module("counter").to_string_lossy().to_string();
    let out = transform_cli(
        &broker,
        &[
            "deploy",
            &module,
            "--name",
            "count",
            "--input",
            "txf-clicks",
            "--output",
            "txf-counts",
        ],
    );
    assert!(out.status.success(), "deploy: {}", out.stderr);
    check(&py, &broker, &["stateful", "txf-clicks"]);
}

/// A client that runs until killed.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill9_mid_transaction_aborts_its_transform_outputs_at_the_timeout() {
    let Some(py) = python() else { return };
    let mut broker = Broker::start_with(options());
    deploy_uppercase(
        &broker,
        &[
            "--name",
            "up",
            "--input",
            "txf-crash",
            "--output",
            "txf-crash-out",
        ],
    );
    let mut child = script(&py, &broker, &["open", "txf-crash", "txf-crash-id", "4000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the transactional producer");
    let stdout = child.stdout.take().expect("stdout");
    let open = Client(child);
    let first = std::io::BufReader::new(stdout).lines().next();
    assert!(
        matches!(first, Some(Ok(ref l)) if l == "open"),
        "the transaction never opened: {first:?}"
    );
    // Its 5 outputs are stored (the produce was acknowledged after them), not yet visible.
    assert_eq!(
        lines(&py, &broker, &["ends", "txf-crash-out"]),
        ["0 5"],
        "the open transaction holds the output's last stable offset back"
    );
    broker.kill9();
    drop(open);
    broker.start_again();

    // Nobody comes back for it: the broker aborts it at its timeout, on the output too.
    let ended = eventually(TIMEOUT, || {
        let ends = lines(&py, &broker, &["ends", "txf-crash-out"]);
        let (committed, all) = ends.first()?.split_once(' ')?;
        (committed == all).then(|| all.to_string())
    });
    assert_eq!(
        ended.as_deref(),
        Some("6"),
        "5 outputs and their abort marker"
    );
    let committed = lines(&py, &broker, &["read", "txf-crash-out", "read_committed"]);
    assert!(
        committed.is_empty(),
        "aborted outputs visible: {committed:?}"
    );
    assert_eq!(
        lines(&py, &broker, &["read", "txf-crash-out", "read_uncommitted"]).len(),
        5,
        "each stored input has its output once, re-run or not"
    );

    check(&py, &broker, &["resume", "txf-crash", "txf-crash-id"]);
    assert_eq!(
        lines(&py, &broker, &["read", "txf-crash-out", "read_committed"]),
        ["RESUMED-0", "RESUMED-1"]
    );
    assert_eq!(
        lines(&py, &broker, &["read", "txf-crash", "read_committed"]),
        ["resumed-0", "resumed-1"]
    );
}
