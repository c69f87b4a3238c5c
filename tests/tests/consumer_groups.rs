//! Consumer groups end to end: members of one group (kcat processes, so one can be killed for
//! real) split a 6-partition topic, take over a dead member's partitions after its session
//! timeout without skipping records, resume from committed offsets across consumer and broker
//! restarts; kafkajs and librdkafka group admin.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{create_topic, eventually, fast_groups, run, tool, workspace_root, Broker};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Produces `count` records spread over every partition; values are `"{tag}-{i}"`.
fn produce(broker: &Broker, topic: &str, partitions: i32, tag: &str, count: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("producer");
    for i in 0..count {
        let value = format!("{tag}-{i}");
        let record = BaseRecord::<(), _>::to(topic)
            .payload(&value)
            .partition((i % partitions as usize) as i32);
        producer.send(record).expect("send");
    }
    producer.flush(TIMEOUT).expect("flush");
}

/// A group member: a kcat process whose consumed `(partition, offset)`s are collected.
struct Member {
    child: Child,
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl Member {
    fn start(broker: &Broker, group: &str, topic: &str) -> Option<Member> {
        let mut cmd = tool("kcat")?;
        cmd.args([
            "-b",
            &broker.kafka,
            "-G",
            group,
            topic,
            "-u",
            "-q",
            "-f",
            "%p %o\n",
        ])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ])
        .args([
            "-X",
            "auto.commit.interval.ms=100",
            "-X",
            "auto.offset.reset=earliest",
        ])
        .args(["-X", "fetch.wait.max.ms=100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("kcat -G");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.split_whitespace();
                if let (Some(Ok(p)), Some(Ok(o))) =
                    (parts.next().map(str::parse), parts.next().map(str::parse))
                {
                    sink.lock().expect("seen").push((p, o));
                }
            }
        });
        Some(Member { child, seen })
    }

    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen.lock().expect("seen").clone()
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.seen().into_iter().map(|(p, _)| p).collect()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every offset below each partition's end has been consumed by someone.
fn covered(members: &[&Member], ends: &BTreeMap<i32, i64>) -> bool {
    let all: BTreeSet<(i32, i64)> = members.iter().flat_map(|m| m.seen()).collect();
    ends.iter()
        .all(|(p, end)| (0..*end).all(|o| all.contains(&(*p, o))))
}

fn ends(broker: &Broker, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            (
                p,
                c.fetch_watermarks(topic, p, TIMEOUT).expect("watermarks").1,
            )
        })
        .collect()
}

#[test]
fn members_split_partitions_and_take_over_from_a_killed_member() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "six", 6);
    let Some(a) = Member::start(&broker, "g6", "six") else {
        return;
    };
    produce(&broker, "six", 6, "one", 600);
    assert!(
        eventually(TIMEOUT, || covered(&[&a], &ends(&broker, "six", 6))
            .then_some(()))
        .is_some()
    );

    let Some(mut b) = Member::start(&broker, "g6", "six") else {
        return;
    };
    let Some(mut c) = Member::start(&broker, "g6", "six") else {
        return;
    };
    // Wait for the three-way split: records produced now reach all three members.
    let split = eventually(TIMEOUT, || {
        produce(&broker, "six", 6, "two", 60);
        let (pa, pb, pc) = (a.partitions(), b.partitions(), c.partitions());
        (!pb.is_empty() && !pc.is_empty() && covered(&[&a, &b, &c], &ends(&broker, "six", 6)))
            .then_some((pa, pb, pc))
    });
    assert!(
        split.is_some(),
        "the group never split between three members"
    );
    let b_partitions = b.partitions();

    // Let b's auto-commit catch up with what it consumed, so the expected re-delivery is exact.
    let watcher = group_consumer(&broker, "g6");
    let committed_all = eventually(TIMEOUT, || {
        let mut tpl = TopicPartitionList::new();
        let mut want = BTreeMap::new();
        for (p, o) in b.seen() {
            let e = want.entry(p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        for p in want.keys() {
            tpl.add_partition("six", *p);
        }
        let committed = watcher.committed_offsets(tpl, TIMEOUT).ok()?;
        want.iter()
            .all(|(p, o)| {
                committed
                    .find_partition("six", *p)
                    .is_some_and(|e| e.offset() == Offset::Offset(*o))
            })
            .then_some(())
    });
    assert!(committed_all.is_some(), "b's consumption was committed");
    // b dies without leaving: only its session timeout ends it.
    b.kill9();
    let killed = std::time::Instant::now();
    let b_seen: BTreeSet<(i32, i64)> = b.seen().into_iter().collect();
    produce(&broker, "six", 6, "three", 600);
    let taken_over = eventually(TIMEOUT, || {
        let ends = ends(&broker, "six", 6);
        covered(&[&a, &b, &c], &ends).then_some(())
    });
    assert!(
        taken_over.is_some(),
        "records of the dead member's partitions were skipped"
    );
    eprintln!(
        "takeover after kill -9 (session.timeout.ms=6000): {} ms",
        killed.elapsed().as_millis()
    );
    let survivors: BTreeSet<i32> = a.partitions().union(&c.partitions()).copied().collect();
    assert!(
        b_partitions.iter().all(|p| survivors.contains(p)),
        "survivors took over {b_partitions:?}"
    );
    // Everything b consumed was committed before it died, so the survivors re-deliver none of it.
    let redelivered = a
        .seen()
        .into_iter()
        .chain(c.seen())
        .filter(|r| b_seen.contains(r))
        .count();
    assert_eq!(
        redelivered, 0,
        "records of b re-delivered although committed"
    );

    // c leaves cleanly: a gets everything at once.
    c.terminate();
    produce(&broker, "six", 6, "four", 600);
    assert!(
        eventually(TIMEOUT, || covered(&[&a, &b, &c], &ends(&broker, "six", 6))
            .then_some(()))
        .is_some()
    );
}

fn group_consumer(broker: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// Polls until `count` messages arrived; returns their `(partition, offset)`.
fn consume(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            got.push((m.partition(), m.offset()));
        }
    }
    got
}

