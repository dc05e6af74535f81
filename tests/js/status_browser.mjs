// Headless Chromium on spout's status page, for tests/status.rs.
//
// Usage: node status_browser.mjs PAGE_URL PROFILE_DIR SCREENSHOT SAMPLES
//
// Opens PAGE_URL (spout's /status, reached by host and port only, with its ?key=) and reads the figures the page
// shows from its DOM once per sample, until SAMPLES live samples have come after the first figures it showed (its
// opening may bring many at once: the samples of the minutes before). Prints one JSON
// line per sample read: {"samples","delivered","published","deliveredRate","subscribers","state","workers"}, then
// {"state":"done","errors":[...]} after saving a screenshot of the page. Exits when stdin closes.
import { launchChromium } from './chromium.mjs';

const [url, userDataDir, screenshot, wanted] = process.argv.slice(2);
if (!url || !userDataDir || !screenshot || !wanted) {
  process.stderr.write('usage: node status_browser.mjs PAGE_URL PROFILE_DIR SCREENSHOT SAMPLES\n');
  process.exit(2);
}
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const errors = [];

const context = await launchChromium(userDataDir);
const page = context.pages()[0] ?? (await context.newPage());
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('requestfailed', (r) => { if (!r.url().endsWith('/status/stream')) errors.push('failed: ' + r.url()); });
page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) errors.push('outside request: ' + r.url()); });
await page.goto(url, { timeout: 10000 });

const read = () => page.evaluate(() => {
  const text = (id) => document.getElementById(id).textContent;
  const count = (id) => Number(text(id).replace(/,/g, '')) || 0;
  return {
    samples: Number(document.body.dataset.samples || 0),
    delivered: count('delivered'),
    published: count('published'),
    deliveredRate: count('delivered-rate'),
    subscribers: count('subscribers'),
    state: text('state'),
    workers: document.querySelectorAll('#workers tbody tr').length,
    charts: document.querySelectorAll('.uplot').length,
  };
});

let last = -1;
let first = null;
for (;;) {
  const figures = await read();
  if (figures.samples !== last) {
    print(figures);
    last = figures.samples;
  }
  if (first === null && figures.samples > 0) first = figures.samples;
  if (first !== null && figures.samples >= first + Number(wanted)) break;
  await page.waitForTimeout(200);
}
await page.screenshot({ path: screenshot, fullPage: true });
print({ state: 'done', errors });

process.stdin.on('end', async () => {
  await context.close().catch(() => {});
  process.exit(0);
});
process.stdin.resume();
