// The segment map of a topic partition or a queue (`GET /api/topics/{name}/segments?partition=N`,
// `GET /api/queues/{name}/segments`): one bar per segment file, as wide as its share of the
// bytes, labelled with its offset and time range; the active segment (the one appended to) and
// the segments retention or acks will reclaim are marked. Also the picker of sources that the
// message browser shares: `topic:orders:0` or `queue:jobs`.

import { h, td, fillTable, int, bytes, duration, time } from './dom.js';
import { optional, enc } from './api.js';

/** `topic:NAME:P`, `topic:NAME` or `queue:NAME` as {kind, name, partition}; null if neither. */
export function parseSource(arg) {
  const m = /^(topic|queue):([^:]+)(?::(\d+))?$/.exec(arg || '');
  return m ? { kind: m[1], name: m[2], partition: Number(m[3] || 0) } : null;
}

/** Fills a source `select` with the overview's topics and queues, keeping `current` chosen. */
export function sourceOptions(sel, ov, current) {
  const cur = parseSource(current) || parseSource(sel.value);
  const want = [...ov.topics.map((t) => `topic:${t.name}`), ...ov.queues.map((q) => `queue:${q.name}`)];
  const curKey = cur ? `${cur.kind}:${cur.name}` : null;
  if (curKey && !want.includes(curKey)) want.unshift(curKey);
  const have = [...sel.options].map((o) => o.value);
  if (have.join('\n') !== want.join('\n')) {
    sel.replaceChildren(...want.map((v) => h('option', { value: v }, v.replace(':', ' '))));
  }
  if (curKey) sel.value = curKey;
}

/** Builds the form once; `go(hash)` navigates. */
export function init(go) {
  const form = document.getElementById('segments-form');
  form.replaceChildren(
    h('label', {}, 'source ', h('select', { name: 'source', id: 'segments-source' })),
    h('label', {}, 'partition ', h('input', { name: 'partition', type: 'number', min: 0, value: 0, size: 4 })),
    h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const src = parseSource(form.elements.source.value);
    if (!src) return;
    const p = Number(form.elements.partition.value) || 0;
    go(src.kind === 'topic' ? `segments=topic:${src.name}:${p}` : `segments=queue:${src.name}`);
  });
}

/** Keeps the source list in step with the overview. */
export function refreshSources(ov, route) {
  sourceOptions(document.getElementById('segments-source'), ov, route.view === 'segments' ? route.arg : '');
}

/** Reads and draws the segments of the source the route names; `now` is the broker's clock. */
export async function load(route, now) {
  const summary = document.getElementById('segments-summary');
  const src = parseSource(route.arg);
  const map = document.getElementById('segment-map');
  const table = document.getElementById('segments-table');
  if (!src) {
    summary.textContent = 'Pick a topic partition or a queue.';
    map.replaceChildren();
    fillTable(table, COLUMNS, [], 'nothing shown yet');
    return;
  }
  const form = document.getElementById('segments-form');
  form.elements.partition.value = src.partition;
  form.elements.partition.disabled = src.kind !== 'topic';
  const path = src.kind === 'topic'
    ? `/api/topics/${enc(src.name)}/segments?partition=${src.partition}`
    : `/api/queues/${enc(src.name)}/segments`;
  let r;
  try {
    r = await optional(path);
  } catch (e) {
    summary.textContent = `cannot read the segments: ${e.message}`;
    return;
  }
  if (r.missing) {
    summary.textContent = 'This broker does not list segments (GET …/segments).';
    return;
  }
  draw(src, r, now);
}

/** The segment that retention or acks remove next: the first eligible now, else the soonest. */
function nextReclaim(segs, now) {
  const marked = segs.filter((x) => x.reclaim);
  const now_ = marked.find((x) => x.reclaim_at_ms === null || x.reclaim_at_ms <= now);
  if (now_) return now_;
  return marked.sort((a, b) => a.reclaim_at_ms - b.reclaim_at_ms)[0] || null;
}

function reclaimText(seg, now) {
  if (!seg.reclaim) return '';
  const by = seg.reclaim.replace('_', ' ');
  if (seg.reclaim_at_ms === null || seg.reclaim_at_ms <= now) return `${by}: reclaimable now`;
  return `${by}: in ${duration(seg.reclaim_at_ms - now)}`;
}

