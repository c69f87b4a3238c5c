// streamProcessor.js
import { Kafka } from 'kafkajs';

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: ['localhost:9092'], // replace with your broker address
});

const consumer = kafka.consumer({ groupId: 'test-group' });
const producer = kafka.producer();

const runStreamProcessor = async () => {
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: 'input-topic', fromBeginning: true });

  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const processedMessage = message.value.toString().toUpperCase(); // Example transformation
      await producer.send({
        topic: 'output-topic',
        messages: [
          { value: processedMessage },
        ],
      });
    },
  });
};

runStreamProcessor().catch(console.error);

