// The consumer side: a row per connection (`GET /api/connections`) with what it subscribes to,
// a row per group (`GET /api/groups`: named subscribers and Kafka consumer groups) with its lag
// summed from the topics of the overview, and the detail pane of one group (`GET
// /api/groups/{name}`: its committed offset and lag on each partition, reset and delete).

import { h, td, fillTable, link, bar, int, rate, bytes, duration } from './dom.js';

const CONN_COLUMNS = [
  { label: 'Id', num: true }, { label: 'Protocol' }, { label: 'Peer' }, { label: 'Client' },
  { label: 'Connected', num: true }, { label: 'Requests', num: true }, { label: 'req/s', num: true },
  { label: 'Bytes in', num: true }, { label: 'Bytes out', num: true }, { label: 'Subscriptions' },
];

/** Where a subscription of a connection links to: the topic, queue or offset group. */
function subscriptionHash(sub) {
  if (sub.kind === 'queue') return 'queues=' + sub.name;
  // A native consumer of a topic's group names the topic in `detail`; a share group its topics.
  if (sub.kind === 'group' && sub.detail) return 'topics=' + sub.detail;
  if (sub.kind === 'share_group' && sub.detail) return 'topics=' + sub.detail.split(/[ ,]+/)[0];
  if (sub.kind === 'group') return 'groups=' + sub.name;
  return 'topics=' + sub.name;
}

function subscriptionChips(c) {
  const chips = (c.subscriptions || []).map((sub) =>
    link(subscriptionHash(sub), `${sub.kind.replace('_', ' ')} ${sub.name}${sub.detail ? ' · ' + sub.detail : ''}`, {
      class: 'chip', 'data-kind': sub.kind, 'data-name': sub.name,
    }));
  if (c.subscriptions_more) chips.push(h('span', { class: 'muted' }, `+${int(c.subscriptions_more)} more`));
  return chips;
}

/** The connections table; `conns` is the answer of `/api/connections` (or `{missing}`). */
export function renderConnections(st) {
  const table = document.getElementById('connections-table');
  const count = document.getElementById('connection-count');
  const conns = st.conns;
  if (!conns || conns.missing) {
    fillTable(table, CONN_COLUMNS, [], conns ? 'this broker does not list its connections' : 'loading…');
    count.textContent = '';
    return;
  }
  const now = st.ov.broker.now_ms;
  const rows = conns.connections.map((c) => {
    const key = `conn:${c.id}:requests`;
    st.hist.push(key, now, c.requests);
    const r = st.hist.rate(key);
    return h('tr', { 'data-connection': c.id, 'data-protocol': c.protocol },
      td('id', c.id), td('protocol', null, c.protocol), td('peer', null, c.peer),
      td('client', null, c.client || ''), td('connected', now - c.connected_ms, duration(now - c.connected_ms)),
      td('requests', c.requests), td('request_rate', r, rate(r)),
      td('bytes_in', c.bytes_in, bytes(c.bytes_in)), td('bytes_out', c.bytes_out, bytes(c.bytes_out)),
      h('td', {}, subscriptionChips(c)));
  });
  fillTable(table, CONN_COLUMNS, rows, 'no native or Kafka client is connected');
  const by = {};
  for (const c of conns.connections) by[c.protocol] = (by[c.protocol] || 0) + 1;
  count.textContent = Object.entries(by).map(([p, n]) => `${p} ${n}`).join(' · ');
}

/** Lag of each subscriber name over the topics of the overview: name -> {lag, partitions}. */
function lagBySubscriber(ov) {
  const out = new Map();
  for (const tp of ov.topics) {
    for (const p of tp.partitions) {
      for (const sub of p.subscribers || []) {
        const e = out.get(sub.name) || { lag: 0, partitions: 0 };
        e.lag += sub.lag;
        e.partitions += 1;
        out.set(sub.name, e);
      }
    }
  }
  return out;
}

