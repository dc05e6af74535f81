// A real EventSource client for tests/eventsource.rs.
//
// Usage: node eventsource_client.mjs URL [EVENT_NAME...]
//
// Connects to URL and prints one JSON line per received event on stdout: {"id","event","data"}. Unnamed events
// arrive as "message"; named events are only dispatched to listeners registered for their name, so every name the
// test publishes must be given on the command line. Connection state goes to stdout too, as {"state":"open"} and
// {"state":"error"}, so the test can tell a reconnect from an event. The EventSource reconnects by itself when the
// stream ends, sending Last-Event-ID: that is what the test checks.
import { EventSource } from 'eventsource';

const [url, ...names] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node eventsource_client.mjs URL [EVENT_NAME...]\n');
  process.exit(2);
}

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const source = new EventSource(url);
const onEvent = (e) => print({ id: e.lastEventId, event: e.type, data: e.data });

source.addEventListener('message', onEvent);
for (const name of new Set(names)) {
  if (name !== 'message') {
    source.addEventListener(name, onEvent);
  }
}
source.addEventListener('open', () => print({ state: 'open' }));
source.addEventListener('error', () => print({ state: 'error' }));

// The test ends the client by closing its stdin (or killing it).
process.stdin.on('end', () => {
  source.close();
  process.exit(0);
});
process.stdin.resume();
