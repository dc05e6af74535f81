#!/usr/bin/env python3
"""The hostile clients of loadtest/hostile.sh, each bounded in count and in time, against loopback only.

  hostile.py pings   --port P [-n N] [--duration D] [--cap BYTES] [--pid PID]
      N WebSocket subscribers that send empty pings as fast as they can and never read (4 KiB receive windows, so
      the pongs back up in the server). A subscriber stops at --cap bytes of pings sent or --duration.
  hostile.py bodies  --port P [-n N] [--duration D] [--drip S] [--pid PID]
      N publishes announcing Content-Length 1 MiB that send all but 100 bytes, then one byte every --drip s.
  hostile.py stalled --port P [-n N] [--rate R] [--size B] [--duration D] [--hold H] [--pid PID]
      N SSE subscribers (4 KiB receive windows) that never read, while R events/s of B bytes are published on
      their channel for D s; then, H s later, what the server's side of them holds in the kernel (ss -tmi).
  hostile.py conns   --port P [-n N] [--sources K]
      N subscribes spread over 127.0.0.2 ... 127.0.0.(K+1), held until each is answered: status per source.

Every mode prints one JSON object on stdout. The server's RSS (VmRSS of --pid, summed over a comma list) is
sampled every 50 ms; "rss_peak_growth" is its peak over the run minus its value before the clients connected.
"tcp_mem_peak_growth" is the same for the kernel's TCP memory (/proc/net/sockstat "mem", pages: machine-wide, both
ends of every loopback connection, and whatever else runs on the machine); "server_sockets_peak_bytes" is the peak
of what the server's own sockets hold (ss -tm: receive queue r plus send queue w), sampled twice a second.
"""
import argparse
import errno
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

MIB = 1 << 20
FAILED = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT)


def loopback(host):
    if not host.startswith("127."):
        sys.exit(f"refusing {host}: loopback only (127.0.0.0/8)")
    return host


class Rss:
    """VmRSS of the server's processes and the kernel's TCP memory, sampled on demand; keeps the peaks."""

    def __init__(self, pids, port):
        self.pids = [int(p) for p in pids.split(",") if p] if pids else []
        self.port = port
        self.base = self.now()
        self.peak = self.base
        self.tcp_base = self.tcp_peak = sockstat_mem_pages()
        self.server_socks_peak, self.next_ss = 0, 0.0

    def now(self):
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def sample(self):
        self.peak = max(self.peak, self.now())
        self.tcp_peak = max(self.tcp_peak, sockstat_mem_pages())
        if time.monotonic() >= self.next_ss:  # ss costs a few ms for hundreds of sockets: twice a second
            self.next_ss = time.monotonic() + 0.5
            held = sum(e["rmem"] + e["wmem_queued"] for e in server_side(self.port).values())
            self.server_socks_peak = max(self.server_socks_peak, held)

    def report(self, n):
        grown = self.peak - self.base
        tcp = (self.tcp_peak - self.tcp_base) * 4096
        return {"rss_before": self.base, "rss_peak": self.peak, "rss_peak_growth": grown,
                "rss_growth_per_conn": grown // max(n, 1), "tcp_mem_peak_growth": tcp,
                "tcp_mem_growth_per_conn": tcp // max(n, 1),
                "server_sockets_peak_bytes": self.server_socks_peak,
                "server_sockets_peak_bytes_per_conn": self.server_socks_peak // max(n, 1)}


def open_conn(args, i, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if args.sources:
        s.bind((f"127.0.0.{2 + i % args.sources}", 0))
    s.settimeout(10)
    s.connect((args.host, args.port))
    return s


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0].decode(errors="replace")


def percentiles(values):
    if not values:
        return None
    values = sorted(values)
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 2)
    return {"min": round(values[0], 2), "p50": pick(0.5), "max": round(values[-1], 2)}


