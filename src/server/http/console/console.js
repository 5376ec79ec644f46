// The console's entry point: the route in the URL hash (`#view=arg&key=value`), the poll every
// two seconds (pausable: the button or the key p), rendering every view from each poll, and the
// admin actions (purge, redrive, reset and delete a group), each behind confirm().
//
// Routes: #overview, #topics[=name], #queues[=name], #clients, #groups[=name],
// #browse=topic:NAME:P|queue:NAME[&offset=N&count=N&mode=auto|text|hex],
// #segments=topic:NAME:P|queue:NAME. `body[data-polls]` counts finished polls. A 401 stops
// the polls and shows the login form (login.js); the login starts them again.

import * as api from './api.js';
import { History, clock } from './dom.js';
import * as views from './views.js';
import * as clients from './clients.js';
import * as browse from './browse.js';
import * as segments from './segments.js';
import * as login from './login.js';

const POLL_MS = 2000;
/** Topics and queues described per poll (the overview's `limit`). */
const LIMIT = 100;
/** Polls kept for rates and charts: three minutes. */
const KEEP = 90;

const state = {
  route: parseRoute(),
  paused: false,
  polls: 0,
  prefix: '',
  hist: new History(KEEP),
  ov: null,
  conns: null,
  groups: null,
  topic: null,
  topicGroups: null,
  group: null,
  timer: null,
  busy: false,
  again: false,
};

function parseRoute() {
  const parts = decodeURIComponent(location.hash.slice(1)).split('&');
  const [view, ...arg] = (parts[0] || 'overview').split('=');
  const params = new URLSearchParams(parts.slice(1).join('&'));
  const known = ['overview', 'topics', 'queues', 'clients', 'groups', 'browse', 'segments'];
  return { view: known.includes(view) ? view : 'overview', arg: arg.join('='), params };
}

function go(hash) {
  if (location.hash.slice(1) === hash) onRoute();
  else location.hash = hash;
}

/** Shows the route's tab; loads what only it needs. */
function onRoute() {
  state.route = parseRoute();
  const { view } = state.route;
  for (const sec of document.querySelectorAll('main > section')) sec.hidden = sec.dataset.view !== view;
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('current', a.dataset.tab === view);
  if (view === 'browse') browse.load(state.route, state.ov);
  if (view === 'segments') segments.load(state.route, state.ov?.broker.now_ms ?? Date.now());
  state.topic = null;
  state.topicGroups = null;
  state.group = null;
  if (state.ov) render();
  poll();
}

/** The fetches of one poll: the overview, connections and groups, and the detail named. */
async function fetchAll() {
  const { view, arg } = state.route;
  const [ov, conns, groups, detail] = await Promise.all([
    api.overview(state.prefix, LIMIT),
    api.optional('/api/connections'),
    api.optional('/api/groups'),
    fetchDetail(view, arg),
  ]);
  Object.assign(state, { ov, conns, groups }, detail);
}

async function fetchDetail(view, arg) {
  if (!arg) return {};
  if (view === 'topics') {
    const [topic, topicGroups] = await Promise.all([
      api.get(`/api/topics/${api.enc(arg)}`).catch(() => null),
      api.optional(`/api/topics/${api.enc(arg)}/groups`).catch(() => null),
    ]);
    return { topic, topicGroups };
  }
  if (view === 'groups') {
    const group = await api.optional(`/api/groups/${api.enc(arg)}`).catch((e) => ({ name: arg, error: e.message }));
    return { group };
  }
  return {};
}

/** One poll, then the next in POLL_MS; a poll asked for while one runs follows it at once. */
async function poll() {
  clearTimeout(state.timer);
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  const status = document.getElementById('poll-status');
  try {
    await fetchAll();
    const t = state.ov.broker.now_ms ?? Date.now();
    views.record(state.hist, state.ov, t);
    if (state.topic) views.recordTopic(state.hist, state.topic, t);
    state.hist.sweep();
    render();
    if (state.route.view === 'segments') await segments.load(state.route, t);
    state.polls += 1;
    document.body.dataset.polls = state.polls;
    status.textContent = `updated ${clock(Date.now())}`;
    status.classList.remove('error');
  } catch (e) {
    if (e.status === 401) {
      // Not logged in (or the session ended): no more polls until the login.
      state.busy = false;
      login.show(e.message);
      return;
    }
    status.textContent = `cannot reach the broker: ${e.message}`;
    status.classList.add('error');
  }
  state.busy = false;
  if (state.again) poll();
  else if (!state.paused) state.timer = setTimeout(poll, POLL_MS);
}

