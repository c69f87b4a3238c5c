// kafkajs against the broker named by KAFKA_BROKER: batched produce with keys and headers, then
// the admin API's view of the topic. Exits non-zero on any mismatch.
import { Kafka, logLevel } from 'kafkajs';

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
  const result = await producer.send({ topic, messages, acks: -1 });
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

await producer.disconnect();
await admin.disconnect();
console.log(`ok ${sent}`);