#[test]
fn committed_offsets_survive_consumer_and_broker_restarts() {
    let mut broker = Broker::start_with(fast_groups());
    create_topic(&broker, "resume", 1);
    produce(&broker, "resume", 1, "r", 100);

    let first = group_consumer(&broker, "resumers");
    first.subscribe(&["resume"]).expect("subscribe");
    let got = consume(&first, 40);
    assert_eq!(got.len(), 40);
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("resume", 0, Offset::Offset(40))
        .expect("tpl");
    first.commit(&commit, CommitMode::Sync).expect("commit");
    drop(first);

    let second = group_consumer(&broker, "resumers");
    second.subscribe(&["resume"]).expect("subscribe");
    let got = consume(&second, 10);
    assert_eq!(
        got.first(),
        Some(&(0, 40)),
        "a restarted consumer resumes at the commit"
    );
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("resume", 0, Offset::Offset(50))
        .expect("tpl");
    second.commit(&commit, CommitMode::Sync).expect("commit");
    drop(second);

    broker.restart();
    let third = group_consumer(&broker, "resumers");
    third.subscribe(&["resume"]).expect("subscribe");
    let got = consume(&third, 50);
    assert_eq!(
        got.first(),
        Some(&(0, 50)),
        "offsets survive a broker restart"
    );
    assert_eq!(got.len(), 50);
    let committed = third.committed(TIMEOUT).expect("committed");
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(50));
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    let mut broker = Broker::start_with(fast_groups());
    create_topic(&broker, "crashcommit", 1);
    produce(&broker, "crashcommit", 1, "c", 10);
    let consumer = group_consumer(&broker, "crashers");
    consumer.subscribe(&["crashcommit"]).expect("subscribe");
    assert_eq!(consume(&consumer, 10).len(), 10);
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("crashcommit", 0, Offset::Offset(7))
        .expect("tpl");
    consumer.commit(&commit, CommitMode::Sync).expect("commit");
    drop(consumer);
    broker.kill9();
    broker.start_again();
    let after = group_consumer(&broker, "crashers");
    after.subscribe(&["crashcommit"]).expect("subscribe");
    assert_eq!(consume(&after, 1).first(), Some(&(0, 7)));
}

#[test]
fn kafkajs_group_consumer_and_admin() {
    let broker = Broker::start_with(fast_groups());
    let Some(mut node) = tool("node") else { return };
    node.arg("group_admin.js")
        .current_dir(workspace_root().join("tests/node"))
        .env("KAFKA_BROKER", &broker.kafka);
    let out = run(node, Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
}

#[test]
fn librdkafka_lists_and_deletes_groups() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "listed", 1);
    produce(&broker, "listed", 1, "l", 5);
    let consumer = group_consumer(&broker, "listed-group");
    consumer.subscribe(&["listed"]).expect("subscribe");
    assert_eq!(consume(&consumer, 5).len(), 5);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    let groups = consumer
        .fetch_group_list(Some("listed-group"), TIMEOUT)
        .expect("group list");
    let group = &groups.groups()[0];
    assert_eq!(group.state(), "Stable");
    assert_eq!(group.protocol_type(), "consumer");
    assert_eq!(group.members().len(), 1);
    drop(consumer);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deleted = eventually(TIMEOUT, || {
        let r = rt
            .block_on(admin.delete_groups(&["listed-group"], &AdminOptions::new()))
            .ok()?;
        r[0].is_ok().then_some(())
    });
    assert!(deleted.is_some(), "the emptied group could be deleted");
    let checker = group_consumer(&broker, "checker");
    let after = checker
        .fetch_group_list(Some("listed-group"), TIMEOUT)
        .expect("group list");
    assert!(after.groups().is_empty() || after.groups()[0].state() == "Dead");
}
