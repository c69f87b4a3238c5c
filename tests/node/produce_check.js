// kafkajs against the broker named by KAFKA_BROKER: batched produce with keys and headers (plain
// and gzip), the admin API's view of the topic, then a kafkajs consumer reading every message
// back (key, value, header, partition, contiguous offsets). Exits non-zero on any mismatch.
import { CompressionTypes, Kafka, logLevel } from 'kafkajs';

const broker = process.env.KAFKA_BROKER;
const topic = process.env.TOPIC || 'kafkajs-check';
const kafka = new Kafka({ clientId: 'sluice-e2e', brokers: [broker], logLevel: logLevel.ERROR });

const fail = (message) => {
  console.error(message);
  process.exit(1);
};

const producer = kafka.producer();
const admin = kafka.admin();
await producer.connect();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });

let sent = 0;
for (let round = 0; round < 6; round++) {
  const messages = [];
  for (let i = 0; i < 50; i++) {
    const n = round * 50 + i;
    messages.push({ key: `k${n}`, value: `v${n}`, headers: { n: String(n) }, partition: n % 2 });
  }
  // Every other batch gzip-compressed by kafkajs's own encoder.
  const compression = round % 2 ? CompressionTypes.GZIP : CompressionTypes.None;
  const result = await producer.send({ topic, messages, acks: -1, compression });
  for (const r of result) {
    if (r.errorCode !== 0) fail(`produce error ${JSON.stringify(r)}`);
  }
  sent += messages.length;
}

const offsets = await admin.fetchTopicOffsets(topic);
const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
if (total !== sent) fail(`expected ${sent} records, topic offsets say ${total}: ${JSON.stringify(offsets)}`);
const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
if (metadata.topics[0].partitions.length !== 2) fail(`expected 2 partitions: ${JSON.stringify(metadata)}`);

const consumer = kafka.consumer({ groupId: `${topic}-reader` });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const received = new Map();
const nextOffset = [0, 0];
const done = new Promise((resolve, reject) => {
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      const n = Number(message.headers.n?.toString());
      const want = { key: `k${n}`, value: `v${n}`, partition: n % 2 };
      const got = { key: message.key?.toString(), value: message.value?.toString(), partition };
      if (JSON.stringify(got) !== JSON.stringify(want)) reject(new Error(`message ${n}: ${JSON.stringify(got)}`));
      if (Number(message.offset) !== nextOffset[partition]) {
        reject(new Error(`partition ${partition}: offset ${message.offset}, expected ${nextOffset[partition]}`));
      }
      nextOffset[partition] = Number(message.offset) + 1;
      if (received.has(n)) reject(new Error(`message ${n} delivered twice`));
      received.set(n, true);
      if (received.size === sent) resolve();
    },
  }).catch(reject);
});
let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`consumed ${received.size} of ${sent}`)), 60000);
});
try {
  await Promise.race([done, timeout]);
} catch (e) {
  fail(e.message);
}
clearTimeout(timer);
await consumer.disconnect();

await producer.disconnect();
await admin.disconnect();
console.log(`ok ${sent}`);
