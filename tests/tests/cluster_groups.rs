//! Consumer groups in cluster mode across a coordinator crash: three brokers, a group of stock
//! librdkafka consumers committing offsets, the group's coordinator killed with SIGKILL while a
//! producer keeps writing through a live broker. The consumers find the new coordinator
//! (NOT_COORDINATOR → FindCoordinator → rejoin) and go on: no record is skipped, a record is
//! read twice only if it was past the last commit, committed offsets never go backwards and the
//! group's generation goes up.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::cluster::{Cluster, FAST};
use common::eventually;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const GROUP: &str = "billing";
const TIMEOUT: Duration = Duration::from_secs(120);

/// Acknowledged records as (partition, offset) → key.
type Acked = Arc<Mutex<BTreeMap<(i32, i64), String>>>;

/// Records every acknowledgement and every delivery failure.
struct Acks {
    acked: Acked,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                self.acked
                    .lock()
                    .expect("acks")
                    .insert((m.partition(), m.offset()), key);
            }
            Err((e, _)) => self.failed.lock().expect("failures").push(e.to_string()),
        }
    }
}

fn producer(bootstrap: &str, acks: &Acks) -> BaseProducer<Acks> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Long enough to ride out the partitions led by the killed broker moving elsewhere.
        .set("message.timeout.ms", "90000")
        .create_with_context(Acks {
            acked: acks.acked.clone(),
            failed: acks.failed.clone(),
        })
        .expect("producer")
}

/// Sends records `k<from>`..`k<to>` (values `v<i>`), serving delivery reports as it goes.
fn send_range(producer: &BaseProducer<Acks>, from: usize, to: usize) {
    for i in from..to {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        common::send_queued(producer, BaseRecord::to(TOPIC).key(&key).payload(&value));
    }
}

/// What the consumers saw, shared between them (partitions move from one to the other).
#[derive(Default)]
struct Seen {
    /// Every record consumed: (partition, offset) → key, and how often.
    records: HashMap<(i32, i64), (String, u32)>,
    /// Per partition, the highest offset a commit was acknowledged for: a record below it must
    /// never be delivered again.
    committed: HashMap<i32, i64>,
    /// Records delivered again although a commit past them had been acknowledged.
    redelivered_below_commit: Vec<String>,
    /// Acknowledged commits after the coordinator was killed.
    commits_after_kill: usize,
}

/// A group member: polls, records what it got, commits its position every 50 records or when
/// idle, until `stop`.
fn member(
    bootstrap: String,
    seen: Arc<Mutex<Seen>>,
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let mut uncommitted = 0usize;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                    let mut seen = seen.lock().expect("seen");
                    let below = seen
                        .committed
                        .get(&m.partition())
                        .is_some_and(|&c| m.offset() < c);
                    let entry = seen
                        .records
                        .entry((m.partition(), m.offset()))
                        .or_insert((key, 0));
                    entry.1 += 1;
                    if entry.1 > 1 && below {
                        let what = format!("{}@{} again", m.partition(), m.offset());
                        seen.redelivered_below_commit.push(what);
                    }
                    uncommitted += 1;
                    if uncommitted < 50 {
                        continue;
                    }
                }
                // The dead coordinator (and leader) shows up as transport failures while
                // Metadata still lists it; the client goes on through the live brokers.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                ))) => continue,
                Some(Err(e)) => {
                    eprintln!("consumer: {e}");
                    continue;
                }
                None if uncommitted == 0 => continue,
                None => {}
            }
            // The position is the next offset to read: everything before it was recorded.
            let Ok(position) = consumer.position() else {
                continue;
            };
            let mut commit = TopicPartitionList::new();
            let mut offsets = Vec::new();
            for e in position.elements() {
                if let Offset::Offset(o) = e.offset() {
                    offsets.push((e.partition(), o));
                    let _ = commit.add_partition_offset(TOPIC, e.partition(), Offset::Offset(o));
                }
            }
            if offsets.is_empty() {
                continue;
            }
            if consumer.commit(&commit, CommitMode::Sync).is_ok() {
                uncommitted = 0;
                let mut seen = seen.lock().expect("seen");
                for (p, o) in offsets {
                    let c = seen.committed.entry(p).or_insert(o);
                    *c = (*c).max(o);
                }
                if killed.load(Ordering::Relaxed) {
                    seen.commits_after_kill += 1;
                }
            }
        }
    })
}

