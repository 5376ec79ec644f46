// Logs in to the sluice console through its login form in headless Chromium and prints the
// page's DOM once it has polled the broker (cli/tests/http_auth.rs). Drives Chromium through
// the DevTools protocol with Node's own WebSocket (Node 20: --experimental-websocket); no npm
// packages.
//
//   node --experimental-websocket tests/console/login.mjs CHROMIUM URL USER PASSWORD

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [chromium, url, user, password] = process.argv.slice(2);
if (!chromium || !url || !user || password === undefined) {
  console.error('usage: login.mjs CHROMIUM URL USER PASSWORD');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** How long each wait for the page lasts. */
const WAIT_MS = 20000;

const profile = mkdtempSync(join(tmpdir(), 'sluice-login-'));
const browser = spawn(chromium, [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank',
], { stdio: 'ignore' });

/** The browser's DevTools endpoint, from the file Chromium writes into its profile. */
async function endpoint() {
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

async function main() {
  const ws = new WebSocket(await endpoint());
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
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const evaluate = async (expression) => {
    const r = await send('Runtime.evaluate', { expression, returnByValue: true }, sessionId);
    return r.result.value;
  };
  const until = async (what, expression) => {
    for (let t = 0; t < WAIT_MS; t += 100) {
      // While the page navigates, its context may be gone: try again.
      if (await evaluate(expression).catch(() => false)) return;
      await sleep(100);
    }
    throw new Error(`${what}: not within ${WAIT_MS} ms:\n${await evaluate('document.documentElement.outerHTML')}`);
  };
  await send('Page.navigate', { url }, sessionId);
  await until('the login form', "document.body && document.body.dataset.login === 'required'");
  await evaluate(`(() => {
    const f = document.getElementById('login-form');
    f.elements.user.value = ${JSON.stringify(user)};
    f.elements.password.value = ${JSON.stringify(password)};
    f.requestSubmit();
  })()`);
  await until('a poll after the login',
    "document.body.dataset.login === 'done' && Number(document.body.dataset.polls) >= 1");
  console.log(await evaluate('document.documentElement.outerHTML'));
  ws.close();
}

try {
  await main();
} finally {
  browser.kill();
  await sleep(300);
  rmSync(profile, { recursive: true, force: true });
}