function draw(src, r, now) {
  const segs = r.segments;
  const total = segs.reduce((a, x) => a + x.size_bytes, 0);
  const next = nextReclaim(segs, now);
  const where = src.kind === 'topic' ? `topic ${src.name}, partition ${src.partition}` : `queue ${src.name}`;
  const first = segs.length ? segs[0].base_offset : 0;
  const last = segs.length ? segs[segs.length - 1].next_offset : 0;
  const summary = document.getElementById('segments-summary');
  summary.textContent = `${where}: ${int(segs.length)} segment(s), ${bytes(total)}, offsets ${int(first)} ` +
    `to ${int(Math.max(first, last - 1))}; retention by time ${r.retention_ms === null ? 'none' : duration(r.retention_ms)}, ` +
    `by size ${r.retention_bytes === null ? 'none' : bytes(r.retention_bytes)}`;
  summary.dataset.segments = segs.length;
  const map = document.getElementById('segment-map');
  map.classList.toggle('compact', segs.length > COMPACT_OVER);
  map.replaceChildren(...segs.map((x) => bar(x, x === next, now)));
  document.getElementById('segment-legend').replaceChildren(
    h('span', { class: 'seg-key active' }, 'active (appended to)'),
    h('span', { class: 'seg-key sealed' }, 'sealed'),
    h('span', { class: 'seg-key reclaim' }, 'retention or acks will reclaim'),
    h('span', { class: 'seg-key next' }, 'reclaimed next'));
  const rows = segs.map((x) => h('tr', { 'data-segment': x.base_offset },
    td('base_offset', x.base_offset), td('next_offset', x.next_offset),
    td('messages', x.next_offset - x.base_offset), td('size_bytes', x.size_bytes, bytes(x.size_bytes)),
    td('first_timestamp_ms', x.first_timestamp_ms, time(x.first_timestamp_ms), { class: 'time' }),
    td('max_timestamp_ms', x.max_timestamp_ms, time(x.max_timestamp_ms), { class: 'time' }),
    td('state', null, x.active ? 'active' : 'sealed'),
    td('reclaim', null, reclaimText(x, now) + (x === next ? ' (next)' : ''))));
  fillTable(document.getElementById('segments-table'), COLUMNS, rows, 'no segments');
}

/** Past this many segments the bars lose their labels (the tooltips and the table keep them). */
const COMPACT_OVER = 16;

const COLUMNS = [
  { label: 'Base offset', num: true }, { label: 'Next offset', num: true }, { label: 'Messages', num: true },
  { label: 'Size', num: true }, { label: 'First message' }, { label: 'Newest message' }, { label: 'State' },
  { label: 'Reclaimed by' },
];

/** One segment's bar: grows with its bytes; labelled with offsets, size and times. */
function bar(x, isNext, now) {
  const cls = ['seg', x.active ? 'active' : 'sealed', x.reclaim ? 'reclaim' : '', isNext ? 'next' : '']
    .filter(Boolean).join(' ');
  const range = x.next_offset > x.base_offset ? `${int(x.base_offset)}–${int(x.next_offset - 1)}` : `${int(x.base_offset)} (empty)`;
  const times = x.first_timestamp_ms === null ? 'no messages'
    : `${time(x.first_timestamp_ms).slice(11, 19)}–${time(x.max_timestamp_ms).slice(11, 19)}`;
  const el = h('div', {
    class: cls, 'data-segment': x.base_offset, 'data-active': x.active ? 'true' : 'false',
    'data-reclaim': x.reclaim, title: `offsets ${range}, ${bytes(x.size_bytes)}\n` +
      `${time(x.first_timestamp_ms)} to ${time(x.max_timestamp_ms)}\n${x.active ? 'active' : 'sealed'}` +
      (x.reclaim ? `\n${reclaimText(x, now)}` : ''),
  },
  h('div', { class: 'seg-range', 'data-field': 'range' }, range),
  h('div', { class: 'seg-size' }, bytes(x.size_bytes)),
  h('div', { class: 'seg-time' }, times),
  x.active ? h('div', { class: 'seg-mark' }, 'active') : null,
  x.reclaim ? h('div', { class: 'seg-mark' }, isNext ? 'reclaimed next' : x.reclaim.replace('_', ' ')) : null);
  el.style.flexGrow = String(Math.max(1, x.size_bytes));
  return el;
}
