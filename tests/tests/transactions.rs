//! Kafka transactions against the real broker with stock clients: confluent-kafka (librdkafka)
//! transactional producers committing, aborting, fenced by a newer producer and aborted at their
//! timeout; kafkajs consume-transform-produce with `sendOffsets`; `kill -9` mid-transaction and
//! under transactional load, after which every transaction is whole or absent; the coordinator's
//! answers on a raw connection.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use common::{run, tool, workspace_root, Broker, Options};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

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

fn python() -> Option<String> {
    common::python_importing(&common::default_python(), "confluent_kafka")
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

/// Sends one request on a raw connection and decodes its response.
fn call<Req, Resp>(
    stream: &mut std::net::TcpStream,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp
where
    Req: Encodable,
    Resp: Decodable,
{
    use std::io::{Read, Write};
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw-txn")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .expect("header");
    request.encode(&mut body, version).expect("body");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("response length");
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response).expect("response");
    let mut buf = Bytes::from(response);
    assert_eq!(buf.get_i32(), 7, "correlation id");
    if api.response_header_version(version) >= 1 {
        assert_eq!(buf.get_u8(), 0, "no tagged fields in the response header");
    }
    Resp::decode(&mut buf, version).expect("decode response")
}

/// The coordinator's answers on the wire, at the versions clients send: a bounded timeout, the
/// transaction as DescribeTransactions and ListTransactions show it, fencing errors by version.
#[test]
fn the_coordinator_answers_as_kafka_does_on_the_wire() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let broker = Broker::start_with(options());
    let mut s = std::net::TcpStream::connect(&broker.kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let name = |n: &'static str| StrBytes::from_static_str(n);
    let _: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(name("raw-txn")))),
            ]))
            .with_allow_auto_topic_creation(true),
    );
    let find: FindCoordinatorResponse = call(
        &mut s,
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(name("raw"))
            .with_key_type(1),
    );
    assert_eq!((find.error_code, find.node_id.0), (0, 1));
    let init = |s: &mut std::net::TcpStream, timeout: i32| -> InitProducerIdResponse {
        call(
            s,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(name("raw"))))
                .with_transaction_timeout_ms(timeout)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    };
    assert_eq!(
        init(&mut s, 900_001).error_code,
        ResponseError::InvalidTransactionTimeout.code(),
        "past transaction.max.timeout.ms"
    );
    let first = init(&mut s, 60_000);
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let pid = first.producer_id;
    let add = |s: &mut std::net::TcpStream, topic: &'static str, epoch: i16| {
        let r: AddPartitionsToTxnResponse = call(
            s,
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(name("raw")))
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partitions(vec![0])]),
        );
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    assert_eq!(
        add(&mut s, "no-such-topic", 0),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(add(&mut s, "raw-txn", 0), 0);

    let describe = |s: &mut std::net::TcpStream| -> DescribeTransactionsResponse {
        call(
            s,
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(name("raw")),
                TransactionalId(name("unknown")),
            ]),
        )
    };
    let d = describe(&mut s);
    let raw = &d.transaction_states[0];
    assert_eq!(raw.error_code, 0);
    assert_eq!(raw.transaction_state.as_str(), "Ongoing");
    assert_eq!((raw.producer_id, raw.producer_epoch), (pid, 0));
    assert_eq!(raw.transaction_timeout_ms, 60_000);
    assert_eq!(raw.topics[0].topic.0.as_str(), "raw-txn");
    assert_eq!(raw.topics[0].partitions, vec![0]);
    assert_eq!(
        d.transaction_states[1].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
    let list: ListTransactionsResponse = call(
        &mut s,
        ApiKey::ListTransactions,
        1,
        &ListTransactionsRequest::default()
            .with_state_filters(vec![name("Ongoing"), name("Bogus")])
            .with_duration_filter(-1),
    );
    assert_eq!(list.unknown_state_filters, vec![name("Bogus")]);
    assert_eq!(list.transaction_states.len(), 1);
    assert_eq!(
        list.transaction_states[0].transactional_id.0.as_str(),
        "raw"
    );

    let end = |s: &mut std::net::TcpStream, version: i16, epoch: i16| -> i16 {
        let r: EndTxnResponse = call(
            s,
            ApiKey::EndTxn,
            version,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(name("raw")))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(false),
        );
        r.error_code
    };
    assert_eq!(end(&mut s, 3, 0), 0);
    assert_eq!(end(&mut s, 3, 0), 0, "a retried end is answered the same");
    assert_eq!(
        describe(&mut s).transaction_states[0]
            .transaction_state
            .as_str(),
        "CompleteAbort"
    );
    // A second producer takes the id over: the first one's epoch is fenced.
    assert_eq!(init(&mut s, 60_000).producer_epoch, 1);
    assert_eq!(
        add(&mut s, "raw-txn", 0),
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(end(&mut s, 3, 0), ResponseError::ProducerFenced.code());
    assert_eq!(
        end(&mut s, 1, 0),
        ResponseError::InvalidProducerEpoch.code(),
        "before KIP-588 fencing is INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(
        end(&mut s, 3, 1),
        ResponseError::InvalidTxnState.code(),
        "nothing to end"
    );
}
