// Calls of the broker's admin API (docs/http.md): JSON in and out, errors as ApiError. A route
// the broker does not serve is told apart from a name it does not know: the former answers 404
// without a JSON body (the listener's fallback), the latter with the API's error. A 401 (no
// session, or it ended) is an ApiError with `status` 401: the console then asks to log in.

/** An answer other than 2xx: `status`, the API's error `kind` and `message`; `missingRoute`
 * when the broker does not serve the route at all. */
export class ApiError extends Error {
  constructor(status, kind, message, missingRoute) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.kind = kind;
    this.missingRoute = missingRoute;
  }
}

async function call(method, path, body) {
  // X-Requested-With: a 401 to the console's calls carries no Basic challenge (docs/http.md),
  // so the browser shows the console's login form rather than a dialog of its own.
  const headers = { accept: 'application/json', 'x-requested-with': 'sluice-console' };
  const init = { method, cache: 'no-store', headers };
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
export function overview(prefix, limit) {
  return get(`/api/overview?limit=${limit}&prefix=${enc(prefix)}`);
}

/** Logs in: the broker answers a session cookie (HttpOnly: never seen by scripts). */
export const login = (user, password) => post('/api/login', { user, password });
/** Ends the session. */
export const logout = () => post('/api/logout');
/** `{user, security, superuser}` of this session. */
export const whoami = () => get('/api/whoami');
