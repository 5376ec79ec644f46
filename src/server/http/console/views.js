// The overview, topics and queues views, rendered from one poll: the broker's figures as cards
// and charts, a row per topic and per queue (figures in `data-field` cells), and the detail
// pane of the topic or queue the URL names. Rates are increases of polled counters (a topic's
// end offsets, a queue's end and acks) divided by the time between polls, from `History`.

import { h, td, fillTable, link, bar, int, rate, bytes, duration, time } from './dom.js';
import { sparkline, lineChart } from './chart.js';

/** Records one poll's figures in the history `hist` at the broker's clock `t`. */
export function record(hist, ov, t) {
  const b = ov.broker;
  const sum = (o) => (o ? (o.native || 0) + (o.kafka || 0) + (o.http || 0) : 0);
  hist.push('broker:in', t, sum(b.bytes_in));
  hist.push('broker:out', t, sum(b.bytes_out));
  for (const p of ['native', 'kafka', 'http']) hist.push(`broker:conn:${p}`, t, b.connections?.[p] || 0);
  for (const tp of ov.topics) recordTopic(hist, tp, t);
  for (const q of ov.queues) {
    hist.push(`queue:${q.name}:end`, t, q.end_offset);
    hist.push(`queue:${q.name}:acked`, t, acked(q));
    for (const f of ['depth', 'ready', 'in_flight', 'delayed', 'dead_lettered']) {
      if (typeof q[f] === 'number') hist.push(`queue:${q.name}:${f}`, t, q[f]);
    }
  }
}

/** Records a topic's end offsets, in all and by partition. */
export function recordTopic(hist, tp, t) {
  hist.push(`topic:${tp.name}`, t, tp.partitions.reduce((a, p) => a + p.end_offset, 0));
  for (const p of tp.partitions) hist.push(`topic:${tp.name}:${p.partition}`, t, p.end_offset);
}

/** Messages a queue settled: published minus those still unacked or dead-lettered. */
function acked(q) {
  return Math.max(0, q.end_offset - q.depth - (q.dead_lettered || 0));
}

/** Right-aligned sum of several rate series. */
function sumSeries(list) {
  const n = Math.max(0, ...list.map((a) => a.length));
  const out = new Array(n).fill(0);
  for (const a of list) a.forEach((v, i) => { out[n - a.length + i] += v; });
  return out;
}

function card(field, label, value, text, ...extra) {
  return h('div', { class: 'card', 'data-field': field, 'data-value': value },
    h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, text), extra);
}

/** The overview: the broker's cards and the charts of rates, depth and connections. */
export function renderOverview(st) {
  const { ov, hist } = st;
  const b = ov.broker;
  const c = b.connections || {};
  const up = b.started_ms ? b.now_ms - b.started_ms : null;
  const used = b.disk_total_bytes - b.disk_free_bytes;
  const inRate = hist.rate('broker:in');
  const outRate = hist.rate('broker:out');
  document.getElementById('broker-cards').replaceChildren(
    card('version', 'Version', null, b.version || 'unknown'),
    card('uptime', 'Uptime', up, duration(up), b.data_dir ? h('div', { class: 'card-sub' }, b.data_dir) : null),
    card('topics', 'Topics', b.topics, int(b.topics)),
    card('queues', 'Queues', b.queues, int(b.queues)),
    card('connections', 'Connections', (c.native || 0) + (c.kafka || 0) + (c.http || 0),
      int((c.native || 0) + (c.kafka || 0) + (c.http || 0)),
      h('div', { class: 'card-sub' }, ['native', 'kafka', 'http'].map((p) =>
        h('span', { 'data-field': `connections_${p}`, 'data-value': c[p] || 0 }, `${p} ${int(c[p] || 0)} `)))),
    card('bytes_in_rate', 'Bytes in', inRate, inRate === null ? '—' : bytes(inRate) + '/s',
      h('div', { class: 'card-sub' }, 'total ' + bytes(hist.values('broker:in').at(-1)))),
    card('bytes_out_rate', 'Bytes out', outRate, outRate === null ? '—' : bytes(outRate) + '/s',
      h('div', { class: 'card-sub' }, 'total ' + bytes(hist.values('broker:out').at(-1)))),
    card('disk_free', 'Disk free', b.disk_free_bytes, bytes(b.disk_free_bytes),
      h('div', { class: 'card-sub' }, 'of ' + bytes(b.disk_total_bytes)),
      b.disk_total_bytes ? bar(used, b.disk_total_bytes, used / b.disk_total_bytes > 0.9 ? 'warn' : '') : null),
  );
  document.getElementById('overview-charts').replaceChildren(...overviewCharts(st));
}

