//! The `spout` binary: configuration, logging, machine limits, listeners, workers, signals.
//!
//! Startup may fail loudly (a bad option names its key and exits 2; a port in use exits 1). After start, the
//! main thread only waits for signals: SIGHUP reloads (`spout::reload`), SIGTERM/SIGINT ask every worker to drain,
//! and once they are joined spout exits 0.
//!
//! `spout doctor ...` is dispatched to `spout::doctor` before anything else.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use mio::{Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use spout::auth::Auth;
use spout::broker::local::LocalBroker;
use spout::broker::redis::{RedisBroker, Settings};
use spout::broker::Broker;
use spout::bus::{Bus, WorkerMsg};
use spout::channels::{ChannelTable, TableLimits};
use spout::config::{AuthMode, BrokerChoice, Config, Listen};
use spout::conn::body_budget::BodyBudget;
use spout::metrics::{Figures, Registry};
use spout::peers::Peers;
use spout::reload::{self, Live};
use spout::status::{self, Status};
use spout::worker::{Shared, Worker, WAKER};
use spout::{logger, net};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the resulting connection ceiling.
fn connection_ceiling(config: &Config) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("cannot raise the file descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let by_descriptors = limit
        .saturating_sub(net::reserved_descriptors(
            config.workers.get(),
            config.listen.len(),
        ))
        .max(1);
    let ceiling = match config.max_connections {
        Some(max) if (max as u64) <= by_descriptors => max,
        Some(max) => {
            log::warn!("--max-connections {max} is above what {limit} file descriptors allow; using {by_descriptors}");
            by_descriptors as usize
        }
        None => by_descriptors as usize,
    };
    log::info!("file descriptor limit {limit}: up to {ceiling} connections");
    ceiling
}

/// Logs the kernel settings that cap a large deployment.
fn log_kernel_limits() {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    if let Some(somaxconn) = read("/proc/sys/net/core/somaxconn") {
        let capped = somaxconn.parse::<i32>().is_ok_and(|v| v < net::BACKLOG);
        log::info!(
            "net.core.somaxconn = {somaxconn}{}",
            if capped {
                " (caps the accept backlog)"
            } else {
                ""
            }
        );
    }
    if let Some(range) = read("/proc/sys/net/ipv4/ip_local_port_range") {
        log::debug!("net.ipv4.ip_local_port_range = {range} (limits connections per client address, not the server)");
    }
}

/// `--node-name`, else the host name and the first listener's port (`web1:8080`).
fn node_name(config: &Config, bound: &[Listen]) -> String {
    if let Some(name) = &config.node_name {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "spout".into());
    match bound.first() {
        Some(listen) => format!("{host}:{}", listen.addr.port()),
        None => host,
    }
}

