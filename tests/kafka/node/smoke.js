#!/usr/bin/env node
// Produce N records with kafkajs (a pure-JavaScript Kafka client with its own version
// negotiation), consume them back in a consumer group, and check the count.
//   KAFKA_BOOTSTRAP=127.0.0.1:9092 node tests/kafka/node/smoke.js [--topic T] [-n 10]
'use strict';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

async function main() {
  const bootstrap = arg('--bootstrap', process.env.KAFKA_BOOTSTRAP);
  if (!bootstrap) {
    console.error('smoke.js: no bootstrap address: pass --bootstrap or set KAFKA_BOOTSTRAP');
    return 2;
  }
  const topic = arg('--topic', 'smoke-kafkajs');
  const n = parseInt(arg('-n', '10'), 10);
  const groupId = arg('--group', topic + '-group');
  const timeoutMs = parseInt(arg('--timeout-ms', '30000'), 10);

  const kafka = new Kafka({
    clientId: 'sluice-smoke',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    retry: { retries: 5 },
  });

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < n; i++) messages.push({ key: `k${i}`, value: `kafkajs ${i}` });
  await producer.send({ topic, messages });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let got = 0;
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    consumer.run({
      eachMessage: async () => {
        got++;
        if (got >= n) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await done;
  await consumer.disconnect();
  console.log(`kafkajs ${require('kafkajs/package.json').version}: produced ${n} consumed ${got}`);
  return got === n ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => {
  console.error('smoke.js:', err);
  process.exit(1);
});
