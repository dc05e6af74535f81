// The client spout serves at /js/pushserver.js, run as a page would run it (tests/ws_push.rs).
//
// Usage: node pushserver_client.mjs HTTP_BASE WS_URL CHANNEL
//
// Fetches HTTP_BASE/js/pushserver.js, evaluates it as a classic script, connects with the npm `ws` WebSocket and
// prints one JSON line per step: {"uuid":..} once connected, {"subscribed":[..]} after subscribing to CHANNEL,
// {"push":{"channel":..,"message":..}} per push, and, once stdin closes, {"unsubscribed":[..]} and
// {"state":"closed"}. Errors print {"error":..}.
import WebSocket from 'ws';
import vm from 'node:vm';

const [base, url, channel] = process.argv.slice(2);
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

try {
  const response = await fetch(`${base}/js/pushserver.js`);
  vm.runInThisContext(await response.text());
  const client = new globalThis.PushServer(url, { WebSocket });
  print({ uuid: await client.ready });
  const channels = await client.subscribe(channel, (message, from) => print({ push: { channel: from, message } }));
  print({ subscribed: channels });
  process.stdin.on('end', async () => {
    print({ unsubscribed: await client.unsubscribe(channel) });
    client.socket.on('close', () => {
      print({ state: 'closed' });
      process.exit(0);
    });
    client.disconnect();
  });
  process.stdin.resume();
} catch (e) {
  print({ error: String(e) });
  process.exit(1);
}