function overviewCharts({ ov, hist }) {
  const span = hist.span('broker:in');
  const topicRates = sumSeries(ov.topics.map((t) => hist.rates(`topic:${t.name}`)));
  const queueRates = sumSeries(ov.queues.map((q) => hist.rates(`queue:${q.name}:end`)));
  const ackRates = sumSeries(ov.queues.map((q) => hist.rates(`queue:${q.name}:acked`)));
  const deepest = [...ov.queues].sort((a, b) => b.depth - a.depth).slice(0, 5);
  return [
    lineChart({
      id: 'chart-publish', title: 'Messages per second', span, format: rate,
      series: [{ label: 'published to topics', values: topicRates },
        { label: 'published to queues', values: queueRates },
        { label: 'acked from queues', values: ackRates }],
    }),
    lineChart({
      id: 'chart-bytes', title: 'Bytes per second', span, format: (v) => bytes(v) + '/s',
      series: [{ label: 'in', values: hist.rates('broker:in') },
        { label: 'out', values: hist.rates('broker:out') }],
    }),
    lineChart({
      id: 'chart-depth', title: 'Queue depth (deepest five)', span, format: int,
      series: deepest.map((q) => ({ label: q.name, values: hist.values(`queue:${q.name}:depth`) })),
    }),
    lineChart({
      id: 'chart-connections', title: 'Connections', span, format: int,
      series: ['native', 'kafka', 'http'].map((p) => ({ label: p, values: hist.values(`broker:conn:${p}`) })),
    }),
  ];
}

/** Subscribers of a topic with their lag summed over partitions, as chips. */
function subscriberChips(tp) {
  const lag = new Map();
  for (const p of tp.partitions) {
    for (const sub of p.subscribers || []) lag.set(sub.name, (lag.get(sub.name) || 0) + sub.lag);
  }
  return [...lag].map(([name, l]) => h('span', {
    class: 'chip' + (l > 0 ? ' lagging' : ''), 'data-subscriber': name, 'data-field': 'lag', 'data-value': l,
    title: `${name}: ${l} behind the end, over all partitions`,
  }, `${name} `, h('b', {}, int(l))));
}

const TOPIC_COLUMNS = [
  { label: 'Topic' }, { label: 'Partitions', num: true },
  { label: 'Messages', num: true, title: 'held now: end minus start offsets' },
  { label: 'End offset', num: true, title: 'sum over partitions: messages ever published' },
  { label: 'msgs/s', num: true, title: 'publish rate over the last polls' }, { label: 'Trend' },
  { label: 'Size', num: true }, { label: 'Segments', num: true },
  { label: 'Subscribers (lag)' }, { label: '' },
];

/** The topics table, and the detail pane of the topic the URL names. */
export function renderTopics(st) {
  const { ov, hist } = st;
  const rows = ov.topics.map((tp) => {
    const sum = (f) => tp.partitions.reduce((a, p) => a + p[f], 0);
    const r = hist.rate(`topic:${tp.name}`);
    return h('tr', { 'data-topic': tp.name, class: st.route.arg === tp.name ? 'selected' : null },
      h('td', {}, link('topics=' + tp.name, tp.name)),
      td('partitions', tp.partitions.length),
      td('messages', sum('end_offset') - sum('start_offset')),
      td('end_offset', sum('end_offset')),
      td('rate', r, rate(r)),
      h('td', {}, sparkline(hist.rates(`topic:${tp.name}`), { label: 'messages per second' })),
      td('size_bytes', sum('size_bytes'), bytes(sum('size_bytes'))),
      td('segments', sum('segments')),
      h('td', {}, subscriberChips(tp)),
      h('td', { class: 'links' }, link(`browse=topic:${tp.name}:0`, 'browse'), ' ',
        link(`segments=topic:${tp.name}:0`, 'segments')));
  });
  fillTable(document.getElementById('topics-table'), TOPIC_COLUMNS, rows,
    ov.broker.topics ? 'no topic with this prefix' : 'no topics yet');
  document.getElementById('topic-count').textContent = shown(ov.topics.length, ov.broker.topics);
  renderTopicDetail(st);
}

function shown(n, total) {
  return n < total ? `showing ${int(n)} of ${int(total)}` : `${int(total)} in all`;
}

