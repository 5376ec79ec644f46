// A headless Chromium driven through the DevTools protocol with Node's own WebSocket (Node 20:
// --experimental-websocket); no npm packages. Shared by shot.mjs and login.mjs.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts Chromium (with `args` beside the headless ones) in a fresh profile and connects to
 * it. Resolves to `{ send, close }`: `send(method, params, sessionId)` resolves to the
 * command's result; `close()` ends the browser and removes its profile.
 */
export async function launch(chromium, args = []) {
  const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  const browser = spawn(chromium, [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--no-first-run', '--remote-debugging-port=0', `--user-data-dir=${profile}`, ...args,
    'about:blank',
  ], { stdio: 'ignore' });
  const close = async () => {
    browser.kill();
    await sleep(300);
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const ws = new WebSocket(await endpoint(profile));
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
    let next = 0;
    const waiting = new Map();
    ws.onmessage = (m) => {
      const r = JSON.parse(m.data);
      const w = waiting.get(r.id);
      if (!w) return;
      waiting.delete(r.id);
      if (r.error) w.fail(new Error(JSON.stringify(r.error)));
      else w.ok(r.result);
    };
    const send = (method, params = {}, sessionId = undefined) => new Promise((ok, fail) => {
      next += 1;
      waiting.set(next, { ok, fail });
      ws.send(JSON.stringify({ id: next, method, params, sessionId }));
    });
    return { send, close: async () => { ws.close(); await close(); } };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The browser's DevTools endpoint, from the file Chromium writes into its profile. */
async function endpoint(profile) {
  const file = join(profile, 'DevToolsActivePort');
  for (let i = 0; i < 300; i += 1) {
    if (existsSync(file)) {
      const [port, path] = readFileSync(file, 'utf8').split('\n');
      if (path) return `ws://127.0.0.1:${port}${path}`;
    }
    await sleep(100);
  }
  throw new Error('chromium did not open its DevTools port within 30 s');
}
