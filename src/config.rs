//! Configuration: command line and environment → one validated, immutable
//! [`Config`].
//!
//! Owns the option names, their `DEFAULT_*` values and limits, the parsing of
//! durations and sizes ([`parse_duration`], [`parse_size`]) and every check on
//! option values. It must not open sockets, read files or log: `main` calls
//! [`Config::load`] before the logger exists and reports the error itself.
//!
//! Precedence, highest first:
//! 1. the command-line flag (`--max-body 2MiB`);
//! 2. the environment variable `SPOUT_<FLAG>`: the flag without its dashes,
//!    upper-cased, `-` → `_` (`SPOUT_MAX_BODY=2MiB`); `SPOUT_LISTEN` takes
//!    a comma-separated list;
//! 3. the `DEFAULT_*` const of the field.
//!
//! There is no config file yet.
//!
//! Two layers: [`Args`] is what clap parses, raw strings for anything that
//! needs more than clap's parsers, and [`Config::from_args`] turns them into
//! typed fields (`Duration`, `usize`, `NonZeroUsize`, enums). Doing the typed
//! parsing here rather than in clap value parsers is what lets every failure
//! name both spellings of the key at fault, as
//! `invalid --max-body (SPOUT_MAX_BODY): ...`, whichever one the value came
//! from.
//!
//! Invariants: a `Config` that exists has passed [`Config::from_args`] (or is
//! [`Config::default`]), so workers never re-check it; it is immutable after
//! startup, and workers hold an `Arc<Config>`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser};
use log::LevelFilter;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Where the server listens when no `--listen` is given: `127.0.0.1:8080`
/// speaking the native API. Loopback, so that a server started without
/// thought does not accept publishes from the network.
pub const DEFAULT_LISTEN: Listen = Listen {
    addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
    api: Api::Native,
};

/// Upper bound of `--workers`, a count of threads (each with its own event
/// loop and listener). The default depends on the machine, so it is a
/// function rather than a const: see [`default_workers`].
pub const MAX_WORKERS: usize = 1024;

/// Events retained per channel for `Last-Event-ID` replay, a count;
/// 0 keeps no history.
pub const DEFAULT_HISTORY: usize = 1000;
/// Upper bound of `--history`, a count per channel.
pub const MAX_HISTORY: usize = 1_000_000;

/// How long a retained event stays replayable, a duration (1 hour).
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);

/// Bytes of event payload retained across all channels' history together
/// (256 MiB); the oldest events go first when it is exceeded.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 256 * MIB;

/// Interval between SSE heartbeat comments on an otherwise quiet stream
/// (15 s), short enough that proxies with a 30–60 s idle timeout keep it open.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Lower bound of `--heartbeat` (100 ms): below it heartbeats cost more than
/// the events they guard.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// Reconnection delay hinted to SSE clients with `retry:` when a stream
/// opens (3 s, the EventSource default in most browsers).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// Largest accepted request body, in bytes (1 MiB); larger publishes get 413.
pub const DEFAULT_MAX_BODY: usize = MIB;

/// Largest accepted request head (request line and headers), in bytes
/// (8 KiB, as most proxies); larger heads get 431.
pub const DEFAULT_MAX_HEAD: usize = 8 * KIB;
/// Lower bound of `--max-head`, in bytes: a browser's ordinary head with
/// cookies needs about this much.
pub const MIN_MAX_HEAD: usize = KIB;
/// Upper bound of `--max-head`, in bytes: the head is buffered whole per
/// connection before it is parsed.
pub const MAX_MAX_HEAD: usize = MIB;

/// Most header fields accepted in one request head, a count.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Upper bound of `--max-headers`, a count: the parser's header array lives
/// on the stack.
pub const MAX_MAX_HEADERS: usize = 128;

/// Output bytes queued for one subscriber before it is closed as too slow
/// (1 MiB). Must be at least `--max-body`, or one largest event would close
/// every subscriber that gets it.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = MIB;

/// Most open client connections; `None` derives the limit from the process's
/// file-descriptor limit at startup.
pub const DEFAULT_MAX_CONNECTIONS: Option<usize> = None;

/// Most channels that may exist at once, a count; publishing or subscribing
/// to a new channel beyond it is refused.
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;

/// Most channels one subscribe request (and so one connection) may name.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;

/// Time allowed to receive a complete request head, or between two reads
/// of a body in progress (10 s); slower clients are closed.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an idle keep-alive connection may wait for its next request (75 s,
/// as nginx).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// Time given to open connections to finish on shutdown before they are
/// closed (10 s); 0 closes them at once.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Events queued in one worker's inbox before publishing answers 503 with
/// `Retry-After`, a count.
pub const DEFAULT_INBOX_CAPACITY: usize = 65_536;

/// Shared secret publishers must present; `None` lets anyone who can reach
/// a listener publish.
pub const DEFAULT_PUBLISH_KEY: Option<&str> = None;
/// Publish keys shorter than this, in characters, are accepted but reported
/// by [`Config::warnings`].
pub const MIN_PUBLISH_KEY_LEN: usize = 16;

/// Allowed CORS origins: any (`*`).
pub const DEFAULT_CORS_ORIGIN: CorsOrigin = CorsOrigin::Any;

/// Most verbose log level written.
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Info;

/// Log line format: plain text.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// Every API name `--listen` knows, available in this build or not.
pub const KNOWN_APIS: &[&str] = &[
    "native", "pipely", "node-sse", "flychat", "ws-push", "keker",
];

/// Default worker count: one per available core, 1 if that is unknown, at
/// most [`MAX_WORKERS`].
pub fn default_workers() -> NonZeroUsize {
    let n = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(n.min(MAX_WORKERS)).unwrap_or(NonZeroUsize::MIN)
}

