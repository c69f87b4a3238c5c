// connector.js
import fetch from 'node-fetch';

const createConnector = async () => {
  const response = await fetch('http://localhost:8083/connectors', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      name: 'my-connector',
      config: {
        "connector.class": "org.apache.kafka.connect.file.FileStreamSource",
        "tasks.max": "1",
        "topic": "test-topic",
        "file": "/path/to/input-file.txt",
      },
    }),
  });

  if (response.ok) {
    console.log('Connector created successfully!');
  } else {
    console.error('Failed to create connector:', await response.text());
  }
};

createConnector().catch(console.error);

