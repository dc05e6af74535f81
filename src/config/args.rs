//! The command line as clap parses it: raw strings for every value that needs more than clap's parsers, so that
//! `Config::from_args` can name both spellings of a key when a value is bad.
//!
//! Counts, sizes and durations take `allow_hyphen_values`, so that `--history -1` reaches that check (and gets
//! the message `--history=-1` gets) instead of clap reading `-1` as an unknown flag.

use clap::{ArgAction, Parser};

/// spout: a pub/sub push server (Server-Sent Events and WebSocket).
///
/// Every option can also be set with an environment variable: SPOUT_ and the
/// flag in capitals, e.g. SPOUT_MAX_BODY=2MiB for --max-body, and in the
/// --config file. The command line wins over the environment, the environment
/// over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "spout",
    version,
    after_help = "Durations take a unit: 500ms, 15s, 2m, 1h, 1d.\n\
                  Sizes are bytes, or take a suffix: KiB, MiB, GiB (1024-based) \
                  or kB, MB, GB (1000-based), e.g. 1MiB.\n\n\
                  spout doctor [--target-connections N] [--json] [OPTIONS]: how many \
                  connections this machine lets spout hold, and what to change \
                  for more (spout doctor --help)."
)]
pub struct Args {
    /// TOML file of options, each key an option's long name (max-body =
    /// "2MiB", listen = ["0.0.0.0:8080"]); flags and SPOUT_* variables win
    /// over it [default: none]
    #[arg(long, env = "SPOUT_CONFIG", value_name = "FILE")]
    pub config: Option<String>,

    /// Address to listen on, and the API it speaks: IP:PORT[=API][+proxy],
    /// where API is native (spout's own, which also serves every compatible
    /// API under its prefix: /pipely, /node-sse, /flychat, /ws-push,
    /// /keker), pipely, node-sse, flychat, ws-push or keker; +proxy: every
    /// connection starts with a PROXY protocol header (v1 or v2) from a load
    /// balancer, naming the client; repeatable, comma-separated in the
    /// environment [default: 127.0.0.1:8080=native]
    #[arg(
        long,
        env = "SPOUT_LISTEN",
        value_name = "ADDR[=API][+proxy]",
        action = ArgAction::Append,
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// Worker threads, each with its own event loop, 1 to 1024
    /// [default: number of CPUs]
    #[arg(
        long,
        env = "SPOUT_WORKERS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub workers: Option<String>,

    /// Events retained per channel for Last-Event-ID replay; 0 keeps no
    /// history [default: 1000]
    #[arg(
        long,
        env = "SPOUT_HISTORY",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub history: Option<String>,

    /// How long a retained event stays replayable [default: 1h]
    #[arg(
        long,
        env = "SPOUT_HISTORY_TTL",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub history_ttl: Option<String>,

    /// Payload bytes retained in history, all channels together; the oldest
    /// events go first [default: 256MiB]
    #[arg(
        long,
        env = "SPOUT_HISTORY_MAX_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub history_max_bytes: Option<String>,

    /// Silence after which an SSE stream gets a `:` heartbeat comment, timed
    /// per stream from its last event; at least 100ms [default: 15s]
    #[arg(
        long,
        env = "SPOUT_HEARTBEAT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub heartbeat: Option<String>,

    /// Reconnection delay hinted to SSE clients (retry:) when a stream opens
    /// [default: 3s]
    #[arg(
        long,
        env = "SPOUT_RETRY",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub retry: Option<String>,

    /// Interval of server pings on a WebSocket whose peer has been silent
    /// that long, at least 100ms [default: 30s]
    #[arg(
        long,
        env = "SPOUT_WS_PING",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub ws_ping: Option<String>,

    /// Time a WebSocket peer may send nothing (no pong, no frame) before it
    /// is dropped; longer than --ws-ping [default: 60s]
    #[arg(
        long,
        env = "SPOUT_WS_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub ws_timeout: Option<String>,

    /// Largest WebSocket message a client may send, fragments together,
    /// 125 bytes to 16MiB; larger close with 1009 [default: 64KiB]
    #[arg(
        long,
        env = "SPOUT_WS_MAX_MESSAGE",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub ws_max_message: Option<String>,

    /// Silence on a flychat stream before it gets a keep-alive event, at
    /// least 100ms [default: 20s]
    #[arg(
        long,
        env = "SPOUT_FLYCHAT_KEEPALIVE",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub flychat_keepalive: Option<String>,

    /// Interval of WS-PushServer pings, at least 100ms [default: 60s]
    #[arg(
        long,
        env = "SPOUT_WS_PUSH_PING",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub ws_push_ping: Option<String>,

    /// Age of a WS-PushServer client's last pong at which it is dropped;
    /// longer than --ws-push-ping [default: 90s]
    #[arg(
        long,
        env = "SPOUT_WS_PUSH_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub ws_push_timeout: Option<String>,

