//! Value parsers (durations, sizes, counts, listeners, origins, levels) and the helpers that turn a bad value
//! into a `ConfigError` naming both spellings of its key.

use super::*;

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
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{s}' is too large; at most 3650d"))
}

/// The longest duration accepted (ten years): deadlines are `Instant + duration`, which must not overflow.
const MAX_DURATION_MS: u64 = 3650 * 24 * 60 * 60 * 1000;

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
pub(super) fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses a count: a whole number without unit.
pub fn parse_count(s: &str) -> Result<usize, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got '{s}'"));
    }
    t.parse().map_err(|_| format!("'{t}' is too large"))
}

/// Parses one `--listen` value, `IP:PORT[=API]`.
pub(super) fn parse_listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty address; expected IP:PORT[=API][+proxy], e.g. 127.0.0.1:8080".into());
    }
    // `+proxy` ends the value: `+` is in no address or API name (and `,` separates values in SPOUT_LISTEN).
    let (s, proxy) = match s.strip_suffix("+proxy") {
        Some(rest) => (rest.trim_end(), true),
        None => (s, false),
    };
    if let Some((_, option)) = s.split_once('+') {
        return Err(format!(
            "unknown listener option '+{option}'; the one option is +proxy (IP:PORT[=API][+proxy])"
        ));
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
    Ok(Listen { addr, api, proxy })
}

/// Parses every `--listen` value; none gives [`DEFAULT_LISTEN`].
pub(super) fn parse_listen_list(
    flag: &'static str,
    raw: &[String],
) -> Result<Vec<Listen>, ConfigError> {
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
pub(super) fn parse_publish_key(s: &str) -> Result<String, String> {
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

/// Parses `--broker`: `local`, or `redis://HOST:PORT[,HOST:PORT...]` (the scheme once, or on every address).
pub(super) fn parse_broker(s: &str) -> Result<BrokerChoice, String> {
    let t = s.trim();
    if t == "local" {
        return Ok(BrokerChoice::Local);
    }
    let Some(list) = t.strip_prefix("redis://") else {
        return Err("must be local or redis://HOST:PORT[,HOST:PORT...]".into());
    };
    let mut seeds = Vec::new();
    for item in list.split(',') {
        let addr = item.trim().strip_prefix("redis://").unwrap_or(item.trim());
        let addr = addr.strip_suffix('/').unwrap_or(addr);
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("{addr:?} has no port; give HOST:PORT"));
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !valid_host || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        seeds.push(addr.to_string());
    }
    Ok(BrokerChoice::Redis(seeds))
}

/// Parses `--broker-prefix`: printable ASCII without spaces or braces (braces are Redis Cluster hash tags, which
/// spout sets itself so that a channel's keys and shard channel live on one shard).
pub(super) fn parse_broker_prefix(s: &str) -> Result<String, String> {
    if let Some(c) = s
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '{' | '}'))
    {
        return Err(format!(
            "contains {c:?}; only printable ASCII without spaces or braces is allowed"
        ));
    }
    Ok(s.to_owned())
}

/// Parses `--node-name`: 1 to 64 printable ASCII characters without spaces.
pub(super) fn parse_node_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be 1 to 64 printable ASCII characters without spaces".into());
    }
    Ok(s.to_owned())
}

/// Parses `--cors-origin`: `*`, `none` or empty, or a comma-separated list.
pub(super) fn parse_cors_origin(s: &str) -> Result<CorsOrigin, String> {
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
pub(super) fn parse_origin(s: &str) -> Result<String, String> {
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

pub(super) fn parse_auth_mode(s: &str) -> Result<AuthMode, String> {
    match s {
        "none" => Ok(AuthMode::None),
        "jwt" => Ok(AuthMode::Jwt),
        "hook" => Ok(AuthMode::Hook),
        _ => Err(format!("unknown mode '{s}'; use none, jwt or hook")),
    }
}

/// The hook's URL: `http://host[:port]/path`. Plain http only: the hook is the application beside spout, and a
/// TLS client on the hook threads would be a second TLS stack to keep.
pub(super) fn parse_hook_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{s}' is not an http:// URL"))?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{s}' has no host, or has spaces"));
    }
    Ok(s.to_string())
}

/// A request header's name (an RFC 9110 §5.6.2 token), lowercased.
pub(super) fn parse_header_name(s: &str) -> Result<String, String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if s.is_empty() || !s.chars().all(token) {
        return Err(format!("'{s}' is not a header name"));
    }
    Ok(s.to_ascii_lowercase())
}

pub(super) fn parse_jwt_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an empty secret would let anyone sign tokens".to_string());
    }
    Ok(s.to_string())
}

/// A channel pattern: a native channel name, or a prefix of one followed by `*` (`room.*`, `*`).
pub(super) fn parse_channel_pattern(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('*').unwrap_or(s);
    let valid_byte =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@');
    if (name.is_empty() && !s.ends_with('*')) || name.len() > 128 || !name.bytes().all(valid_byte) {
        return Err(format!(
            "'{s}' is not a channel pattern: a channel name (ASCII letters, digits, -_.~:@) \
             or a prefix of one followed by *"
        ));
    }
    Ok(s.to_string())
}

