// A real WebSocket client (the npm `ws` package) for tests/ws.rs.
//
// Usage: node ws_client.mjs URL
//
// Connects to URL and prints one JSON line per happening on stdout: {"state":"open"} once connected, {"message":
// <the received text, parsed as JSON>} per message, and {"state":"close","code":N} when the server closes. The
// `ws` client checks the handshake (Sec-WebSocket-Accept) and every server frame itself: a protocol error on
// spout's side shows up as an "error" line and close code 1006 or 1002. Closing stdin makes it close with 1000.
import WebSocket from 'ws';

const [url] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node ws_client.mjs URL\n');
  process.exit(2);
}

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const socket = new WebSocket(url);
socket.on('open', () => print({ state: 'open' }));
socket.on('message', (data, isBinary) => {
  if (isBinary) {
    print({ state: 'error', error: 'binary message' });
    return;
  }
  print({ message: JSON.parse(data.toString('utf8')) });
});
socket.on('error', (e) => print({ state: 'error', error: String(e) }));
socket.on('close', (code) => {
  print({ state: 'close', code });
  process.exit(0);
});
process.stdin.on('end', () => socket.close(1000, 'bye'));
process.stdin.resume();
