// Logs in to the sluice console through its login form in headless Chromium and prints the
// page's DOM once it has polled the broker (cli/tests/http_auth.rs). Drives Chromium through
// the DevTools protocol with Node's own WebSocket (Node 20: --experimental-websocket); no npm
// packages.
//
//   node --experimental-websocket tests/console/login.mjs CHROMIUM URL USER PASSWORD

import { launch, sleep } from './devtools.mjs';

const [chromium, url, user, password] = process.argv.slice(2);
if (!chromium || !url || !user || password === undefined) {
  console.error('usage: login.mjs CHROMIUM URL USER PASSWORD');
  process.exit(2);
}
/** How long each wait for the page lasts. */
const WAIT_MS = 20000;

async function main(send) {
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
}

const chrome = await launch(chromium);
try {
  await main(chrome.send);
} finally {
  await chrome.close();
}
