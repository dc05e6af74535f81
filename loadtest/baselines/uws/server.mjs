// The uWebSockets reference for spout's comparison (loadtest/compare/run.sh, target `uws`): the pub/sub server a
// Node engineer would write with uWebSockets.js, through the npm package `uwebsockets` (a republish whose binary
// loads on Debian 12). One process, one event loop (uWS runs on Node's main thread), no history, no resume, no
// auth: only the fan-out path, so that its cost can stand beside spout's WebSocket subscribers (`spout-ws`).
//
//   node server.mjs [PORT]          # listens on 127.0.0.1:PORT (default 8083)
//
// - `GET /sub/:channel` upgraded to a WebSocket: the socket is subscribed to the topic named by the channel, and
//   uWS unsubscribes it when it closes. An idle subscriber is the same route with nothing published.
// - `POST /pub/:channel`: the body (at most 1 MiB, as spout's --max-body) becomes one text message
//   `{"id","channel","data"}`, spout's WebSocket event shape that spout-load parses, serialized once and handed to
//   `app.publish`, which writes it to every subscriber of the topic. Answered 202 with no body, like the axum
//   baseline.
//
// Two settings differ from uWS's defaults so that the slow-subscriber policy is spout's, and the comparison is of
// the servers rather than of their limits: up to 1 MiB may wait for one subscriber (spout's --max-queued-bytes;
// uWS's default is 64 KiB), and a subscriber past it is closed, as spout closes one (uWS's default skips the
// events it cannot take, which the tool would count as missing). Compression stays off (uWS's default; spout
// does not compress either).
import uWS from 'uwebsockets';

const MAX_BODY = 1024 * 1024;
const MAX_BACKPRESSURE = 1024 * 1024;

const port = Number(process.argv[2] ?? 8083);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`usage: node server.mjs [PORT]  (got ${process.argv[2]})`);
  process.exit(2);
}

// Event ids: one counter for the server, as a string like spout's. Nothing resumes from them here.
let lastId = 0;

const app = uWS.App();

app.ws('/sub/:channel', {
  maxBackpressure: MAX_BACKPRESSURE,
  closeOnBackpressureLimit: true,
  // The route's parameter is only readable during the upgrade: carry it to `open` as the socket's user data.
  upgrade: (res, req, context) => {
    res.upgrade(
      { channel: req.getParameter(0) },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.subscribe(ws.getUserData().channel);
  },
  // Subscribers send nothing the server acts on; uWS itself answers pings and closes.
});

app.post('/pub/:channel', (res, req) => {
  // The request object is gone once this handler returns: read what is needed now.
  const channel = req.getParameter(0);
  const parts = [];
  let size = 0;
  let done = false;
  res.onAborted(() => {
    done = true;
  });
  res.onData((chunk, isLast) => {
    if (done) {
      return;
    }
    size += chunk.byteLength;
    if (size > MAX_BODY) {
      done = true;
      res.cork(() => res.writeStatus('413 Payload Too Large').end());
      return;
    }
    // uWS neuters `chunk` after this callback: keep a copy unless the whole body is here now.
    if (!isLast) {
      parts.push(Buffer.from(chunk.slice(0)));
      return;
    }
    done = true;
    const last = Buffer.from(chunk);
    const data = (parts.length === 0 ? last : Buffer.concat([...parts, last])).toString();
    const message = JSON.stringify({ id: String(++lastId), channel, data });
    app.publish(channel, message);
    res.cork(() => res.writeStatus('202 Accepted').end());
  });
});

app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end();
});

app.listen('127.0.0.1', port, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws baseline: cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.log(`uws baseline: listening on 127.0.0.1:${port}`);
});
