// Building the console's DOM: elements from plain values (text always goes in as text nodes,
// never as markup), tables whose cells carry `data-field` and `data-value` for tests and
// scripts, number and time formats, and the history of polled figures the rates and charts are
// computed from.

/** An HTML element: `attrs` keys are attributes (`class`, `data-*`, `title`, ...) or `on*`
 * handlers; children are nodes or values shown as text (null and false are skipped). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, as `h`. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A table cell of a figure: `data-field` names it, `data-value` holds the raw number. */
export function td(field, value, text, attrs) {
  const shown = text === undefined ? int(value) : text;
  const raw = typeof value === 'number' ? value : null;
  return h('td', { 'data-field': field, 'data-value': raw, class: raw !== null ? 'num' : null, ...attrs }, shown);
}

/** Fills `table` with a header row of `columns` ({label, title, num}) and `rows` (tr nodes);
 * `empty` is shown in one wide cell when there are no rows. */
export function fillTable(table, columns, rows, empty) {
  const head = h('tr', {}, columns.map((c) =>
    h('th', { title: c.title, class: c.num ? 'num' : null }, c.label)));
  const body = rows.length ? rows
    : [h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, empty || 'none'))];
  table.replaceChildren(h('thead', {}, head), h('tbody', {}, body));
}

/** A link to a hash route of the console. */
export function link(hash, text, attrs) {
  return h('a', { href: '#' + hash, ...attrs }, text);
}

/** A horizontal bar of `value` out of `max` (a lag, a share of the disk). */
export function bar(value, max, cls) {
  const b = h('span', { class: 'bar ' + (cls || '') });
  const fillEl = h('span', { class: 'bar-fill' });
  fillEl.style.width = (max > 0 ? Math.min(100, (100 * value) / max) : 0).toFixed(1) + '%';
  b.appendChild(fillEl);
  return b;
}

/** `1,234,567`, or a dash for a missing figure. */
export function int(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return typeof n === 'number' ? Math.round(n).toLocaleString('en-US') : String(n);
}

/** A rate per second: one decimal below 10. */
export function rate(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US');
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`. */
export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
}

/** A duration in its two largest units: `3 d 4 h`, `5 min 2 s`, `800 ms`. */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return Math.max(0, Math.round(ms)) + ' ms';
  const parts = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  let sec = Math.floor(ms / 1000);
  const out = [];
  for (const [n, u] of parts) {
    if (sec >= n || out.length) {
      out.push([Math.floor(sec / n), u]);
      sec %= n;
    }
    if (out.length === 2) break;
  }
  if (out.length === 2 && out[1][0] === 0) out.pop();
  return out.map(([v, u]) => `${v} ${u}`).join(' ');
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** A time in the browser's zone: `2025-03-01 14:05:09.123`. */
export function time(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A clock time without the date: `14:05:09`. */
export function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Polled figures by key (`topic:orders`, `queue:jobs:depth`, ...): the last `max` samples of
 * each as [time ms, value], for rates and trend charts. */
export class History {
  constructor(max) {
    this.max = max;
    this.series = new Map();
    this.seen = new Set();
  }

  /** Adds a sample; keys not pushed between two `sweep` calls are dropped by the second. */
  push(key, t, v) {
    let a = this.series.get(key);
    if (!a) { a = []; this.series.set(key, a); }
    if (a.length && a[a.length - 1][0] >= t) a.pop();
    a.push([t, v]);
    if (a.length > this.max) a.shift();
    this.seen.add(key);
  }

  sweep() {
    for (const k of this.series.keys()) if (!this.seen.has(k)) this.series.delete(k);
    this.seen.clear();
  }

  /** The samples' values, oldest first. */
  values(key) {
    return (this.series.get(key) || []).map((p) => p[1]);
  }

  /** The increase per second over the last `span` intervals, or null before two samples. */
  rate(key, span = 3) {
    const a = this.series.get(key);
    if (!a || a.length < 2) return null;
    const b = a[Math.max(0, a.length - 1 - span)];
    const e = a[a.length - 1];
    const dt = (e[0] - b[0]) / 1000;
    return dt > 0 ? Math.max(0, (e[1] - b[1]) / dt) : null;
  }

  /** The increase per second of each interval, oldest first (a counter's rate series). */
  rates(key) {
    const a = this.series.get(key) || [];
    const out = [];
    for (let i = 1; i < a.length; i += 1) {
      const dt = (a[i][0] - a[i - 1][0]) / 1000;
      out.push(dt > 0 ? Math.max(0, (a[i][1] - a[i - 1][1]) / dt) : 0);
    }
    return out;
  }

  /** Milliseconds the samples of `key` span. */
  span(key) {
    const a = this.series.get(key) || [];
    return a.length > 1 ? a[a.length - 1][0] - a[0][0] : 0;
  }
}
