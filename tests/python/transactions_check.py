"""confluent-kafka transactional producers against the broker named by KAFKA_BROKER.

Subcommands (each prints "ok" and exits 0 on success unless said otherwise):

- `commit-abort TOPIC`: commits 10 records, aborts 7, commits 5 more (over 2 partitions); a
  read_committed consumer sees exactly the 15 committed ones, a read_uncommitted one all 22.
- `fence TOPIC`: a second producer with the same transactional.id fences the first, whose next
  transaction fails as fenced (fatal); the second then commits.
- `timeout TOPIC`: a transaction left open past transaction.timeout.ms is aborted by the broker:
  its records never become visible to read_committed, its producer is fenced, and a new producer
  with the same id commits.
- `open TOPIC ID`: starts a transaction, writes 10 acknowledged records, prints "open" and waits
  to be killed (a crash mid-transaction).
- `resume TOPIC ID`: a new producer with the same id (aborting whatever the old one left open)
  commits 3 records.
- `load TOPIC PARTITIONS ID RUN`: commits transactions of one record per partition, valued
  `RUN-N-PARTITION`, printing "committed RUN-N" after each commit returns, until it fails (the
  broker was killed); exits 0.
- `read TOPIC PARTITIONS ISOLATION`: prints every record value of the topic, one per line, as a
  consumer with that isolation.level sees them.
"""

import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BROKER = os.environ["KAFKA_BROKER"]
DEADLINE = 30.0


def expect(cond, message):
    if not cond:
        print(message, file=sys.stderr)
        sys.exit(1)


def create(topic, partitions):
    admin = AdminClient({"bootstrap.servers": BROKER})
    for _, f in admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    ).items():
        try:
            f.result(DEADLINE)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def producer(txn_id, **extra):
    config = {
        "bootstrap.servers": BROKER,
        "transactional.id": txn_id,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
    }
    config.update(extra)
    p = Producer(config)
    p.init_transactions(DEADLINE)
    return p


def send(p, topic, values, partitions=2):
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions,
                  on_delivery=lambda err, _m: err and errors.append(err))
    expect(p.flush(DEADLINE) == 0 and not errors, f"delivery errors: {errors}")


def read(topic, partitions, isolation):
    """Every value in the topic, as a consumer with `isolation` sees it, up to the end of each
    partition (the last stable offset for read_committed), which librdkafka signals as EOF."""
    c = Consumer({
        "bootstrap.servers": BROKER,
        "group.id": f"txn-check-{isolation}-{time.time()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    at_end = set()
    deadline = time.time() + DEADLINE
    while len(at_end) < partitions:
        expect(time.time() < deadline, f"{isolation}: only partitions {at_end} reached their end")
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF:
            at_end.add(m.partition())
            continue
        expect(m.error() is None, f"consume: {m.error()}")
        values.append(m.value().decode())
    c.close()
    return values


def end_offsets(topic, partitions, isolation):
    c = Consumer({"bootstrap.servers": BROKER, "group.id": "txn-check-ends",
                  "isolation.level": isolation})
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), DEADLINE)[1]
            for p in range(partitions)]
    c.close()
    return ends


def is_fenced(e):
    err = e.args[0]
    return err.fatal() or err.code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def commit_abort(topic):
    create(topic, 2)
    p = producer("py-commit-abort")
    p.begin_transaction()
    send(p, topic, [f"c1-{i}" for i in range(10)])
    p.commit_transaction(DEADLINE)
    p.begin_transaction()
    send(p, topic, [f"a-{i}" for i in range(7)])
    p.abort_transaction(DEADLINE)
    p.begin_transaction()
    send(p, topic, [f"c2-{i}" for i in range(5)])
    p.commit_transaction(DEADLINE)
    committed = sorted(read(topic, 2, "read_committed"))
    want = sorted([f"c1-{i}" for i in range(10)] + [f"c2-{i}" for i in range(5)])
    expect(committed == want, f"read_committed saw {committed}")
    everything = sorted(read(topic, 2, "read_uncommitted"))
    expect(everything == sorted(want + [f"a-{i}" for i in range(7)]),
           f"read_uncommitted saw {everything}")


