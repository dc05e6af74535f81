//! The effective configuration as a `--config` file (`spout --print-config`): every option, in the order of
//! `spout --help`, with the values and units an operator writes. Fed back with `--config`, it gives the same
//! `Config` (tested), except for the publish key, which is never printed.

use std::fmt::Write;
use std::time::Duration;

use super::{Config, CorsOrigin, KIB, MIB};

/// A duration in the largest unit that divides it exactly: `15s`, `1h`, `500ms`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, suffix) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("\"{}{suffix}\"", ms / unit);
        }
    }
    format!("\"{ms}ms\"")
}

/// A size in the largest binary unit that divides it exactly (`"1MiB"`), else a plain count of bytes.
fn size(n: usize) -> String {
    for (unit, suffix) in [(1 << 30, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("\"{}{suffix}\"", n / unit);
        }
    }
    n.to_string()
}

/// A TOML basic string. The values quoted here (addresses, origins, level names) hold no quote or backslash,
/// which the option parsers refuse; escaping them anyway keeps the output valid TOML whatever they hold.
fn string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Config {
    /// The configuration as a `--config` file.
    pub fn to_toml(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|l| string(&l.to_string())).collect();
        let cors_origin = match &self.cors_origin {
            CorsOrigin::Any => "*".to_owned(),
            CorsOrigin::Disabled => "none".to_owned(),
            CorsOrigin::List(origins) => origins.join(","),
        };
        // `None`: the option has no value to print; its line is a comment saying why.
        let path_list = |paths: &[std::path::PathBuf]| {
            let quoted: Vec<String> = paths.iter().map(|p| string(&p.to_string_lossy())).collect();
            format!("[{}]", quoted.join(", "))
        };
        let optional_path = |path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .map(|p| string(&p.to_string_lossy()))
                .ok_or("none")
        };
        let public: Vec<String> = self.public_channels.iter().map(|c| string(c)).collect();
        let hook_headers: Vec<String> = self.auth_hook_headers.iter().map(|h| string(h)).collect();
        let options: [(&str, Result<String, &str>); 56] = [
            ("listen", Ok(format!("[{}]", listen.join(", ")))),
            ("workers", Ok(self.workers.to_string())),
            ("history", Ok(self.history.to_string())),
            ("history-ttl", Ok(duration(self.history_ttl))),
            ("history-max-bytes", Ok(size(self.history_max_bytes))),
            ("heartbeat", Ok(duration(self.heartbeat))),
            ("retry", Ok(duration(self.retry))),
            ("ws-ping", Ok(duration(self.ws_ping))),
            ("ws-timeout", Ok(duration(self.ws_timeout))),
            ("ws-max-message", Ok(size(self.ws_max_message))),
            ("flychat-keepalive", Ok(duration(self.flychat_keepalive))),
            ("ws-push-ping", Ok(duration(self.ws_push_ping))),
            ("ws-push-timeout", Ok(duration(self.ws_push_timeout))),
            ("keker-timeout", Ok(duration(self.keker_timeout))),
            ("keker-cache-ttl", Ok(duration(self.keker_cache_ttl))),
            ("max-body", Ok(size(self.max_body))),
            ("max-head", Ok(size(self.max_head))),
            ("max-headers", Ok(self.max_headers.to_string())),
            ("max-queued-bytes", Ok(size(self.max_queued_bytes))),
            (
                "max-pending-body-bytes",
                Ok(size(self.max_pending_body_bytes)),
            ),
            ("socket-send-buffer", Ok(size(self.socket_send_buffer))),
            (
                "max-connections",
                self.max_connections
                    .map(|n| n.to_string())
                    .ok_or("from the file-descriptor limit at start"),
            ),
            (
                "max-connections-per-ip",
                self.max_connections_per_ip
                    .map(|n| n.to_string())
                    .ok_or("no limit"),
            ),
            ("max-channels", Ok(self.max_channels.to_string())),
            (
                "max-channels-per-ip",
                self.max_channels_per_ip
                    .map(|n| n.to_string())
                    .ok_or("no limit"),
            ),
            ("max-subscriptions", Ok(self.max_subscriptions.to_string())),
            ("request-timeout", Ok(duration(self.request_timeout))),
            ("keepalive-timeout", Ok(duration(self.keepalive_timeout))),
            ("drain-timeout", Ok(duration(self.drain_timeout))),
            ("inbox-capacity", Ok(self.inbox_capacity.to_string())),
            (
                "publish-key",
                Err(if self.publish_key.is_some() {
                    "set, not printed"
                } else {
                    "none"
                }),
            ),
            ("cors-origin", Ok(string(&cors_origin))),
            (
                "log-level",
                Ok(string(&self.log_level.as_str().to_ascii_lowercase())),
            ),
            ("log-format", Ok(string(self.log_format.as_str()))),
            ("status", Ok(string(if self.status { "on" } else { "off" }))),
            ("auth", Ok(string(self.auth.as_str()))),
            (
                "jwt-secret",
                Err(if self.jwt_secrets.is_empty() {
                    "none"
                } else {
                    "set, not printed"
                }),
            ),
            ("jwt-secret-file", optional_path(&self.jwt_secret_file)),
            ("jwt-public-key", Ok(path_list(&self.jwt_public_keys))),
            ("jwt-jwks", optional_path(&self.jwt_jwks)),
            (
                "jwt-audience",
                self.jwt_audience.as_deref().map(string).ok_or("none"),
            ),
            (
                "jwt-issuer",
                self.jwt_issuer.as_deref().map(string).ok_or("none"),
            ),
            ("jwt-leeway", Ok(duration(self.jwt_leeway))),
            ("jwt-cookie", Ok(string(&self.jwt_cookie))),
            ("public-channels", Ok(format!("[{}]", public.join(", ")))),
            (
                "auth-hook",
                self.auth_hook.as_deref().map(string).ok_or("none"),
            ),
            (
                "auth-hook-headers",
                Ok(format!("[{}]", hook_headers.join(", "))),
            ),
            ("auth-hook-timeout", Ok(duration(self.auth_hook_timeout))),
            (
                "auth-hook-max-pending",
                Ok(self.auth_hook_max_pending.to_string()),
            ),
            ("auth-hook-cache", Ok(duration(self.auth_hook_cache))),
            ("broker", Ok(string(&self.broker.to_string()))),
            ("broker-prefix", Ok(string(&self.broker_prefix))),
            ("broker-timeout", Ok(duration(self.broker_timeout))),
            ("broker-node-ttl", Ok(duration(self.broker_node_ttl))),
            (
                "broker-wait-replicas",
                Ok(self.broker_wait_replicas.to_string()),
            ),
            (
                "node-name",
                self.node_name
                    .as_deref()
                    .map(string)
                    .ok_or("the host name and the first port, at start"),
            ),
        ];
        let mut out = String::from("# spout's effective configuration (spout --print-config)\n");
        for (key, value) in options {
            let _ = match value {
                Ok(value) => writeln!(out, "{key} = {value}"),
                Err(why) => writeln!(out, "# {key}: {why}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn values_in_the_units_an_operator_writes() {
        assert_eq!(duration(Duration::from_secs(15)), "\"15s\"");
        assert_eq!(duration(Duration::from_secs(3600)), "\"1h\"");
        assert_eq!(duration(Duration::from_secs(90)), "\"90s\"");
        assert_eq!(duration(Duration::from_millis(1500)), "\"1500ms\"");
        assert_eq!(duration(Duration::ZERO), "\"0ms\"");
        assert_eq!(duration(Duration::from_secs(2 * 86_400)), "\"2d\"");
        assert_eq!(size(MIB), "\"1MiB\"");
        assert_eq!(size(256 * MIB), "\"256MiB\"");
        assert_eq!(size(1000), "1000");
        assert_eq!(size(0), "0");
        assert_eq!(string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
