// Screenshots of web pages in headless Chromium, in real time: the sluice console polls every
// two seconds and draws its charts from its own history, so each page is left open for SECONDS
// before it is captured (1280x900). Drives Chromium through the DevTools protocol with Node's
// own WebSocket (Node 20: --experimental-websocket); no npm packages.
//
//   node --experimental-websocket tests/console/shot.mjs CHROMIUM SECONDS URL=FILE.png ...
//
// Each URL opens in its own tab of one browser, all at once; FILE follows the last '='.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [chromium, seconds, ...jobs] = process.argv.slice(2);
if (!chromium || !seconds || !jobs.length) {
  console.error('usage: shot.mjs CHROMIUM SECONDS URL=FILE.png ...');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const WIDTH = 1280;
const HEIGHT = 900;

const profile = mkdtempSync(join(tmpdir(), 'sluice-shot-'));
const browser = spawn(chromium, [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars',
  '--no-first-run', '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows', '--remote-debugging-port=0',
  `--user-data-dir=${profile}`, `--window-size=${WIDTH},${HEIGHT}`, 'about:blank',
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
  const tabs = [];
  for (const job of jobs) {
    const i = job.lastIndexOf('=');
    const [url, file] = [job.slice(0, i), job.slice(i + 1)];
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    await send('Emulation.setDeviceMetricsOverride',
      { width: WIDTH, height: HEIGHT, deviceScaleFactor: 1, mobile: false }, sessionId);
    await send('Page.navigate', { url }, sessionId);
    tabs.push({ sessionId, file });
  }
  await sleep(Number(seconds) * 1000);
  for (const { sessionId, file } of tabs) {
    const { data } = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
    writeFileSync(file, Buffer.from(data, 'base64'));
    console.log(`wrote ${file}`);
  }
  ws.close();
}

try {
  await main();
} finally {
  browser.kill();
  await sleep(300);
  rmSync(profile, { recursive: true, force: true });
}
