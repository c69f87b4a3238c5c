"""confluent-kafka against the broker named by KAFKA_BROKER, for compacted topics:

- `connect`: creates Kafka Connect's three internal topics the way Connect's TopicAdmin does
  (cleanup.policy=compact, replication factor 1), checks DescribeConfigs reports the policy,
  then writes and reads back a config record keyed as Connect keys them.
- `keyless TOPIC`: creates TOPIC with cleanup.policy=compact; a record without a key must fail
  delivery with INVALID_RECORD, while a keyed one is delivered.

Prints "ok" and exits 0 on success."""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import os

BROKER = os.environ["KAFKA_BROKER"]
DEADLINE = 30.0


def expect(cond, message):
    if not cond:
        print(message, file=sys.stderr)
        sys.exit(1)


def create(admin, topic, partitions, configs):
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs)]
    )
    for _, f in futures.items():
        f.result(DEADLINE)


def connect():
    admin = AdminClient({"bootstrap.servers": BROKER})
    topics = {"connect-configs": 1, "connect-offsets": 25, "connect-status": 5}
    for topic, partitions in topics.items():
        create(admin, topic, partitions, {"cleanup.policy": "compact"})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    for resource, f in admin.describe_configs(resources).items():
        policy = f.result(DEADLINE)["cleanup.policy"].value
        expect(policy == "compact", f"{resource}: cleanup.policy is {policy}")
    p = Producer({"bootstrap.servers": BROKER, "enable.idempotence": True})
    errors = []
    p.produce("connect-configs", key="connector-sink", value='{"properties":{}}',
              on_delivery=lambda err, _msg: errors.append(err))
    expect(p.flush(DEADLINE) == 0 and errors == [None], f"connect-configs write: {errors}")
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "py-compaction", "enable.auto.commit": False})
    c.assign([TopicPartition("connect-configs", 0, 0)])
    end = time.time() + DEADLINE
    got = None
    while got is None and time.time() < end:
        m = c.poll(0.2)
        if m is not None:
            expect(m.error() is None, f"consume: {m.error()}")
            got = m
    c.close()
    expect(got is not None and got.key() == b"connector-sink", f"read back: {got}")


def keyless(topic):
    admin = AdminClient({"bootstrap.servers": BROKER})
    create(admin, topic, 1, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": BROKER, "linger.ms": 0})
    results = []
    p.produce(topic, value="no key", on_delivery=lambda err, _msg: results.append(err))
    p.flush(DEADLINE)
    p.produce(topic, key="k", value="keyed", on_delivery=lambda err, _msg: results.append(err))
    p.flush(DEADLINE)
    expect(len(results) == 2, f"delivery reports: {results}")
    expect(results[0] is not None and results[0].code() == KafkaError.INVALID_RECORD,
           f"a keyless record: {results[0]}")
    expect(results[1] is None, f"a keyed record: {results[1]}")


if __name__ == "__main__":
    if sys.argv[1] == "connect":
        connect()
    elif sys.argv[1] == "keyless":
        keyless(sys.argv[2])
    print("ok")
