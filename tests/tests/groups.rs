//! Consumer groups with more stock clients than `consumer_groups.rs` drives: kafkajs members
//! splitting a topic and taking over from a killed one, confluent-kafka (librdkafka) members with
//! the cooperative-sticky assignor, a static member (`group.instance.id`) restarting without a
//! rebalance, and confluent-kafka's group admin. Each member is its own process, so it can be
//! killed for real; it prints what it is assigned and what it reads, one line at a time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{create_topic, eventually, fast_groups, run, tool, workspace_root, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 6;

/// A kafkajs group member: prints `owned <partitions>` after each rebalance and
/// `msg <partition> <offset>` per record. CommonJS so that `node -e` finds `kafkajs` from
/// `tests/node`.
const KAFKAJS_MEMBER: &str = r#"
const { Kafka, logLevel } = require('kafkajs');
const topic = process.env.TOPIC;
const kafka = new Kafka({ clientId: 'member', brokers: [process.env.KAFKA_BROKER], logLevel: logLevel.NOTHING });
const consumer = kafka.consumer({
  groupId: process.env.GROUP, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000, maxWaitTimeInMs: 100,
});
consumer.on(consumer.events.GROUP_JOIN, (e) => {
  console.log('owned ' + (e.payload.memberAssignment[topic] || []).join(','));
});
(async () => {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ partition, message }) => console.log(`msg ${partition} ${message.offset}`) });
})().catch((e) => { console.error(e); process.exit(1); });
process.on('SIGTERM', () => consumer.disconnect().then(() => process.exit(0)));
"#;

/// A confluent-kafka group member: `assign`/`revoke <partitions>` from the rebalance callbacks
/// (incremental with cooperative-sticky), `msg <partition> <offset>` per record; auto-commits.
/// Arguments: broker, group, topic, assignor, group.instance.id (`-` for none).
const PYTHON_MEMBER: &str = r#"
import signal, sys
from confluent_kafka import Consumer
broker, group, topic, strategy, instance = sys.argv[1:6]
conf = {"bootstrap.servers": broker, "group.id": group, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "auto.commit.interval.ms": 100,
        "fetch.wait.max.ms": 100, "partition.assignment.strategy": strategy}
if instance != "-":
    conf["group.instance.id"] = instance
c = Consumer(conf)
def show(kind):
    return lambda consumer, parts: print(kind, ",".join(str(p.partition) for p in parts), flush=True)
c.subscribe([topic], on_assign=show("assign"), on_revoke=show("revoke"))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
while not stop:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    print("msg", m.partition(), m.offset(), flush=True)
c.close()
"#;

/// confluent-kafka's admin API on a group: list, describe, list offsets, alter offsets, delete.
const PYTHON_ADMIN: &str = r#"
import sys
from confluent_kafka import Consumer, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
broker, topic = sys.argv[1:3]
def expect(ok, what):
    if not ok:
        print(what, file=sys.stderr)
        sys.exit(1)
c = Consumer({"bootstrap.servers": broker, "group.id": "adm", "enable.auto.commit": False})
c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 6)], asynchronous=False)
c.close()
a = AdminClient({"bootstrap.servers": broker})
def one(futures):
    return list(futures.values())[0].result(30)
def offsets():
    got = one(a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("adm")]))
    return {tp.partition: tp.offset for tp in got.topic_partitions}
listed = {g.group_id: g for g in a.list_consumer_groups().result(30).valid}
expect("adm" in listed, f"list_consumer_groups: {listed}")
described = one(a.describe_consumer_groups(["adm"]))
expect(described.state.name == "EMPTY" and not described.members, f"describe: {described}")
expect(offsets() == {0: 5, 1: 6}, f"list_consumer_group_offsets: {offsets()}")
one(a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("adm", [TopicPartition(topic, 0, 1)])]))
expect(offsets() == {0: 1, 1: 6}, f"after alter: {offsets()}")
one(a.delete_consumer_groups(["adm"]))
listed = {g.group_id for g in a.list_consumer_groups().result(30).valid}
expect("adm" not in listed, f"deleted group still listed: {listed}")
expect(offsets() == {}, f"offsets of a deleted group: {offsets()}")
print("ok")
"#;

/// Produces `count` records spread over every partition.
fn produce(broker: &Broker, topic: &str, count: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .create()
        .expect("producer");
    for i in 0..count {
        let value = format!("v{i}");
        let record = BaseRecord::<(), _>::to(topic)
            .payload(&value)
            .partition((i % PARTITIONS as usize) as i32);
        producer.send(record).expect("send");
    }
    producer.flush(TIMEOUT).expect("flush");
}