    /// keker's -t: the deadline for HELLO, and twice the ping interval after
    /// it, at least 100ms [default: 60s]
    #[arg(
        long,
        env = "SPOUT_KEKER_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub keker_timeout: Option<String>,

    /// keker's -c: how long a message to a token with no session is kept for
    /// its first session; 0 keeps nothing [default: 5s]
    #[arg(
        long,
        env = "SPOUT_KEKER_CACHE_TTL",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub keker_cache_ttl: Option<String>,

    /// Largest request body accepted; larger publishes get 413 [default: 1MiB]
    #[arg(
        long,
        env = "SPOUT_MAX_BODY",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub max_body: Option<String>,

    /// Largest request head (request line and headers) accepted, 1KiB to
    /// 1MiB; larger get 431 [default: 8KiB]
    #[arg(
        long,
        env = "SPOUT_MAX_HEAD",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub max_head: Option<String>,

    /// Most header fields in one request, 1 to 128 [default: 64]
    #[arg(
        long,
        env = "SPOUT_MAX_HEADERS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_headers: Option<String>,

    /// Output queued for one subscriber before it is closed as too slow; at
    /// least --max-body [default: 1MiB]
    #[arg(
        long,
        env = "SPOUT_MAX_QUEUED_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub max_queued_bytes: Option<String>,

    /// Request body bytes being read at once, all connections together; a
    /// body past it gets 503 before it is read; at least --max-body
    /// [default: 64MiB]
    #[arg(
        long,
        env = "SPOUT_MAX_PENDING_BODY_BYTES",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub max_pending_body_bytes: Option<String>,

    /// Kernel send buffer of each event stream's socket (SO_SNDBUF); 0
    /// leaves the kernel's autotuning [default: 64KiB]
    #[arg(
        long,
        env = "SPOUT_SOCKET_SEND_BUFFER",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub socket_send_buffer: Option<String>,

    /// Most open client connections; further ones are answered 503
    /// [default: from the file-descriptor limit]
    #[arg(
        long,
        env = "SPOUT_MAX_CONNECTIONS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_connections: Option<String>,

    /// Most open connections from one client address (behind a +proxy
    /// listener, the address its PROXY header names); further ones are
    /// answered 503 [default: no limit]
    #[arg(
        long,
        env = "SPOUT_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_connections_per_ip: Option<String>,

    /// Most channels existing at once [default: 100000]
    #[arg(
        long,
        env = "SPOUT_MAX_CHANNELS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_channels: Option<String>,

    /// Most existing channels one client address may have created, by
    /// subscribing or by publishing without the publish key; further ones
    /// are refused [default: no limit]
    #[arg(
        long,
        env = "SPOUT_MAX_CHANNELS_PER_IP",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_channels_per_ip: Option<String>,

    /// Most channels one subscribe request (connection) may name
    /// [default: 64]
    #[arg(
        long,
        env = "SPOUT_MAX_SUBSCRIPTIONS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub max_subscriptions: Option<String>,

    /// Time to receive a complete request, head and body, from its start
    /// [default: 10s]
    #[arg(
        long,
        env = "SPOUT_REQUEST_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub request_timeout: Option<String>,

    /// Time an idle keep-alive connection may wait for its next request
    /// [default: 75s]
    #[arg(
        long,
        env = "SPOUT_KEEPALIVE_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub keepalive_timeout: Option<String>,

    /// Time open connections get to finish on shutdown; 0s closes them at
    /// once [default: 10s]
    #[arg(
        long,
        env = "SPOUT_DRAIN_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub drain_timeout: Option<String>,

