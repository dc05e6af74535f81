//! Configuration: command line and environment → one validated, immutable
//! [`Config`].
//!
//! Owns the option names, their `DEFAULT_*` values and limits, the parsing of
//! durations and sizes ([`parse_duration`], [`parse_size`]) and every check on
//! option values. It must not open sockets, read files (but the one
//! `--config` names, in `load`) or log: `main` calls [`Config::load`] before
//! the logger exists and reports the error itself.
//!
//! Precedence, highest first:
//! 1. the command-line flag (`--max-body 2MiB`);
//! 2. the environment variable `SPOUT_<FLAG>`: the flag without its dashes,
//!    upper-cased, `-` → `_` (`SPOUT_MAX_BODY=2MiB`); `SPOUT_LISTEN` takes
//!    a comma-separated list;
//! 3. the file `--config FILE` names (TOML, keys named as the flags without
//!    their dashes: `max-body = "2MiB"`; `file` parses it, `load` merges it);
//! 4. the `DEFAULT_*` const of the field.
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
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue};
use clap::CommandFactory;
use log::LevelFilter;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Where the server listens when no `--listen` is given: `127.0.0.1:8080`
/// speaking the native API. Loopback, so that a server started without
/// thought does not accept publishes from the network.
pub const DEFAULT_LISTEN: Listen = Listen {
    addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
    api: Api::Native,
    proxy: false,
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

/// Silence after which an SSE stream gets a heartbeat comment (15 s), timed
/// per stream from its last event or heartbeat; short enough that proxies
/// with a 30–60 s idle timeout keep a quiet stream open.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Lower bound of `--heartbeat` (100 ms): below it heartbeats cost more than
/// the events they guard.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// Reconnection delay hinted to SSE clients with `retry:` when a stream
/// opens (3 s, the EventSource default in most browsers).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// Interval of server pings on a WebSocket whose peer has sent nothing for
/// that long (30 s): proves the peer alive and keeps NAT and proxy state open.
pub const DEFAULT_WS_PING: Duration = Duration::from_secs(30);
/// Lower bound of `--ws-ping` (100 ms), as for `--heartbeat`.
pub const MIN_WS_PING: Duration = Duration::from_millis(100);
/// Time a WebSocket peer may stay silent (no pong, no frame at all) before it
/// is dropped (60 s): two ping intervals, so one lost pong is not fatal.
/// Must be longer than `--ws-ping`.
pub const DEFAULT_WS_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest WebSocket message a client may send, all fragments together, in
/// bytes (64 KiB); larger ones close the connection with 1009. Subscribers
/// send only control frames today, so this bounds memory, not features.
pub const DEFAULT_WS_MAX_MESSAGE: usize = 64 * KIB;
/// Lower bound of `--ws-max-message`: a control frame's 125 bytes (RFC 6455
/// §5.5) must always fit.
pub const MIN_WS_MAX_MESSAGE: usize = 125;
/// Upper bound of `--ws-max-message` (16 MiB): a message is buffered whole.
pub const MAX_WS_MAX_MESSAGE: usize = 16 * MIB;

/// Time a flychat stream stays silent before it gets an `event: keep-alive`
/// frame (20 s, the `timeout=20` of flychat's `Grip-Keep-Alive`).
pub const DEFAULT_FLYCHAT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Interval of WS-PushServer pings (60 s, as Java-WebSocket's lost-connection
/// timer).
pub const DEFAULT_WS_PUSH_PING: Duration = Duration::from_secs(60);
/// Age of the last pong at which a WS-PushServer client is dropped without a
/// close frame (90 s, as the original). Must be longer than `--ws-push-ping`.
pub const DEFAULT_WS_PUSH_TIMEOUT: Duration = Duration::from_secs(90);
/// keker's timeout (60 s, the original's `-t`): the deadline for `HELLO`, and
/// twice the ping interval after it.
pub const DEFAULT_KEKER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long keker keeps a message published to a token with no session (5 s,
/// the original's `-c`); 0 keeps nothing.
pub const DEFAULT_KEKER_CACHE_TTL: Duration = Duration::from_secs(5);
/// Lower bound of the compatible APIs' timers (100 ms), as for `--heartbeat`.
pub const MIN_COMPAT_TIMER: Duration = Duration::from_millis(100);

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

/// Request body bytes being read at once, all connections of all workers
/// together (64 MiB): a body that would take the total past it is refused
/// with 503 before it is read, so slow bodies cannot hold memory without
/// bound. Must be at least `--max-body`, or the largest body could never be
/// read.
pub const DEFAULT_MAX_PENDING_BODY_BYTES: usize = 64 * MIB;

/// Send buffer asked of the kernel for each event stream's socket
/// (`SO_SNDBUF`), in bytes (64 KiB); 0 leaves the kernel's autotuning, which
/// grows a socket whose peer reads slowly to `net.ipv4.tcp_wmem`'s maximum
/// (4 MiB by default) of kernel memory. Linux doubles the value asked for
/// its own bookkeeping. See the README on what a subscriber costs.
pub const DEFAULT_SOCKET_SEND_BUFFER: usize = 64 * KIB;

/// Most open client connections; `None` derives the limit from the process's
/// file-descriptor limit at startup.
pub const DEFAULT_MAX_CONNECTIONS: Option<usize> = None;

/// Most open connections from one client address, a count; `None` sets no
/// limit. Behind a load balancer the client's address is the one its PROXY
/// protocol header names (`--listen ADDR=API+proxy`).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: Option<usize> = None;

/// Most channels that may exist at once, a count; publishing or subscribing
/// to a new channel beyond it is refused.
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;

/// Most existing channels one client address may have created, a count:
/// by subscribing to a channel that did not exist, or by publishing to one
/// without the publish key (publishers holding `--publish-key` are not
/// counted); `None` sets no limit. A channel stops counting when it is
/// removed (no subscriber and no history left, or deleted).
pub const DEFAULT_MAX_CHANNELS_PER_IP: Option<usize> = None;

/// Most channels one subscribe request (and so one connection) may name; also
/// the most a WS-PushServer connection may subscribe to over its socket.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;

/// Time allowed to receive a complete request, head and body, from its
/// start (10 s); a slower client gets 408 and is closed, so no one holds a
/// request buffer by sending a byte now and then.
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
/// Token secrets shorter than this, in bytes, are accepted but reported by
/// [`Config::warnings`]: an HMAC key should be at least as long as its hash
/// output, 32 bytes for HS256 (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// Who may subscribe and publish on the native API: anyone.
pub const DEFAULT_AUTH: AuthMode = AuthMode::None;
/// Clock skew allowed when a token's `exp` and `nbf` are checked (30 s): a
/// token minted on a machine whose clock is a little ahead is not refused as
/// not yet valid, nor one a little behind as expired.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// The cookie a subscribe's token may come in, for an `EventSource` with
/// `withCredentials` (which cannot set headers).
pub const DEFAULT_JWT_COOKIE: &str = "spout_token";

/// How long a subscribe waits for the auth hook (`--auth hook`) before a 503 (2 s): as long as a request waits
/// for Redis.
pub const DEFAULT_AUTH_HOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Subscribes waiting for the auth hook at most (10,000); past it a subscribe is answered 503 at once. A
/// parked subscribe holds its request (under a kilobyte), so this bounds that memory and the hook's queue.
pub const DEFAULT_AUTH_HOOK_MAX_PENDING: usize = 10_000;
/// How long the hook's decision is reused for the same credentials and request: not at all (0 s), so a
/// revoked session is refused at its next subscribe.
pub const DEFAULT_AUTH_HOOK_CACHE: Duration = Duration::ZERO;

/// Allowed CORS origins: any (`*`).
pub const DEFAULT_CORS_ORIGIN: CorsOrigin = CorsOrigin::Any;

/// Most verbose log level written.
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Info;

/// Log line format: plain text.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// The status page (`GET /status`, `/status/stream`): off, since it shows the server's figures to whoever may
/// reach it.
pub const DEFAULT_STATUS: bool = false;

/// Prefix of spout's Redis keys and shard channels (`spout:`).
pub const DEFAULT_BROKER_PREFIX: &str = "spout:";

/// How long a request waits for Redis before a 503 (2 s).
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Replicas a publish waits for (0: the master's answer is enough).
pub const DEFAULT_BROKER_WAIT_REPLICAS: usize = 0;

/// How long a node's presence in Redis outlives its last refresh (15 s).
pub const DEFAULT_BROKER_NODE_TTL: Duration = Duration::from_secs(15);

/// Default worker count: one per available core, 1 if that is unknown, at
/// most [`MAX_WORKERS`].
pub fn default_workers() -> NonZeroUsize {
    let n = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(n.min(MAX_WORKERS)).unwrap_or(NonZeroUsize::MIN)
}

mod args;
mod file;
pub mod load;
mod parse;
mod show;
#[cfg(test)]
mod tests;

pub use args::Args;
use parse::*;
pub use parse::{parse_count, parse_duration, parse_size};

/// The public API a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// spout's own API.
    Native,
    /// Pipely server (docs/PROTOCOLS.md §1).
    Pipely,
    /// node-sse-server (docs/PROTOCOLS.md §2).
    NodeSse,
    /// flychat's chat API and pages (docs/PROTOCOLS.md §3).
    Flychat,
    /// WS-PushServer, its WebSocket and HTTP ports on one listener
    /// (docs/PROTOCOLS.md §4).
    WsPush,
    /// keker (docs/PROTOCOLS.md §5).
    Keker,
}

impl Api {
    /// The name used in `--listen ADDR=NAME`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::Native => "native",
            Api::Pipely => "pipely",
            Api::NodeSse => "node-sse",
            Api::Flychat => "flychat",
            Api::WsPush => "ws-push",
            Api::Keker => "keker",
        }
    }

    /// Every API, native first.
    pub const ALL: [Api; 6] = [
        Api::Native,
        Api::Pipely,
        Api::NodeSse,
        Api::Flychat,
        Api::WsPush,
        Api::Keker,
    ];

    /// Looks up an API by its `--listen` name (exact, lower case).
    fn from_name(name: &str) -> Result<Api, String> {
        Api::ALL
            .into_iter()
            .find(|api| api.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Api::ALL.iter().map(Api::as_str).collect();
                format!("unknown API '{name}'; known APIs: {}", known.join(", "))
            })
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
    /// Every connection starts with a PROXY protocol header (`+proxy`): the listener sits behind a load balancer,
    /// and the header names the client (`proxy`).
    pub proxy: bool,
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.addr, self.api)?;
        if self.proxy {
            f.write_str("+proxy")?;
        }
        Ok(())
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

/// Who may subscribe and publish on the native API (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone who can reach a listener (publishing still needs `--publish-key` when it is set).
    None,
    /// A signed token (JWT) names what its bearer may subscribe to and publish; `--public-channels` are open.
    Jwt,
    /// The application decides each subscribe (`--auth-hook`); publishing is as with `None`.
    Hook,
}

