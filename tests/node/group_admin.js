// kafkajs group consumer and admin against KAFKA_BROKER: a consumer in group "admin-group" reads
// and commits, then the admin API lists, describes, fetches, resets, sets and deletes the group.
import { Kafka, logLevel } from 'kafkajs';

const kafka = new Kafka({ clientId: 'sluice-e2e', brokers: [process.env.KAFKA_BROKER], logLevel: logLevel.ERROR });
const topic = 'group-admin-topic';
const groupId = 'admin-group';
const fail = (m) => { console.error(m); process.exit(1); };

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
const producer = kafka.producer();
await producer.connect();
const messages = Array.from({ length: 20 }, (_, i) => ({ value: `m${i}`, partition: i % 2 }));
await producer.send({ topic, messages });

const consumer = kafka.consumer({ groupId });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
let seen = 0;
const done = new Promise((resolve) => {
  consumer.run({
    autoCommit: false,
    eachMessage: async () => { seen += 1; if (seen === 20) resolve(); },
  });
});
await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${seen} messages`)), 30000))]);

// Let the final offsets be committed, then check the admin views while the member is live.
await consumer.commitOffsets([{ topic, partition: 0, offset: '10' }, { topic, partition: 1, offset: '10' }]);
const { groups } = await admin.listGroups();
if (!groups.some((g) => g.groupId === groupId && g.protocolType === 'consumer')) fail(`listGroups: ${JSON.stringify(groups)}`);
const described = await admin.describeGroups([groupId]);
const g = described.groups[0];
if (g.state !== 'Stable' || g.members.length !== 1) fail(`describeGroups: ${JSON.stringify(g)}`);
const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
const parts = offsets[0].partitions.sort((a, b) => a.partition - b.partition);
if (parts.length !== 2 || parts.some((p) => p.offset !== '10')) fail(`fetchOffsets: ${JSON.stringify(offsets)}`);

let refused = false;
try { await admin.deleteGroups([groupId]); } catch (e) { refused = true; }
if (!refused) fail('deleteGroups of a live group should fail');

await consumer.disconnect();
await admin.resetOffsets({ groupId, topic, earliest: true });
let after = await admin.fetchOffsets({ groupId, topics: [topic] });
// kafkajs commits the "earliest" marker (-2) itself, as it does against Kafka.
if (after[0].partitions.some((p) => p.offset !== '-2')) fail(`resetOffsets: ${JSON.stringify(after)}`);
await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '7' }, { partition: 1, offset: '3' }] });
after = await admin.fetchOffsets({ groupId, topics: [topic] });
const byPartition = Object.fromEntries(after[0].partitions.map((p) => [p.partition, p.offset]));
if (byPartition[0] !== '7' || byPartition[1] !== '3') fail(`setOffsets: ${JSON.stringify(after)}`);
const emptyState = (await admin.describeGroups([groupId])).groups[0].state;
if (emptyState !== 'Empty') fail(`state after leave: ${emptyState}`);

await admin.deleteGroups([groupId]);
const remaining = (await admin.listGroups()).groups;
if (remaining.some((x) => x.groupId === groupId)) fail(`deleted group still listed: ${JSON.stringify(remaining)}`);
await producer.disconnect();
await admin.disconnect();
console.log('ok');