const GROUP_COLUMNS = [
  { label: 'Group' }, { label: 'Topics' },
  { label: 'Partitions', num: true, title: 'partitions with a committed offset, on the topics shown' },
  { label: 'Lag', num: true, title: 'summed over the partitions of the topics shown' },
];

/** The groups table and the detail pane of the group the URL names. */
export function renderGroups(st) {
  const table = document.getElementById('groups-table');
  const groups = st.groups;
  if (!groups || groups.missing) {
    fillTable(table, GROUP_COLUMNS, [], groups ? 'this broker does not list its groups' : 'loading…');
  } else {
    const lag = lagBySubscriber(st.ov);
    const rows = groups.groups.map((g) => {
      const l = lag.get(g.name);
      return h('tr', { 'data-group': g.name, class: st.route.arg === g.name ? 'selected' : null },
        h('td', {}, link('groups=' + g.name, g.name)),
        h('td', {}, g.topics.map((t) => link('topics=' + t, t, { class: 'chip' }))),
        td('partitions', l ? l.partitions : null), td('lag', l ? l.lag : null));
    });
    fillTable(table, GROUP_COLUMNS, rows, 'no groups');
    document.getElementById('group-count').textContent = `${int(groups.groups.length)} in all`;
  }
  renderGroupDetail(st);
}

function renderGroupDetail(st) {
  const pane = document.getElementById('group-detail');
  const g = st.route.view === 'groups' && st.group;
  if (!g) { pane.replaceChildren(); delete pane.dataset.key; return; }
  if (g.missing || g.error) {
    pane.replaceChildren(h('p', { class: 'muted' }, g.error ? `Group ${g.name}: ${g.error}` : 'This broker does not describe groups.'));
    delete pane.dataset.key;
    return;
  }
  const maxLag = Math.max(1, ...g.offsets.map((o) => o.lag));
  const rows = g.offsets.map((o) => h('tr', { 'data-topic': o.topic, 'data-partition': o.partition },
    h('td', {}, link('topics=' + o.topic, o.topic)), td('partition', o.partition),
    td('committed', o.committed), td('end_offset', o.end_offset), td('lag', o.lag),
    h('td', { class: 'lagbar' }, bar(o.lag, maxLag, o.lag > 0 ? 'lag' : ''))));
  const table = h('table', { class: 'grid', id: 'group-offsets-table' });
  fillTable(table, [{ label: 'Topic' }, { label: 'Partition', num: true }, { label: 'Committed', num: true },
    { label: 'End', num: true }, { label: 'Lag', num: true }, { label: 'Lag by partition' }], rows,
  'no committed offsets');
  const total = g.offsets.reduce((a, o) => a + o.lag, 0);
  const form = pane.dataset.key === g.name && pane.querySelector('form');
  pane.replaceChildren(
    h('h3', {}, 'Group ', h('span', { 'data-field': 'name' }, g.name), ' ',
      h('span', { class: 'muted', 'data-field': 'total_lag', 'data-value': total }, `lag ${int(total)}`)),
    table, form || resetForm(g));
  pane.dataset.key = g.name;
}

/** Reset (to earliest, latest, an offset or a time) and delete, for one group. */
function resetForm(g) {
  const topics = [...new Set(g.offsets.map((o) => o.topic))];
  return h('form', { class: 'actions', 'data-action': 'reset', 'data-name': g.name },
    h('label', {}, 'reset on ', h('select', { name: 'topic' }, topics.map((t) => h('option', { value: t }, t)))),
    h('label', {}, 'to ', h('select', { name: 'to' },
      h('option', { value: 'earliest' }, 'earliest'), h('option', { value: 'latest' }, 'latest'),
      h('option', { value: 'offset' }, 'offset'), h('option', { value: 'time_ms' }, 'time'))),
    h('input', { name: 'value', type: 'text', size: 34, placeholder: 'offset, or time as 2025-01-31T12:00' }),
    h('button', { type: 'submit' }, 'Reset…'),
    h('button', { type: 'button', 'data-action': 'delete-group', 'data-name': g.name }, 'Delete group…'));
}
