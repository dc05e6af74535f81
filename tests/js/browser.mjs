// A real browser (headless Chromium, driven by the npm `playwright-core` package) for tests/browser.rs.
//
// Usage: node browser.mjs SPOUT_BASE_URL EXPECTED PROFILE_DIR SCREENSHOT_PATH
//   PROFILE_DIR  an empty directory for Chromium's fresh profile (removed at the end)
//
// Serves a small HTML page from its own HTTP server on 127.0.0.1 (a different origin than spout, so every request
// to spout is cross-origin and goes through the browser's CORS checks) and opens it in Chromium. The page opens four
// streams with the browser's native APIs:
//   "sse"       EventSource on /sub/news,sport, listening to `message` and `greet`;
//   "ws"        WebSocket on /sub/news,sport;
//   "sse-solo"  EventSource on /sub/solo, listening to `message`, `deleted` and `reset` (it reconnects by itself,
//               with Last-Event-ID, when spout ends the stream);
//   "ws-solo"   WebSocket on /sub/solo that reopens once, 3 s after a close, with ?last_event_id=;
// then publishes one event itself with `fetch` (a JSON batch, so the browser sends a CORS preflight first).
//
// Once EXPECTED entries have arrived, the page publishes an end marker (data "end marker") to `news` and to `solo`,
// and waits until each of the four streams has its marker. A duplicate arrives after the event it repeats, and need
// not have arrived when the count is reached; but spout delivers a stream's events in id order, so whatever a stream
// gets of the events published before its marker comes before the marker. With the markers in, nothing is still on
// its way.
//
// Prints JSON lines on stdout:
//   {"state":"ready","published":[ids]}  once all four streams are open (EventSource `open`; WebSocket spout's
//                                        `{"event":"open"}` message) and the page's own publish was answered;
//   {"state":"marked","published":[ids]} the end markers' ids (news, solo), once EXPECTED entries have arrived;
//   {"stream":..., ...}                  per thing a stream saw, in arrival order: an event {"id","event","data"}
//                                        (EventSource), a message {"message":{...}} (WebSocket), or a state
//                                        {"state":"open"|"error"|"hello"|"close",...}; printed once every stream
//                                        has its end marker (or a wait timed out), the markers included;
//   {"state":"done","errors":[...]}      last, after the screenshot of the page (the rendered list) is written.
// Exits 0 when EXPECTED entries and then every end marker arrived, 1 otherwise (the lines are printed either way).
// Chromium is launched by chromium.mjs.
import http from 'node:http';
import fs from 'node:fs';
import { launchChromium } from './chromium.mjs';

const [spout, expectedArg, userDataDir, screenshot] = process.argv.slice(2);
const expected = Number(expectedArg);
if (!spout || !Number.isInteger(expected) || !userDataDir || !screenshot) {
  process.stderr.write('usage: node browser.mjs SPOUT_BASE_URL EXPECTED PROFILE_DIR SCREENSHOT_PATH\n');
  process.exit(2);
}
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

