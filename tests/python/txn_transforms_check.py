"""confluent-kafka transactional producers writing to topics with transforms (KAFKA_BROKER).

Uses the helpers of transactions_check.py. Subcommands (each prints "ok" and exits 0 on success
unless said otherwise):

- `commit-abort IN OUT`: on IN (one partition; an uppercase transform writes OUT), commits 5
  records, aborts 4, commits 3 more; a read_committed consumer of OUT sees exactly the 8
  committed ones uppercased, a read_uncommitted one all 12; IN reads the same way, as written.
- `in-place TOPIC`: the same on TOPIC, which an in-place uppercase transform rewrites: both
  isolation levels see uppercased records, read_committed only the committed ones.
- `open IN ID TIMEOUT_MS`: starts a transaction with that timeout, writes 5 acknowledged
  records, prints "open" and waits to be killed (a crash mid-transaction).
- `resume IN ID`: a new producer with the same id commits 2 records.
- `stateful TOPIC`: a transactional write to TOPIC (a stateful transform's input) fails with
  INVALID_RECORD, and the transaction can only be aborted; a plain producer's write succeeds.
- `read TOPIC ISOLATION`: prints every value of TOPIC (one partition), one per line.
- `ends TOPIC`: prints the read_committed and read_uncommitted end offsets of partition 0.
"""

import sys

from confluent_kafka import KafkaError, KafkaException, Producer

from transactions_check import BROKER, create, end_offsets, expect, producer, read, send


def transactions(topic):
    p = producer(f"txf-{topic}")
    p.begin_transaction()
    send(p, topic, [f"c-{i}" for i in range(5)], partitions=1)
    p.commit_transaction(30)
    p.begin_transaction()
    send(p, topic, [f"a-{i}" for i in range(4)], partitions=1)
    p.abort_transaction(30)
    p.begin_transaction()
    send(p, topic, [f"d-{i}" for i in range(3)], partitions=1)
    p.commit_transaction(30)
    committed = [f"c-{i}" for i in range(5)] + [f"d-{i}" for i in range(3)]
    everything = [f"c-{i}" for i in range(5)] + [f"a-{i}" for i in range(4)] + \
        [f"d-{i}" for i in range(3)]
    return committed, everything


def check(topic, isolation, want):
    got = read(topic, 1, isolation)
    expect(got == want, f"{topic} {isolation}: saw {got}, want {want}")


def commit_abort(topic_in, topic_out):
    create(topic_in, 1)
    committed, everything = transactions(topic_in)
    check(topic_out, "read_committed", [v.upper() for v in committed])
    check(topic_out, "read_uncommitted", [v.upper() for v in everything])
    check(topic_in, "read_committed", committed)
    check(topic_in, "read_uncommitted", everything)


def in_place(topic):
    create(topic, 1)
    committed, everything = transactions(topic)
    check(topic, "read_committed", [v.upper() for v in committed])
    check(topic, "read_uncommitted", [v.upper() for v in everything])


def open_transaction(topic, txn_id, timeout_ms):
    import time
    create(topic, 1)
    p = producer(txn_id, **{"transaction.timeout.ms": int(timeout_ms),
                            "message.timeout.ms": int(timeout_ms)})
    p.begin_transaction()
    send(p, topic, [f"open-{i}" for i in range(5)], partitions=1)
    print("open", flush=True)
    time.sleep(600)


def resume(topic, txn_id):
    p = producer(txn_id)
    p.begin_transaction()
    send(p, topic, [f"resumed-{i}" for i in range(2)], partitions=1)
    p.commit_transaction(30)


def stateful(topic):
    create(topic, 1)
    p = producer(f"txf-{topic}", **{"message.timeout.ms": 10000})
    p.begin_transaction()
    errors = []
    p.produce(topic, value="counted?", partition=0,
              on_delivery=lambda err, _m: err and errors.append(err))
    p.flush(30)
    expect([e.code() for e in errors] == [KafkaError.INVALID_RECORD],
           f"delivery errors: {errors}")
    try:
        p.commit_transaction(30)
        expect(False, "a transaction with a refused write committed")
    except KafkaException as e:
        expect(e.args[0].txn_requires_abort(), f"unexpected commit error: {e}")
    p.abort_transaction(30)
    plain = Producer({"bootstrap.servers": BROKER})
    plain.produce(topic, value="plain", partition=0,
                  on_delivery=lambda err, _m: err and errors.append(err))
    plain.flush(30)
    expect(len(errors) == 1, f"the plain write failed: {errors}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "commit-abort":
        commit_abort(args[0], args[1])
    elif cmd == "in-place":
        in_place(args[0])
    elif cmd == "open":
        open_transaction(args[0], args[1], args[2])
        return
    elif cmd == "resume":
        resume(args[0], args[1])
    elif cmd == "stateful":
        stateful(args[0])
    elif cmd == "read":
        for v in read(args[0], 1, args[1]):
            print(v)
        return
    elif cmd == "ends":
        committed = end_offsets(args[0], 1, "read_committed")[0]
        everything = end_offsets(args[0], 1, "read_uncommitted")[0]
        print(f"{committed} {everything}")
        return
    else:
        expect(False, f"unknown subcommand {cmd}")
    print("ok")


if __name__ == "__main__":
    main()
