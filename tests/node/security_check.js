// kafkajs over TLS and SASL, driven by tests/tests/security.rs: produces one record, reads it
// back, prints "ok". Settings in env: KAFKA_BROKER, CA, MECHANISM (plain, scram-sha-256,
// scram-sha-512, oauthbearer), USER, PASSWORD, TOPIC, and for oauthbearer JWT_SECRET_B64URL,
// JWT_ISSUER, JWT_AUDIENCE, JWT_SUBJECT.
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';

const env = process.env;
const b64url = (buf) => Buffer.from(buf).toString('base64url');

function signedToken() {
  const secret = Buffer.from(env.JWT_SECRET_B64URL, 'base64url');
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'test-key' }));
  const claims = b64url(JSON.stringify({
    sub: env.JWT_SUBJECT, iss: env.JWT_ISSUER, aud: env.JWT_AUDIENCE, iat: now, exp: now + 600,
  }));
  const sig = createHmac('sha256', secret).update(`${header}.${claims}`).digest();
  return `${header}.${claims}.${b64url(sig)}`;
}

const config = { clientId: 'sec-check', brokers: [env.KAFKA_BROKER], logLevel: logLevel.NOTHING };
if (env.CA) config.ssl = { ca: [readFileSync(env.CA, 'utf8')] };
if (env.MECHANISM === 'oauthbearer') {
  config.sasl = { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: signedToken() }) };
} else if (env.MECHANISM) {
  config.sasl = { mechanism: env.MECHANISM, username: env.USER, password: env.PASSWORD };
}

const kafka = new Kafka(config);
const topic = env.TOPIC;
const value = `secure-${randomUUID()}`;
const producer = kafka.producer({ allowAutoTopicCreation: true });
await producer.connect();
await producer.send({ topic, messages: [{ value }] });
await producer.disconnect();

const consumer = kafka.consumer({ groupId: `sec-${randomUUID()}` });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const found = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(false), 60000);
  consumer.run({
    eachMessage: async ({ message }) => {
      if (message.value.toString() === value) {
        clearTimeout(timer);
        resolve(true);
      }
    },
  });
});
await consumer.disconnect();
if (!found) {
  console.error(`did not read back ${value}`);
  process.exit(1);
}
console.log('ok');
