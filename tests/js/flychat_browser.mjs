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
// A page may show a message twice (the answer to its own post and the stream's copy, or a copy replayed), and the
// second may come later than the first. So before a step reads what the pages show, the sender's post must have
// been answered (the page shows a message from the answer when it comes), and a marker message, posted to the room
// by this script from outside the pages ("marker N" from MARKER), must show on every page the step reads: the
// stream brings a room's messages in order, so any copy it still owed is shown by then. What the pages show is
// given without the markers.
//
// Prints one JSON line per step, {"step": NAME, ...what the pages showed}, and at the end
// {"state": "done", "markers": N, "errors": [...]} (N: how many markers were posted); exits 0 when every step
// completed. What a page shows of its messages is a list of {"from", "text", "pid", "markup"}: the name, the text,
// the provisionalId, and how many elements the text holds (0 unless markup got through).
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

// Who the marker messages are from.
const MARKER = 'marker';

// What a page's list shows, in order, markers left out.
const shown = (page) =>
  page.$$eval(
    '#messages li',
    (items, marker) =>
      items
        .filter((li) => li.querySelector('.from').textContent !== marker)
        .map((li) => ({
          from: li.querySelector('.from').textContent,
          text: li.querySelector('.text').textContent,
          pid: li.getAttribute('data-provisional-id'),
          markup: li.querySelector('.text').children.length,
        })),
    MARKER,
  );

// Waits until the page lists `count` messages (markers left out), one with `text`. Where it stands is for the
// test to check: a message shown twice fails there, with what the page showed.
async function waitFor(page, count, text) {
  await page.waitForFunction(
    ([n, t, marker]) => {
      const texts = [...document.querySelectorAll('#messages li')]
        .filter((li) => li.querySelector('.from').textContent !== marker)
        .map((li) => li.querySelector('.text').textContent);
      return texts.length >= n && texts.includes(t);
    },
    [count, text, MARKER],
    { timeout: TIMEOUT, polling: 20 },
  );
}

// Counts a page's answered posts (its form's XMLHttpRequests): `loadend` comes after `load`, so the page's
// `onload`, which shows the message from the answer, has run when the count moves. Runs before the page's scripts.
function countAnsweredPosts() {
  window.postsAnswered = 0;
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, ...rest) {
    if (String(method).toUpperCase() === 'POST') {
      this.addEventListener('loadend', () => {
        window.postsAnswered += 1;
      });
    }
    return open.call(this, method, ...rest);
  };
}

// Waits until every post sent through the page's form (`send`) has been answered.
const answered = (page) =>
  page.waitForFunction(() => window.postsAnswered >= window.postsSent, null, { timeout: TIMEOUT, polling: 20 });

let markers = 0;

// Posts the next marker to the room, from outside the pages, and waits until every one of `pages` shows it.
async function settle(...pages) {
  markers += 1;
  const text = `marker ${markers}`;
  const res = await fetch(`${root}/rooms/${room}/messages/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ from: MARKER, text }).toString(),
  });
  if (res.status !== 200) throw new Error(`posting ${text}: ${res.status} ${await res.text()}`);
  for (const page of pages) {
    await page.waitForFunction(
      (t) => [...document.querySelectorAll('#messages li .text')].some((e) => e.textContent === t),
      text,
      { timeout: TIMEOUT, polling: 20 },
    );
  }
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

// Sends through the form, as a person would; the page must not be left (a flag set before survives).
async function send(page, text) {
  await page.evaluate(() => {
    window.stayed = true;
    window.postsSent = (window.postsSent ?? 0) + 1;
  });
  await page.fill('input[name="text"]', text);
  await page.click('#send button');
}

// `from` sends `text`, the room's `count`th message; returns once each of `pages` shows it, with no copy of it
// still on its way (`answered`, `settle`).
async function exchange(from, text, count, pages) {
  await send(from, text);
  for (const page of pages) await waitFor(page, count, text);
  await answered(from);
  await settle(...pages);
}

const stayed = (page) => page.evaluate(() => window.stayed === true);

const errors = [];
let context;
let ok = false;
try {
  context = await launchChromium(profile);
  await context.addInitScript(countAnsweredPosts);
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

  await exchange(alice, FIRST, 1, [bob, alice]);
  print({ step: 'first', bob: await shown(bob), alice: await shown(alice), aliceStayed: await stayed(alice) });

  await exchange(bob, ANSWER, 2, [alice, bob]);
  print({ step: 'answer', alice: await shown(alice), bob: await shown(bob), bobStayed: await stayed(bob) });

  const reloaded = await bob.reload({ timeout: TIMEOUT });
  const html = await reloaded.text();
  await live(bob);
  await settle(bob);
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
  await exchange(alice, THIRD, 3, [carol]);
  const carolSaw = await shown(carol);
  await exchange(carol, FOURTH, 4, [carol, alice]);
  print({
    step: 'polyfill',
    polyfill,
    history: carolHistory,
    carol: carolSaw,
    carolAfter: await shown(carol),
    alice: await shown(alice),
    carolStayed: await stayed(carol),
  });

  await alice.screenshot({ path: screenshot, fullPage: true });
  ok = true;
} catch (e) {
  errors.push(String(e && e.stack ? e.stack : e));
} finally {
  print({ state: 'done', markers, errors });
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