impl AuthMode {
    /// The name used by `--auth`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Jwt => "jwt",
            AuthMode::Hook => "hook",
        }
    }
}

/// Where published events meet between nodes (`--broker`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// This process only: the channel table sequences and fans out (the default).
    Local,
    /// A Redis Cluster (or one plain Redis) given by its seed addresses, `host:port` each.
    Redis(Vec<String>),
}

impl fmt::Display for BrokerChoice {
    /// The `--broker` value that gives this choice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerChoice::Local => f.write_str("local"),
            BrokerChoice::Redis(seeds) => write!(f, "redis://{}", seeds.join(",")),
        }
    }
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

impl ConfigError {
    /// An error about `flag`'s value, naming both its spellings (for checks made outside this module, such as
    /// reading the key files `flag` names).
    pub fn for_flag(flag: &str, reason: String) -> ConfigError {
        error(flag, reason)
    }
}

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
    /// See [`DEFAULT_WS_PING`]; at least [`MIN_WS_PING`].
    pub ws_ping: Duration,
    /// See [`DEFAULT_WS_TIMEOUT`]; longer than `ws_ping`.
    pub ws_timeout: Duration,
    /// See [`DEFAULT_WS_MAX_MESSAGE`]; within [`MIN_WS_MAX_MESSAGE`]..=[`MAX_WS_MAX_MESSAGE`].
    pub ws_max_message: usize,
    /// See [`DEFAULT_FLYCHAT_KEEPALIVE`].
    pub flychat_keepalive: Duration,
    /// See [`DEFAULT_WS_PUSH_PING`].
    pub ws_push_ping: Duration,
    /// See [`DEFAULT_WS_PUSH_TIMEOUT`]; longer than `ws_push_ping`.
    pub ws_push_timeout: Duration,
    /// See [`DEFAULT_KEKER_TIMEOUT`].
    pub keker_timeout: Duration,
    /// See [`DEFAULT_KEKER_CACHE_TTL`].
    pub keker_cache_ttl: Duration,
    /// See [`DEFAULT_MAX_BODY`]; at least 1.
    pub max_body: usize,
    /// See [`DEFAULT_MAX_HEAD`]; within [`MIN_MAX_HEAD`]..=[`MAX_MAX_HEAD`].
    pub max_head: usize,
    /// See [`DEFAULT_MAX_HEADERS`]; within 1..=[`MAX_MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`DEFAULT_MAX_QUEUED_BYTES`]; at least `max_body`.
    pub max_queued_bytes: usize,
    /// See [`DEFAULT_MAX_PENDING_BODY_BYTES`]; at least `max_body`.
    pub max_pending_body_bytes: usize,
    /// See [`DEFAULT_SOCKET_SEND_BUFFER`]; 0 for the kernel's autotuning.
    pub socket_send_buffer: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`]; at least 1 when set.
    pub max_connections: Option<usize>,
    /// See [`DEFAULT_MAX_CONNECTIONS_PER_IP`]; at least 1 when set.
    pub max_connections_per_ip: Option<usize>,
    /// See [`DEFAULT_MAX_CHANNELS`]; at least 1.
    pub max_channels: usize,
    /// See [`DEFAULT_MAX_CHANNELS_PER_IP`]; at least 1 when set.
    pub max_channels_per_ip: Option<usize>,
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
    /// See [`DEFAULT_AUTH`]; `Jwt` has at least one key source.
    pub auth: AuthMode,
    /// HMAC secrets of tokens, each non-empty. Redacted in `Debug`.
    pub jwt_secrets: Vec<String>,
    /// A file of HMAC secrets, one per line (read by `auth::Auth::load`).
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public keys of tokens (read by `auth::Auth::load`).
    pub jwt_public_keys: Vec<PathBuf>,
    /// A JWKS document of token keys (read by `auth::Auth::load`).
    pub jwt_jwks: Option<PathBuf>,
    /// The `aud` a token must name, when set.
    pub jwt_audience: Option<String>,
    /// The `iss` a token must carry, when set.
    pub jwt_issuer: Option<String>,
    /// See [`DEFAULT_JWT_LEEWAY`].
    pub jwt_leeway: Duration,
    /// See [`DEFAULT_JWT_COOKIE`]; a cookie name (RFC 6265 token).
    pub jwt_cookie: String,
    /// Channel patterns open without a token under `AuthMode::Jwt`: names, or prefixes ending in `*`.
    pub public_channels: Vec<String>,
    /// The auth hook's URL (`http://…`); set exactly when `auth` is `Hook`.
    pub auth_hook: Option<String>,
    /// Header names passed to the hook besides `Authorization` and `Cookie`, lowercase.
    pub auth_hook_headers: Vec<String>,
    /// See [`DEFAULT_AUTH_HOOK_TIMEOUT`]; not zero.
    pub auth_hook_timeout: Duration,
    /// See [`DEFAULT_AUTH_HOOK_MAX_PENDING`]; at least 1.
    pub auth_hook_max_pending: usize,
    /// See [`DEFAULT_AUTH_HOOK_CACHE`]; zero is off.
    pub auth_hook_cache: Duration,
    /// See [`DEFAULT_CORS_ORIGIN`].
    pub cors_origin: CorsOrigin,
    /// See [`DEFAULT_LOG_LEVEL`].
    pub log_level: LevelFilter,
    /// See [`DEFAULT_LOG_FORMAT`].
    pub log_format: LogFormat,
    /// See [`DEFAULT_STATUS`].
    pub status: bool,
    pub broker: BrokerChoice,
    /// See [`DEFAULT_BROKER_PREFIX`].
    pub broker_prefix: String,
    /// See [`DEFAULT_BROKER_TIMEOUT`].
    pub broker_timeout: Duration,
    /// See [`DEFAULT_BROKER_NODE_TTL`].
    pub broker_node_ttl: Duration,
    /// See [`DEFAULT_BROKER_WAIT_REPLICAS`]; at most 16.
    pub broker_wait_replicas: usize,
    /// `--node-name`; `None` until `main` names the node after its host.
    pub node_name: Option<String>,
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
            ws_ping: DEFAULT_WS_PING,
            ws_timeout: DEFAULT_WS_TIMEOUT,
            ws_max_message: DEFAULT_WS_MAX_MESSAGE,
            flychat_keepalive: DEFAULT_FLYCHAT_KEEPALIVE,
            ws_push_ping: DEFAULT_WS_PUSH_PING,
            ws_push_timeout: DEFAULT_WS_PUSH_TIMEOUT,
            keker_timeout: DEFAULT_KEKER_TIMEOUT,
            keker_cache_ttl: DEFAULT_KEKER_CACHE_TTL,
            max_body: DEFAULT_MAX_BODY,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_pending_body_bytes: DEFAULT_MAX_PENDING_BODY_BYTES,
            socket_send_buffer: DEFAULT_SOCKET_SEND_BUFFER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_channels_per_ip: DEFAULT_MAX_CHANNELS_PER_IP,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            publish_key: DEFAULT_PUBLISH_KEY.map(String::from),
            auth: DEFAULT_AUTH,
            jwt_secrets: Vec::new(),
            jwt_secret_file: None,
            jwt_public_keys: Vec::new(),
            jwt_jwks: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway: DEFAULT_JWT_LEEWAY,
            jwt_cookie: DEFAULT_JWT_COOKIE.to_string(),
            auth_hook: None,
            auth_hook_headers: Vec::new(),
            auth_hook_timeout: DEFAULT_AUTH_HOOK_TIMEOUT,
            auth_hook_max_pending: DEFAULT_AUTH_HOOK_MAX_PENDING,
            auth_hook_cache: DEFAULT_AUTH_HOOK_CACHE,
            public_channels: Vec::new(),
            cors_origin: DEFAULT_CORS_ORIGIN,
            log_level: DEFAULT_LOG_LEVEL,
            log_format: DEFAULT_LOG_FORMAT,
            status: DEFAULT_STATUS,
            broker: BrokerChoice::Local,
            broker_prefix: DEFAULT_BROKER_PREFIX.to_string(),
            broker_timeout: DEFAULT_BROKER_TIMEOUT,
            broker_node_ttl: DEFAULT_BROKER_NODE_TTL,
            broker_wait_replicas: DEFAULT_BROKER_WAIT_REPLICAS,
            node_name: None,
        }
    }
}

