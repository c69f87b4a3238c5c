// The seed's stream-processing job, done by the broker: produce to input-topic the way
// producer.js does, then read output-topic with a group consumer the way consumer.js does, and
// print what arrived (one value per line). KAFKA_BROKER names the broker.
import { Kafka, logLevel } from 'kafkajs';

const kafka = new Kafka({ clientId: 'my-app', brokers: [process.env.KAFKA_BROKER], logLevel: logLevel.ERROR });
const producer = kafka.producer();
await producer.connect();
await producer.send({
  topic: 'input-topic',
  messages: [
    { key: 'key1', value: 'Hello KafkaJS user!', headers: { origin: 'kafkajs' } },
    { key: 'key2', value: 'stream processing without a stream processor' },
  ],
});
await producer.disconnect();

const consumer = kafka.consumer({ groupId: 'test-group' });
await consumer.connect();
await consumer.subscribe({ topic: 'output-topic', fromBeginning: true });
let seen = 0;
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`only ${seen} messages`)), 30000);
  consumer.run({
    eachMessage: async ({ message }) => {
      console.log(`${message.key?.toString()} ${message.value.toString()} ${message.headers?.origin?.toString() ?? '-'}`);
      seen += 1;
      if (seen === 2) { clearTimeout(timer); resolve(); }
    },
  });
});
await consumer.disconnect();
