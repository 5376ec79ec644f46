// Calls of the broker's admin API (docs/http.md): JSON in and out, errors as ApiError. A route
// the broker does not serve is told apart from a name it does not know: the former answers 404
// without a JSON body (the listener's fallback), the latter with the API's error.

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
export function overview(prefix, limit) {
  return get(`/api/overview?limit=${limit}&prefix=${enc(prefix)}`);
}