/// Hand-written so that the publish key and token secrets never reach a log line.
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
            .field("ws_ping", &self.ws_ping)
            .field("ws_timeout", &self.ws_timeout)
            .field("ws_max_message", &self.ws_max_message)
            .field("flychat_keepalive", &self.flychat_keepalive)
            .field("ws_push_ping", &self.ws_push_ping)
            .field("ws_push_timeout", &self.ws_push_timeout)
            .field("keker_timeout", &self.keker_timeout)
            .field("keker_cache_ttl", &self.keker_cache_ttl)
            .field("max_body", &self.max_body)
            .field("max_head", &self.max_head)
            .field("max_headers", &self.max_headers)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_pending_body_bytes", &self.max_pending_body_bytes)
            .field("socket_send_buffer", &self.socket_send_buffer)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_channels", &self.max_channels)
            .field("max_channels_per_ip", &self.max_channels_per_ip)
            .field("max_subscriptions", &self.max_subscriptions)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("inbox_capacity", &self.inbox_capacity)
            .field(
                "publish_key",
                &self.publish_key.as_ref().map(|_| "<redacted>"),
            )
            .field("auth", &self.auth)
            .field(
                "jwt_secrets",
                &format_args!("<{} redacted>", self.jwt_secrets.len()),
            )
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("jwt_public_keys", &self.jwt_public_keys)
            .field("jwt_jwks", &self.jwt_jwks)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_leeway", &self.jwt_leeway)
            .field("jwt_cookie", &self.jwt_cookie)
            .field("auth_hook", &self.auth_hook)
            .field("auth_hook_headers", &self.auth_hook_headers)
            .field("auth_hook_timeout", &self.auth_hook_timeout)
            .field("auth_hook_max_pending", &self.auth_hook_max_pending)
            .field("auth_hook_cache", &self.auth_hook_cache)
            .field("public_channels", &self.public_channels)
            .field("cors_origin", &self.cors_origin)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("status", &self.status)
            .field("broker", &self.broker)
            .field("broker_prefix", &self.broker_prefix)
            .field("broker_timeout", &self.broker_timeout)
            .field("broker_node_ttl", &self.broker_node_ttl)
            .field("broker_wait_replicas", &self.broker_wait_replicas)
            .field("node_name", &self.node_name)
            .finish()
    }
}