fn run(config: Config, mut auth: Auth) -> Result<(), String> {
    let max_connections = connection_ceiling(&config);
    log_kernel_limits();
    let workers = config.workers.get();
    let (listeners, bound) = net::bind_all(&config.listen, workers).map_err(|e| e.to_string())?;

    let mut polls = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        wakers.push(Arc::new(
            Waker::new(poll.registry(), WAKER)
                .map_err(|e| format!("cannot create a waker: {e}"))?,
        ));
        polls.push(poll);
    }
    let (bus, inboxes) = Bus::new(wakers, config.inbox_capacity);
    let bus = Arc::new(bus);
    let limits = TableLimits {
        history: config.history,
        history_ttl: config.history_ttl,
        history_max_bytes: config.history_max_bytes,
        max_channels: config.max_channels,
        max_channels_per_client: config.max_channels_per_ip,
        workers,
    };
    let table = Arc::new(ChannelTable::new(limits, SystemTime::now()));
    let local = Arc::new(LocalBroker::new(Arc::clone(&table), Arc::clone(&bus)));
    auth.start_hook(&config, Arc::clone(&bus))
        .map_err(|e| format!("cannot start the auth hook's threads: {e}"))?;
    let broker: Arc<dyn Broker> = match &config.broker {
        BrokerChoice::Local => Arc::clone(&local) as Arc<dyn Broker>,
        BrokerChoice::Redis(seeds) => {
            let settings = Settings {
                seeds: seeds.clone(),
                prefix: config.broker_prefix.clone(),
                timeout: config.broker_timeout,
                node_ttl: config.broker_node_ttl,
                wait_replicas: config.broker_wait_replicas,
                history: config.history,
                history_ttl: config.history_ttl,
                node_name: node_name(&config, &bound),
            };
            log::info!(
                "node {} shares its native channels through Redis at {}",
                settings.node_name,
                seeds.join(",")
            );
            Arc::new(
                RedisBroker::start(settings, Arc::clone(&table), Arc::clone(&bus))
                    .map_err(|e| format!("cannot start the broker thread: {e}"))?,
            )
        }
    };
    if config.publish_key.is_none() && config.auth == AuthMode::None && !config.is_loopback_only() {
        log::warn!(
            "publishing is open to anyone who can reach a non-loopback listener: set --publish-key"
        );
    }
    let mut current = config.clone();
    let shared = Arc::new(Shared {
        apps: spout::api::Apps::default(),
        live: Live::new(&config),
        bodies: Arc::new(BodyBudget::new(config.max_pending_body_bytes)),
        peers: Peers::new(config.max_connections_per_ip),
        config,
        auth,
        table,
        broker,
        local,
        registry: Registry::new(workers),
        status: Status::default(),
        draining: AtomicBool::new(false),
        open_connections: AtomicUsize::new(0),
        open_streams: AtomicUsize::new(0),
        max_connections,
    });

    let mut threads = Vec::with_capacity(workers);
    for (id, ((poll, listeners), inbox)) in
        polls.into_iter().zip(listeners).zip(inboxes).enumerate()
    {
        let worker = Worker::new(id, poll, listeners, inbox, Arc::clone(&shared))
            .map_err(|e| format!("worker {id}: {e}"))?;
        let thread = std::thread::Builder::new()
            .name(format!("spout-worker-{id}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        threads.push(thread);
    }

    if shared.config.status {
        let sampler = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("spout-status".into())
            .spawn(move || {
                let shared = &*sampler;
                status::sample_every_second(
                    || {
                        let broker = shared.broker.figures();
                        let draining = shared.draining.load(Ordering::Relaxed);
                        Figures::read(&shared.registry, &shared.table, draining, broker)
                    },
                    |frame| shared.status.publish(frame, &shared.table, &shared.local),
                    || shared.draining.load(Ordering::Relaxed),
                );
            })
            .map_err(|e| format!("cannot start the status thread: {e}"))?;
    }

    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    {
        let mut stdout = std::io::stdout().lock();
        for listen in &bound {
            let proxy = if listen.proxy { ", PROXY protocol" } else { "" };
            let _ = writeln!(
                stdout,
                "listening on {} ({}{proxy})",
                listen.addr, listen.api
            );
        }
        let _ = stdout.flush();
    }
    log::info!(
        "spout {} started with {workers} workers",
        env!("CARGO_PKG_VERSION")
    );

    for signal in signals.forever() {
        if signal == SIGHUP {
            reload::on_hangup(&mut current, &shared.live);
            continue;
        }
        log::info!(
            "signal {signal}: draining within {:?}",
            shared.config.drain_timeout
        );
        break;
    }
    shared.draining.store(true, Ordering::Relaxed);
    bus.broadcast_control(|| WorkerMsg::Drain);
    for thread in threads {
        if thread.join().is_err() {
            return Err("a worker panicked".to_string());
        }
    }
    // What the streams that ended asked of the broker (a compatible API's leave) still reaches Redis.
    shared.broker.settle(shared.config.broker_timeout);
    log::info!("drained; exiting");
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "doctor")
    {
        return spout::doctor::main(std::env::args_os().skip(2));
    }
    let config = match Config::load() {
        Ok((config, true)) => {
            print!("{}", config.to_toml());
            return ExitCode::SUCCESS;
        }
        Ok((config, false)) => config,
        Err(e) => {
            eprintln!("spout: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logger::init(config.log_level, config.log_format) {
        eprintln!("spout: cannot start logging: {e}");
    }
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    // Key files are read here, not in `Config::load` (which reads no file); a key that cannot be used is a bad
    // option, as a bad value is.
    let auth = match Auth::load(&config) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("spout: {e}");
            return ExitCode::from(2);
        }
    };
    if auth.checks_tokens() {
        log::info!(
            "--auth jwt: tokens checked with {} keys; {} public channel patterns",
            auth.key_count(),
            config.public_channels.len()
        );
    }
    if let Some(url) = &config.auth_hook {
        log::info!("--auth hook: each subscribe is checked by {url}");
    }
    match run(config, auth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: as a log line where the logger writes errors (to stderr, in the chosen format), else plain.
            if log::log_enabled!(log::Level::Error) {
                log::error!("{e}");
            } else {
                eprintln!("spout: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
