//! A Redis Cluster, spout nodes sharing it, and HAProxy in front of them, all on loopback ports, started by the test
//! that needs them and torn down when it drops them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::haproxy::{free_port, Haproxy};
use super::{get, start_server, Server};

/// A loopback port that is free now, with its cluster bus port (port + 10000) free too.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spout-{what}-{}-{}",
        std::process::id(),
        free_port_pair()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A Redis Cluster of `masters` masters (and `replicas` replicas each) on loopback ports; killed on drop.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    /// False for one Redis not in cluster mode (`standalone`).
    clustered: bool,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    /// Starts the servers and joins them with `redis-cli --cluster create`; waits until the cluster is ok.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = scratch_dir("redis");
        let ports: Vec<u16> = (0..masters * (1 + replicas))
            .map(|_| free_port_pair())
            .collect();
        let children = ports
            .iter()
            .map(|port| Some(redis_server(&dir, *port, true)))
            .collect();
        let cluster = RedisCluster {
            ports,
            clustered: true,
            dir,
            children,
        };
        for port in &cluster.ports {
            wait_until("redis-server to answer", || {
                cli(*port, &["PING"]).is_some_and(|r| r == "PONG")
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let status = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        cluster.wait_ok();
        cluster
    }

    /// One Redis not in cluster mode, which the nodes share (`ports[0]`).
    pub fn standalone() -> RedisCluster {
        let dir = scratch_dir("redis");
        let port = free_port_pair();
        let redis = RedisCluster {
            ports: vec![port],
            clustered: false,
            children: vec![Some(redis_server(&dir, port, false))],
            dir,
        };
        wait_until("redis-server to answer", || {
            cli(port, &["PING"]).is_some_and(|r| r == "PONG")
        });
        redis
    }

    /// Waits until every running node says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        if !self.clustered {
            return;
        }
        for (port, child) in self.ports.iter().zip(&self.children) {
            if child.is_some() {
                wait_until("the cluster to be ok", || {
                    cli(*port, &["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                });
            }
        }
    }

    /// `--broker` for spout: every node as a seed.
    pub fn broker(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis://{}", seeds.join(","))
    }

    /// Kills one Redis server (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again, with its cluster configuration and append-only file.
    pub fn restart(&mut self, index: usize) {
        let port = self.ports[index];
        self.children[index] = Some(redis_server(&self.dir, port, self.clustered));
        wait_until("redis-server to answer", || {
            cli(port, &["PING"]).is_some_and(|r| r == "PONG")
        });
    }

    /// The port of the master that serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("keyslot");
        for port in &self.ports {
            let nodes = cli(*port, &["CLUSTER", "NODES"]).expect("nodes");
            for line in nodes
                .lines()
                .filter(|l| l.contains("myself") && l.contains("master"))
            {
                for range in line.split_whitespace().skip(8) {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
                        continue;
                    };
                    if (lo..=hi).contains(&slot) {
                        return *port;
                    }
                }
            }
        }
        panic!("no master serves slot {slot}");
    }
}

impl RedisCluster {
    /// The ports of the replicas of the master on `port`, each as it sees itself (a master learns of its replicas
    /// by gossip, a moment later).
    pub fn replicas_of(&self, port: u16) -> Vec<u16> {
        let master = cli(port, &["CLUSTER", "MYID"]).unwrap_or_default();
        self.ports
            .iter()
            .copied()
            .filter(|replica| {
                cli(*replica, &["CLUSTER", "NODES"]).is_some_and(|nodes| {
                    nodes
                        .lines()
                        .find(|l| l.contains("myself"))
                        .and_then(|l| l.split_whitespace().nth(3))
                        == Some(master.as_str())
                })
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::as_mut) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` on `port`, in cluster mode or not, with its files in `dir`.
fn redis_server(dir: &Path, port: u16, cluster: bool) -> Child {
    let cluster = if cluster { "yes" } else { "no" };
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            cluster,
            "--cluster-node-timeout",
            "2000",
        ])
        .args(["--repl-diskless-sync-delay", "0"])
        .arg("--cluster-config-file")
        .arg(dir.join(format!("nodes-{port}.conf")))
        .arg("--dir")
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(["--appendfilename", &format!("appendonly-{port}.aof")])
        .args(["--appenddirname", &format!("aof-{port}")])
        .args(["--dbfilename", &format!("dump-{port}.rdb"), "--save", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

/// `redis-cli -p PORT ARGS…`'s output, `None` when it could not connect.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a spout node on the cluster with `args`, and waits until it reaches Redis (`/healthz` 200).
pub fn start_node(cluster: &RedisCluster, args: &[&str]) -> Server {
    let broker = cluster.broker();
    let mut all = vec!["--broker", &broker];
    all.extend_from_slice(args);
    let node = start_server(&all);
    let addr = node.addr;
    wait_until("the node to reach Redis", || {
        get(addr, "/healthz").status == 200
    });
    node
}

/// HAProxy balancing round robin over `nodes` in HTTP mode, health-checked by `/healthz`, as a deployment puts
/// it in front of them; returns it and its frontend's address.
pub fn balancer(nodes: &[SocketAddr]) -> (Haproxy, SocketAddr) {
    let port = free_port();
    let mut config = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  timeout tunnel 60s\n\
         frontend spout\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
         backend nodes\n  balance roundrobin\n  option httpchk GET /healthz\n"
    );
    for (i, node) in nodes.iter().enumerate() {
        config.push_str(&format!(
            "  server n{i} {node} check inter 500ms fall 1 rise 1\n"
        ));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (Haproxy::start(&config, &[addr]), addr)
}

/// Two spout nodes on one 3-master Redis Cluster, each with a native listener and one bound to a compatible API
/// (as `super::start_compat` starts one node): how a compatible API's tests run again on several nodes. Both
/// nodes are up and reach Redis when this returns.
pub struct CompatCluster {
    /// Dropped after the nodes (fields drop in order).
    pub nodes: [Server; 2],
    pub redis: RedisCluster,
}

impl CompatCluster {
    pub fn start(api: &str, extra: &[&str]) -> CompatCluster {
        let redis = RedisCluster::start(3, 0);
        let bound = format!("127.0.0.1:0={api}");
        let mut args = vec!["--listen", "127.0.0.1:0", "--listen", &bound];
        args.extend_from_slice(extra);
        let first = start_node(&redis, &args);
        let second = start_node(&redis, &args);
        CompatCluster {
            nodes: [first, second],
            redis,
        }
    }
}