/// The group's committed offsets as a client outside the group reads them (OffsetFetch through
/// whichever broker coordinates it now); `None` while that fails (no coordinator yet).
fn committed_offsets(reader: &BaseConsumer) -> Option<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = reader.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    Some(
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
    )
}

/// FindCoordinator for the group, asked of `broker` over a raw connection: the coordinator's
/// port, or `None` while it has none (an error code).
fn coordinator_port(broker: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(broker).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let version = 3;
    let api = ApiKey::FindCoordinator;
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("failover-test")));
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str(GROUP))
        .with_key_type(0);
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .ok()?;
    request.encode(&mut body, version).ok()?;
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(body.len()).ok()?);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).ok()?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(len)).ok()?];
    stream.read_exact(&mut response).ok()?;
    let mut buf = Bytes::from(response);
    buf.get_i32(); // correlation id
    buf.get_u8(); // the flexible response header's tagged fields
    let found = FindCoordinatorResponse::decode(&mut buf, version).ok()?;
    (found.error_code == 0)
        .then(|| u16::try_from(found.port).ok())
        .flatten()
}

/// The group's generation as its coordinator last recorded it in PostgreSQL (what a new
/// coordinator goes on from).
fn recorded_generation(cluster: &Cluster) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&cluster.pg.url(), tokio_postgres::NoTls)
                .await
                .expect("connect to PostgreSQL");
        tokio::spawn(connection);
        let row = client
            .query_opt(
                "SELECT generation FROM sluice_group_leases WHERE group_id = $1",
                &[&GROUP],
            )
            .await
            .expect("read the group lease");
        row.map_or(0, |r| r.get(0))
    })
}