def pings(args):
    rss = Rss(args.pid, args.port)
    socks, start = {}, {}
    for i in range(args.n):
        s = open_conn(args, i, rcvbuf=4096)
        s.sendall((f"GET {args.path.format(i=i)} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        status = read_head(s)
        if " 101 " not in status + " ":
            sys.exit(f"upgrade refused: {status}")
        s.setblocking(False)
        socks[s] = 0
        start[s] = time.monotonic()
    ping = bytes([0x89, 0x80, 1, 2, 3, 4])  # FIN + ping, masked, empty (RFC 6455 §5.5.2)
    flood = ping * (65536 // len(ping))
    cut, capped, sent, t0 = [], 0, 0, time.monotonic()
    deadline = t0 + args.duration
    while socks and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(socks), [], 0.05)
        for s in writable:
            try:
                socks[s] += s.send(flood)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno not in FAILED:
                    raise
                cut.append(time.monotonic() - start.pop(s))
                sent += socks.pop(s)
                s.close()
                continue
            if socks[s] >= args.cap:
                capped += 1
                sent += socks.pop(s)
                s.close()
        rss.sample()
    sent += sum(socks.values())
    out = {"mode": "pings", "connections": args.n, "cut_by_server": len(cut), "stopped_at_cap": capped,
           "still_open_at_end": len(socks), "ping_bytes_sent_per_conn": sent // args.n,
           "seconds_until_cut": percentiles(cut), **rss.report(args.n)}
    for s in socks:
        s.close()
    print(json.dumps(out))


def bodies(args):
    rss = Rss(args.pid, args.port)
    length = MIB
    socks, left, start, answers, cut = {}, {}, {}, {}, []
    payload = b"x" * 65536
    for i in range(args.n):
        s = open_conn(args, i)
        s.sendall((f"POST {args.path.format(i=i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n").encode())
        s.setblocking(False)
        socks[s] = i
        left[s] = length - 100
        start[s] = time.monotonic()
    t0 = time.monotonic()
    deadline, next_drip = t0 + args.duration, None

    def finish(s, status):
        cut.append(time.monotonic() - start[s])
        answers[status] = answers.get(status, 0) + 1
        del socks[s]
        s.close()

    while socks and time.monotonic() < deadline:
        bulk = [s for s in socks if left[s] > 0]
        readable, writable, _ = select.select(list(socks), bulk, [], 0.05)
        for s in readable:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
            finish(s, status)
        for s in writable:
            if s not in socks:
                continue
            try:
                left[s] -= s.send(payload[:left[s]])
            except BlockingIOError:
                pass
            except OSError:
                finish(s, "closed")
        if next_drip is None and all(left[s] <= 0 for s in socks):
            next_drip = time.monotonic()  # every body is at its last 100 bytes
        if next_drip is not None and time.monotonic() >= next_drip:
            for s in list(socks):
                try:
                    s.send(b"x")
                except OSError:
                    finish(s, "closed")
            next_drip += args.drip
        rss.sample()
    out = {"mode": "bodies", "connections": args.n, "answers": answers, "cut": len(cut),
           "still_open_at_end": len(socks), "seconds_until_cut": percentiles(cut),
           "all_but_100_bytes_sent": next_drip is not None, **rss.report(args.n)}
    for s in socks:
        s.close()
    print(json.dumps(out))


def sockstat_mem_pages():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1])
    return 0


def server_side(port):
    """The server's sockets of loopback port: per TCP state, how many and the bytes they hold (skmem r and w)."""
    text = subprocess.run(["ss", "-tmnH", "state", "all", f"( sport = :{port} )"],
                          capture_output=True, text=True, check=True).stdout
    states = {}
    state = None
    for line in text.splitlines():
        if not line.startswith("\t") and not line.startswith(" "):
            state = line.split()[0]
            if state == "LISTEN":
                state = None
                continue
            entry = states.setdefault(state, {"sockets": 0, "rmem": 0, "wmem_queued": 0, "send_q": 0})
            entry["sockets"] += 1
            entry["send_q"] += int(line.split()[2])
        elif state:
            m = re.search(r"skmem:\(r(\d+),.*?,w(\d+)", line)
            if m:
                states[state]["rmem"] += int(m.group(1))
                states[state]["wmem_queued"] += int(m.group(2))
    return states


