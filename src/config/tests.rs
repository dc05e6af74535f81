//! Unit tests of configuration parsing and validation.

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
        ("3650d", Duration::from_secs(3650 * 86_400)),
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
        ("3651d", "at most 3650d"),
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
    assert_eq!(c.ws_ping, Duration::from_secs(30));
    assert_eq!(c.ws_timeout, Duration::from_secs(60));
    assert_eq!(c.ws_max_message, 64 << 10);
    assert_eq!(c.max_body, 1 << 20);
    assert_eq!(c.max_head, 8 << 10);
    assert_eq!(c.max_headers, 64);
    assert_eq!(c.max_queued_bytes, 1 << 20);
    assert_eq!(c.max_pending_body_bytes, 64 << 20);
    assert_eq!(c.socket_send_buffer, 64 << 10);
    assert_eq!(c.max_connections, None);
    assert_eq!(c.max_connections_per_ip, None);
    assert_eq!(c.max_channels_per_ip, None);
    assert_eq!(c.max_channels, 100_000);
    assert_eq!(c.max_subscriptions, 64);
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.inbox_capacity, 65_536);
    assert_eq!(c.publish_key, None);
    assert_eq!(c.cors_origin, CorsOrigin::Any);
    assert_eq!(c.auth, AuthMode::None);
    assert_eq!(c.jwt_leeway, Duration::from_secs(30));
    assert_eq!(c.jwt_cookie, "spout_token");
    assert!(c.public_channels.is_empty());
    assert_eq!(c.log_level, LevelFilter::Info);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.broker, BrokerChoice::Local);
    assert_eq!(c.broker_prefix, "spout:");
    assert_eq!(c.broker_timeout, Duration::from_secs(2));
    assert_eq!(c.broker_node_ttl, Duration::from_secs(15));
    assert_eq!(c.broker_wait_replicas, 0);
    assert_eq!(c.node_name, None);
    assert!(c.is_loopback_only());
    assert!(c.warnings().is_empty());
}

#[test]
fn the_broker_is_local_or_redis_seeds() {
    let seeds = |list: &[&str]| BrokerChoice::Redis(list.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        config(&["--broker", "local"]).map(|c| c.broker),
        Ok(BrokerChoice::Local)
    );
    assert_eq!(
        config(&["--broker", "redis://10.0.0.1:7000,10.0.0.2:7000"]).map(|c| c.broker),
        Ok(seeds(&["10.0.0.1:7000", "10.0.0.2:7000"]))
    );
    assert_eq!(
        config(&["--broker", "redis://redis-a:6379/,redis://redis-b:6379"]).map(|c| c.broker),
        Ok(seeds(&["redis-a:6379", "redis-b:6379"]))
    );
    for bad in [
        "redis",
        "http://x:1",
        "redis://x",
        "redis://x:0",
        "redis://:6379",
        "redis://a b:1",
    ] {
        let err = config(&["--broker", bad]).expect_err(bad);
        assert!(err.to_string().contains("--broker (SPOUT_BROKER)"), "{err}");
    }
    assert!(config(&["--broker-prefix", "a{b"]).is_err());
    assert!(config(&["--node-name", "has space"]).is_err());
}

/// The `[default: X]` in each option's help, fed back in as `--flag X`,
/// must give the same `Config` as no flag at all: help and the
/// `DEFAULT_*` consts cannot drift apart.
#[test]
fn help_defaults_match_default_consts() {
    let described_only = [
        "config",
        "workers",
        "max-connections",
        "max-connections-per-ip",
        "max-channels-per-ip",
        "publish-key",
        "jwt-secret",
        "jwt-secret-file",
        "jwt-public-key",
        "jwt-jwks",
        "jwt-audience",
        "jwt-issuer",
        "public-channels",
        "auth-hook",
        "auth-hook-headers",
        "node-name",
    ];
    let cmd = Args::command();
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version", "print-config"].contains(&long) {
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
    assert_eq!(checked, 41);
}