#[test]
fn group_coordinator_killed_mid_consumption_skips_no_record_and_commits_go_on() {
    let toml = format!("{FAST}\"group.initial.rebalance.delay.ms\" = 0\n");
    let Some(mut cluster) = Cluster::start_with(3, &toml) else {
        return;
    };
    common::create_topic(&cluster.brokers[0], TOPIC, PARTITIONS);
    let acks = Acks {
        acked: Arc::new(Mutex::new(BTreeMap::new())),
        failed: Arc::new(Mutex::new(Vec::new())),
    };
    {
        let first = producer(&cluster.bootstrap(), &acks);
        send_range(&first, 0, 3000);
        first.flush(TIMEOUT).expect("the first 3000 acknowledged");
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (killed, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let members: Vec<_> = (0..2)
        .map(|_| {
            member(
                cluster.bootstrap(),
                seen.clone(),
                killed.clone(),
                stop.clone(),
            )
        })
        .collect();
    let consumed = |n: usize| seen.lock().expect("seen").records.len() >= n;
    assert!(
        eventually(TIMEOUT, || consumed(1000).then_some(())).is_some(),
        "the group consumed 1000 records\n{}",
        cluster.logs()
    );
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", GROUP)
        .create()
        .expect("offsets reader");
    let before = eventually(TIMEOUT, || {
        committed_offsets(&reader).filter(|c| !c.is_empty())
    })
    .expect("offsets committed before the crash");
    let generation_before = eventually(TIMEOUT, || {
        Some(recorded_generation(&cluster)).filter(|&g| g >= 1)
    })
    .expect("the group's rebalance recorded");
    let port = eventually(TIMEOUT, || coordinator_port(cluster.kafka(0))).expect("a coordinator");
    let coordinator = (0..3)
        .find(|&i| cluster.kafka(i).ends_with(&format!(":{port}")))
        .expect("the coordinator is one of the brokers");
    let live = (coordinator + 1) % 3;

    // Producing goes on through a live broker while the coordinator dies: 100 records at a
    // time, each hundred acknowledged before the next, so the stream spans the crash.
    let producing = {
        let second = producer(cluster.kafka(live), &acks);
        std::thread::spawn(move || {
            for from in (3000..6000).step_by(100) {
                send_range(&second, from, from + 100);
                second.flush(TIMEOUT).map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
    };
    let acked = |n: usize| acks.acked.lock().expect("acks").len() >= n;
    assert!(
        eventually(TIMEOUT, || acked(3500).then_some(())).is_some(),
        "records acknowledged through broker {live}\n{}",
        cluster.logs()
    );
    killed.store(true, Ordering::Relaxed);
    cluster.kill9(coordinator);
    let acked_at_kill = acks.acked.lock().expect("acks").len();

    // Committed offsets, as seen from outside, never go back while the group moves.
    let mut last = before.clone();
    let mut went_back = Vec::new();
    let mut watch = |last: &mut BTreeMap<i32, i64>| {
        if let Some(now) = committed_offsets(&reader) {
            for (p, o) in now {
                let was = last.entry(p).or_insert(o);
                if o < *was {
                    went_back.push(format!("partition {p}: {was} -> {o}"));
                }
                *was = (*was).max(o);
            }
        }
    };
    let produced = eventually(TIMEOUT, || {
        watch(&mut last);
        producing.is_finished().then_some(())
    });
    assert!(
        produced.is_some(),
        "the producer finished\n{}",
        cluster.logs()
    );
    let flushed = producing.join().expect("producer thread");
    assert_eq!(
        flushed,
        Ok(()),
        "every record acknowledged\n{}",
        cluster.logs()
    );
    assert!(acks.failed.lock().expect("failures").is_empty());
    let acked = acks.acked.lock().expect("acks").clone();
    assert_eq!(acked.len(), 6000);
    assert!(
        acked_at_kill < 6000,
        "records were still being produced at the crash"
    );
    let ends: BTreeMap<i32, i64> = acked.keys().fold(BTreeMap::new(), |mut ends, &(p, o)| {
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
        ends
    });
    // Done when every acknowledged record was consumed and the group's commits reached the end
    // of every partition, through the new coordinator.
    let done = eventually(TIMEOUT, || {
        watch(&mut last);
        let seen = seen.lock().expect("seen");
        let all = acked.keys().all(|k| seen.records.contains_key(k));
        (all && last == ends).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for m in members {
        m.join().expect("member thread");
    }
    let seen = seen.lock().expect("seen");
    let missing: Vec<_> = acked
        .keys()
        .filter(|k| !seen.records.contains_key(k))
        .take(10)
        .collect();
    assert!(
        done.is_some(),
        "missing {missing:?}; committed {last:?}, log ends {ends:?}\n{}",
        cluster.logs()
    );
    for (at, key) in &acked {
        assert_eq!(&seen.records[at].0, key, "the record at {at:?}");
    }
    let keys: HashSet<&String> = seen.records.values().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), seen.records.len(), "a key stored twice");
    assert!(
        seen.redelivered_below_commit.is_empty(),
        "records read again below an acknowledged commit: {:?}",
        seen.redelivered_below_commit
    );
    assert!(
        went_back.is_empty(),
        "committed offsets went back: {went_back:?}"
    );
    assert!(
        seen.commits_after_kill > 0,
        "commits went on after the crash"
    );
    let duplicates = seen.records.values().filter(|(_, n)| *n > 1).count();
    eprintln!("{duplicates} records read twice (past the last commit), coordinator was broker {coordinator}");

    // The group moved to a live broker, at a later generation.
    let moved = eventually(TIMEOUT, || {
        coordinator_port(cluster.kafka(live)).filter(|&p| p != port)
    });
    assert!(moved.is_some(), "the group has a new coordinator");
    let generation_after = eventually(TIMEOUT, || {
        Some(recorded_generation(&cluster)).filter(|&g| g > generation_before)
    });
    assert!(
        generation_after.is_some(),
        "the generation went up from {generation_before}\n{}",
        cluster.logs()
    );
}
