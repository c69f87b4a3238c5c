
// admin.js
import { Kafka } from 'kafkajs';

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: ['localhost:9092'], // replace with your broker address
});

const admin = kafka.admin();

const manageTopics = async () => {
  await admin.connect();
  
  // Create a new topic
  await admin.createTopics({
    topics: [
      { topic: 'new-topic', numPartitions: 1, replicationFactor: 1 },
    ],
  });

  console.log('Topic created successfully!');

  // List all topics
  const topics = await admin.listTopics();
  console.log('Existing topics:', topics);

  await admin.disconnect();
};

manageTopics().catch(console.error);

