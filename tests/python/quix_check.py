"""A Quix Streams stateful application against the broker named by KAFKA_BROKER.

Quix keeps each stateful operator's store in a local RocksDB and in a compacted changelog topic
it creates through the admin API (the changelog is what a Kafka-compatible broker must hold).

`quix_check.py GUARANTEE`: GUARANTEE is `at-least-once` or `exactly-once` (the latter needs
transactions). Produces keyed JSON events, runs an application that counts them per key (state
in `state.get`/`state.set`) to an output topic, then throws away the local state directory and
runs the application again on more events: the counts must continue from the changelog, not
restart at one. Checks the changelog topic is compacted. Prints "ok" and exits 0 on success."""

import json
import os
import shutil
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from quixstreams import Application

BROKER = os.environ["KAFKA_BROKER"]
KEYS = [f"user-{i}" for i in range(8)]
DEADLINE = 60.0


def expect(cond, message):
    if not cond:
        print(message, file=sys.stderr)
        sys.exit(1)


def produce(topic, rounds):
    p = Producer({"bootstrap.servers": BROKER})
    for r in range(rounds):
        for k in KEYS:
            p.produce(topic, key=k, value=json.dumps({"user": k, "round": r}))
    expect(p.flush(DEADLINE) == 0, "input not delivered")
    return rounds * len(KEYS)


def run_app(guarantee, state_dir, input_topic, output_topic, events):
    app = Application(
        broker_address=BROKER,
        consumer_group="quix-counter",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee=guarantee,
        commit_every=50,
        loglevel="WARNING",
    )
    source = app.topic(input_topic, value_deserializer="json")
    sink = app.topic(output_topic, value_serializer="json")

    def count(value, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return {"user": value["user"], "count": n}

    sdf = app.dataframe(source)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run(sdf, count=events, timeout=DEADLINE, collect=False)


def read_counts(topic, expected):
    c = Consumer(
        {
            "bootstrap.servers": BROKER,
            "group.id": f"check-{time.time()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    counts = {}
    seen = 0
    deadline = time.time() + DEADLINE
    while seen < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        v = json.loads(m.value())
        counts.setdefault(m.key().decode(), []).append(v["count"])
        seen += 1
    # Nothing beyond what was expected (a duplicate would show up here).
    end = time.time() + 2
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            v = json.loads(m.value())
            counts.setdefault(m.key().decode(), []).append(v["count"])
            seen += 1
    c.close()
    return counts, seen


def main():
    guarantee = sys.argv[1]
    suffix = guarantee.replace("-", "")
    input_topic, output_topic = f"events-{suffix}", f"counts-{suffix}"
    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    try:
        first = produce(input_topic, 5)
        run_app(guarantee, state_dir, input_topic, output_topic, first)
        counts, seen = read_counts(output_topic, first)
        expect(seen == first, f"first run: {seen} outputs for {first} events: {counts}")
        for k in KEYS:
            expect(counts.get(k) == [1, 2, 3, 4, 5], f"first run {k}: {counts.get(k)}")

        # The local store is gone: Quix must rebuild it from the changelog topic.
        shutil.rmtree(state_dir)
        os.makedirs(state_dir)
        second = produce(input_topic, 3)
        run_app(guarantee, state_dir, input_topic, output_topic, second)
        counts, seen = read_counts(output_topic, first + second)
        expect(seen == first + second, f"second run: {seen} outputs: {counts}")
        for k in KEYS:
            expect(
                counts.get(k) == list(range(1, 9)),
                f"counts did not continue from the changelog for {k}: {counts.get(k)}",
            )

        admin = AdminClient({"bootstrap.servers": BROKER})
        changelogs = [t for t in admin.list_topics(timeout=10).topics if t.startswith("changelog")]
        expect(changelogs, f"no changelog topic: {list(admin.list_topics(timeout=10).topics)}")
        for topic in changelogs:
            resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
            configs = admin.describe_configs([resource])[resource].result(DEADLINE)
            expect(
                configs["cleanup.policy"].value == "compact",
                f"{topic}: cleanup.policy={configs['cleanup.policy'].value}",
            )
        print("ok")
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
