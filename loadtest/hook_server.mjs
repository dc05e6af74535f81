// A local auth hook for loadtest/auth.sh: answers every POST with 200 {} (allow, no narrowing) after reading its
// body, with keep-alive, so that what is measured is spout's side of a hook round trip, not an application's.
//
// Usage: node hook_server.mjs PORT
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
    res.end('{}');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