/// spout: a pub/sub push server (Server-Sent Events).
///
/// Every option can also be set with an environment variable: SPOUT_ and the
/// flag in capitals, e.g. SPOUT_MAX_BODY=2MiB for --max-body. The command line
/// wins over the environment.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "spout",
    version,
    after_help = "Durations take a unit: 500ms, 15s, 2m, 1h, 1d.\n\
                  Sizes are bytes, or take a suffix: KiB, MiB, GiB (1024-based) \
                  or kB, MB, GB (1000-based), e.g. 1MiB."
)]
pub struct Args {
    /// Address to listen on, and the API it speaks: IP:PORT[=API]; repeatable,
    /// comma-separated in the environment. Only API 'native' is available
    /// [default: 127.0.0.1:8080=native]
    #[arg(
        long,
        env = "SPOUT_LISTEN",
        value_name = "ADDR[=API]",
        action = ArgAction::Append,
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// Worker threads, each with its own event loop, 1 to 1024
    /// [default: number of CPUs]
    #[arg(long, env = "SPOUT_WORKERS", value_name = "N")]
    pub workers: Option<String>,

    /// Events retained per channel for Last-Event-ID replay; 0 keeps no
    /// history [default: 1000]
    #[arg(long, env = "SPOUT_HISTORY", value_name = "N")]
    pub history: Option<String>,

    /// How long a retained event stays replayable [default: 1h]
    #[arg(long, env = "SPOUT_HISTORY_TTL", value_name = "DURATION")]
    pub history_ttl: Option<String>,

    /// Payload bytes retained in history, all channels together; the oldest
    /// events go first [default: 256MiB]
    #[arg(long, env = "SPOUT_HISTORY_MAX_BYTES", value_name = "SIZE")]
    pub history_max_bytes: Option<String>,

    /// Interval of heartbeat comments on a quiet SSE stream, at least 100ms
    /// [default: 15s]
    #[arg(long, env = "SPOUT_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<String>,

    /// Reconnection delay hinted to SSE clients (retry:) when a stream opens
    /// [default: 3s]
    #[arg(long, env = "SPOUT_RETRY", value_name = "DURATION")]
    pub retry: Option<String>,

    /// Largest request body accepted; larger publishes get 413 [default: 1MiB]
    #[arg(long, env = "SPOUT_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,

    /// Largest request head (request line and headers) accepted, 1KiB to
    /// 1MiB; larger get 431 [default: 8KiB]
    #[arg(long, env = "SPOUT_MAX_HEAD", value_name = "SIZE")]
    pub max_head: Option<String>,

    /// Most header fields in one request, 1 to 128 [default: 64]
    #[arg(long, env = "SPOUT_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<String>,

    /// Output queued for one subscriber before it is closed as too slow; at
    /// least --max-body [default: 1MiB]
    #[arg(long, env = "SPOUT_MAX_QUEUED_BYTES", value_name = "SIZE")]
    pub max_queued_bytes: Option<String>,

    /// Most open client connections; further ones are answered 503
    /// [default: derived from the file-descriptor limit]
    #[arg(long, env = "SPOUT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,

    /// Most channels existing at once [default: 100000]
    #[arg(long, env = "SPOUT_MAX_CHANNELS", value_name = "N")]
    pub max_channels: Option<String>,

    /// Most channels one subscribe request (connection) may name
    /// [default: 64]
    #[arg(long, env = "SPOUT_MAX_SUBSCRIPTIONS", value_name = "N")]
    pub max_subscriptions: Option<String>,

    /// Time to receive a complete request head, or between reads of a body
    /// [default: 10s]
    #[arg(long, env = "SPOUT_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// Time an idle keep-alive connection may wait for its next request
    /// [default: 75s]
    #[arg(long, env = "SPOUT_KEEPALIVE_TIMEOUT", value_name = "DURATION")]
    pub keepalive_timeout: Option<String>,

    /// Time open connections get to finish on shutdown; 0s closes them at
    /// once [default: 10s]
    #[arg(long, env = "SPOUT_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,

    /// Events queued per worker before publishing answers 503
    /// [default: 65536]
    #[arg(long, env = "SPOUT_INBOX_CAPACITY", value_name = "N")]
    pub inbox_capacity: Option<String>,

    /// Secret publishers must present; without it anyone who can reach a
    /// listener may publish [default: none]
    #[arg(
        long,
        env = "SPOUT_PUBLISH_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub publish_key: Option<String>,

    /// Allowed CORS origins: '*' for any, 'none' or empty to send no CORS
    /// headers, or a comma-separated list of origins, each scheme://host or
    /// scheme://host:port
    /// [default: *]
    #[arg(long, env = "SPOUT_CORS_ORIGIN", value_name = "ORIGINS")]
    pub cors_origin: Option<String>,

    /// Most verbose log level: off, error, warn, info, debug or trace
    /// [default: info]
    #[arg(long, env = "SPOUT_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format: text or json (one object per line) [default: text]
    #[arg(long, env = "SPOUT_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The public API a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// spout's own API.
    Native,
}

impl Api {
    /// The name used in `--listen ADDR=NAME`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::Native => "native",
        }
    }

    /// Looks up an API by its `--listen` name (exact, lower case).
    fn from_name(name: &str) -> Result<Api, String> {
        match name {
            "native" => Ok(Api::Native),
            _ if KNOWN_APIS.contains(&name) => {
                Err(format!("API '{name}' is not available in this build"))
            }
            _ => Err(format!(
                "unknown API '{name}'; known APIs: {}",
                KNOWN_APIS.join(", ")
            )),
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One listening socket and the API spoken on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub api: Api,
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.addr, self.api)
    }
}

/// Which origins get CORS headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins, each `scheme://host[:port]`, lower-cased.
    List(Vec<String>),
    /// No CORS headers at all.
    Disabled,
}

/// Format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-23T16:20:01.123Z INFO  target: message`.
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