#[test]
fn every_option_has_its_env_var() {
    let cmd = Args::command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // Actions, not settings: no variable sets them.
        if ["help", "version", "print-config"].contains(&long) {
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
fn listen_binds_every_api() {
    let c = config(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:6550=pipely,0.0.0.0:9090=node-sse",
        "--listen",
        "127.0.0.1:7999=flychat,127.0.0.1:5222=ws-push,127.0.0.1:3498=keker",
    ])
    .unwrap();
    let apis: Vec<Api> = c.listen.iter().map(|l| l.api).collect();
    assert_eq!(apis, Api::ALL);
    assert_eq!(c.listen[1].addr.port(), 6550);
}

#[test]
fn listen_takes_the_proxy_option() {
    let c = config(&[
        "--listen",
        "127.0.0.1:1=keker+proxy",
        "--listen",
        "[::1]:2+proxy",
        "--listen",
        "127.0.0.1:3",
    ])
    .unwrap();
    let got: Vec<(Api, bool)> = c.listen.iter().map(|l| (l.api, l.proxy)).collect();
    assert_eq!(
        got,
        [
            (Api::Keker, true),
            (Api::Native, true),
            (Api::Native, false)
        ]
    );
    assert_eq!(c.listen[0].to_string(), "127.0.0.1:1=keker+proxy");
    assert_eq!(c.listen[2].to_string(), "127.0.0.1:3=native");
}

#[test]
fn listen_errors_name_the_key() {
    let cases = [
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
        (
            "127.0.0.1:8080=native+tls",
            "unknown listener option '+tls'",
        ),
        ("127.0.0.1:8080+proxy+proxy", "unknown listener option"),
        ("127.0.0.1:8080=proxy", "unknown API 'proxy'"),
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
        "--ws-ping=100ms",
        "--ws-timeout=101ms",
        "--ws-max-message=125",
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
    assert_eq!(c.ws_ping, Duration::from_millis(100));
    assert_eq!(c.ws_timeout, Duration::from_millis(101));
    assert_eq!(c.ws_max_message, 125);
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
fn status_is_a_switch() {
    for (argv, on) in [
        (&["--status"][..], true),
        (&["--status=on"], true),
        (&["--status", "true"], true),
        (&["--status=off"], false),
        (&["--status=false"], false),
        (&[], false),
    ] {
        assert_eq!(config(argv).map(|c| c.status), Ok(on), "{argv:?}");
    }
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
        ("--ws-ping=99ms", "minimum of 100ms"),
        ("--ws-timeout=30s", "not longer than --ws-ping"),
        ("--ws-max-message=124", "minimum of 125"),
        ("--ws-max-message=17MiB", "maximum of 16MiB"),
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
        (
            "--max-body=2MiB --max-queued-bytes=2MiB --max-pending-body-bytes=1MiB",
            "1MiB is less than --max-body 2MiB: the largest body could never be read",
        ),
        ("--max-connections=0", "minimum of 1"),
        ("--max-connections-per-ip=0", "minimum of 1"),
        ("--max-channels-per-ip=0", "minimum of 1"),
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
        ("--status=yes", "neither on nor off"),
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

/// A value that starts with `-` reaches the value check, which names the key: `--history -1` is refused as
/// `--history=-1` is, not as an unknown flag `-1`.
#[test]
fn negative_values_get_the_same_message_either_way() {
    let cases = [
        ("--history", "-1"),
        ("--workers", "-2"),
        ("--max-body", "-1MiB"),
        ("--heartbeat", "-1s"),
        ("--max-connections", "-5"),
    ];
    for (flag, value) in cases {
        let apart = config(&[flag, value]).expect_err(flag);
        let joined = config(&[&format!("{flag}={value}")]).expect_err(flag);
        assert_eq!(apart, joined, "{flag} {value}");
        assert!(apart.key.starts_with(flag), "{apart}");
        assert!(apart.reason.contains(value), "{apart}");
    }
}

#[test]
fn listen_help_names_every_api() {
    let cmd = Args::command();
    let listen = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("listen"))
        .expect("--listen");
    let help = listen.get_help().map(|h| h.to_string()).unwrap_or_default();
    for api in Api::ALL {
        assert!(
            help.contains(api.as_str()),
            "--listen help lacks {api}: {help}"
        );
    }
}

#[test]
fn auth_options_are_checked_together() {
    let c = config(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        "s1",
        "--jwt-secret",
        "s2",
        "--jwt-public-key",
        "a.pem,b.pem",
        "--public-channels",
        "news,room.*,*",
        "--jwt-cookie",
        "tok",
        "--jwt-leeway",
        "0s",
    ])
    .expect("valid");
    assert_eq!(c.auth, AuthMode::Jwt);
    assert_eq!(c.jwt_secrets, ["s1", "s2"]);
    assert_eq!(c.jwt_public_keys.len(), 2);
    assert_eq!(c.public_channels, ["news", "room.*", "*"]);
    assert_eq!(c.jwt_cookie, "tok");
    assert_eq!(c.jwt_leeway, Duration::ZERO);
    assert!(!format!("{c:?}").contains("s1"), "secrets are redacted");
    assert_eq!(c.warnings().len(), 2, "two short secrets");
    let refusals: [(&[&str], &str); 14] = [
        (
            &["--auth", "jwt"],
            "invalid --auth (SPOUT_AUTH): jwt needs a key",
        ),
        (&["--auth", "oauth"], "unknown mode 'oauth'"),
        (
            &["--auth", "hook"],
            "hook needs the URL to ask: --auth-hook",
        ),
        (
            &["--auth-hook", "http://127.0.0.1:9/check"],
            "--auth-hook given, but --auth is none",
        ),
        (
            &[
                "--auth",
                "hook",
                "--auth-hook",
                "https://auth.example/check",
            ],
            "is not an http:// URL",
        ),
        (
            &["--auth", "hook", "--auth-hook", "http:///check"],
            "has no host",
        ),
        (
            &[
                "--auth",
                "hook",
                "--auth-hook",
                "http://127.0.0.1:9/",
                "--jwt-secret",
                "s",
            ],
            "but --auth is hook",
        ),
        (
            &[
                "--auth",
                "hook",
                "--auth-hook",
                "http://127.0.0.1:9/",
                "--auth-hook-headers",
                "X Tenant",
            ],
            "'X Tenant' is not a header name",
        ),
        (
            &[
                "--auth",
                "hook",
                "--auth-hook",
                "http://127.0.0.1:9/",
                "--auth-hook-max-pending",
                "0",
            ],
            "--auth-hook-max-pending",
        ),
        (&["--jwt-secret", "s"], "but --auth is none"),
        (
            &["--public-channels", "news"],
            "--public-channels given, but --auth is none",
        ),
        (&["--auth", "jwt", "--jwt-secret", ""], "an empty secret"),
        (
            &[
                "--auth",
                "jwt",
                "--jwt-secret",
                "s",
                "--public-channels",
                "a*b",
            ],
            "'a*b' is not a channel pattern",
        ),
        (
            &["--auth", "jwt", "--jwt-secret", "s", "--jwt-cookie", "a=b"],
            "'a=b' is not a cookie name",
        ),
    ];
    for (args, want) in refusals {
        let e = config(args).expect_err(want).to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
}