def stalled(args):
    rss = Rss(args.pid, args.port)
    mem_before = sockstat_mem_pages()
    subs = []
    for i in range(args.n):
        s = open_conn(args, i, rcvbuf=4096)
        s.sendall((f"GET {args.path.format(i=i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode())
        subs.append(s)
    time.sleep(1)
    pub = socket.create_connection((args.host, args.port), timeout=10)
    body = b"x" * args.size
    request = (f"POST {args.pub_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    t0 = time.monotonic()
    published, mem_peak, statuses = 0, 0, {}
    while time.monotonic() - t0 < args.duration:
        pub.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += pub.recv(4096)
        head, _, rest = reply.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        statuses[status] = statuses.get(status, 0) + 1
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(rest) < need:
            rest += pub.recv(4096)
        published += 1
        mem_peak = max(mem_peak, sockstat_mem_pages())
        rss.sample()
        time.sleep(max(0.0, t0 + published / args.rate - time.monotonic()))
    pub.close()
    during = server_side(args.port)
    time.sleep(args.hold)
    rss.sample()
    after = server_side(args.port)
    mem_after = sockstat_mem_pages()
    for s in subs:
        s.close()
    time.sleep(1)
    closed = server_side(args.port)
    mem_closed = sockstat_mem_pages()
    kib = lambda pages: (pages - mem_before) * 4
    print(json.dumps({
        "mode": "stalled", "subscribers": args.n, "published": published, "publish_answers": statuses,
        "bytes_per_subscriber": published * args.size,
        "server_sockets_at_publish_end": during,
        f"server_sockets_{args.hold:g}s_later": after,
        "server_sockets_after_clients_closed": closed,
        "sockstat_mem_kib_peak": kib(mem_peak), f"sockstat_mem_kib_{args.hold:g}s_later": kib(mem_after),
        "sockstat_mem_kib_after_clients_closed": kib(mem_closed), **rss.report(args.n)}))


def conns(args):
    by_source = {}
    socks = []
    for i in range(args.n):
        source = f"127.0.0.{2 + i % args.sources}" if args.sources else "127.0.0.1"
        try:
            s = open_conn(args, i)
            s.sendall((f"GET {args.path.format(i=i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Accept: text/event-stream\r\n\r\n").encode())
            status = read_head(s).split(" ")
            status = status[1] if len(status) > 1 else "closed"
        except OSError as e:
            status = errno.errorcode.get(e.errno, "error") if e.errno else "timeout"
            s = None
        counts = by_source.setdefault(source, {})
        counts[status] = counts.get(status, 0) + 1
        if s:
            socks.append(s)  # held open, so every later one counts against the limit
    for s in socks:
        s.close()
    print(json.dumps({"mode": "conns", "connections": args.n, "by_source": by_source}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pings", "bodies", "stalled", "conns"])
    p.add_argument("--host", default="127.0.0.1", type=loopback)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", help="request path, {i} is the connection's number")
    p.add_argument("--pub-path", default="/pub/stalled")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.2 ... (0: 127.0.0.1)")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--cap", type=int, default=16 * MIB, help="pings: bytes of pings per connection at most")
    p.add_argument("--drip", type=float, default=3)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--hold", type=float, default=3)
    p.add_argument("--pid", default="")
    args = p.parse_args()
    args.path = args.path or {"pings": "/sub/ping{i}", "bodies": "/pub/body{i}", "stalled": "/sub/stalled",
                              "conns": "/sub/c{i}"}[args.mode]
    {"pings": pings, "bodies": bodies, "stalled": stalled, "conns": conns}[args.mode](args)


if __name__ == "__main__":
    main()