/// A cookie name is an RFC 6265 §4.1.1 token: visible ASCII except separators.
pub(super) fn parse_cookie_name(s: &str) -> Result<String, String> {
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        return Err(format!(
            "'{s}' is not a cookie name (visible ASCII, no separators such as = ; ,)"
        ));
    }
    Ok(s.to_string())
}

/// Which token options were given, for `check_auth`.
pub(super) struct JwtArgs {
    pub secrets: bool,
    pub secret_file: bool,
    pub public_keys: bool,
    pub jwks: bool,
    pub public_channels: bool,
    /// `--auth-hook`.
    pub hook: bool,
}

/// `--auth jwt` needs a key and `--auth hook` a URL; keys, public channels or a hook URL that the mode would not
/// use would be silently unused, so they are refused.
pub(super) fn check_auth(auth: AuthMode, jwt: &JwtArgs) -> Result<(), ConfigError> {
    let any_key = jwt.secrets || jwt.secret_file || jwt.public_keys || jwt.jwks;
    match auth {
        AuthMode::Hook if !jwt.hook => Err(error(
            "--auth",
            "hook needs the URL to ask: --auth-hook".to_string(),
        )),
        AuthMode::Hook if any_key || jwt.public_channels => Err(error(
            "--auth",
            "token keys (--jwt-*) or --public-channels given, but --auth is hook, which asks the hook for \
             every subscribe"
                .to_string(),
        )),
        AuthMode::None | AuthMode::Jwt if jwt.hook => Err(error(
            "--auth",
            format!(
                "--auth-hook given, but --auth is {}; set --auth hook to use it",
                auth.as_str()
            ),
        )),
        AuthMode::Jwt if !any_key => Err(error(
            "--auth",
            "jwt needs a key to check tokens with: --jwt-secret, --jwt-secret-file, \
             --jwt-public-key or --jwt-jwks"
                .to_string(),
        )),
        AuthMode::None if any_key || jwt.public_channels => {
            let flag = if jwt.public_channels && !any_key {
                "--public-channels"
            } else {
                "token keys (--jwt-*)"
            };
            Err(error(
                "--auth",
                format!("{flag} given, but --auth is none; set --auth jwt to use them"),
            ))
        }
        _ => Ok(()),
    }
}

pub(super) fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    s.trim()
        .parse::<LevelFilter>()
        .map_err(|_| format!("unknown level '{s}'; use off, error, warn, info, debug or trace"))
}

pub(super) fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown format '{s}'; use text or json")),
    }
}

/// An option that is on or off: `on`/`off`, or `true`/`false` (a TOML boolean in the `--config` file).
pub(super) fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

/// The environment variable that sets `flag`: `--max-body` → `SPOUT_MAX_BODY`.
pub(super) fn env_name(flag: &str) -> String {
    let name = flag
        .trim_start_matches('-')
        .to_ascii_uppercase()
        .replace('-', "_");
    format!("SPOUT_{name}")
}

/// A `ConfigError` naming `flag` and its environment variable.
pub(super) fn error(flag: &str, reason: String) -> ConfigError {
    ConfigError {
        key: format!("{flag} ({})", env_name(flag)),
        reason,
    }
}

pub(super) fn parse_field<T>(
    flag: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(raw).map_err(|reason| error(flag, reason))
}

pub(super) fn size_field(
    flag: &str,
    raw: Option<&str>,
    default: usize,
) -> Result<usize, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_size))
}

pub(super) fn count_field(
    flag: &str,
    raw: Option<&str>,
    default: usize,
) -> Result<usize, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_count))
}

pub(super) fn duration_field(
    flag: &str,
    raw: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    raw.map_or(Ok(default), |raw| parse_field(flag, raw, parse_duration))
}

pub(super) fn check_count_range(
    flag: &str,
    n: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if n < min {
        return Err(error(flag, format!("{n} is below the minimum of {min}")));
    }
    if n > max {
        return Err(error(flag, format!("{n} is above the maximum of {max}")));
    }
    Ok(())
}

pub(super) fn check_min_size(flag: &str, n: usize, min: usize) -> Result<(), ConfigError> {
    check_size_range(flag, n, min, usize::MAX)
}

pub(super) fn check_size_range(
    flag: &str,
    n: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
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

pub(super) fn check_non_zero(flag: &str, d: Duration, hint: &str) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(error(flag, format!("must be longer than zero{hint}")));
    }
    Ok(())
}

/// A size as an operator would write it: `1MiB` when exact, else bytes.
pub(super) fn show_size(n: usize) -> String {
    for (unit, suffix) in [(1 << 30, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    if n == 1 {
        return "1 byte".to_owned();
    }
    format!("{n} bytes")
}

/// Turns a clap parse failure into a `ConfigError` naming the argument.
pub(super) fn clap_error(e: &clap::Error) -> ConfigError {
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