    /// Events queued per worker before publishing answers 503
    /// [default: 65536]
    #[arg(
        long,
        env = "SPOUT_INBOX_CAPACITY",
        value_name = "N",
        allow_hyphen_values = true
    )]
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

    /// Who may subscribe and publish on the native API: none (anyone who can
    /// reach a listener), jwt (a signed token; see the --jwt-* options) or
    /// hook (the application decides each subscribe; see --auth-hook)
    /// [default: none]
    #[arg(long, env = "SPOUT_AUTH", value_name = "MODE")]
    pub auth: Option<String>,

    /// HMAC secret of signed tokens (HS256, HS384, HS512); repeatable, each
    /// secret accepted (rotation) [default: none]
    #[arg(
        long,
        env = "SPOUT_JWT_SECRET",
        value_name = "SECRET",
        action = ArgAction::Append,
        hide_env_values = true
    )]
    pub jwt_secret: Vec<String>,

    /// File of HMAC secrets for signed tokens, one per line [default: none]
    #[arg(long, env = "SPOUT_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<String>,

    /// PEM public key of signed tokens: RSA (RS256/384/512, PS256/384/512),
    /// EC (ES256, ES384) or Ed25519 (EdDSA); repeatable, comma-separated in
    /// the environment [default: none]
    #[arg(
        long,
        env = "SPOUT_JWT_PUBLIC_KEY",
        value_name = "FILE",
        action = ArgAction::Append,
        value_delimiter = ','
    )]
    pub jwt_public_key: Vec<String>,

    /// JWKS document (a JSON key set) of token keys, chosen by a token's
    /// kid [default: none]
    #[arg(long, env = "SPOUT_JWT_JWKS", value_name = "FILE")]
    pub jwt_jwks: Option<String>,

    /// Audience a token's aud must name [default: none (aud is not checked)]
    #[arg(long, env = "SPOUT_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Issuer a token's iss must be [default: none (iss is not checked)]
    #[arg(long, env = "SPOUT_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Clock skew allowed when checking a token's exp and nbf
    /// [default: 30s]
    #[arg(
        long,
        env = "SPOUT_JWT_LEEWAY",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub jwt_leeway: Option<String>,

    /// Cookie a subscribe's token may come in [default: spout_token]
    #[arg(long, env = "SPOUT_JWT_COOKIE", value_name = "NAME")]
    pub jwt_cookie: Option<String>,

    /// With --auth hook, the URL each subscribe is POSTed to (plain http)
    /// [default: none]
    #[arg(long, env = "SPOUT_AUTH_HOOK", value_name = "URL")]
    pub auth_hook: Option<String>,

    /// Request headers passed to the auth hook besides Authorization and
    /// Cookie; comma-separated [default: none]
    #[arg(
        long,
        env = "SPOUT_AUTH_HOOK_HEADERS",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub auth_hook_headers: Vec<String>,

    /// How long a subscribe waits for the auth hook before it is answered
    /// 503 auth_hook_timeout [default: 2s]
    #[arg(
        long,
        env = "SPOUT_AUTH_HOOK_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub auth_hook_timeout: Option<String>,

    /// Subscribes waiting for the auth hook at most; further ones are
    /// answered 503 auth_hook_busy [default: 10000]
    #[arg(
        long,
        env = "SPOUT_AUTH_HOOK_MAX_PENDING",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub auth_hook_max_pending: Option<String>,

    /// How long the auth hook's decision on the same credentials and
    /// request is reused; 0s to ask every time [default: 0s]
    #[arg(
        long,
        env = "SPOUT_AUTH_HOOK_CACHE",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub auth_hook_cache: Option<String>,

    /// With --auth jwt, channels anyone may subscribe to without a token:
    /// comma-separated names or prefixes ending in * [default: none]
    #[arg(
        long,
        env = "SPOUT_PUBLIC_CHANNELS",
        value_name = "PATTERNS",
        value_delimiter = ','
    )]
    pub public_channels: Vec<String>,

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

    /// Serve the status page (GET /status) and its stream (GET
    /// /status/stream): on or off; --status alone is on. Behind
    /// --publish-key when one is set [default: off]
    #[arg(
        long,
        env = "SPOUT_STATUS",
        value_name = "on|off",
        num_args = 0..=1,
        default_missing_value = "on"
    )]
    pub status: Option<String>,

    /// Where events meet between nodes: local (this process only), or
    /// redis://HOST:PORT[,HOST:PORT...], the seed nodes of a Redis Cluster
    /// (or one plain Redis) shared by every node [default: local]
    #[arg(long, env = "SPOUT_BROKER", value_name = "BROKER")]
    pub broker: Option<String>,

    /// Prefix of every Redis key and shard channel spout uses, so that
    /// several deployments can share one Redis [default: spout:]
    #[arg(long, env = "SPOUT_BROKER_PREFIX", value_name = "PREFIX")]
    pub broker_prefix: Option<String>,

    /// How long a request waits for Redis before it is answered 503
    /// broker_unavailable [default: 2s]
    #[arg(
        long,
        env = "SPOUT_BROKER_TIMEOUT",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub broker_timeout: Option<String>,

    /// How long a node's subscribers stay listed in Redis without the node
    /// refreshing them (a node that dies leaves no ghosts after it)
    /// [default: 15s]
    #[arg(
        long,
        env = "SPOUT_BROKER_NODE_TTL",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub broker_node_ttl: Option<String>,

    /// Answer a publish only once this many replicas of the channel's shard
    /// have it (Redis WAIT); 0 answers once its master has it [default: 0]
    #[arg(
        long,
        env = "SPOUT_BROKER_WAIT_REPLICAS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub broker_wait_replicas: Option<String>,

    /// This node's name in logs, e.g. web1:8080 [default: host name and
    /// first port]
    #[arg(long, env = "SPOUT_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Print the effective configuration (flags, variables, the --config file
    /// and the defaults merged) in the --config file's format, and exit
    #[arg(long)]
    pub print_config: bool,
}
