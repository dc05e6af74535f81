//! A local auth hook for the tests of `--auth hook`: a `std::net` server thread that records each request's JSON
//! and answers as the test's behaviour says (a status, a body, after a delay), one thread per connection, each
//! answer with `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// How a hook answers a request: its status, its body, and how long it waits first.
pub type Behaviour = fn(&Value) -> (u16, String, Duration);

/// A hook server: every request it got, and its address.
pub struct HookServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl HookServer {
    pub fn start(behaviour: Behaviour) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hook");
        let addr = listener.local_addr().expect("hook address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || answer(conn, &record, behaviour));
            }
        });
        HookServer { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}/check", self.addr)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().expect("hook log").clone()
    }
}

/// Reads one request (head, then a `Content-Length` body), records its JSON and answers by `behaviour`.
fn answer(conn: TcpStream, seen: &Mutex<Vec<Value>>, behaviour: Behaviour) {
    let mut reader = BufReader::new(conn);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("hook log").push(request.clone());
    let (status, body, delay) = behaviour(&request);
    std::thread::sleep(delay);
    let _ = write!(
        reader.get_mut(),
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
