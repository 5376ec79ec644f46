// The message browser: a topic partition's or a queue's messages read without consuming them
// (`GET /api/topics/{name}/messages`, `GET /api/queues/{name}/messages`). The URL holds what is
// shown, `#browse=topic:orders:0&offset=0&count=50&mode=auto`, so a view can be linked to and
// reloaded. Keys, values and header values come as `{"text"}` when UTF-8, `{"hex"}` when not;
// the mode shows them as they come, all as text, or all as hex.

import { h, td, fillTable, int, time } from './dom.js';
import { get, enc } from './api.js';
import { sourceOptions, parseSource } from './segments.js';

const COUNT_DEFAULT = 50;

/** Builds the form once; `go(hash)` navigates. */
export function init(go) {
  const form = document.getElementById('browse-form');
  form.replaceChildren(
    h('label', {}, 'source ', h('select', { name: 'source', id: 'browse-source' })),
    h('label', {}, 'partition ', h('input', { name: 'partition', type: 'number', min: 0, value: 0, size: 4 })),
    h('label', {}, 'offset ', h('input', { name: 'offset', type: 'number', min: 0, value: 0, size: 10 })),
    h('label', {}, 'count ', h('input', { name: 'count', type: 'number', min: 1, max: 1000, value: COUNT_DEFAULT, size: 5 })),
    h('label', {}, 'show ', h('select', { name: 'mode' },
      h('option', { value: 'auto' }, 'text or hex'), h('option', { value: 'text' }, 'text'),
      h('option', { value: 'hex' }, 'hex'))),
    h('button', { type: 'submit' }, 'Read'),
    h('button', { type: 'button', 'data-step': 'start' }, '⇤ start'),
    h('button', { type: 'button', 'data-step': 'back' }, '← older'),
    h('button', { type: 'button', 'data-step': 'next' }, 'newer →'),
    h('button', { type: 'button', 'data-step': 'end' }, 'end ⇥'));
  form.addEventListener('submit', (e) => { e.preventDefault(); go(hashOf(form, null)); });
  form.addEventListener('click', (e) => {
    const step = e.target.closest('[data-step]');
    if (step) go(hashOf(form, step.dataset.step));
  });
}

/** The hash of the form's choice, moved by `step` (start, back, next, end). */
function hashOf(form, step) {
  const f = form.elements;
  const src = parseSource(f.source.value);
  let offset = Math.max(0, Number(f.offset.value) || 0);
  const count = Math.min(1000, Math.max(1, Number(f.count.value) || COUNT_DEFAULT));
  const held = form.held || { start: 0, end: 0 };
  if (step === 'start') offset = held.start;
  if (step === 'back') offset = Math.max(held.start, offset - count);
  if (step === 'next') offset += count;
  if (step === 'end') offset = Math.max(held.start, held.end - count);
  const where = src.kind === 'topic' ? `topic:${src.name}:${Number(f.partition.value) || 0}` : `queue:${src.name}`;
  return `browse=${where}&offset=${offset}&count=${count}&mode=${f.mode.value}`;
}

/** Keeps the source list in step with the overview (keeping the choice). */
export function refreshSources(ov, route) {
  const sel = document.getElementById('browse-source');
  sourceOptions(sel, ov, route.view === 'browse' ? route.arg : '');
  const src = route.view === 'browse' && parseSource(route.arg);
  if (src) document.getElementById('browse-form').held = held(src, ov);
}

/** Reads and shows the messages the route names. */
export async function load(route, ov) {
  const form = document.getElementById('browse-form');
  const status = document.getElementById('browse-status');
  const table = document.getElementById('messages-table');
  const src = parseSource(route.arg);
  if (!src) {
    status.textContent = 'Pick a topic partition or a queue, an offset and a count.';
    fillTable(table, COLUMNS, [], 'nothing read yet');
    return;
  }
  const offset = Number(route.params.get('offset')) || 0;
  const count = Number(route.params.get('count')) || COUNT_DEFAULT;
  const mode = route.params.get('mode') || 'auto';
  const f = form.elements;
  f.partition.value = src.partition;
  f.offset.value = offset;
  f.count.value = count;
  f.mode.value = mode;
  f.partition.disabled = src.kind !== 'topic';
  form.held = held(src, ov);
  const path = src.kind === 'topic'
    ? `/api/topics/${enc(src.name)}/messages?partition=${src.partition}&offset=${offset}&count=${count}`
    : `/api/queues/${enc(src.name)}/messages?offset=${offset}&count=${count}`;
  status.textContent = 'reading…';
  let msgs;
  try {
    msgs = (await get(path)).messages;
  } catch (e) {
    status.textContent = `cannot read: ${e.message}`;
    fillTable(table, COLUMNS, [], 'nothing read');
    return;
  }
  render(table, msgs, mode);
  status.textContent = summary(src, msgs, form.held);
  status.dataset.count = msgs.length;
}

/** The offsets a source holds now, from the overview. */
function held(src, ov) {
  if (!ov) return null;
  if (src.kind === 'topic') {
    const p = ov.topics.find((t) => t.name === src.name)?.partitions[src.partition];
    return p ? { start: p.start_offset, end: p.end_offset } : null;
  }
  const q = ov.queues.find((x) => x.name === src.name);
  return q ? { start: q.start_offset, end: q.end_offset } : null;
}

function summary(src, msgs, range) {
  const where = src.kind === 'topic' ? `topic ${src.name}, partition ${src.partition}` : `queue ${src.name}`;
  const got = msgs.length
    ? `${int(msgs.length)} message(s), offsets ${int(msgs[0].offset)} to ${int(msgs[msgs.length - 1].offset)}`
    : 'no messages here';
  const r = range ? ` (holds ${int(range.start)} to ${int(range.end - 1)})` : '';
  return `${got} of ${where}${r}. Read without consuming: no cursor or offset moves.`;
}

const COLUMNS = [
  { label: 'Offset', num: true }, { label: 'Time' }, { label: 'Key' }, { label: 'Value' }, { label: 'Headers' },
];

function render(table, msgs, mode) {
  const rows = msgs.map((m) => h('tr', { 'data-offset': m.offset },
    td('offset', m.offset),
    td('timestamp_ms', m.timestamp_ms, time(m.timestamp_ms), { class: 'time' }),
    payloadCell('key', m.key, mode),
    payloadCell('value', m.value, mode),
    h('td', { 'data-field': 'headers' }, (m.headers || []).map(([k, v]) =>
      h('div', { class: 'header' }, h('span', { class: 'hname' }, k), ' ', payload(v, mode))))));
  fillTable(table, COLUMNS, rows, 'no messages at this offset');
}

function payloadCell(field, p, mode) {
  return h('td', { 'data-field': field, class: 'payload' }, payload(p, mode));
}

/** A key, value or header value as the mode asks: text, or hex with a badge. */
function payload(p, mode) {
  if (p === null || p === undefined) return h('span', { class: 'muted' }, 'null');
  const isHex = p.hex !== undefined;
  if (mode === 'hex' || (isHex && mode !== 'text')) {
    const hex = isHex ? p.hex : toHex(p.text);
    return h('span', { class: 'hex', 'data-format': 'hex' }, h('span', { class: 'badge' }, 'hex'), spaced(hex));
  }
  const text = isHex ? fromHex(p.hex) : p.text;
  return h('span', { class: 'text', 'data-format': 'text' }, text);
}

function toHex(text) {
  return [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function fromHex(hex) {
  const bytes = new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

/** Hex in groups of four bytes. */
function spaced(hex) {
  return (hex.match(/.{1,8}/g) || []).join(' ');
}
