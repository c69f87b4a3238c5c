//! Cluster mode's admin APIs end to end: three brokers in three racks on one PostgreSQL and one
//! SeaweedFS, driven by confluent-kafka's AdminClient, Producer and Consumer (librdkafka), each
//! bootstrapped from one broker (librdkafka then sends some admin requests to the controller
//! Metadata names). A topic config altered by a client of A is described by a client of C and
//! holds on a produce by a client of B; partitions added by one are produced to and consumed by
//! the others; records deleted by one are gone from earliest for the others; every broker answers
//! the same cluster id (Metadata, DescribeCluster, Connect's REST root) and shows the racks;
//! ListGroups over the brokers names every group once; a consumer with `client.rack` reads
//! from the broker of its rack (KIP-392).

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{default_python, python_importing, run};

const TIMEOUT: Duration = Duration::from_secs(180);

const RACKS: [&str; 3] = ["rack-a", "rack-b", "rack-c"];

/// The checks, in confluent-kafka; exits non-zero naming the first that fails.
const SCRIPT: &str = r#"
import json, os, sys, time, urllib.request
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, OffsetSpec)

KAFKA = os.environ["KAFKA"].split(",")
HTTP = os.environ["HTTP"].split(",")
RACKS = os.environ["RACKS"].split(",")
A, B, C = KAFKA
admin = [AdminClient({"bootstrap.servers": k}) for k in KAFKA]

def fail(what):
    print(f"FAILED: {what}", file=sys.stderr)
    sys.exit(1)

def eventually(what, check, timeout=60):
    end = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > end:
            fail(f"never: {what}")
        time.sleep(0.05)

def wait(futures):
    return {k: f.result(timeout=60) for k, f in futures.items()}

def config(adm, topic, name):
    r = ConfigResource("topic", topic)
    return wait(adm.describe_configs([r]))[r][name]

