//! HAProxy, as users put it in front of spout: started by a test with the configuration it writes, on loopback
//! ports, and killed when the test drops it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{require_program, wait_for};

/// Debian's haproxy, in /usr/sbin, which is not on a normal user's PATH.
const DEBIAN_HAPROXY: &str = "/usr/sbin/haproxy";

fn program() -> &'static str {
    if Path::new(DEBIAN_HAPROXY).is_file() {
        DEBIAN_HAPROXY
    } else {
        "haproxy"
    }
}

/// Whether HAProxy is installed; a missing one skips the test, and fails it under `CI=true`.
pub fn installed() -> bool {
    Path::new(DEBIAN_HAPROXY).is_file() || require_program("haproxy")
}

/// A loopback port free at the moment of the call, for a frontend.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    config: PathBuf,
}

impl Haproxy {
    /// Runs HAProxy in the foreground with `config`, and waits until each of its `frontends` accepts.
    pub fn start(config: &str, frontends: &[SocketAddr]) -> Haproxy {
        let path = std::env::temp_dir().join(format!(
            "spout-haproxy-{}-{}.cfg",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&path, config).expect("write haproxy config");
        let child = Command::new(program())
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy");
        let haproxy = Haproxy {
            child,
            config: path,
        };
        for addr in frontends {
            wait_for("haproxy to listen", || TcpStream::connect(addr).is_ok());
        }
        haproxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