impl LogFormat {
    /// The name used by `--log-format`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key at fault in both spellings, e.g. `--max-body (SPOUT_MAX_BODY)`.
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The validated server configuration; see the module doc for precedence.
/// Field docs give only the type's sense; meaning, unit and default are on
/// the matching `DEFAULT_*` const.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Listening sockets, never empty, no exact duplicate with a fixed port.
    pub listen: Vec<Listen>,
    /// See [`default_workers`]; at most [`MAX_WORKERS`].
    pub workers: NonZeroUsize,
    /// See [`DEFAULT_HISTORY`].
    pub history: usize,
    /// See [`DEFAULT_HISTORY_TTL`]; non-zero.
    pub history_ttl: Duration,
    /// See [`DEFAULT_HISTORY_MAX_BYTES`].
    pub history_max_bytes: usize,
    /// See [`DEFAULT_HEARTBEAT`]; at least [`MIN_HEARTBEAT`].
    pub heartbeat: Duration,
    /// See [`DEFAULT_RETRY`]; fits the SSE `retry:` field in milliseconds.
    pub retry: Duration,
    /// See [`DEFAULT_MAX_BODY`]; at least 1.
    pub max_body: usize,
    /// See [`DEFAULT_MAX_HEAD`]; within [`MIN_MAX_HEAD`]..=[`MAX_MAX_HEAD`].
    pub max_head: usize,
    /// See [`DEFAULT_MAX_HEADERS`]; within 1..=[`MAX_MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`DEFAULT_MAX_QUEUED_BYTES`]; at least `max_body`.
    pub max_queued_bytes: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`]; at least 1 when set.
    pub max_connections: Option<usize>,
    /// See [`DEFAULT_MAX_CHANNELS`]; at least 1.
    pub max_channels: usize,
    /// See [`DEFAULT_MAX_SUBSCRIPTIONS`]; at least 1.
    pub max_subscriptions: usize,
    /// See [`DEFAULT_REQUEST_TIMEOUT`]; non-zero.
    pub request_timeout: Duration,
    /// See [`DEFAULT_KEEPALIVE_TIMEOUT`]; non-zero.
    pub keepalive_timeout: Duration,
    /// See [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
    /// See [`DEFAULT_INBOX_CAPACITY`]; at least 1.
    pub inbox_capacity: usize,
    /// See [`DEFAULT_PUBLISH_KEY`]; non-empty, printable, no whitespace.
    /// Redacted in `Debug`.
    pub publish_key: Option<String>,
    /// See [`DEFAULT_CORS_ORIGIN`].
    pub cors_origin: CorsOrigin,
    /// See [`DEFAULT_LOG_LEVEL`].
    pub log_level: LevelFilter,
    /// See [`DEFAULT_LOG_FORMAT`].
    pub log_format: LogFormat,
}

impl Default for Config {
    /// Every field at its default, as a server started without options.
    fn default() -> Config {
        Config {
            listen: vec![DEFAULT_LISTEN],
            workers: default_workers(),
            history: DEFAULT_HISTORY,
            history_ttl: DEFAULT_HISTORY_TTL,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            heartbeat: DEFAULT_HEARTBEAT,
            retry: DEFAULT_RETRY,
            max_body: DEFAULT_MAX_BODY,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            publish_key: DEFAULT_PUBLISH_KEY.map(String::from),
            cors_origin: DEFAULT_CORS_ORIGIN,
            log_level: DEFAULT_LOG_LEVEL,
            log_format: DEFAULT_LOG_FORMAT,
        }
    }
}

/// Hand-written so that the publish key never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("workers", &self.workers)
            .field("history", &self.history)
            .field("history_ttl", &self.history_ttl)
            .field("history_max_bytes", &self.history_max_bytes)
            .field("heartbeat", &self.heartbeat)
            .field("retry", &self.retry)
            .field("max_body", &self.max_body)
            .field("max_head", &self.max_head)
            .field("max_headers", &self.max_headers)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_channels", &self.max_channels)
            .field("max_subscriptions", &self.max_subscriptions)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("inbox_capacity", &self.inbox_capacity)
            .field(
                "publish_key",
                &self.publish_key.as_ref().map(|_| "<redacted>"),
            )
            .field("cors_origin", &self.cors_origin)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    /// Parses the process's command line and environment.
    ///
    /// `--help` and `--version` print and exit the process, as clap does;
    /// every other problem comes back as a [`ConfigError`].
    pub fn load() -> Result<Config, ConfigError> {
        match Args::try_parse() {
            Ok(args) => Config::from_args(args),
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                e.exit()
            }
            Err(e) => Err(clap_error(&e)),
        }
    }

    /// Validates raw arguments into a `Config`; absent values take their
    /// `DEFAULT_*`.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let max_body = size_field("--max-body", args.max_body.as_deref(), DEFAULT_MAX_BODY)?;
        check_min_size("--max-body", max_body, 1)?;

        let max_queued_bytes = size_field(
            "--max-queued-bytes",
            args.max_queued_bytes.as_deref(),
            DEFAULT_MAX_QUEUED_BYTES,
        )?;
        if max_queued_bytes < max_body {
            return Err(error(
                "--max-queued-bytes",
                format!(
                    "{} is less than --max-body {}: one largest event would close \
                     every subscriber it is sent to",
                    show_size(max_queued_bytes),
                    show_size(max_body)
                ),
            ));
        }

        let max_head = size_field("--max-head", args.max_head.as_deref(), DEFAULT_MAX_HEAD)?;
        check_size_range("--max-head", max_head, MIN_MAX_HEAD, MAX_MAX_HEAD)?;

        let workers = match args.workers.as_deref() {
            None => default_workers(),
            Some(raw) => {
                let n = parse_field("--workers", raw, parse_count)?;
                check_count_range("--workers", n, 1, MAX_WORKERS)?;
                NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
            }
        };

        let history = count_field("--history", args.history.as_deref(), DEFAULT_HISTORY)?;
        check_count_range("--history", history, 0, MAX_HISTORY)?;

        let history_ttl = duration_field(
            "--history-ttl",
            args.history_ttl.as_deref(),
            DEFAULT_HISTORY_TTL,
        )?;
        check_non_zero(
            "--history-ttl",
            history_ttl,
            "; use --history 0 to keep no history",
        )?;

        let heartbeat =
            duration_field("--heartbeat", args.heartbeat.as_deref(), DEFAULT_HEARTBEAT)?;
        if heartbeat < MIN_HEARTBEAT {
            return Err(error(
                "--heartbeat",
                format!("{heartbeat:?} is below the minimum of {MIN_HEARTBEAT:?}"),
            ));
        }

        let retry = duration_field("--retry", args.retry.as_deref(), DEFAULT_RETRY)?;
        // Browsers parse the `retry:` field as a 32-bit count of milliseconds
        // at most; a larger hint would be ignored or wrap.
        if retry.as_millis() > u128::from(u32::MAX) {
            return Err(error(
                "--retry",
                format!(
                    "{retry:?} is too long for the SSE retry field (at most {} ms)",
                    u32::MAX
                ),
            ));
        }

        let max_headers = count_field(
            "--max-headers",
            args.max_headers.as_deref(),
            DEFAULT_MAX_HEADERS,
        )?;
        check_count_range("--max-headers", max_headers, 1, MAX_MAX_HEADERS)?;

        let max_connections = match args.max_connections.as_deref() {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(raw) => {
                let n = parse_field("--max-connections", raw, parse_count)?;
                check_count_range("--max-connections", n, 1, usize::MAX)?;
                Some(n)
            }
        };

        let max_channels = count_field(
            "--max-channels",
            args.max_channels.as_deref(),
            DEFAULT_MAX_CHANNELS,
        )?;
        check_count_range("--max-channels", max_channels, 1, usize::MAX)?;

        let max_subscriptions = count_field(
            "--max-subscriptions",
            args.max_subscriptions.as_deref(),
            DEFAULT_MAX_SUBSCRIPTIONS,
        )?;
        check_count_range("--max-subscriptions", max_subscriptions, 1, usize::MAX)?;

        let request_timeout = duration_field(
            "--request-timeout",
            args.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        check_non_zero("--request-timeout", request_timeout, "")?;

        let keepalive_timeout = duration_field(
            "--keepalive-timeout",
            args.keepalive_timeout.as_deref(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        )?;
        check_non_zero("--keepalive-timeout", keepalive_timeout, "")?;

        let inbox_capacity = count_field(
            "--inbox-capacity",
            args.inbox_capacity.as_deref(),
            DEFAULT_INBOX_CAPACITY,
        )?;
        check_count_range("--inbox-capacity", inbox_capacity, 1, usize::MAX)?;

        let publish_key = match args.publish_key {
            None => DEFAULT_PUBLISH_KEY.map(String::from),
            Some(raw) => Some(parse_field("--publish-key", &raw, parse_publish_key)?),
        };

        Ok(Config {
            listen: parse_listen_list("--listen", &args.listen)?,
            workers,
            history,
            history_ttl,
            history_max_bytes: size_field(
                "--history-max-bytes",
                args.history_max_bytes.as_deref(),
                DEFAULT_HISTORY_MAX_BYTES,
            )?,
            heartbeat,
            retry,
            max_body,
            max_head,
            max_headers,
            max_queued_bytes,
            max_connections,
            max_channels,
            max_subscriptions,
            request_timeout,
            keepalive_timeout,
            drain_timeout: duration_field(
                "--drain-timeout",
                args.drain_timeout.as_deref(),
                DEFAULT_DRAIN_TIMEOUT,
            )?,
            inbox_capacity,
            publish_key,
            cors_origin: match args.cors_origin.as_deref() {
                None => DEFAULT_CORS_ORIGIN,
                Some(raw) => parse_field("--cors-origin", raw, parse_cors_origin)?,
            },
            log_level: match args.log_level.as_deref() {
                None => DEFAULT_LOG_LEVEL,
                Some(raw) => parse_field("--log-level", raw, parse_log_level)?,
            },
            log_format: match args.log_format.as_deref() {
                None => DEFAULT_LOG_FORMAT,
                Some(raw) => parse_field("--log-format", raw, parse_log_format)?,
            },
        })
    }

    /// True when every listener is on a loopback address, so only local
    /// processes can reach the server; `main` warns when publishing without
    /// a key is open beyond that.
    pub fn is_loopback_only(&self) -> bool {
        self.listen
            .iter()
            .all(|l| l.addr.ip().to_canonical().is_loopback())
    }

    /// Values that are valid but that an operator should look at, one
    /// sentence each, for `main` to log at `warn` once the logger is up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(key) = &self.publish_key {
            let len = key.chars().count();
            if len < MIN_PUBLISH_KEY_LEN {
                out.push(format!(
                    "--publish-key is only {len} characters long; use at least \
                     {MIN_PUBLISH_KEY_LEN} random characters"
                ));
            }
        }
        out
    }
}

/// Parses a duration: a whole number followed by a unit, one of `ms`, `s`,
/// `m`, `h`, `d` (`500ms`, `15s`, `1h`). A bare number is refused, since
/// whether `30` meant seconds or milliseconds cannot be known.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "expected a duration such as 500ms, 15s, 2m, 1h or 1d, got '{s}'"
        ));
    }
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 60 * 60 * 1000,
        "d" => 24 * 60 * 60 * 1000,
        "" => {
            return Err(format!(
                "'{s}' has no unit; write e.g. {s}s or {s}ms (units: ms, s, m, h, d)"
            ))
        }
        _ if unit.starts_with('.') => {
            return Err(format!(
                "'{s}': fractions are not accepted; use a smaller unit, e.g. 1500ms"
            ))
        }
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit '{unit}'; use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Parses a size in bytes: a whole number, optionally followed by a suffix:
/// `B` (bytes), `KiB`, `MiB`, `GiB` (powers of 1024) or `k`/`kB`, `M`/`MB`,
/// `G`/`GB` (powers of 1000). Suffixes are case-sensitive so that `MB` and
/// `Mb` are never confused; `K` alone is refused as ambiguous.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, suffix) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "expected a size such as 65536, 64KiB, 1MiB or 1MB, got '{s}'"
        ));
    }
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is too large"))?;
    let multiplier: usize = match suffix.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "k" | "kB" => 1000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "'{s}' has an unknown suffix '{other}'; use B, KiB, MiB, GiB \
                 (1024-based) or kB, MB, GB (1000-based)"
            ))
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Splits `s` into its leading ASCII digits and the rest.
fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses a count: a whole number without unit.
fn parse_count(s: &str) -> Result<usize, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got '{s}'"));
    }
    t.parse().map_err(|_| format!("'{t}' is too large"))
}

/// Parses one `--listen` value, `IP:PORT[=API]`.
fn parse_listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty address; expected IP:PORT[=API], e.g. 127.0.0.1:8080".into());
    }
    let (addr, api) = match s.split_once('=') {
        Some((addr, api)) => (addr.trim(), Api::from_name(api.trim())?),
        None => (s, Api::Native),
    };
    let addr = addr.parse::<SocketAddr>().map_err(|_| {
        format!(
            "'{addr}' is not IP:PORT (e.g. 0.0.0.0:8080 or [::1]:8080); \
             host names are not resolved"
        )
    })?;
    Ok(Listen { addr, api })
}

/// Parses every `--listen` value; none gives [`DEFAULT_LISTEN`].
fn parse_listen_list(flag: &'static str, raw: &[String]) -> Result<Vec<Listen>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![DEFAULT_LISTEN]);
    }
    let mut out: Vec<Listen> = Vec::with_capacity(raw.len());
    for item in raw {
        let listen = parse_field(flag, item, parse_listen)?;
        // Port 0 asks the kernel for a free port, so repeats do not collide.
        if listen.addr.port() != 0 && out.iter().any(|l| l.addr == listen.addr) {
            return Err(error(
                flag,
                format!("{} is given more than once", listen.addr),
            ));
        }
        out.push(listen);
    }
    Ok(out)
}

/// Checks a publish key: non-empty, and only printable non-space ASCII, so
/// it survives headers and query strings unchanged.
fn parse_publish_key(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty; leave it unset to publish without a key".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {c:?}; only printable ASCII without spaces is allowed"
        ));
    }
    Ok(s.to_owned())
}

/// Parses `--cors-origin`: `*`, `none` or empty, or a comma-separated list.
fn parse_cors_origin(s: &str) -> Result<CorsOrigin, String> {
    let t = s.trim();
    if t == "*" {
        return Ok(CorsOrigin::Any);
    }
    if t.is_empty() || t.eq_ignore_ascii_case("none") {
        return Ok(CorsOrigin::Disabled);
    }
    t.split(',')
        .map(|item| parse_origin(item.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(CorsOrigin::List)
}

/// Checks one origin, `scheme://host[:port]` as browsers send it in
/// `Origin` (RFC 6454 §6.1), and lower-cases it so it compares equal to that.
fn parse_origin(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty origin in the list (a stray comma?)".into());
    }
    if s == "*" {
        return Err("'*' cannot be combined with other origins".into());
    }
    let lower = s.to_ascii_lowercase();
    let Some(authority) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return Err(format!("origin '{s}' must start with http:// or https://"));
    };
    if authority.is_empty() {
        return Err(format!("origin '{s}' has no host"));
    }
    if let Some(c) = authority
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "origin '{s}' may hold only scheme://host[:port], found {c:?} after the host"
        ));
    }
    // The port follows the last ':' outside an IPv6 literal's brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    if let Some(colon) = authority[host_end..].rfind(':') {
        let (host, port) = authority.split_at(host_end + colon);
        let port = &port[1..];
        if host.is_empty() || port.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("origin '{s}' has a bad host or port"));
        }
    }
    Ok(lower)
}

fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    s.trim()
        .parse::<LevelFilter>()
        .map_err(|_| format!("unknown level '{s}'; use off, error, warn, info, debug or trace"))
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown format '{s}'; use text or json")),
    }
}

/// The environment variable that sets `flag`: `--max-body` → `SPOUT_MAX_BODY`.
fn env_name(flag: &str) -> String {
    let name = flag
        .trim_start_matches('-')
        .to_ascii_uppercase()
        .replace('-', "_");
    format!("SPOUT_{name}")
}

/// A `ConfigError` naming `flag` and its environment variable.
fn error(flag: &str, reason: String) -> ConfigError {
    ConfigError {
        key: format!("{flag} ({})", env_name(flag)),
        reason,
    }
}

fn parse_field<T>(
    flag: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(raw).map_err(|reason| error(flag, reason))
}

fn size_field(flag: &str, raw: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_size))
}

fn count_field(flag: &str, raw: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_count))
}

fn duration_field(
    flag: &str,
    raw: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_duration))
}

fn check_count_range(flag: &str, n: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if n < min {
        return Err(error(flag, format!("{n} is below the minimum of {min}")));
    }
    if n > max {
        return Err(error(flag, format!("{n} is above the maximum of {max}")));
    }
    Ok(())
}

fn check_min_size(flag: &str, n: usize, min: usize) -> Result<(), ConfigError> {
    check_size_range(flag, n, min, usize::MAX)
}

