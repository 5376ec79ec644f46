// Charts drawn as inline SVG from the browser's own history of polls: a sparkline for a table
// row, and a line chart with a legend for the overview and the detail panes. Series are plain
// arrays of numbers, oldest first; colours come from CSS classes (`series-0` ...).

import { h, s } from './dom.js';

/** The points of `values` scaled into a `w` x `h` box with `max` at the top. */
function points(values, w, ht, max, n) {
  const step = n > 1 ? w / (n - 1) : w;
  const off = n - values.length;
  return values.map((v, i) => {
    const x = (i + off) * step;
    const y = ht - (max > 0 ? (v / max) * (ht - 2) : 0) - 1;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
}

/** A small trend line of `values` (a row's queue depth, a topic's publish rate). */
export function sparkline(values, opts = {}) {
  const w = opts.width || 120;
  const ht = opts.height || 26;
  const max = Math.max(0, ...values);
  const svg = s('svg', {
    class: 'spark ' + (opts.cls || ''), viewBox: `0 0 ${w} ${ht}`, width: w, height: ht,
    role: 'img', 'aria-label': opts.label || 'trend',
  });
  if (opts.label) svg.appendChild(s('title', {}, opts.label));
  if (values.length < 2) {
    svg.appendChild(s('line', { class: 'baseline', x1: 0, y1: ht - 1, x2: w, y2: ht - 1 }));
    return svg;
  }
  const pts = points(values, w, ht, max, values.length);
  const first = pts[0].split(',')[0];
  svg.appendChild(s('polygon', { class: 'area', points: `${first},${ht} ${pts.join(' ')} ${w},${ht}` }));
  svg.appendChild(s('polyline', { class: 'line', points: pts.join(' ') }));
  return svg;
}

/** A line chart in a figure: `series` is [{label, values}], `format` prints a value, `span`
 * is the milliseconds the samples cover (for the time axis). */
export function lineChart({ title, series, format, span, id }) {
  const w = 600;
  const ht = 150;
  const n = Math.max(2, ...series.map((x) => x.values.length));
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values)));
  const svg = s('svg', {
    class: 'chart', viewBox: `0 0 ${w} ${ht}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': title,
  });
  for (const f of [0.25, 0.5, 0.75]) {
    const y = (ht * f).toFixed(1);
    svg.appendChild(s('line', { class: 'grid', x1: 0, y1: y, x2: w, y2: y }));
  }
  series.forEach((x, i) => {
    if (x.values.length < 2) return;
    const pts = points(x.values, w, ht, max, n).join(' ');
    svg.appendChild(s('polyline', { class: `line series-${i}`, points: pts }));
  });
  const legend = h('div', { class: 'legend' }, series.map((x, i) => {
    const last = x.values.length ? x.values[x.values.length - 1] : null;
    return h('span', { class: 'key', 'data-series': x.label, 'data-value': last },
      h('span', { class: `swatch series-${i}` }), `${x.label} `, h('b', {}, format(last)));
  }));
  const axis = h('div', { class: 'axis' },
    h('span', {}, span > 0 ? `${Math.round(span / 1000)} s ago` : ''),
    h('span', {}, 'max ' + format(max)), h('span', {}, 'now'));
  return h('figure', { class: 'chart-box', id, 'data-chart': title },
    h('figcaption', {}, title), svg, axis, legend);
}

/** A round top for an axis at or above `v`: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
