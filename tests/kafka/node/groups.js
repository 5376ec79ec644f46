#!/usr/bin/env node
// kafkajs (a pure-JavaScript Kafka client with its own version negotiation) in a consumer group
// of two: an idempotent producer writes keyed records (acks=-1) to a topic of 3 partitions; two
// consumers share them; the group is described (Stable, 2 members) and cannot be deleted while
// it has members; one consumer leaves and the other takes every partition and reads what is
// produced next; at the end the committed offsets equal the partitions' ends, the group is
// Empty, listed, and deleted with its offsets. Exits 1 with the reason on any difference.
//   node tests/kafka/node/groups.js --bootstrap 127.0.0.1:9092 [--topic T]
'use strict';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function until(what, cond, ms) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function produce(producer, topic, from, to) {
  const messages = [];
  for (let i = from; i < to; i++) messages.push({ key: 'k' + i, value: 'v' + i });
  await producer.send({ topic, acks: -1, messages });
}

function member(kafka, groupId, topic, seen, name) {
  const c = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 300 });
  const state = { c, name, assigned: [] };
  c.on(c.events.GROUP_JOIN, (e) => {
    state.assigned = (e.payload.memberAssignment[topic] || []).slice().sort();
  });
  return {
    state,
    async start() {
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({
        eachMessage: async ({ partition, message }) => {
          seen.push({ by: name, partition, offset: message.offset, value: message.value.toString() });
        },
      });
    },
  };
}

async function main() {
  const bootstrap = arg('--bootstrap', process.env.KAFKA_BOOTSTRAP);
  const topic = arg('--topic', 'kafkajs-groups');
  const groupId = topic + '-group';
  const kafka = new Kafka({ clientId: 'sluice-groups', brokers: bootstrap.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produce(producer, topic, 0, 60);

  const seen = [];
  const a = member(kafka, groupId, topic, seen, 'a');
  const b = member(kafka, groupId, topic, seen, 'b');
  await a.start();
  await b.start();
  await until('two members sharing the partitions', async () =>
    a.state.assigned.length + b.state.assigned.length === 3 && a.state.assigned.length > 0 && b.state.assigned.length > 0, 30000);
  await until('the first 60 records', async () => new Set(seen.map((s) => s.value)).size === 60, 30000);
  const desc = (await admin.describeGroups([groupId])).groups[0];
  check(desc.state === 'Stable', 'state ' + desc.state);
  check(desc.members.length === 2, desc.members.length + ' members');
  let refused = false;
  try {
    await admin.deleteGroups([groupId]);
  } catch (e) {
    refused = /NON_EMPTY_GROUP|not empty/i.test(JSON.stringify(e.groups || e.message));
  }
  check(refused, 'a group with members was deleted');

  await a.state.c.disconnect();
  await until('b alone holding every partition', async () => b.state.assigned.length === 3, 30000);
  await produce(producer, topic, 60, 90);
  await until('all 90 records', async () => new Set(seen.map((s) => s.value)).size === 90, 30000);
  const lateBy = new Set(seen.filter((s) => Number(s.value.slice(1)) >= 60).map((s) => s.by));
  check(lateBy.size === 1 && lateBy.has('b'), 'records after a left read by ' + [...lateBy]);
  await b.state.c.disconnect();
  await producer.disconnect();

  const ends = await admin.fetchTopicOffsets(topic);
  const committed = (await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions;
  for (const e of ends) {
    const c = committed.find((p) => p.partition === e.partition);
    check(c && c.offset === e.high, 'partition ' + e.partition + ' committed ' + (c && c.offset) + ' end ' + e.high);
  }
  const empty = (await admin.describeGroups([groupId])).groups[0];
  check(empty.state === 'Empty', 'state after leaving ' + empty.state);
  const listed = (await admin.listGroups()).groups.map((g) => g.groupId);
  check(listed.includes(groupId), 'not listed: ' + listed);
  await admin.deleteGroups([groupId]);
  const after = (await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions;
  check(after.every((p) => p.offset === '-1'), 'offsets left after delete: ' + JSON.stringify(after));
  await admin.disconnect();
  const dup = seen.length - new Set(seen.map((s) => s.value)).size;
  console.log(JSON.stringify({ ok: true, consumed: seen.length, duplicates: dup, a: a.state.assigned.length, b: b.state.assigned.length }));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error('groups.js: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  },
);
