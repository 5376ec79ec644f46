// Screenshots of web pages in headless Chromium, in real time: the sluice console polls every
// two seconds and draws its charts from its own history, so each page is left open for SECONDS
// before it is captured (1280x900). Drives Chromium through the DevTools protocol with Node's
// own WebSocket (Node 20: --experimental-websocket); no npm packages.
//
//   node --experimental-websocket tests/console/shot.mjs CHROMIUM SECONDS URL=FILE.png ...
//
// Each URL opens in its own tab of one browser, all at once; FILE follows the last '='.

import { writeFileSync } from 'node:fs';

import { launch, sleep } from './devtools.mjs';

const [chromium, seconds, ...jobs] = process.argv.slice(2);
if (!chromium || !seconds || !jobs.length) {
  console.error('usage: shot.mjs CHROMIUM SECONDS URL=FILE.png ...');
  process.exit(2);
}
const WIDTH = 1280;
const HEIGHT = 900;

async function main(send) {
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
}

const chrome = await launch(chromium, [
  '--hide-scrollbars', '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows', `--window-size=${WIDTH},${HEIGHT}`,
]);
try {
  await main(chrome.send);
} finally {
  await chrome.close();
}