impl Config {
    /// Parses the process's command line and environment, and the file
    /// `--config` names; with it, whether `--print-config` was given.
    ///
    /// `--help` and `--version` print and exit the process, as clap does;
    /// every other problem comes back as a [`ConfigError`].
    pub fn load() -> Result<(Config, bool), ConfigError> {
        let (matches, config) = load::load(&Args::command(), std::env::args_os().collect())?;
        Ok((config, matches.get_flag("print_config")))
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

        let max_pending_body_bytes = size_field(
            "--max-pending-body-bytes",
            args.max_pending_body_bytes.as_deref(),
            DEFAULT_MAX_PENDING_BODY_BYTES,
        )?;
        if max_pending_body_bytes < max_body {
            return Err(error(
                "--max-pending-body-bytes",
                format!(
                    "{} is less than --max-body {}: the largest body could never be read",
                    show_size(max_pending_body_bytes),
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

        let ws_ping = duration_field("--ws-ping", args.ws_ping.as_deref(), DEFAULT_WS_PING)?;
        if ws_ping < MIN_WS_PING {
            return Err(error(
                "--ws-ping",
                format!("{ws_ping:?} is below the minimum of {MIN_WS_PING:?}"),
            ));
        }
        let ws_timeout = duration_field(
            "--ws-timeout",
            args.ws_timeout.as_deref(),
            DEFAULT_WS_TIMEOUT,
        )?;
        if ws_timeout <= ws_ping {
            return Err(error(
                "--ws-timeout",
                format!(
                    "{ws_timeout:?} is not longer than --ws-ping {ws_ping:?}: \
                     peers would be dropped before they could answer a ping"
                ),
            ));
        }
        let timer = |flag: &str, raw: Option<&str>, default: Duration| {
            let value = duration_field(flag, raw, default)?;
            if value < MIN_COMPAT_TIMER {
                return Err(error(
                    flag,
                    format!("{value:?} is below the minimum of {MIN_COMPAT_TIMER:?}"),
                ));
            }
            Ok(value)
        };
        let flychat_keepalive = timer(
            "--flychat-keepalive",
            args.flychat_keepalive.as_deref(),
            DEFAULT_FLYCHAT_KEEPALIVE,
        )?;
        let ws_push_ping = timer(
            "--ws-push-ping",
            args.ws_push_ping.as_deref(),
            DEFAULT_WS_PUSH_PING,
        )?;
        let ws_push_timeout = timer(
            "--ws-push-timeout",
            args.ws_push_timeout.as_deref(),
            DEFAULT_WS_PUSH_TIMEOUT,
        )?;
        if ws_push_timeout <= ws_push_ping {
            return Err(error(
                "--ws-push-timeout",
                format!(
                    "{ws_push_timeout:?} is not longer than --ws-push-ping {ws_push_ping:?}: \
                     clients would be dropped before they could answer a ping"
                ),
            ));
        }
        let keker_timeout = timer(
            "--keker-timeout",
            args.keker_timeout.as_deref(),
            DEFAULT_KEKER_TIMEOUT,
        )?;
        let keker_cache_ttl = duration_field(
            "--keker-cache-ttl",
            args.keker_cache_ttl.as_deref(),
            DEFAULT_KEKER_CACHE_TTL,
        )?;
        let ws_max_message = size_field(
            "--ws-max-message",
            args.ws_max_message.as_deref(),
            DEFAULT_WS_MAX_MESSAGE,
        )?;
        check_size_range(
            "--ws-max-message",
            ws_max_message,
            MIN_WS_MAX_MESSAGE,
            MAX_WS_MAX_MESSAGE,
        )?;

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

        let max_connections_per_ip = match args.max_connections_per_ip.as_deref() {
            None => DEFAULT_MAX_CONNECTIONS_PER_IP,
            Some(raw) => {
                let n = parse_field("--max-connections-per-ip", raw, parse_count)?;
                check_count_range("--max-connections-per-ip", n, 1, usize::MAX)?;
                Some(n)
            }
        };

        let max_channels = count_field(
            "--max-channels",
            args.max_channels.as_deref(),
            DEFAULT_MAX_CHANNELS,
        )?;
        check_count_range("--max-channels", max_channels, 1, usize::MAX)?;

        let max_channels_per_ip = match args.max_channels_per_ip.as_deref() {
            None => DEFAULT_MAX_CHANNELS_PER_IP,
            Some(raw) => {
                let n = parse_field("--max-channels-per-ip", raw, parse_count)?;
                check_count_range("--max-channels-per-ip", n, 1, usize::MAX)?;
                Some(n)
            }
        };

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

        let auth = match args.auth.as_deref() {
            None => DEFAULT_AUTH,
            Some(raw) => parse_field("--auth", raw, parse_auth_mode)?,
        };
        let jwt_secrets = args
            .jwt_secret
            .iter()
            .map(|raw| parse_field("--jwt-secret", raw, parse_jwt_secret))
            .collect::<Result<Vec<_>, _>>()?;
        let public_channels = args
            .public_channels
            .iter()
            .map(|raw| parse_field("--public-channels", raw, parse_channel_pattern))
            .collect::<Result<Vec<_>, _>>()?;
        let jwt = JwtArgs {
            secrets: !jwt_secrets.is_empty(),
            secret_file: args.jwt_secret_file.is_some(),
            public_keys: !args.jwt_public_key.is_empty(),
            jwks: args.jwt_jwks.is_some(),
            public_channels: !public_channels.is_empty(),
            hook: args.auth_hook.is_some(),
        };
        check_auth(auth, &jwt)?;
        let auth_hook = args
            .auth_hook
            .as_deref()
            .map(|raw| parse_field("--auth-hook", raw, parse_hook_url))
            .transpose()?;
        let auth_hook_headers = args
            .auth_hook_headers
            .iter()
            .map(|raw| parse_field("--auth-hook-headers", raw, parse_header_name))
            .collect::<Result<Vec<_>, _>>()?;
        let auth_hook_timeout = duration_field(
            "--auth-hook-timeout",
            args.auth_hook_timeout.as_deref(),
            DEFAULT_AUTH_HOOK_TIMEOUT,
        )?;
        check_non_zero("--auth-hook-timeout", auth_hook_timeout, "")?;
        let auth_hook_max_pending = count_field(
            "--auth-hook-max-pending",
            args.auth_hook_max_pending.as_deref(),
            DEFAULT_AUTH_HOOK_MAX_PENDING,
        )?;
        check_count_range("--auth-hook-max-pending", auth_hook_max_pending, 1, 1 << 20)?;
        let auth_hook_cache = duration_field(
            "--auth-hook-cache",
            args.auth_hook_cache.as_deref(),
            DEFAULT_AUTH_HOOK_CACHE,
        )?;

        let broker_timeout = duration_field(
            "--broker-timeout",
            args.broker_timeout.as_deref(),
            DEFAULT_BROKER_TIMEOUT,
        )?;
        check_non_zero("--broker-timeout", broker_timeout, "")?;
        let broker_node_ttl = duration_field(
            "--broker-node-ttl",
            args.broker_node_ttl.as_deref(),
            DEFAULT_BROKER_NODE_TTL,
        )?;
        check_non_zero("--broker-node-ttl", broker_node_ttl, "")?;
        let broker_wait_replicas = count_field(
            "--broker-wait-replicas",
            args.broker_wait_replicas.as_deref(),
            DEFAULT_BROKER_WAIT_REPLICAS,
        )?;
        check_count_range("--broker-wait-replicas", broker_wait_replicas, 0, 16)?;

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
            ws_ping,
            ws_timeout,
            ws_max_message,
            flychat_keepalive,
            ws_push_ping,
            ws_push_timeout,
            keker_timeout,
            keker_cache_ttl,
            max_body,
            max_head,
            max_headers,
            max_queued_bytes,
            max_pending_body_bytes,
            socket_send_buffer: size_field(
                "--socket-send-buffer",
                args.socket_send_buffer.as_deref(),
                DEFAULT_SOCKET_SEND_BUFFER,
            )?,
            max_connections,
            max_connections_per_ip,
            max_channels,
            max_channels_per_ip,
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
            auth,
            jwt_secrets,
            jwt_secret_file: args.jwt_secret_file.map(PathBuf::from),
            jwt_public_keys: args.jwt_public_key.iter().map(PathBuf::from).collect(),
            jwt_jwks: args.jwt_jwks.map(PathBuf::from),
            jwt_audience: args.jwt_audience,
            jwt_issuer: args.jwt_issuer,
            jwt_leeway: duration_field(
                "--jwt-leeway",
                args.jwt_leeway.as_deref(),
                DEFAULT_JWT_LEEWAY,
            )?,
            jwt_cookie: match args.jwt_cookie.as_deref() {
                None => DEFAULT_JWT_COOKIE.to_string(),
                Some(raw) => parse_field("--jwt-cookie", raw, parse_cookie_name)?,
            },
            public_channels,
            auth_hook,
            auth_hook_headers,
            auth_hook_timeout,
            auth_hook_max_pending,
            auth_hook_cache,
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
            status: match args.status.as_deref() {
                None => DEFAULT_STATUS,
                Some(raw) => parse_field("--status", raw, parse_switch)?,
            },
            broker: match args.broker.as_deref() {
                None => BrokerChoice::Local,
                Some(raw) => parse_field("--broker", raw, parse_broker)?,
            },
            broker_prefix: match args.broker_prefix {
                None => DEFAULT_BROKER_PREFIX.to_string(),
                Some(raw) => parse_field("--broker-prefix", &raw, parse_broker_prefix)?,
            },
            broker_timeout,
            broker_node_ttl,
            broker_wait_replicas,
            node_name: args
                .node_name
                .map(|raw| parse_field("--node-name", &raw, parse_node_name))
                .transpose()?,
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
        for secret in &self.jwt_secrets {
            let len = secret.len();
            if len < MIN_JWT_SECRET_LEN {
                out.push(format!(
                    "a --jwt-secret is only {len} bytes long; HS256 wants at least \
                     {MIN_JWT_SECRET_LEN} random bytes (RFC 7518 §3.2)"
                ));
            }
        }
        out
    }
}
