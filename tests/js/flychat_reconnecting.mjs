// spout's reconnecting-eventsource.js, fetched from the server as flychat's chat page loads it, run in Node over the
// npm `eventsource` package as the EventSource it wraps; for tests/flychat.rs.
//
// Usage: node flychat_reconnecting.mjs BASE_URL STREAM_URL
//
// Prints one JSON line per event on stdout, as eventsource_client.mjs does: {"id","event","data"} for `message`
// and `stream-reset` events, and {"state":"open"} / {"state":"error","readyState":N} for the wrapped connection's
// states (readyState 0: reconnecting by itself; 2: given up, so the wrapper opens a new EventSource). The test ends
// the client by closing its stdin.
import vm from 'node:vm';
import { EventSource } from 'eventsource';

const [base, url] = process.argv.slice(2);
if (!base || !url) {
  process.stderr.write('usage: node flychat_reconnecting.mjs BASE_URL STREAM_URL\n');
  process.exit(2);
}
const response = await fetch(`${base}/js/reconnecting-eventsource.js`);
if (response.status !== 200) throw new Error(`reconnecting-eventsource.js: ${response.status}`);
globalThis.EventSource = EventSource;
vm.runInThisContext(await response.text(), { filename: 'reconnecting-eventsource.js' });

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const source = new globalThis.ReconnectingEventSource(url);
const onEvent = (e) => print({ id: e.lastEventId, event: e.type, data: e.data });
source.addEventListener('message', onEvent);
source.addEventListener('stream-reset', onEvent);
source.addEventListener('open', () => print({ state: 'open' }));
source.addEventListener('error', (e) => print({ state: 'error', readyState: e.target.readyState }));

process.stdin.on('end', () => {
  source.close();
  process.exit(0);
});
process.stdin.resume();
