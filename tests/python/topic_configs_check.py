"""Topic configs through confluent-kafka (librdkafka) against the broker named by KAFKA_BROKER:
topics created with compression.type (and levels) get batches of every producer codec and give
every record back intact; IncrementalAlterConfigs changes the codec of a live topic; a batch of
Kafka 3.x topic configs is accepted by CreateTopics and reported by DescribeConfigs; unknown
names and bad values are refused with INVALID_CONFIG; message.timestamp.before/after.max.ms
refuse records out of bounds with INVALID_TIMESTAMP. Prints "ok", or exits non-zero naming the
mismatch. The caller checks the codecs of the stored batches."""

import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

BROKER = os.environ["KAFKA_BROKER"]
DEADLINE = 30.0
PER_PRODUCER = 100
INVALID_CONFIG = 40
INVALID_TIMESTAMP = 32

admin = AdminClient({"bootstrap.servers": BROKER})


def expect(cond, message):
    if not cond:
        print(message, file=sys.stderr)
        sys.exit(1)


def create(name, configs):
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(DEADLINE)


def create_error(name, configs):
    try:
        create(name, configs)
    except KafkaException as e:
        return e.args[0]
    expect(False, f"creating {name} with {configs} succeeded")


def describe(name):
    resource = ConfigResource(ResourceType.TOPIC, name)
    return admin.describe_configs([resource])[resource].result(DEADLINE)


def alter(name, entries):
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(DEADLINE)


def record(i):
    # Repetitive values: every codec shrinks them, so librdkafka really sends the codec asked for.
    return f"k{i}", f"value {i} of the topic config check " * 8, [("n", str(i).encode())]