fn reader(broker: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Each partition's end offset.
fn ends(broker: &Broker, topic: &str) -> BTreeMap<i32, i64> {
    let c = reader(broker, "watermarks");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = c.fetch_watermarks(topic, p, TIMEOUT).expect("watermarks");
            (p, high)
        })
        .collect()
}

/// The group's committed offset of each partition that has one.
fn committed(broker: &Broker, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c = reader(broker, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT).expect("committed");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// A member process and the lines it printed.
struct Member {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Member {
    fn spawn(mut cmd: Command) -> Member {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("member process");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Member { child, lines }
    }

    fn kafkajs(broker: &Broker, group: &str, topic: &str) -> Option<Member> {
        let mut cmd = tool("node")?;
        cmd.args(["-e", KAFKAJS_MEMBER])
            .current_dir(workspace_root().join("tests/node"))
            .env("KAFKA_BROKER", &broker.kafka)
            .env("GROUP", group)
            .env("TOPIC", topic);
        Some(Member::spawn(cmd))
    }

    fn confluent(
        broker: &Broker,
        group: &str,
        topic: &str,
        strategy: &str,
        instance: Option<&str>,
    ) -> Option<Member> {
        let mut cmd = tool("python3")?;
        cmd.args(["-c", PYTHON_MEMBER, &broker.kafka, group, topic, strategy])
            .arg(instance.unwrap_or("-"));
        Some(Member::spawn(cmd))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// `(partition, offset)` of every record it read.
    fn seen(&self) -> Vec<(i32, i64)> {
        self.lines()
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("msg ")?.split_whitespace();
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect()
    }

    /// The assignment lines (`owned`, `assign`, `revoke`), in order.
    fn events(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| !l.starts_with("msg "))
            .collect()
    }

    /// What it owns now, replaying its assignment lines.
    fn owned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for e in self.events() {
            let (kind, list) = e.split_once(' ').unwrap_or((e.as_str(), ""));
            let parts = list.split(',').filter_map(|p| p.parse::<i32>().ok());
            match kind {
                "owned" => owned = parts.collect(),
                "assign" => owned.extend(parts),
                "revoke" => {
                    for p in parts {
                        owned.remove(&p);
                    }
                }
                _ => {}
            }
        }
        owned
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
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

/// Every record below each partition's end was read by one of `members`.
fn covered(members: &[&Member], ends: &BTreeMap<i32, i64>) -> bool {
    let all: BTreeSet<(i32, i64)> = members.iter().flat_map(|m| m.seen()).collect();
    ends.iter()
        .all(|(p, end)| (0..*end).all(|o| all.contains(&(*p, o))))
}

/// The members own disjoint sets that together are every partition, none of them empty.
fn split(members: &[&Member]) -> bool {
    let owned: Vec<BTreeSet<i32>> = members.iter().map(|m| m.owned()).collect();
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
    owned.iter().all(|o| !o.is_empty()) && total == PARTITIONS as usize && union.len() == total
}

/// Kills `victim` (no LeaveGroup: only its session timeout ends it) and checks that the
/// survivors take over its partitions without skipping a record and re-deliver only what it
/// had not committed.
fn kill_and_check_takeover(
    broker: &Broker,
    group: &str,
    topic: &str,
    victim: &mut Member,
    survivors: &[&Member],
) {
    let victim_partitions = victim.owned();
    // What it committed can only grow until it dies, so this is a floor for where the survivors
    // start.
    let floor = committed(broker, group, topic);
    victim.kill9();
    let victim_seen: BTreeSet<(i32, i64)> = victim.seen().into_iter().collect();
    produce(broker, topic, 300);
    let mut everyone: Vec<&Member> = survivors.to_vec();
    everyone.push(victim);
    let ends = ends(broker, topic);
    assert!(
        eventually(TIMEOUT, || covered(&everyone, &ends).then_some(())).is_some(),
        "records of the killed member's partitions were skipped"
    );
    let owned: BTreeSet<i32> = survivors.iter().flat_map(|m| m.owned()).collect();
    assert!(
        victim_partitions.is_subset(&owned),
        "survivors own {owned:?}, the dead member had {victim_partitions:?}"
    );
    for (p, o) in survivors.iter().flat_map(|m| m.seen()) {
        if victim_seen.contains(&(p, o)) {
            let from = floor.get(&p).copied().unwrap_or(0);
            assert!(
                o >= from,
                "partition {p} offset {o} re-delivered although committed up to {from}"
            );
        }
    }
}

#[test]
fn kafkajs_members_split_a_topic_and_take_over_from_a_killed_one() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "js-six", PARTITIONS);
    produce(&broker, "js-six", 300);
    let Some(a) = Member::kafkajs(&broker, "js-group", "js-six") else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || covered(&[&a], &ends(&broker, "js-six"))
            .then_some(()))
        .is_some(),
        "a lone member reads everything: {:?}",
        a.events()
    );
    let Some(mut b) = Member::kafkajs(&broker, "js-group", "js-six") else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || split(&[&a, &b]).then_some(())).is_some(),
        "two members split the topic: {:?} {:?}",
        a.events(),
        b.events()
    );
    let Some(c) = Member::kafkajs(&broker, "js-group", "js-six") else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || split(&[&a, &b, &c]).then_some(())).is_some(),
        "three members split the topic: {:?} {:?} {:?}",
        a.events(),
        b.events(),
        c.events()
    );
    produce(&broker, "js-six", 300);
    let ends_now = ends(&broker, "js-six");
    assert!(eventually(TIMEOUT, || covered(&[&a, &b, &c], &ends_now).then_some(())).is_some());
    kill_and_check_takeover(&broker, "js-group", "js-six", &mut b, &[&a, &c]);
}