def fence(topic):
    create(topic, 2)
    first = producer("py-fence")
    second = producer("py-fence")
    try:
        first.begin_transaction()
        first.produce(topic, value="zombie", partition=0)
        first.flush(DEADLINE)
        first.commit_transaction(DEADLINE)
        expect(False, "the first producer committed after being fenced")
    except KafkaException as e:
        expect(is_fenced(e), f"the first producer failed, but not as fenced: {e}")
    second.begin_transaction()
    send(second, topic, ["from-second"])
    second.commit_transaction(DEADLINE)
    committed = read(topic, 2, "read_committed")
    expect(committed == ["from-second"], f"read_committed saw {committed}")


def timeout(topic):
    create(topic, 2)
    p = producer("py-timeout", **{"transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
    p.begin_transaction()
    send(p, topic, [f"abandoned-{i}" for i in range(6)])
    # Abandoned: the broker aborts it once 2 s have passed. Its markers make the last stable
    # offset catch up with the high watermark.
    deadline = time.time() + DEADLINE
    while end_offsets(topic, 2, "read_committed") != end_offsets(topic, 2, "read_uncommitted"):
        expect(time.time() < deadline, "the abandoned transaction was never aborted")
        time.sleep(0.2)
    expect(read(topic, 2, "read_committed") == [], "aborted records are visible")
    expect(len(read(topic, 2, "read_uncommitted")) == 6, "the aborted records are stored")
    try:
        p.commit_transaction(DEADLINE)
        expect(False, "a transaction aborted at its timeout was committed")
    except KafkaException as e:
        err = e.args[0]
        expect(is_fenced(e) or err.txn_requires_abort(), f"unexpected commit error: {e}")
    fresh = producer("py-timeout")
    fresh.begin_transaction()
    send(fresh, topic, ["after-timeout"])
    fresh.commit_transaction(DEADLINE)
    expect(read(topic, 2, "read_committed") == ["after-timeout"], "the new producer's commit")


def open_transaction(topic, txn_id):
    create(topic, 2)
    p = producer(txn_id)
    p.begin_transaction()
    send(p, topic, [f"open-{i}" for i in range(10)])
    print("open", flush=True)
    time.sleep(600)


def resume(topic, txn_id):
    p = producer(txn_id)
    p.begin_transaction()
    send(p, topic, [f"resumed-{i}" for i in range(3)])
    p.commit_transaction(DEADLINE)


def load(topic, partitions, txn_id, run):
    create(topic, partitions)
    try:
        p = producer(txn_id, **{"message.timeout.ms": 5000, "transaction.timeout.ms": 10000})
        n = 0
        while True:
            p.begin_transaction()
            for part in range(partitions):
                p.produce(topic, value=f"{run}-{n}-{part}", partition=part)
            p.commit_transaction(10)
            print(f"committed {run}-{n}", flush=True)
            n += 1
    except KafkaException as e:
        print(f"stopped: {e}", file=sys.stderr, flush=True)
    sys.exit(0)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "commit-abort":
        commit_abort(args[0])
    elif cmd == "fence":
        fence(args[0])
    elif cmd == "timeout":
        timeout(args[0])
    elif cmd == "open":
        open_transaction(args[0], args[1])
        return
    elif cmd == "resume":
        resume(args[0], args[1])
    elif cmd == "load":
        load(args[0], int(args[1]), args[2], args[3])
    elif cmd == "read":
        for v in read(args[0], int(args[1]), args[2]):
            print(v)
        return
    else:
        expect(False, f"unknown subcommand {cmd}")
    print("ok")


if __name__ == "__main__":
    main()