function renderTopicDetail(st) {
  const pane = document.getElementById('topic-detail');
  const tp = st.topic;
  if (!tp || st.route.view !== 'topics') { pane.replaceChildren(); return; }
  const { hist } = st;
  const parts = tp.partitions.map((p) => {
    const key = `topic:${tp.name}:${p.partition}`;
    return h('tr', { 'data-partition': p.partition },
      td('partition', p.partition), td('start_offset', p.start_offset), td('end_offset', p.end_offset),
      td('messages', p.end_offset - p.start_offset), td('rate', hist.rate(key), rate(hist.rate(key))),
      td('size_bytes', p.size_bytes, bytes(p.size_bytes)), td('segments', p.segments),
      h('td', { class: 'links' }, link(`browse=topic:${tp.name}:${p.partition}`, 'browse'), ' ',
        link(`segments=topic:${tp.name}:${p.partition}`, 'segments')));
  });
  const partTable = h('table', { class: 'grid', id: 'partitions-table' });
  fillTable(partTable, ['Partition', 'Start', 'End', 'Messages', 'msgs/s', 'Size', 'Segments', '']
    .map((label, i) => ({ label, num: i > 0 && i < 7 })), parts);
  const series = tp.partitions.length <= 8
    ? tp.partitions.map((p) => ({ label: `partition ${p.partition}`, values: hist.rates(`topic:${tp.name}:${p.partition}`) }))
    : [{ label: 'all partitions', values: hist.rates(`topic:${tp.name}`) }];
  pane.replaceChildren(
    h('h3', {}, 'Topic ', h('span', { 'data-field': 'name' }, tp.name), h('span', { class: 'muted id' }, tp.id)),
    lineChart({ id: 'chart-topic', title: 'Published per second', series, format: rate, span: hist.span(`topic:${tp.name}`) }),
    h('h4', {}, 'Partitions'), partTable,
    h('h4', {}, 'Subscribers and consumer groups (committed offsets)'), subscribersTable(tp),
    h('h4', {}, 'Consumer groups (competing consumers, Kafka share groups)'), topicGroupsTable(tp.name, st.topicGroups),
  );
}

function subscribersTable(tp) {
  const rows = [];
  for (const p of tp.partitions) {
    for (const sub of p.subscribers || []) {
      rows.push(h('tr', { 'data-subscriber': sub.name, 'data-partition': p.partition },
        h('td', {}, link('groups=' + sub.name, sub.name)), td('partition', p.partition),
        td('committed', sub.committed), td('end_offset', p.end_offset), td('lag', sub.lag),
        h('td', {}, bar(sub.lag, Math.max(1, p.end_offset - p.start_offset), sub.lag > 0 ? 'lag' : ''))));
    }
  }
  const t = h('table', { class: 'grid', id: 'subscribers-table' });
  fillTable(t, [{ label: 'Name' }, { label: 'Partition', num: true }, { label: 'Committed', num: true },
    { label: 'End', num: true }, { label: 'Lag', num: true }, { label: 'Lag of held' }], rows,
  'no named subscriber or consumer group has committed an offset');
  return t;
}

function topicGroupsTable(topic, groups) {
  const t = h('table', { class: 'grid', id: 'topic-groups-table' });
  if (!groups || groups.missing) {
    fillTable(t, [{ label: '' }], [], groups ? 'this broker does not list them' : 'loading…');
    return t;
  }
  const rows = groups.groups.flatMap((g) => g.partitions.map((p, i) =>
    h('tr', { 'data-group': g.name, 'data-partition': p.partition },
      h('td', {}, i ? '' : g.name), td('partition', p.partition), td('ack_floor', p.ack_floor),
      td('cursor', p.cursor), td('end_offset', p.end_offset ?? null), td('depth', p.depth),
      td('in_flight', p.in_flight), td('dead_lettered', p.dead_lettered),
      h('td', {}, i ? '' : [g.dead_letter ? link('queues=' + g.dead_letter, g.dead_letter) : '', ' ',
        h('button', { type: 'button', 'data-action': 'delete-topic-group', 'data-name': g.name,
          'data-topic': topic, title: 'delete this consumer group and its acks' }, 'Delete…')]))));
  fillTable(t, ['Group', 'Partition', 'Ack floor', 'Cursor', 'End', 'Depth', 'In flight', 'Dead-lettered', 'Dead letters to']
    .map((label, i) => ({ label, num: i > 0 && i < 8 })), rows, 'no consumer group reads this topic');
  return t;
}

const QUEUE_COLUMNS = [
  { label: 'Queue' }, { label: 'Ready', num: true, title: 'not acked, not held by a consumer' },
  { label: 'In flight', num: true, title: 'delivered, not yet acked' },
  { label: 'Depth', num: true, title: 'not acked: ready, in flight, delayed' }, { label: 'Depth trend' },
  { label: 'Acked', num: true, title: 'published minus depth and dead-lettered (purged ones count as acked)' },
  { label: 'Dead-lettered', num: true }, { label: 'Published', num: true, title: 'end offset' },
  { label: 'in/s', num: true }, { label: 'acked/s', num: true },
  { label: 'Consumers', num: true }, { label: 'Oldest unacked', num: true }, { label: 'Size', num: true },
  { label: '' },
];