fn check_size_range(flag: &str, n: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if n < min {
        return Err(error(
            flag,
            format!(
                "{} is below the minimum of {}",
                show_size(n),
                show_size(min)
            ),
        ));
    }
    if n > max {
        return Err(error(
            flag,
            format!(
                "{} is above the maximum of {}",
                show_size(n),
                show_size(max)
            ),
        ));
    }
    Ok(())
}

fn check_non_zero(flag: &str, d: Duration, hint: &str) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(error(flag, format!("must be longer than zero{hint}")));
    }
    Ok(())
}

/// A size as an operator would write it: `1MiB` when exact, else bytes.
fn show_size(n: usize) -> String {
    for (unit, suffix) in [(1 << 30, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n % unit == 0 {
            return format!("{}{suffix}", n / unit);
        }
    }
    if n == 1 {
        return "1 byte".to_owned();
    }
    format!("{n} bytes")
}

/// Turns a clap parse failure into a `ConfigError` naming the argument.
fn clap_error(e: &clap::Error) -> ConfigError {
    let key = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => "command line".to_owned(),
    };
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .trim();
    ConfigError {
        key,
        reason: format!("{first}; see spout --help"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use std::net::{IpAddr, Ipv6Addr};

    /// Parses `argv` as the real command line would, but with every `env`
    /// binding removed, so tests do not depend on (or race over) the
    /// process environment.
    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let cmd = Args::command().mut_args(|a| a.env(None));
        let matches = cmd.try_get_matches_from(argv)?;
        Args::from_arg_matches(&matches)
    }

    fn config(argv: &[&str]) -> Result<Config, ConfigError> {
        let mut full = vec!["spout"];
        full.extend_from_slice(argv);
        Config::from_args(parse(&full).expect("clap accepts the arguments"))
    }

    #[test]
    fn parse_duration_table() {
        let good = [
            ("0ms", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("15s", Duration::from_secs(15)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            (" 3s ", Duration::from_secs(3)),
            ("0s", Duration::ZERO),
        ];
        for (input, expected) in good {
            assert_eq!(parse_duration(input), Ok(expected), "{input:?}");
        }
        let bad = [
            ("", "expected a duration"),
            ("15", "no unit"),
            ("s", "expected a duration"),
            ("1.5s", "fractions"),
            ("15sec", "unknown unit"),
            ("15S", "unknown unit"),
            ("-1s", "expected a duration"),
            ("1 s", "unknown unit"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615d", "too large"),
        ];
        for (input, needle) in bad {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn parse_size_table() {
        let good = [
            ("0", 0),
            ("1", 1),
            ("512B", 512),
            ("64KiB", 64 * 1024),
            ("1MiB", 1 << 20),
            ("2GiB", 2 << 30),
            ("1k", 1000),
            ("1kB", 1000),
            ("3M", 3_000_000),
            ("3MB", 3_000_000),
            ("1G", 1_000_000_000),
            ("1GB", 1_000_000_000),
            ("1 MiB", 1 << 20),
            (" 8KiB ", 8192),
        ];
        for (input, expected) in good {
            assert_eq!(parse_size(input), Ok(expected), "{input:?}");
        }
        let bad = [
            ("", "expected a size"),
            ("MiB", "expected a size"),
            ("-1", "expected a size"),
            ("1K", "unknown suffix"),
            ("1KB", "unknown suffix"),
            ("1mib", "unknown suffix"),
            ("1Mb", "unknown suffix"),
            ("1.5MiB", "unknown suffix"),
            ("1TiB", "unknown suffix"),
            ("99999999999999999999999", "too large"),
            ("18446744073709551615GiB", "too large"),
        ];
        for (input, needle) in bad {
            let err = parse_size(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn no_arguments_give_the_defaults() {
        assert_eq!(Config::from_args(Args::default()), Ok(Config::default()));
        assert_eq!(config(&[]), Ok(Config::default()));
        let c = Config::default();
        assert_eq!(c.listen, vec![DEFAULT_LISTEN]);
        assert_eq!(c.listen[0].to_string(), "127.0.0.1:8080=native");
        assert_eq!(c.workers, default_workers());
        assert!(c.workers.get() <= MAX_WORKERS);
        assert_eq!(c.history, 1000);
        assert_eq!(c.history_ttl, Duration::from_secs(3600));
        assert_eq!(c.history_max_bytes, 256 << 20);
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.retry, Duration::from_secs(3));
        assert_eq!(c.max_body, 1 << 20);
        assert_eq!(c.max_head, 8 << 10);
        assert_eq!(c.max_headers, 64);
        assert_eq!(c.max_queued_bytes, 1 << 20);
        assert_eq!(c.max_connections, None);
        assert_eq!(c.max_channels, 100_000);
        assert_eq!(c.max_subscriptions, 64);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.inbox_capacity, 65_536);
        assert_eq!(c.publish_key, None);
        assert_eq!(c.cors_origin, CorsOrigin::Any);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.is_loopback_only());
        assert!(c.warnings().is_empty());
    }

    /// The `[default: X]` in each option's help, fed back in as `--flag X`,
    /// must give the same `Config` as no flag at all: help and the
    /// `DEFAULT_*` consts cannot drift apart.
    #[test]
    fn help_defaults_match_default_consts() {
        let described_only = ["workers", "max-connections", "publish-key"];
        let cmd = Args::command();
        let mut checked = 0;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let start = help
                .find("[default: ")
                .unwrap_or_else(|| panic!("--{long} help has no [default: ...]: {help}"))
                + "[default: ".len();
            let end = start + help[start..].find(']').expect("closing bracket");
            if described_only.contains(&long) {
                continue;
            }
            let flag = format!("--{long}");
            let value = &help[start..end];
            assert_eq!(
                config(&[&flag, value]),
                Ok(Config::default()),
                "{flag} {value}"
            );
            checked += 1;
        }
        assert_eq!(checked, 19);
    }

    #[test]
    fn every_option_has_its_env_var() {
        let cmd = Args::command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(env_name(&format!("--{long}"))), "--{long}");
        }
    }

    #[test]
    fn listen_forms() {
        let c = config(&[
            "--listen",
            "0.0.0.0:0",
            "--listen",
            "[::1]:8080=native",
            "--listen",
            "127.0.0.1:9000,127.0.0.1:9001",
            "--listen",
            "0.0.0.0:0",
        ])
        .unwrap();
        let addrs: Vec<String> = c.listen.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "0.0.0.0:0",
                "[::1]:8080",
                "127.0.0.1:9000",
                "127.0.0.1:9001",
                "0.0.0.0:0"
            ]
        );
        assert!(c.listen.iter().all(|l| l.api == Api::Native));
        assert_eq!(c.listen[1].addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(!c.is_loopback_only());
    }

    #[test]
    fn listen_errors_name_the_key() {
        let cases = [
            (
                "127.0.0.1:8080=pipely",
                "API 'pipely' is not available in this build",
            ),
            (
                "127.0.0.1:8080=keker",
                "API 'keker' is not available in this build",
            ),
            ("127.0.0.1:8080=ws-push", "not available in this build"),
            (
                "127.0.0.1:8080=nope",
                "unknown API 'nope'; known APIs: native, pipely",
            ),
            ("127.0.0.1:8080=Native", "unknown API"),
            ("localhost:8080", "host names are not resolved"),
            ("127.0.0.1", "is not IP:PORT"),
            ("::1:8080", "is not IP:PORT"),
            ("127.0.0.1:99999", "is not IP:PORT"),
            ("", "empty address"),
        ];
        for (value, needle) in cases {
            let err = config(&["--listen", value]).expect_err(value);
            assert_eq!(err.key, "--listen (SPOUT_LISTEN)", "{value}");
            assert!(err.reason.contains(needle), "{value}: {err}");
        }
        let err = config(&[
            "--listen",
            "127.0.0.1:8080",
            "--listen",
            "127.0.0.1:8080=native",
        ])
        .unwrap_err();
        assert_eq!(err.key, "--listen (SPOUT_LISTEN)");
        assert!(
            err.reason
                .contains("127.0.0.1:8080 is given more than once"),
            "{err}"
        );
        // A trailing comma in SPOUT_LISTEN leaves an empty entry.
        let err = config(&["--listen", "127.0.0.1:1,"]).unwrap_err();
        assert!(err.reason.contains("empty address"), "{err}");
    }

    #[test]
    fn loopback_only() {
        let loopback = config(&["--listen", "127.0.0.2:1,[::1]:2,[::ffff:127.0.0.1]:3"]).unwrap();
        assert!(loopback.is_loopback_only());
        for open in ["0.0.0.0:1", "[::]:1", "10.0.0.1:1"] {
            let c = config(&["--listen", "127.0.0.1:1", "--listen", open]).unwrap();
            assert!(!c.is_loopback_only(), "{open}");
        }
    }

    #[test]
    fn typed_values_are_parsed() {
        let c = config(&[
            "--workers=3",
            "--history=0",
            "--history-ttl=90s",
            "--history-max-bytes=0",
            "--heartbeat=100ms",
            "--retry=0s",
            "--max-body=2MiB",
            "--max-head=1KiB",
            "--max-headers=128",
            "--max-queued-bytes=2MiB",
            "--max-connections=10",
            "--max-channels=1",
            "--max-subscriptions=1",
            "--request-timeout=1s",
            "--keepalive-timeout=1m",
            "--drain-timeout=0s",
            "--inbox-capacity=1",
            "--publish-key=s3cr3t-0123456789",
            "--cors-origin=https://A.example.com, http://localhost:3000,http://[::1]:80",
            "--log-level=DEBUG",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(c.workers.get(), 3);
        assert_eq!(c.history, 0);
        assert_eq!(c.history_ttl, Duration::from_secs(90));
        assert_eq!(c.history_max_bytes, 0);
        assert_eq!(c.heartbeat, Duration::from_millis(100));
        assert_eq!(c.retry, Duration::ZERO);
        assert_eq!(c.max_body, 2 << 20);
        assert_eq!(c.max_head, 1024);
        assert_eq!(c.max_headers, 128);
        assert_eq!(c.max_queued_bytes, 2 << 20);
        assert_eq!(c.max_connections, Some(10));
        assert_eq!(c.max_channels, 1);
        assert_eq!(c.max_subscriptions, 1);
        assert_eq!(c.request_timeout, Duration::from_secs(1));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.drain_timeout, Duration::ZERO);
        assert_eq!(c.inbox_capacity, 1);
        assert_eq!(c.publish_key.as_deref(), Some("s3cr3t-0123456789"));
        assert_eq!(
            c.cors_origin,
            CorsOrigin::List(vec![
                "https://a.example.com".into(),
                "http://localhost:3000".into(),
                "http://[::1]:80".into(),
            ])
        );
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn cors_origin_special_values() {
        for (value, expected) in [
            ("*", CorsOrigin::Any),
            ("", CorsOrigin::Disabled),
            ("none", CorsOrigin::Disabled),
            ("NONE", CorsOrigin::Disabled),
        ] {
            assert_eq!(
                config(&["--cors-origin", value]).unwrap().cors_origin,
                expected
            );
        }
    }

    /// Every validation failure, each with the key it must name and a piece
    /// of its reason.
    #[test]
    fn each_error_names_its_key() {
        // (arguments, a piece of the reason); the key must be that of the
        // last flag given.
        let cases = [
            ("--workers=0", "below the minimum of 1"),
            ("--workers=1025", "above the maximum of 1024"),
            ("--workers=many", "whole number"),
            ("--workers=+2", "whole number"),
            ("--history=1000001", "maximum"),
            ("--history=-1", "whole number"),
            ("--history-ttl=0s", "--history 0"),
            ("--history-ttl=60", "no unit"),
            ("--history-max-bytes=lots", "expected a size"),
            ("--heartbeat=99ms", "minimum of 100ms"),
            ("--heartbeat=15", "no unit"),
            ("--retry=50d", "SSE retry field"),
            ("--max-body=0", "minimum of 1 byte"),
            ("--max-body=1X", "unknown suffix"),
            ("--max-head=1023", "minimum of 1KiB"),
            ("--max-head=2MiB", "maximum of 1MiB"),
            ("--max-headers=0", "minimum of 1"),
            ("--max-headers=129", "maximum of 128"),
            (
                "--max-queued-bytes=512KiB",
                "512KiB is less than --max-body 1MiB",
            ),
            (
                "--max-body=4MiB --max-queued-bytes=3000000",
                "3000000 bytes is less than --max-body 4MiB",
            ),
            ("--max-connections=0", "minimum of 1"),
            ("--max-channels=0", "minimum of 1"),
            ("--max-subscriptions=0", "minimum of 1"),
            ("--request-timeout=0s", "longer than zero"),
            ("--keepalive-timeout=0ms", "longer than zero"),
            ("--drain-timeout=soon", "expected a duration"),
            ("--inbox-capacity=0", "minimum of 1"),
            ("--publish-key=", "must not be empty"),
            ("--publish-key=tab\there", "printable ASCII"),
            ("--publish-key=new\nline", "printable ASCII"),
            ("--cors-origin=example.com", "http:// or https://"),
            ("--cors-origin=ftp://example.com", "http:// or https://"),
            ("--cors-origin=https://example.com/", "found '/'"),
            (
                "--cors-origin=https://example.com/app",
                "scheme://host[:port]",
            ),
            ("--cors-origin=https://", "no host"),
            ("--cors-origin=https://a.com:99999", "bad host or port"),
            ("--cors-origin=https://a.com:", "bad host or port"),
            ("--cors-origin=https://a.com,", "stray comma"),
            ("--cors-origin=*,https://a.com", "cannot be combined"),
            ("--log-level=loud", "off, error, warn"),
            ("--log-format=xml", "text or json"),
        ];
        for (argv, needle) in cases {
            let argv: Vec<&str> = argv.split(' ').collect();
            let flag = argv.last().and_then(|a| a.split('=').next()).unwrap();
            let key = format!("{flag} ({})", env_name(flag));
            let err = config(&argv).expect_err(&argv.join(" "));
            assert_eq!(err.key, key, "{argv:?}");
            assert!(err.reason.contains(needle), "{argv:?}: {err}");
            assert_eq!(err.to_string(), format!("invalid {key}: {}", err.reason));
        }
        // Values with spaces, which the table above splits on.
        for value in ["two words", "https://exa mple.com"] {
            let flag = if value.starts_with("http") {
                "--cors-origin"
            } else {
                "--publish-key"
            };
            let err = config(&[flag, value]).unwrap_err();
            assert_eq!(err.key, format!("{flag} ({})", env_name(flag)));
            assert!(err.reason.contains("' '"), "{err}");
        }
    }

    #[test]
    fn short_publish_key_is_a_warning_not_an_error() {
        let c = config(&["--publish-key", "short"]).unwrap();
        assert_eq!(c.publish_key.as_deref(), Some("short"));
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("only 5 characters"), "{warnings:?}");
    }

    #[test]
    fn debug_redacts_the_publish_key() {
        let c = config(&["--publish-key", "do-not-print-me-0123"]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("do-not-print-me"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn clap_errors_name_the_argument() {
        let err = clap_error(&parse(&["spout", "--bogus"]).unwrap_err());
        assert_eq!(err.key, "--bogus");
        assert!(err.reason.contains("unexpected argument"), "{err}");
        assert!(err.reason.ends_with("see spout --help"), "{err}");

        let err = clap_error(&parse(&["spout", "--max-body"]).unwrap_err());
        assert!(err.key.starts_with("--max-body"), "{err}");

        let err = clap_error(&parse(&["spout", "--history", "1", "--history", "2"]).unwrap_err());
        assert!(err.key.starts_with("--history"), "{err}");
    }

    #[test]
    fn help_lists_every_env_var() {
        let help = Args::command().render_long_help().to_string();
        for name in ["SPOUT_LISTEN", "SPOUT_MAX_QUEUED_BYTES", "SPOUT_LOG_FORMAT"] {
            assert!(help.contains(name), "{name} missing from --help");
        }
        assert!(help.contains("Durations take a unit"));
    }

    /// The one test that touches the process environment, through variable
    /// names no other code reads, so parallel tests cannot see them. The
    /// options keep their real clap settings; only the variable name differs.
    #[test]
    fn command_line_wins_over_environment_wins_over_default() {
        let capacity_var = "SPOUT_TEST_ONLY_INBOX_CAPACITY_PRECEDENCE";
        let listen_var = "SPOUT_TEST_ONLY_LISTEN_SPLIT";
        let from = |argv: &[&str]| {
            let matches = Args::command()
                .mut_args(|a| a.env(None))
                .mut_arg("inbox_capacity", |a| a.env(capacity_var))
                .mut_arg("listen", |a| a.env(listen_var))
                .try_get_matches_from(argv)
                .unwrap();
            Config::from_args(Args::from_arg_matches(&matches).unwrap()).unwrap()
        };
        std::env::set_var(capacity_var, "7");
        std::env::set_var(listen_var, "127.0.0.1:1,[::1]:2=native");
        let env_only = from(&["spout"]);
        let both = from(&["spout", "--inbox-capacity", "9", "--listen", "127.0.0.1:3"]);
        std::env::remove_var(capacity_var);
        std::env::remove_var(listen_var);
        let neither = from(&["spout"]);

        assert_eq!(env_only.inbox_capacity, 7);
        let ports: Vec<u16> = env_only.listen.iter().map(|l| l.addr.port()).collect();
        assert_eq!(ports, [1, 2]);
        assert_eq!(both.inbox_capacity, 9);
        assert_eq!(both.listen.len(), 1);
        assert_eq!(both.listen[0].addr.port(), 3);
        assert_eq!(neither, Config::default());
    }
}