#[test]
fn cooperative_sticky_members_keep_their_partitions_while_others_come_and_die() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "coop", PARTITIONS);
    produce(&broker, "coop", 300);
    let strategy = "cooperative-sticky";
    let Some(a) = Member::confluent(&broker, "coop-group", "coop", strategy, None) else {
        return;
    };
    let Some(b) = Member::confluent(&broker, "coop-group", "coop", strategy, None) else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || split(&[&a, &b]).then_some(())).is_some(),
        "two members split the topic: {:?} {:?}",
        a.events(),
        b.events()
    );
    let before = [(a.owned(), a.events().len()), (b.owned(), b.events().len())];
    let Some(mut c) = Member::confluent(&broker, "coop-group", "coop", strategy, None) else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || split(&[&a, &b, &c]).then_some(())).is_some(),
        "three members split the topic: {:?} {:?} {:?}",
        a.events(),
        b.events(),
        c.events()
    );
    // Incremental rebalancing: what a member keeps across the change was never revoked.
    for (m, (owned_before, events_before)) in [&a, &b].into_iter().zip(before) {
        let kept: BTreeSet<i32> = owned_before.intersection(&m.owned()).copied().collect();
        let revoked: BTreeSet<i32> = m.events()[events_before..]
            .iter()
            .filter_map(|e| e.strip_prefix("revoke "))
            .flat_map(|l| l.split(',').filter_map(|p| p.parse().ok()))
            .collect();
        assert!(!kept.is_empty(), "{:?}", m.events());
        assert!(
            kept.is_disjoint(&revoked),
            "kept partitions were revoked: {:?}",
            m.events()
        );
    }
    produce(&broker, "coop", 300);
    let ends_now = ends(&broker, "coop");
    assert!(eventually(TIMEOUT, || covered(&[&a, &b, &c], &ends_now).then_some(())).is_some());
    kill_and_check_takeover(&broker, "coop-group", "coop", &mut c, &[&a, &b]);
}

#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "static", PARTITIONS);
    produce(&broker, "static", 60);
    let Some(mut a) = Member::confluent(&broker, "static-group", "static", "range", Some("pod-a"))
    else {
        return;
    };
    let Some(b) = Member::confluent(&broker, "static-group", "static", "range", None) else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || split(&[&a, &b]).then_some(())).is_some(),
        "two members split the topic: {:?} {:?}",
        a.events(),
        b.events()
    );
    let (a_owned, b_events) = (a.owned(), b.events());
    // A static member's close sends no LeaveGroup; restarted within its session timeout under
    // the same group.instance.id, it takes its old place.
    a.terminate();
    let Some(again) = Member::confluent(&broker, "static-group", "static", "range", Some("pod-a"))
    else {
        return;
    };
    assert!(
        eventually(TIMEOUT, || (!again.owned().is_empty()).then_some(())).is_some(),
        "the restarted member got no assignment"
    );
    assert_eq!(again.owned(), a_owned, "same partitions as before");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.events(), b_events, "the other member saw no rebalance");
    produce(&broker, "static", 60);
    let ends_now = ends(&broker, "static");
    assert!(
        eventually(TIMEOUT, || covered(&[&a, &again, &b], &ends_now)
            .then_some(()))
        .is_some(),
        "reading goes on after the restart"
    );
}

#[test]
fn confluent_kafka_admin_lists_describes_alters_and_deletes_groups() {
    let broker = Broker::start_with(fast_groups());
    create_topic(&broker, "admin-topic", 2);
    let Some(mut python) = tool("python3") else {
        return;
    };
    python.args(["-c", PYTHON_ADMIN, &broker.kafka, "admin-topic"]);
    let out = run(python, Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
}