def produce(bootstrap, topic, partition, values):
    """Acknowledged offsets of `values`, or the error of the first refused."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 30000})
    out = []
    for v in values:
        p.produce(topic, value=v, partition=partition,
                  on_delivery=lambda e, m: out.append(e if e else m.offset()))
    p.flush(60)
    return out

def consume(bootstrap, topic, partition, count, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100}
    conf.update(extra)
    c = Consumer(conf)
    c.assign([TopicPartition(topic, partition, -2)])
    got, end = [], time.time() + 60
    while len(got) < count and time.time() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            fail(f"consuming {topic}/{partition}: {m.error()}")
        got.append((m.offset(), m.value().decode()))
    c.close()
    return got

# One cluster id on every broker: Metadata, DescribeCluster, Connect's REST root; racks shown
# (a broker that just joined is listed within the live-broker cache's second).
ids = set()
for adm in admin:
    cluster = eventually("DescribeCluster lists the three brokers with their racks",
                         lambda: (lambda c: c if sorted(str(n.rack) for n in c.nodes) == sorted(RACKS)
                                  else None)(adm.describe_cluster(request_timeout=30).result(timeout=60)))
    ids.add(cluster.cluster_id)
    ids.add(adm.list_topics(timeout=30).cluster_id)
for http in HTTP:
    ids.add(json.load(urllib.request.urlopen(f"http://{http}/", timeout=30))["kafka_cluster_id"])
if len(ids) != 1 or None in ids:
    fail(f"cluster ids differ: {ids}")

# A config set through A is described by C, with Kafka's source, and holds through B.
wait(admin[0].create_topics([NewTopic("limits", 1, 1)]))
r = ConfigResource("topic", "limits",
                   incremental_configs=[ConfigEntry("max.message.bytes", "2000",
                                                    incremental_operation=AlterConfigOpType.SET)])
wait(admin[0].incremental_alter_configs([r]))
entry = eventually("C describes max.message.bytes=2000",
                   lambda: (lambda e: e if e.value == "2000" else None)(config(admin[2], "limits", "max.message.bytes")))
if entry.source != 1:  # DYNAMIC_TOPIC_CONFIG
    fail(f"max.message.bytes source {entry.source}")
if config(admin[2], "limits", "retention.ms").source != 5:  # DEFAULT_CONFIG
    fail("retention.ms is not described as a default")
def refused_big():
    out = produce(B, "limits", 0, [b"x" * 5000])
    return out if isinstance(out[0], KafkaError) else None
err = eventually("a batch over max.message.bytes is refused through B", refused_big)[0]
if err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
    fail(f"big batch: {err}")
if not all(isinstance(o, int) for o in produce(B, "limits", 0, [b"small"])):
    fail("a small batch is refused")

# What cluster mode refuses is refused by name, and nothing changes.
for name, value in (("cleanup.policy", "compact"), ("message.timestamp.type", "LogAppendTime")):
    r = ConfigResource("topic", "limits",
                       incremental_configs=[ConfigEntry(name, value,
                                                        incremental_operation=AlterConfigOpType.SET)])
    try:
        wait(admin[1].incremental_alter_configs([r]))
        fail(f"{name}={value} was accepted")
    except KafkaException as e:
        k = e.args[0]
        if k.code() != KafkaError.INVALID_CONFIG or "cluster mode" not in k.str():
            fail(f"{name}={value}: {k}")
# AlterConfigs (the legacy API) replaces the whole set: through B, seen through A.
wait(admin[1].alter_configs([ConfigResource("topic", "limits", set_config={"retention.ms": "123456"})]))
eventually("A describes the replaced set",
           lambda: config(admin[0], "limits", "retention.ms").value == "123456"
                   and config(admin[0], "limits", "max.message.bytes").source == 5)

# Partitions added through A: produced to through B, consumed through C.
wait(admin[0].create_topics([NewTopic("grown", 1, 1)]))
wait(admin[0].create_partitions([NewPartitions("grown", 3)]))
try:
    wait(admin[1].create_partitions([NewPartitions("grown", 2)]))
    fail("shrinking was accepted")
except KafkaException as e:
    if e.args[0].code() != KafkaError.INVALID_PARTITIONS:
        fail(f"shrinking: {e}")
eventually("B's Metadata shows 3 partitions",
           lambda: len(admin[1].list_topics("grown", timeout=30).topics["grown"].partitions) == 3)
acked = eventually("produced to the new partition through B",
                   lambda: (lambda o: o if all(isinstance(x, int) for x in o) else None)(
                       produce(B, "grown", 2, [b"p2-0", b"p2-1"])))
if acked != [0, 1]:
    fail(f"new partition offsets {acked}")
got = consume(C, "grown", 2, 2)
if got != [(0, "p2-0"), (1, "p2-1")]:
    fail(f"read from the new partition through C: {got}")

# Records deleted through A: earliest moves for every broker, reads below it are out of range.
wait(admin[0].create_topics([NewTopic("trimmed", 1, 1)]))
acked = produce(B, "trimmed", 0, [f"t{i}".encode() for i in range(10)])
if acked != list(range(10)):
    fail(f"trimmed offsets {acked}")
low = wait(admin[0].delete_records([TopicPartition("trimmed", 0, 6)]))
if [d.low_watermark for d in low.values()] != [6]:
    fail(f"delete_records answered {low}")
earliest = wait(admin[2].list_offsets({TopicPartition("trimmed", 0): OffsetSpec.earliest()}))
if [o.offset for o in earliest.values()] != [6]:
    fail(f"earliest through C: {earliest}")
got = consume(C, "trimmed", 0, 4)
if got != [(i, f"t{i}") for i in range(6, 10)]:
    fail(f"from earliest through C: {got}")
c = Consumer({"bootstrap.servers": B, "group.id": "below", "auto.offset.reset": "error",
              "enable.auto.commit": False})
c.assign([TopicPartition("trimmed", 0, 2)])
def out_of_range():
    m = c.poll(0.2)
    if m is not None and m.error():
        return m.error()
    if m is not None:
        fail(f"read offset {m.offset()} below the log start")
    return None
err = eventually("a read below the log start is refused", out_of_range)
if err.code() != KafkaError._AUTO_OFFSET_RESET:
    fail(f"below the log start: {err}")
c.close()

# ListGroups: every group of the cluster exactly once over the brokers, in its state.
idle = Consumer({"bootstrap.servers": C, "group.id": "idle-group", "enable.auto.commit": False})
idle.commit(offsets=[TopicPartition("trimmed", 0, 7)], asynchronous=False)
idle.close()
live = Consumer({"bootstrap.servers": B, "group.id": "live-group", "auto.offset.reset": "earliest"})
live.subscribe(["trimmed"])
eventually("live-group's member is assigned", lambda: live.poll(0.2) is not None or live.assignment())
def listed():
    result = admin[0].list_consumer_groups(request_timeout=30).result(timeout=60)
    if result.errors:
        fail(f"list_consumer_groups errors: {result.errors}")
    return [(g.group_id, g.state.name) for g in result.valid
            if g.group_id in ("idle-group", "live-group")]
groups = eventually("both groups listed once, live-group stable",
                    lambda: (lambda l: l if sorted(g for g, _ in l) == ["idle-group", "live-group"]
                             and dict(l)["live-group"] == "STABLE" else None)(listed()))
live.close()

# KIP-392: a consumer in the rack of a broker that does not lead the partition reads there.
wait(admin[0].create_topics([NewTopic("zoned", 1, 1)]))
if produce(A, "zoned", 0, [f"z{i}".encode() for i in range(20)]) != list(range(20)):
    fail("zoned not acknowledged")
md = admin[0].list_topics("zoned", timeout=30)
leader = md.topics["zoned"].partitions[0].leader
replicas = md.topics["zoned"].partitions[0].replicas
if len(replicas) != 3 or replicas[0] != leader:
    fail(f"replicas {replicas}, leader {leader}: one per rack, the leader first")
nodes = {n.id: n for n in admin[0].describe_cluster().result(timeout=60).nodes}
other = next(n for i, n in nodes.items() if i != leader)
got = consume(A, "zoned", 0, 20, **{"client.rack": other.rack})
if [v for _, v in got] != [f"z{i}" for i in range(20)]:
    fail(f"rack reader got {got}")
def records_out(http):
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith('sluice_topic_records_out_total{topic="zoned"}'):
            return int(float(line.split()[-1]))
    return 0
by_port = {f"{n.host}:{n.port}": i for i, n in nodes.items()}
served = {by_port[k]: records_out(h) for k, h in zip(KAFKA, HTTP)}
if served.get(other.id, 0) < 20 or served.get(leader, 0) != 0:
    fail(f"records served per broker {served}; the rack reader's broker is {other.id}")
print("ok")
"#;

#[test]
fn admin_calls_through_one_broker_hold_on_every_broker() {
    let Some(python) = python_importing(&default_python(), "confluent_kafka") else {
        return;
    };
    let Some(cluster) = Cluster::start_in_racks(&RACKS) else {
        return;
    };
    let http: Vec<&str> = cluster.brokers.iter().map(|b| b.http.as_str()).collect();
    let mut py = std::process::Command::new(python);
    py.args(["-c", SCRIPT])
        .env("KAFKA", cluster.bootstrap())
        .env("HTTP", http.join(","))
        .env("RACKS", RACKS.join(","));
    let out = run(py, TIMEOUT);
    assert!(
        out.status.success() && out.stdout.trim_end().ends_with("ok"),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        cluster.logs()
    );
}
