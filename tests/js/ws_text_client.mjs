// A real WebSocket client (the npm `ws` package) that speaks text, for the compatible APIs' tests (tests/keker.rs,
// tests/ws_push.rs).
//
// Usage: node ws_text_client.mjs URL
//
// Connects to URL and prints one JSON line per happening on stdout: {"state":"open"} once connected, {"text":
// "<message>"} per received text message, {"state":"close","code":N} when the connection ends. Every line read
// on stdin is sent as one text message. The `ws` client answers the server's pings by itself and checks every
// server frame: a protocol error on spout's side shows up as an "error" line. Closing stdin makes it close with
// 1000.
import WebSocket from 'ws';
import readline from 'node:readline';

const [url] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node ws_text_client.mjs URL\n');
  process.exit(2);
}

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const socket = new WebSocket(url);
const pending = [];
socket.on('open', () => {
  print({ state: 'open' });
  for (const line of pending.splice(0)) socket.send(line);
});
socket.on('message', (data, isBinary) => {
  if (isBinary) {
    print({ state: 'error', error: 'binary message' });
    return;
  }
  print({ text: data.toString('utf8') });
});
socket.on('error', (e) => print({ state: 'error', error: String(e) }));
socket.on('close', (code) => {
  print({ state: 'close', code });
  process.exit(0);
});
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (socket.readyState === WebSocket.OPEN) socket.send(line);
  else pending.push(line);
});
lines.on('close', () => socket.close(1000, 'bye'));