// Runs in the page. `window.received` holds what every stream saw, in arrival order, each entry tagged with its
// stream; `window.errors` anything unexpected.
const PAGE_SCRIPT = `
const spout = new URLSearchParams(location.search).get('spout');
const wsBase = spout.replace(/^http/, 'ws');
window.received = [];
window.errors = [];
window.opened = {};
const list = document.getElementById('events');
function record(entry) {
  window.received.push(entry);
  const li = document.createElement('li');
  li.className = 'state' in entry ? 'state' : entry.stream.startsWith('ws') ? 'ws' : 'sse';
  li.textContent = JSON.stringify(entry);
  list.appendChild(li);
}

// A native EventSource: every event of the given names, and its open and error states. It reconnects by itself
// (after the server's retry: hint) sending Last-Event-ID.
function eventSource(stream, path, names) {
  const source = new EventSource(spout + path);
  const onEvent = (e) => record({ stream, id: e.lastEventId, event: e.type, data: e.data });
  for (const name of names) source.addEventListener(name, onEvent);
  source.addEventListener('open', () => {
    window.opened[stream] = true;
    record({ stream, state: 'open' });
  });
  source.addEventListener('error', () => record({ stream, state: 'error', readyState: source.readyState }));
}

// A native WebSocket: every message (spout's open message as the state "hello"), its open and close states. With
// reconnect, it reopens once 3 s after a close (like an EventSource told retry: 3000), resuming with
// ?last_event_id= as the README shows.
function webSocket(stream, path, reconnect, lastId) {
  const url = wsBase + path + (lastId ? '?last_event_id=' + encodeURIComponent(lastId) : '');
  const ws = new WebSocket(url);
  ws.addEventListener('open', () => record({ stream, state: 'open' }));
  ws.addEventListener('message', (e) => {
    if (typeof e.data !== 'string') { window.errors.push(stream + ': binary message'); return; }
    let m;
    try { m = JSON.parse(e.data); } catch (err) { window.errors.push(stream + ': not JSON: ' + e.data); return; }
    if (m.event === 'open' && !('id' in m)) {
      if (typeof m.client_id !== 'string' || m.client_id === '') window.errors.push(stream + ': ' + e.data);
      window.opened[stream] = true;
      record({ stream, state: 'hello' });
      return;
    }
    if (m.id) lastId = m.id;
    record({ stream, message: m });
  });
  ws.addEventListener('error', () => window.errors.push(stream + ': WebSocket error'));
  ws.addEventListener('close', (e) => {
    record({ stream, state: 'close', code: e.code });
    if (reconnect) setTimeout(() => webSocket(stream, path, false, lastId), 3000);
  });
}

eventSource('sse', '/sub/news,sport', ['message', 'greet']);
webSocket('ws', '/sub/news,sport', false);
eventSource('sse-solo', '/sub/solo', ['message', 'deleted', 'reset']);
webSocket('ws-solo', '/sub/solo', true);
const STREAMS = ['sse', 'ws', 'sse-solo', 'ws-solo'];
window.allOpen = () => STREAMS.every((s) => window.opened[s]);

// Publishing from the page: a JSON body is not a "simple" request, so Chromium sends an OPTIONS preflight first.
async function publish(events) {
  const res = await fetch(spout + '/pub', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ events }),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error('publish from the page: ' + res.status + ' ' + JSON.stringify(body));
  return body.ids;
}
window.publishFromPage = () => publish([{ channel: 'sport', event: 'greet', data: 'from the page' }]);

// The end markers: one event on news (for "sse" and "ws"), one on solo (for "sse-solo" and "ws-solo").
const MARKER = 'end marker';
window.publishMarkers = () => publish([{ channel: 'news', data: MARKER }, { channel: 'solo', data: MARKER }]);
const isMarker = (entry) => entry.data === MARKER || (entry.message !== undefined && entry.message.data === MARKER);
window.allMarked = () => STREAMS.every((s) => window.received.some((r) => r.stream === s && isMarker(r)));
`;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>spout browser test</title>
<style>
body { font: 13px monospace; margin: 12px; }
li { white-space: pre-wrap; margin: 2px 0; }
.sse { color: #064; } .ws { color: #036; } .state { color: #777; }
</style></head>
<body><h3>spout: native EventSource and WebSocket in Chromium</h3><ol id="events"></ol>
<script>${PAGE_SCRIPT}</script></body></html>`;

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/page')) {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(PAGE);
  } else {
    res.writeHead(req.url === '/favicon.ico' ? 204 : 404);
    res.end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const pageUrl = `http://127.0.0.1:${server.address().port}/page?spout=${encodeURIComponent(spout)}`;

let context;
let ok = false;
const errors = [];
try {
  context = await launchChromium(userDataDir);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push('page error: ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push('console: ' + m.text());
  });
  await page.goto(pageUrl, { timeout: 10000 });
  await page.waitForFunction(() => window.allOpen(), null, { timeout: 15000 });
  const published = await page.evaluate(() => window.publishFromPage());
  print({ state: 'ready', published });

  let awaited = `${expected} events`;
  try {
    await page.waitForFunction((n) => window.received.length >= n, expected, { timeout: 20000, polling: 20 });
    awaited = 'the end markers on every stream';
    print({ state: 'marked', published: await page.evaluate(() => window.publishMarkers()) });
    await page.waitForFunction(() => window.allMarked(), null, { timeout: 20000, polling: 20 });
    ok = true;
  } catch (e) {
    errors.push(`waiting for ${awaited}: ${e.message.split('\n')[0]}`);
  }
  const received = await page.evaluate(() => window.received);
  errors.push(...(await page.evaluate(() => window.errors)));
  for (const r of received) print(r);
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  errors.push(String(e && e.stack ? e.stack : e));
} finally {
  print({ state: 'done', errors });
  if (context) await context.close().catch(() => {});
  server.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
