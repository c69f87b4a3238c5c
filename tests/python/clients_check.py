"""confluent-kafka (librdkafka) and kafka-python 3 against the broker named by KAFKA_BROKER:
each produces records with keys and headers, then reads them back with a plain (assigned,
group-less) consumer. Exits non-zero on any mismatch."""

import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition as KTopicPartition

BROKER = os.environ["KAFKA_BROKER"]
COUNT = 500
DEADLINE = 30.0


def expect(cond, message):
    if not cond:
        print(message, file=sys.stderr)
        sys.exit(1)


def confluent():
    topic = "py-confluent"
    p = Producer({"bootstrap.servers": BROKER, "enable.idempotence": True, "linger.ms": 5})
    for i in range(COUNT):
        p.produce(topic, key=f"k{i}", value=f"v{i}", headers=[("n", str(i).encode())])
        p.poll(0)
    expect(p.flush(DEADLINE) == 0, "confluent-kafka: undelivered messages")
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "py-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    end = time.time() + DEADLINE
    while len(got) < COUNT and time.time() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        expect(m.error() is None, f"confluent-kafka: {m.error()}")
        got.append(m)
    c.close()
    expect(len(got) == COUNT, f"confluent-kafka: read {len(got)} of {COUNT}")
    for i, m in enumerate(got):
        expect(m.offset() == i and m.key() == f"k{i}".encode() and m.value() == f"v{i}".encode(), f"confluent-kafka: record {i} is {m.offset()} {m.key()} {m.value()}")
        expect(m.headers() == [("n", str(i).encode())], f"confluent-kafka: headers of {i}: {m.headers()}")


def kafka_python(topic="py-kafka-python", compression=None):
    # kafka-python 3 producers are idempotent by default (InitProducerId + sequences).
    p = KafkaProducer(bootstrap_servers=BROKER, acks="all", compression_type=compression)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("n", str(i).encode())]) for i in range(COUNT)]
    offsets = [f.get(timeout=DEADLINE).offset for f in futures]
    expect(offsets == list(range(COUNT)), f"kafka-python: offsets {offsets[:5]}...")
    # The broker must have granted a producer id (InitProducerId); otherwise kafka-python would
    # have fallen back to a plain producer and the idempotent path went untested.
    expect(p.config["enable_idempotence"] and p._transaction_manager is not None
           and p._transaction_manager.has_producer_id(),
           "kafka-python: the producer is not idempotent against this broker")
    p.close()
    c = KafkaConsumer(bootstrap_servers=BROKER, enable_auto_commit=False, consumer_timeout_ms=5000)
    tp = KTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    end = time.time() + DEADLINE
    while len(got) < COUNT and time.time() < end:
        for records in c.poll(timeout_ms=200).values():
            got.extend(records)
    c.close()
    expect(len(got) == COUNT, f"kafka-python: read {len(got)} of {COUNT}")
    for i, m in enumerate(got):
        expect(m.offset == i and m.key == f"k{i}".encode() and m.value == f"v{i}".encode(), f"kafka-python: record {i}: {m}")
        expect(list(m.headers) == [("n", str(i).encode())], f"kafka-python: headers of {i}: {m.headers}")


def kafka_python_group():
    # A group consumer (group_id) on the topic kafka_python() filled: joins, reads all, commits.
    from kafka import KafkaAdminClient

    topic = "py-kafka-python"
    c = KafkaConsumer(topic, bootstrap_servers=BROKER, group_id="py-group", auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=10000)
    got = []
    end = time.time() + DEADLINE
    while len(got) < COUNT and time.time() < end:
        for records in c.poll(timeout_ms=200).values():
            got.extend(records)
    expect(len(got) == COUNT, f"kafka-python group: read {len(got)} of {COUNT}")
    c.commit()
    c.close()
    admin = KafkaAdminClient(bootstrap_servers=BROKER)
    # list_group_offsets uses the multi-group OffsetFetch (v8+) when the broker offers it.
    offsets = admin.list_group_offsets({"py-group": None})["py-group"]
    committed = {tp.partition: meta.offset for tp, meta in offsets.items()}
    expect(committed == {0: COUNT}, f"kafka-python group: committed {committed}")
    admin.close()


confluent()
kafka_python()
# kafka-python's own (pure Python) gzip encoder and decoder.
kafka_python("py-kafka-python-gzip", "gzip")
kafka_python_group()
print("ok")