function render() {
  const b = state.ov.broker;
  document.getElementById('broker-version').textContent = b.version ? `v${b.version}` : '';
  views.renderOverview(state);
  views.renderTopics(state);
  views.renderQueues(state);
  clients.renderConnections(state);
  clients.renderGroups(state);
  browse.refreshSources(state.ov, state.route);
  segments.refreshSources(state.ov, state.route);
}

function notice(text) {
  const n = document.getElementById('notice');
  n.textContent = text;
  n.hidden = !text;
}

function setPaused(p) {
  state.paused = p;
  const btn = document.getElementById('pause');
  btn.textContent = p ? 'Resume' : 'Pause';
  btn.classList.toggle('paused', p);
  if (p) {
    clearTimeout(state.timer);
    document.getElementById('poll-status').textContent = 'paused';
  } else {
    poll();
  }
}

/** Runs an admin call and shows its outcome; polls again to show its effect. */
async function act(label, call) {
  try {
    const r = await call();
    notice(`${label}: ${JSON.stringify(r)}`);
  } catch (e) {
    notice(`${label} failed: ${e.message}`);
  }
  poll();
}

function onAction(el) {
  const name = el.dataset.name;
  const q = `/api/queues/${api.enc(name)}`;
  if (el.dataset.action === 'purge') {
    if (confirm(`Purge queue ${name}? Every message waiting in it is settled as if acked.`)) {
      act(`purge ${name}`, () => api.post(`${q}/purge`));
    }
  } else if (el.dataset.action === 'redrive') {
    const pane = el.closest('.actions');
    const count = Number(pane.querySelector('.redrive-count').value) || undefined;
    const to = pane.querySelector('.redrive-to').value.trim() || undefined;
    if (confirm(`Move ${count || 'all'} message(s) of ${name} back to ${to || 'their queue'}?`)) {
      act(`redrive ${name}`, () => api.post(`${q}/redrive`, { count, to }));
    }
  } else if (el.dataset.action === 'delete-topic-group') {
    const topic = el.dataset.topic;
    if (confirm(`Delete consumer group ${name} of topic ${topic}? Its acks and cursor are lost.`)) {
      act(`delete group ${name} of ${topic}`, () => api.del(`/api/topics/${api.enc(topic)}/groups/${api.enc(name)}`));
    }
  } else if (el.dataset.action === 'delete-group') {
    if (confirm(`Delete group ${name} and its committed offsets?`)) {
      act(`delete group ${name}`, () => api.del(`/api/groups/${api.enc(name)}`)).then(() => go('groups'));
    }
  }
}

/** The reset form's target: earliest, latest, {offset} or {time_ms}; null if not valid. */
function resetTarget(f) {
  const to = f.elements.to.value;
  const v = f.elements.value.value.trim();
  if (to === 'offset') return /^\d+$/.test(v) ? { offset: Number(v) } : null;
  if (to === 'time_ms') {
    const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
    return Number.isFinite(ms) ? { time_ms: ms } : null;
  }
  return to;
}

function onReset(f) {
  const name = f.dataset.name;
  const topic = f.elements.topic.value;
  const to = resetTarget(f);
  if (to === null) { notice('reset: give an offset (a number) or a time (2025-01-31T12:00 or ms)'); return; }
  if (confirm(`Reset group ${name} on ${topic} to ${JSON.stringify(to)}?`)) {
    act(`reset ${name}`, () => api.post(`/api/groups/${api.enc(name)}/reset`, { topic, to }));
  }
}

function start() {
  login.init(() => poll());
  login.refreshUser();
  browse.init(go);
  segments.init(go);
  window.addEventListener('hashchange', onRoute);
  document.getElementById('pause').addEventListener('click', () => setPaused(!state.paused));
  document.getElementById('notice').addEventListener('click', () => notice(''));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'p' && !/INPUT|SELECT|TEXTAREA/.test(e.target.tagName)) setPaused(!state.paused);
  });
  document.addEventListener('click', (e) => {
    const el = e.target.closest('button[data-action]');
    if (el) onAction(el);
  });
  document.addEventListener('submit', (e) => {
    if (e.target.dataset.action === 'reset') { e.preventDefault(); onReset(e.target); }
  });
  for (const id of ['topic-filter', 'queue-filter']) {
    document.getElementById(id).addEventListener('input', (e) => {
      state.prefix = e.target.value.trim();
      for (const other of ['topic-filter', 'queue-filter']) document.getElementById(other).value = state.prefix;
      poll();
    });
  }
  onRoute();
}

start();
