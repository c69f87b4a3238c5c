// producer.js
import { Kafka } from 'kafkajs';

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: ['localhost:9092'], // replace with your broker address
});

const producer = kafka.producer();

const runProducer = async () => {
  await producer.connect();
  await producer.send({
    topic: 'test-topic',
    messages: [
      { key: 'key1', value: 'Hello KafkaJS user!' },
    ],
  });
  await producer.disconnect();
};

runProducer().catch(console.error);

