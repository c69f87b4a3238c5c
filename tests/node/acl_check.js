// kafkajs ACL checks, driven by tests/tests/acls.rs. As ADMIN_USER: createAcls, describeAcls and
// deleteAcls of one binding letting USER write TOPIC; as USER: a send to TOPIC (allowed while the
// binding exists) and to DENIED_TOPIC. Prints one JSON line. Env: KAFKA_BROKER, ADMIN_USER,
// ADMIN_PASSWORD, USER, PASSWORD, TOPIC, DENIED_TOPIC.
import kafkajs from 'kafkajs';

const {
  AclOperationTypes, AclPermissionTypes, AclResourceTypes, Kafka, logLevel, ResourcePatternTypes,
} = kafkajs;

const env = process.env;
const client = (username, password) => new Kafka({
  clientId: 'acl-check',
  brokers: [env.KAFKA_BROKER],
  logLevel: logLevel.NOTHING,
  retry: { retries: 1 },
  sasl: { mechanism: 'scram-sha-256', username, password },
});

const binding = {
  resourceType: AclResourceTypes.TOPIC,
  resourceName: env.TOPIC,
  resourcePatternType: ResourcePatternTypes.LITERAL,
  principal: `User:${env.USER}`,
  host: '*',
  operation: AclOperationTypes.WRITE,
  permissionType: AclPermissionTypes.ALLOW,
};

async function send(topic) {
  const producer = client(env.USER, env.PASSWORD).producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, messages: [{ value: 'from-kafkajs' }], acks: -1 });
    return 'ok';
  } catch (e) {
    return e.type || (e.cause && e.cause.type) || e.name;
  } finally {
    await producer.disconnect();
  }
}

const admin = client(env.ADMIN_USER, env.ADMIN_PASSWORD).admin();
await admin.connect();
const result = {};
await admin.createAcls({ acl: [binding] });
const described = await admin.describeAcls({
  resourceType: AclResourceTypes.TOPIC,
  resourceName: env.TOPIC,
  resourcePatternType: ResourcePatternTypes.LITERAL,
  operation: AclOperationTypes.ANY,
  permissionType: AclPermissionTypes.ANY,
});
result.described = described.resources.flatMap((r) => r.acls.map((a) => `${r.resourceName}:${a.principal}:${a.operation}`));
result.allowed = await send(env.TOPIC);
result.denied = await send(env.DENIED_TOPIC);
const deleted = await admin.deleteAcls({ filters: [binding] });
result.deleted = deleted.filterResponses.reduce((n, f) => n + f.matchingAcls.length, 0);
result.afterDelete = await send(env.TOPIC);
await admin.disconnect();
console.log(JSON.stringify(result));
