// kafkajs exactly-once consume-transform-produce against the broker named by KAFKA_BROKER:
// 100 records in `eos-in` are read by a consumer group, uppercased into `eos-out` inside a
// transaction that also commits the group's offsets (`sendOffsets`), batch by batch. The first
// batch is processed once in a transaction that is aborted, then again in one that commits.
// At the end the group's committed offsets are the ends of `eos-in`. Prints "ok".
import { Kafka, logLevel } from 'kafkajs';

const broker = process.env.KAFKA_BROKER;
const kafka = new Kafka({ clientId: 'sluice-eos', brokers: [broker], logLevel: logLevel.ERROR });
const input = 'eos-in';
const output = 'eos-out';
const groupId = 'kafkajs-eos';
const total = 100;

const fail = (message) => {
  console.error(message);
  process.exit(1);
};
const deadline = setTimeout(() => fail('timed out'), 90_000);

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({
  topics: [
    { topic: input, numPartitions: 2 },
    { topic: output, numPartitions: 2 },
  ],
});

const plain = kafka.producer();
await plain.connect();
const messages = [];
for (let i = 0; i < total; i++) messages.push({ key: `k${i}`, value: `v${i}`, partition: i % 2 });
await plain.send({ topic: input, messages, acks: -1 });
await plain.disconnect();

const producer = kafka.producer({
  transactionalId: 'kafkajs-eos-tx',
  idempotent: true,
  maxInFlightRequests: 1,
});
await producer.connect();

const consumer = kafka.consumer({ groupId, readUncommitted: false });
await consumer.connect();
await consumer.subscribe({ topic: input, fromBeginning: true });

let processed = 0;
let aborted = false;
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});

const transform = async (batch, commit) => {
  const txn = await producer.transaction();
  try {
    await txn.send({
      topic: output,
      messages: batch.messages.map((m) => ({
        key: m.key,
        value: m.value.toString().toUpperCase(),
        partition: batch.partition,
      })),
    });
    const next = (BigInt(batch.messages[batch.messages.length - 1].offset) + 1n).toString();
    await txn.sendOffsets({
      consumerGroupId: groupId,
      topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
    });
    if (commit) await txn.commit();
    else await txn.abort();
  } catch (e) {
    await txn.abort().catch(() => {});
    throw e;
  }
};

await consumer.run({
  autoCommit: false,
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
    if (batch.messages.length === 0) return;
    if (!aborted) {
      aborted = true;
      await transform(batch, false);
    }
    await transform(batch, true);
    for (const m of batch.messages) resolveOffset(m.offset);
    await heartbeat();
    processed += batch.messages.length;
    if (processed >= total) resolveDone();
  },
});

await done;
await consumer.disconnect();
await producer.disconnect();

if (processed !== total) fail(`processed ${processed} of ${total}`);
const ends = await admin.fetchTopicOffsets(input);
const committed = await admin.fetchOffsets({ groupId, topics: [input] });
for (const { partition, high } of ends) {
  const c = committed[0].partitions.find((p) => p.partition === partition);
  if (!c || c.offset !== high) {
    fail(`partition ${partition}: committed ${JSON.stringify(c)}, end ${high}`);
  }
}
await admin.disconnect();
clearTimeout(deadline);
console.log('ok');
