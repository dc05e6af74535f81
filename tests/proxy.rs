//! spout behind a real HAProxy (Debian's `haproxy`, started by the test on loopback ports): a `+proxy` listener
//! takes the PROXY protocol header HAProxy sends (`send-proxy` for v1, `send-proxy-v2`), so the client's address,
//! not the balancer's, is what `--max-connections-per-ip` counts; a connection without the header is refused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::haproxy::{self, free_port, Haproxy};
use common::*;

/// Starts HAProxy in TCP mode with two frontends in front of `spout`: the first sends a v1 PROXY header
/// (`send-proxy`), the second a v2 one (`send-proxy-v2`). Returns it and the two frontends' addresses.
fn start_haproxy(spout: SocketAddr) -> (Haproxy, [SocketAddr; 2]) {
    let ports = [free_port(), free_port()];
    let config = format!(
        "global\n  maxconn 200\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend v1\n  bind 127.0.0.1:{p1}\n  default_backend spout_v1\n\
         backend spout_v1\n  server spout {spout} send-proxy\n\
         frontend v2\n  bind 127.0.0.1:{p2}\n  default_backend spout_v2\n\
         backend spout_v2\n  server spout {spout} send-proxy-v2\n",
        p1 = ports[0],
        p2 = ports[1],
    );
    let frontends = ports.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
    (Haproxy::start(&config, &frontends), frontends)
}

/// Connects to `to` from the loopback address `from` (127.0.0.x), so that each test client has its own address.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind source address");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Opens a stream on `/sub/{channel}` through `to` from `from`; returns the socket and the response's status
/// line (and, for a refusal, its body).
fn subscribe_from(from: [u8; 4], to: SocketAddr, channel: &str) -> (TcpStream, String) {
    let mut stream = connect_from(from, to);
    write!(stream, "GET /sub/{channel} HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    if !status.starts_with("HTTP/1.1 200") {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        status.push_str(&rest);
    }
    (stream, status)
}

#[test]
fn haproxy_v1_and_v2_headers_give_spout_the_client_address_for_per_ip_limits() {
    if !haproxy::installed() {
        return;
    }
    let server = start_server(&[
        "--workers",
        "1",
        "--listen",
        "127.0.0.1:0=native+proxy",
        "--listen",
        "127.0.0.1:0",
        "--max-connections-per-ip",
        "2",
    ]);
    let (proxied, direct) = (server.addrs[0], server.addrs[1]);
    let (_haproxy, [v1, v2]) = start_haproxy(proxied);

    // Every HAProxy connection comes from 127.0.0.1; the clients behind it are 127.0.0.2 and 127.0.0.3.
    // Refusals: one per frontend, and any of the tries before a closed stream's slot is back.
    let mut refusals = 0;
    for (frontend, version) in [(v1, "v1"), (v2, "v2")] {
        let channel = format!("limited{version}");
        let (first, status) = subscribe_from([127, 0, 0, 2], frontend, &channel);
        assert!(status.starts_with("HTTP/1.1 200"), "{version}: {status}");
        let (second, status) = subscribe_from([127, 0, 0, 2], frontend, &channel);
        assert!(status.starts_with("HTTP/1.1 200"), "{version}: {status}");
        let (_, refused) = subscribe_from([127, 0, 0, 2], frontend, &channel);
        assert!(
            refused.starts_with("HTTP/1.1 503") && refused.contains("\"too_many_connections\""),
            "{version}: the third stream of one client: {refused}"
        );
        refusals += 1;
        // Another client behind the same balancer has its own count.
        let (other, status) = subscribe_from([127, 0, 0, 3], frontend, &channel);
        assert!(status.starts_with("HTTP/1.1 200"), "{version}: {status}");
        wait_for("three streams", || subscribers(direct, &channel) == 3);
        // A closed stream gives its slot back.
        drop(first);
        wait_for("the slot given back", || {
            let (stream, status) = subscribe_from([127, 0, 0, 2], frontend, &channel);
            drop(stream);
            if status.contains("\"too_many_connections\"") {
                refusals += 1;
            }
            status.starts_with("HTTP/1.1 200")
        });
        drop((second, other));
        wait_for("the streams closed", || subscribers(direct, &channel) == 0);
    }
    wait_for("the refusals counted", || {
        metric(direct, "spout_connections_per_ip_refused_total") == refusals
    });

    // curl through the v2 frontend: requests flow as usual.
    if require_program("curl") {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--interface",
                "127.0.0.4",
                "-X",
                "POST",
                "--data",
                "via haproxy",
            ])
            .arg(format!("http://{v2}/pub/curl"))
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && body.contains("\"id\""), "{body}");
    }

    // A connection to the +proxy listener that does not start with a PROXY header is closed unanswered.
    for opening in [
        &b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4\r\n",
    ] {
        let mut stream = TcpStream::connect(proxied).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.write_all(opening).expect("write");
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&answer)
        );
        assert!(started.elapsed() < Duration::from_secs(5), "not closed");
    }
    // The direct listener takes no header: the test's own requests there are counted by their socket's address.
    assert_eq!(get(direct, "/healthz").status, 200);
}