def produce(topic, codec, start):
    errors = []
    p = Producer({"bootstrap.servers": BROKER, "compression.type": codec, "linger.ms": 20,
                  "enable.idempotence": True})
    for i in range(start, start + PER_PRODUCER):
        key, value, headers = record(i)
        p.produce(topic, key=key, value=value, headers=headers,
                  on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
    expect(p.flush(DEADLINE) == 0, f"{topic}/{codec}: undelivered messages")
    expect(not errors, f"{topic}/{codec}: {errors[:3]}")
    return start + PER_PRODUCER


def read_back(topic, count):
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "topic-configs-reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    end = time.time() + DEADLINE
    while len(got) < count and time.time() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        expect(m.error() is None, f"{topic}: {m.error()}")
        got.append(m)
    c.close()
    expect(len(got) == count, f"{topic}: read {len(got)} of {count}")
    for i, m in enumerate(got):
        key, value, headers = record(i)
        expect(m.offset() == i and m.key() == key.encode() and m.value() == value.encode()
               and m.headers() == headers, f"{topic}: record {i} is {m.offset()} {m.key()} {m.headers()}")


def source_is(entry, source):
    return entry.source in (source, source.value)


def codecs():
    topics = {
        "tc-lz4": ({"compression.type": "lz4"}, ["none", "gzip", "snappy", "zstd", "lz4"]),
        "tc-zstd": ({"compression.type": "zstd", "compression.zstd.level": "10"}, ["none", "gzip"]),
        "tc-gzip": ({"compression.type": "gzip", "compression.gzip.level": "1"}, ["none", "lz4"]),
        "tc-snappy": ({"compression.type": "snappy"}, ["zstd"]),
        "tc-none": ({"compression.type": "uncompressed"}, ["gzip", "snappy", "lz4", "zstd"]),
    }
    for topic, (configs, producer_codecs) in topics.items():
        create(topic, configs)
        n = 0
        for codec in producer_codecs:
            n = produce(topic, codec, n)
        read_back(topic, n)
        described = describe(topic)
        for name, value in configs.items():
            e = described[name]
            expect(e.value == value and source_is(e, ConfigSource.DYNAMIC_TOPIC_CONFIG),
                   f"{topic}: {name} described as {e.value} from {e.source}")


def altered_codec():
    topic = "tc-alter"
    create(topic, {})
    e = describe(topic)["compression.type"]
    expect(e.value == "producer" and source_is(e, ConfigSource.DEFAULT_CONFIG),
           f"{topic}: compression.type {e.value} from {e.source}")
    n = produce(topic, "snappy", 0)
    alter(topic, [ConfigEntry("compression.type", "zstd",
                              incremental_operation=AlterConfigOpType.SET)])
    e = describe(topic)["compression.type"]
    expect(e.value == "zstd" and source_is(e, ConfigSource.DYNAMIC_TOPIC_CONFIG),
           f"{topic}: after SET, compression.type {e.value} from {e.source}")
    n = produce(topic, "snappy", n)
    read_back(topic, n)
    try:
        alter(topic, [ConfigEntry("no.such.config", "1",
                                  incremental_operation=AlterConfigOpType.SET)])
        expect(False, "an unknown config name was altered")
    except KafkaException as e:
        expect(e.args[0].code() == INVALID_CONFIG, f"unknown name on alter: {e.args[0]}")


def many_configs():
    configs = {
        "cleanup.policy": "delete",
        "compression.type": "zstd",
        "compression.gzip.level": "5",
        "compression.lz4.level": "4",
        "compression.zstd.level": "12",
        "file.delete.delay.ms": "1000",
        "flush.messages": "100",
        "flush.ms": "1000",
        "follower.replication.throttled.replicas": "*",
        "index.interval.bytes": "2048",
        "leader.replication.throttled.replicas": "0:1",
        "local.retention.bytes": "-2",
        "local.retention.ms": "-2",
        "max.message.bytes": "2000000",
        "message.downconversion.enable": "false",
        "message.format.version": "2.8",
        "message.timestamp.after.max.ms": "3600000",
        "message.timestamp.before.max.ms": "86400000",
        "message.timestamp.difference.max.ms": "86400000",
        "message.timestamp.type": "CreateTime",
        "min.insync.replicas": "1",
        "preallocate": "true",
        "remote.log.copy.disable": "false",
        "remote.log.delete.on.disable": "false",
        "remote.storage.enable": "false",
        "retention.bytes": "-1",
        "retention.ms": "604800000",
        "segment.bytes": "1048576",
        "segment.index.bytes": "1048576",
        "segment.jitter.ms": "100",
        "segment.ms": "3600000",
        "unclean.leader.election.enable": "false",
    }
    create("tc-many", configs)
    described = describe("tc-many")
    for name, value in configs.items():
        expect(name in described, f"tc-many: {name} not described")
        e = described[name]
        expect(e.value == value and source_is(e, ConfigSource.DYNAMIC_TOPIC_CONFIG),
               f"tc-many: {name} described as {e.value} from {e.source}")
    # Every config is described, the defaults too.
    e = describe("tc-lz4")["message.format.version"]
    expect(e.value == "3.0-IV1" and source_is(e, ConfigSource.DEFAULT_CONFIG),
           f"default message.format.version {e.value} from {e.source}")

    for configs, message in [
        ({"no.such.config": "1"}, "Unknown topic config name: no.such.config"),
        ({"compression.zstd.level": "23"}, "Value must be no more than 22"),
        ({"compression.type": "brotli"}, "String must be one of"),
        ({"remote.storage.enable": "true"}, "Tiered Storage functionality is disabled"),
    ]:
        err = create_error("tc-refused", configs)
        expect(err.code() == INVALID_CONFIG and message in err.str(), f"{configs}: {err}")
    md = admin.list_topics(timeout=DEADLINE)
    expect("tc-refused" not in md.topics, "a refused topic was created")


def timestamp_bounds():
    topic = "tc-timestamps"
    create(topic, {"message.timestamp.before.max.ms": "3600000",
                   "message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    results = {}
    p = Producer({"bootstrap.servers": BROKER, "linger.ms": 0, "retries": 0})
    for label, ts in [("old", now - 2 * 3600_000), ("now", now), ("future", now + 3600_000)]:
        p.produce(topic, key=label, value=label, timestamp=ts,
                  on_delivery=lambda err, _m, label=label: results.__setitem__(label, err))
        expect(p.flush(DEADLINE) == 0, f"{topic}: {label} not answered")
    expect(results["now"] is None, f"{topic}: a current timestamp was refused: {results['now']}")
    for label in ["old", "future"]:
        err = results[label]
        expect(err is not None and err.code() == INVALID_TIMESTAMP, f"{topic}: {label}: {err}")
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "topic-configs-ts"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEADLINE)
    c.close()
    expect((low, high) == (0, 1), f"{topic}: watermarks {(low, high)}, only the good record is stored")


codecs()
altered_codec()
many_configs()
timestamp_bounds()
print("ok")
