// flychat's chat pages in a real browser, for tests/flychat_browser.rs.
//
// Usage: node flychat_browser.mjs PREFIXED_BASE ROOT_BASE ROOM PROFILE_DIR SCREENSHOT
//   PREFIXED_BASE  flychat under a native listener, e.g. http://127.0.0.1:8080/flychat
//   ROOT_BASE      a flychat listener's root, e.g. http://127.0.0.1:7999
//   PROFILE_DIR    an empty directory for Chromium's fresh profile (removed at the end)
//
// Three people chat in ROOM, each in a page of headless Chromium (chromium.mjs):
//   alice  joins through the join page under PREFIXED_BASE;
//   bob    joins through the join page at ROOT_BASE (another origin, the same server and room);
//   carol  opens ROOT_BASE/ROOM?user=carol in a page whose browser has no EventSource and no URLSearchParams
//          (removed before any script runs), so the chat runs on spout's eventsource.min.js and url-polyfill.min.js.
// alice sends through the form, bob sees it; bob answers, alice sees it; bob reloads and gets the history rendered
// by the server; carol gets the history too, sees alice's next message live, and sends one alice sees.
//
// Prints one JSON line per step, {"step": NAME, ...what the pages showed}, and at the end
// {"state": "done", "errors": [...]}; exits 0 when every step completed. What a page shows of its messages is a
// list of {"from", "text", "pid", "markup"}: the name, the text, the provisionalId, and how many elements the text
// holds (0 unless markup got through).
import fs from 'node:fs';
import { launchChromium } from './chromium.mjs';

const [prefixed, root, room, profile, screenshot] = process.argv.slice(2);
if (!prefixed || !root || !room || !profile || !screenshot) {
  process.stderr.write('usage: node flychat_browser.mjs PREFIXED_BASE ROOT_BASE ROOM PROFILE_DIR SCREENSHOT\n');
  process.exit(2);
}
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const TIMEOUT = 15000;

const FIRST = 'hello <b>bob</b> & "co"';
const ANSWER = 'hi alice ✓ <script>alert(1)</script>';
const THIRD = 'carol, are you there?';
const FOURTH = 'yes, on the polyfill';

// What a page's list shows, in order.
const shown = (page) =>
  page.$$eval('#messages li', (items) =>
    items.map((li) => ({
      from: li.querySelector('.from').textContent,
      text: li.querySelector('.text').textContent,
      pid: li.getAttribute('data-provisional-id'),
      markup: li.querySelector('.text').children.length,
    })),
  );

// Waits until the page lists `count` messages, the last with `text`, then a little longer so that a duplicate
// (the post's answer and the stream's copy both shown) would be seen.
async function waitFor(page, count, text) {
  await page.waitForFunction(
    ([n, t]) => {
      const items = document.querySelectorAll('#messages li .text');
      return items.length >= n && items[n - 1].textContent === t;
    },
    [count, text],
    { timeout: TIMEOUT, polling: 20 },
  );
  await page.waitForTimeout(300);
  return shown(page);
}

const live = (page) => page.waitForSelector('#chat[data-stream="live"]', { timeout: TIMEOUT });

// Joins through the join page: type the name, submit, land on the chat page with its stream open.
async function join(page, base, user) {
  await page.goto(`${base}/${room}`, { timeout: TIMEOUT });
  const roomShown = await page.textContent('#room');
  await page.fill('input[name="user"]', user);
  await Promise.all([page.waitForURL(/\?user=/, { timeout: TIMEOUT }), page.click('button[type="submit"]')]);
  await live(page);
  return { roomShown, url: page.url() };
}

// Sends through the form, as a person would; the page must not be left (a marker set before survives).
async function send(page, text) {
  await page.evaluate(() => { window.stayed = true; });
  await page.fill('input[name="text"]', text);
  await page.click('#send button');
}

const stayed = (page) => page.evaluate(() => window.stayed === true);

const errors = [];
let context;
let ok = false;
try {
  context = await launchChromium(profile);
  const watch = (page, name) => {
    page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`${name}: console: ${m.text()}`);
    });
    return page;
  };
  const alice = watch(context.pages()[0] ?? (await context.newPage()), 'alice');
  const bob = watch(await context.newPage(), 'bob');

  print({ step: 'joined', alice: await join(alice, prefixed, 'alice'), bob: await join(bob, root, 'bob') });

  await send(alice, FIRST);
  const bobSaw = await waitFor(bob, 1, FIRST);
  const aliceSaw = await waitFor(alice, 1, FIRST);
  print({ step: 'first', bob: bobSaw, alice: aliceSaw, aliceStayed: await stayed(alice) });

  await send(bob, ANSWER);
  print({
    step: 'answer',
    alice: await waitFor(alice, 2, ANSWER),
    bob: await waitFor(bob, 2, ANSWER),
    bobStayed: await stayed(bob),
  });

  const reloaded = await bob.reload({ timeout: TIMEOUT });
  const html = await reloaded.text();
  await live(bob);
  await bob.waitForTimeout(300);
  print({
    step: 'reloaded',
    status: reloaded.status(),
    cacheControl: reloaded.headers()['cache-control'] ?? null,
    html,
    bob: await shown(bob),
  });

  const carol = watch(await context.newPage(), 'carol');
  await carol.addInitScript(() => {
    delete window.EventSource;
    delete window.URLSearchParams;
  });
  await carol.goto(`${root}/${room}?user=carol`, { timeout: TIMEOUT });
  await live(carol);
  const polyfill = await carol.evaluate(() => ({
    EventSource: window.EventSource.isPolyfill === true,
    URLSearchParams: window.URLSearchParams.isPolyfill === true,
  }));
  const carolHistory = await shown(carol);
  await send(alice, THIRD);
  const carolSaw = await waitFor(carol, 3, THIRD);
  await send(carol, FOURTH);
  print({
    step: 'polyfill',
    polyfill,
    history: carolHistory,
    carol: carolSaw,
    carolAfter: await waitFor(carol, 4, FOURTH),
    alice: await waitFor(alice, 4, FOURTH),
    carolStayed: await stayed(carol),
  });

  await alice.screenshot({ path: screenshot, fullPage: true });
  ok = true;
} catch (e) {
  errors.push(String(e && e.stack ? e.stack : e));
} finally {
  print({ state: 'done', errors });
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