/** The queues table, and the detail pane of the queue the URL names. */
export function renderQueues(st) {
  const { ov, hist } = st;
  const rows = ov.queues.map((q) => {
    const age = q.oldest_unacked_timestamp_ms ? ov.broker.now_ms - q.oldest_unacked_timestamp_ms : null;
    const inRate = hist.rate(`queue:${q.name}:end`);
    const ackRate = hist.rate(`queue:${q.name}:acked`);
    return h('tr', { 'data-queue': q.name, class: st.route.arg === q.name ? 'selected' : null },
      h('td', {}, link('queues=' + q.name, q.name)),
      td('ready', q.ready ?? null), td('in_flight', q.in_flight), td('depth', q.depth),
      h('td', {}, sparkline(hist.values(`queue:${q.name}:depth`), { label: 'depth', cls: 'depth' })),
      td('acked', acked(q)), td('dead_lettered', q.dead_lettered, int(q.dead_lettered)),
      td('end_offset', q.end_offset), td('in_rate', inRate, rate(inRate)), td('ack_rate', ackRate, rate(ackRate)),
      td('consumers', q.consumers ?? null), td('oldest_unacked', age, duration(age)),
      td('size_bytes', q.size_bytes, bytes(q.size_bytes)),
      h('td', { class: 'links' }, link(`browse=queue:${q.name}`, 'browse'), ' ',
        link(`segments=queue:${q.name}`, 'segments')));
  });
  fillTable(document.getElementById('queues-table'), QUEUE_COLUMNS, rows,
    ov.broker.queues ? 'no queue with this prefix' : 'no queues yet');
  document.getElementById('queue-count').textContent = shown(ov.queues.length, ov.broker.queues);
  renderQueueDetail(st);
}

function fact(field, label, value, text) {
  return h('div', { class: 'fact', 'data-field': field, 'data-value': typeof value === 'number' ? value : null },
    h('span', { class: 'muted' }, label + ' '), text === undefined ? int(value) : text);
}

function renderQueueDetail(st) {
  const pane = document.getElementById('queue-detail');
  const q = st.route.view === 'queues' && st.ov.queues.find((x) => x.name === st.route.arg);
  if (!q) { pane.replaceChildren(); return; }
  const { hist } = st;
  const series = ['ready', 'in_flight', 'delayed', 'depth']
    .filter((f) => typeof q[f] === 'number')
    .map((f) => ({ label: f.replace('_', ' '), values: hist.values(`queue:${q.name}:${f}`) }));
  const actions = pane.dataset.key === q.name && pane.querySelector('.actions');
  pane.replaceChildren(
    h('h3', {}, 'Queue ', h('span', { 'data-field': 'name' }, q.name)),
    h('div', { class: 'facts' },
      fact('start_offset', 'start offset', q.start_offset), fact('end_offset', 'end offset', q.end_offset),
      fact('ack_floor', 'ack floor', q.ack_floor), fact('cursor', 'cursor', q.cursor),
      fact('redelivery_ready', 'waiting redelivery', q.redelivery_ready ?? null),
      fact('ack_timeout_ms', 'ack timeout', q.ack_timeout_ms, duration(q.ack_timeout_ms)),
      fact('max_deliveries', 'max deliveries', q.max_deliveries),
      fact('dead_letter', 'dead letters to', null, q.dead_letter ? link('queues=' + q.dead_letter, q.dead_letter) : 'none'),
      fact('oldest_unacked', 'oldest unacked', null, q.oldest_unacked_timestamp_ms ? time(q.oldest_unacked_timestamp_ms) : 'none')),
    lineChart({ id: 'chart-queue', title: 'Messages over time', series, format: int, span: hist.span(`queue:${q.name}:depth`) }),
    actions || queueActions(q.name),
  );
  pane.dataset.key = q.name;
}

/** Purge and redrive buttons (built once per queue, so a typed count survives the polls). */
function queueActions(name) {
  return h('div', { class: 'actions' },
    link(`browse=queue:${name}`, 'Browse messages'), link(`segments=queue:${name}`, 'Segment map'),
    h('button', { type: 'button', 'data-action': 'purge', 'data-name': name,
      title: 'settle every message waiting in the queue' }, 'Purge…'),
    h('label', {}, 'redrive count ', h('input', { type: 'number', min: 1, placeholder: 'all', class: 'redrive-count', size: 6 })),
    h('label', {}, 'to ', h('input', { type: 'text', placeholder: 'its queue', class: 'redrive-to', size: 10 })),
    h('button', { type: 'button', 'data-action': 'redrive', 'data-name': name,
      title: 'move a dead-letter queue\u2019s messages back to their queue' }, 'Redrive…'));
}
