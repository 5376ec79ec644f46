// Calls of the broker's admin API (docs/http.md). `overview` asks `GET /api/overview`; a broker
// without that route gets the same shape from the older calls (list and describe each topic
// and queue, the broker figures from `GET /metrics`). Routes a broker does not serve at all are
// told apart from names it does not know: the former answer 404 without a JSON body.

/** An answer other than 2xx: `status`, the API's error `kind` and `message`; `missingRoute`
 * when the broker does not serve the route (an older broker). */
export class ApiError extends Error {
  constructor(status, kind, message, missingRoute) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.kind = kind;
    this.missingRoute = missingRoute;
  }
}

async function call(method, path, body) {
  const init = { method, cache: 'no-store', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) {
    const e = json && json.error ? json.error : {};
    throw new ApiError(r.status, e.kind || '', e.message || text.trim(), r.status === 404 && !json);
  }
  return json;
}

/** `GET path` as JSON. */
export const get = (path) => call('GET', path);
/** `POST path` with a JSON body. */
export const post = (path, body) => call('POST', path, body);
/** `DELETE path`. */
export const del = (path) => call('DELETE', path);

/** `GET path`, or `{missing: true}` when the broker does not serve the route. */
export async function optional(path) {
  try {
    return await get(path);
  } catch (e) {
    if (e.missingRoute) return { missing: true };
    throw e;
  }
}

/** A path segment of a name. */
export const enc = encodeURIComponent;

/** The broker, and the first `limit` topics and queues whose names start with `prefix`. */
export async function overview(prefix, limit) {
  try {
    return await get(`/api/overview?limit=${limit}&prefix=${enc(prefix)}`);
  } catch (e) {
    if (!e.missingRoute) throw e;
  }
  return olderOverview(prefix, limit);
}

async function olderOverview(prefix, limit) {
  const [t, q, metrics] = await Promise.all([
    get('/api/topics'), get('/api/queues'),
    fetch('/metrics', { cache: 'no-store' }).then((r) => r.text()),
  ]);
  const pick = (names) => names.filter((n) => n.startsWith(prefix)).sort().slice(0, limit);
  const describe = (kind, n) => get(`/api/${kind}/${enc(n)}`).catch(() => null);
  const [topics, queues] = await Promise.all([
    Promise.all(pick(t.topics).map((n) => describe('topics', n))),
    Promise.all(pick(q.queues).map((n) => describe('queues', n))),
  ]);
  for (const x of queues) if (x) x.ready = Math.max(0, x.depth - x.in_flight);
  const m = parseMetrics(metrics);
  const by = (name) => ({
    native: m.get(`${name}{protocol="native"}`) || 0,
    kafka: m.get(`${name}{protocol="kafka"}`) || 0,
    http: m.get(`${name}{protocol="http"}`) || 0,
  });
  const broker = {
    version: null, started_ms: null, now_ms: Date.now(), data_dir: null,
    topics: t.topics.length, queues: q.queues.length,
    connections: by('sluice_connections'),
    bytes_in: by('sluice_received_bytes_total'), bytes_out: by('sluice_sent_bytes_total'),
    disk_free_bytes: m.get('sluice_data_dir_free_bytes') ?? null,
    disk_total_bytes: m.get('sluice_data_dir_size_bytes') ?? null,
  };
  return { broker, topics: topics.filter(Boolean), queues: queues.filter(Boolean), older: true };
}

/** Samples of the Prometheus text by their printed name and labels. */
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
