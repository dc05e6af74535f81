// Headless Chromium with private channels, for tests/auth.rs.
//
// Usage: node auth_browser.mjs SPOUT_BASE_URL COOKIE_TOKEN QUERY_TOKEN PROFILE_DIR PAGE_PORT
//
// Serves a page from its own HTTP server on 127.0.0.1:PAGE_PORT (another origin than spout: another port; spout's
// --cors-origin lists it) and sets the cookie
// `spout_token=COOKIE_TOKEN` for 127.0.0.1 in the browser, as an application's login would. The page opens
//   "cookie"  an EventSource on /sub/user.42 with `withCredentials: true`: the browser sends the cookie, and lets the
//             page read the stream only if spout's CORS answer names the page's origin and allows credentials;
//   "query"   a WebSocket on /sub/user.42?token=QUERY_TOKEN;
//   "denied"  an EventSource on /sub/user.43 with credentials: the token does not cover it, so it fails.
// Prints JSON lines on stdout: {"stream","state"} for opens and errors, {"stream","data"} per event (the WebSocket's
// spout `open` message is {"stream":"query","state":"hello"}). Runs until stdin closes.
import http from 'node:http';
import { launchChromium } from './chromium.mjs';

const [spout, cookieToken, queryToken, userDataDir, pagePort] = process.argv.slice(2);
if (!spout || !cookieToken || !queryToken || !userDataDir || !pagePort) {
  process.stderr.write('usage: node auth_browser.mjs SPOUT_BASE_URL COOKIE_TOKEN QUERY_TOKEN PROFILE_DIR PAGE_PORT\n');
  process.exit(2);
}
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const PAGE = `<!doctype html><meta charset="utf-8"><title>private channels</title><script>
const spout = ${JSON.stringify(spout)};
const cookie = new EventSource(spout + '/sub/user.42', { withCredentials: true });
cookie.onopen = () => report({ stream: 'cookie', state: 'open' });
cookie.onerror = () => report({ stream: 'cookie', state: 'error' });
cookie.onmessage = (e) => report({ stream: 'cookie', data: e.data });
const denied = new EventSource(spout + '/sub/user.43', { withCredentials: true });
denied.onopen = () => report({ stream: 'denied', state: 'open' });
denied.onerror = () => { report({ stream: 'denied', state: 'error' }); denied.close(); };
const ws = new WebSocket(spout.replace(/^http/, 'ws') + '/sub/user.42?token=' + ${JSON.stringify(queryToken)});
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  report(m.event === 'open' ? { stream: 'query', state: 'hello' } : { stream: 'query', data: m.data });
};
ws.onclose = (e) => report({ stream: 'query', state: 'close', code: e.code });
</script>`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(PAGE);
});
await new Promise((resolve) => server.listen(Number(pagePort), '127.0.0.1', resolve));

const context = await launchChromium(userDataDir);
await context.addCookies([{ name: 'spout_token', value: cookieToken, domain: '127.0.0.1', path: '/' }]);
const page = context.pages()[0] ?? (await context.newPage());
await page.exposeFunction('report', (entry) => print(entry));
await page.goto(`http://127.0.0.1:${server.address().port}/`, { timeout: 10000 });

process.stdin.on('end', async () => {
  await context.close().catch(() => {});
  server.close();
  process.exit(0);
});
process.stdin.resume();
