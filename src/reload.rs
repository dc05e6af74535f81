//! What `SIGHUP` changes in a running spout: the configuration is loaded again (command line, `SPOUT_*`
//! variables and the `--config` file, as at start); the options that can change without dropping a connection
//! take effect at once, and the others are named as needing a restart.
//!
//! Reloadable: the publish key and the log level. Everything else (listeners, workers, limits, timers) is fixed
//! into sockets, threads and connections at start, and changing it under them would make a server whose
//! connections disagree about their own limits.
//!
//! [`Live`] holds the reloadable values the workers read: the publish key is read from it (once per publish or
//! admin request, never in fan-out), not from `Config`, whose copy stays the one of the start. A reload that
//! fails to load (a bad file) changes nothing.

use std::sync::{Arc, RwLock};

use crate::config::Config;

/// Options a reload applies, as the `--config` file names them.
pub const RELOADABLE: [&str; 2] = ["publish-key", "log-level"];

/// The reloadable values in force, shared by the main thread (which writes them on `SIGHUP`) and the workers.
pub struct Live {
    publish_key: RwLock<Option<Arc<str>>>,
}

impl Live {
    pub fn new(config: &Config) -> Live {
        Live {
            publish_key: RwLock::new(config.publish_key.as_deref().map(Arc::from)),
        }
    }

    /// The publish key in force.
    pub fn publish_key(&self) -> Option<Arc<str>> {
        // A writer only replaces the value, and cannot panic midway: a poisoned lock still holds a whole key.
        self.publish_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_publish_key(&self, key: Option<&str>) {
        *self.publish_key.write().unwrap_or_else(|p| p.into_inner()) = key.map(Arc::from);
    }
}

/// On `SIGHUP`: loads the configuration again as at start and applies it over `current`, logging what changed,
/// what needs a restart, or why the new configuration was refused (then nothing changes).
pub fn on_hangup(current: &mut Config, live: &Live) {
    let new = match Config::load() {
        Ok((new, _)) => new,
        Err(e) => {
            log::error!("reload refused, the running configuration stays: {e}");
            return;
        }
    };
    let outcome = apply(current, &new, live);
    if outcome.applied.is_empty() && outcome.need_restart.is_empty() {
        log::info!("reload: no change");
    }
    if !outcome.applied.is_empty() {
        log::info!("reload: applied {}", outcome.applied.join(", "));
    }
    if !outcome.need_restart.is_empty() {
        log::warn!(
            "reload: {} changed but take effect only on a restart; running with the values of the start",
            outcome.need_restart.join(", ")
        );
    }
}

/// The options whose values differ between two configurations, in the order of `spout --help`, the publish
/// key last.
pub fn changed(old: &Config, new: &Config) -> Vec<String> {
    // The `--config` rendering lists every option once, in a fixed order: comparing it line by line finds the
    // changed keys without another list of the fields here. It says only whether a publish key is set, so the
    // keys themselves are compared apart.
    let (old_toml, new_toml) = (old.to_toml(), new.to_toml());
    let key = |line: &str| {
        let line = line.trim_start_matches("# ");
        line.split([' ', ':']).next().unwrap_or_default().to_owned()
    };
    let mut keys: Vec<String> = old_toml
        .lines()
        .zip(new_toml.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| key(a))
        .filter(|k| k != "publish-key")
        .collect();
    if old.publish_key != new.publish_key {
        keys.push("publish-key".to_owned());
    }
    keys
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Options changed and now in force.
    pub applied: Vec<String>,
    /// Options changed in the configuration that keep their start values until a restart.
    pub need_restart: Vec<String>,
}

/// Applies `new` over `current` (the configuration in force): the reloadable options are set in `live` and the
/// logger and copied into `current`; the others are only reported.
pub fn apply(current: &mut Config, new: &Config, live: &Live) -> Outcome {
    let mut outcome = Outcome::default();
    for key in changed(current, new) {
        if RELOADABLE.contains(&key.as_str()) {
            outcome.applied.push(key);
        } else {
            outcome.need_restart.push(key);
        }
    }
    if current.publish_key != new.publish_key {
        live.set_publish_key(new.publish_key.as_deref());
        current.publish_key.clone_from(&new.publish_key);
    }
    if current.log_level != new.log_level {
        crate::logger::set_level(new.log_level);
        current.log_level = new.log_level;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_key_applies_and_the_limits_wait_for_a_restart() {
        let mut current = Config::default();
        let live = Live::new(&current);
        assert_eq!(live.publish_key(), None);
        let new = Config {
            publish_key: Some("a-new-key-of-some-length".into()),
            max_body: 2 << 20,
            max_queued_bytes: 4 << 20,
            heartbeat: Duration::from_secs(20),
            ..Config::default()
        };
        let outcome = apply(&mut current, &new, &live);
        assert_eq!(outcome.applied, ["publish-key"]);
        assert_eq!(
            outcome.need_restart,
            ["heartbeat", "max-body", "max-queued-bytes"]
        );
        assert_eq!(
            live.publish_key().as_deref(),
            Some("a-new-key-of-some-length")
        );
        assert_eq!(current.publish_key, new.publish_key);
        // The rest stays as it started, and is reported again by the next reload.
        assert_eq!(current.max_body, Config::default().max_body);
        assert_eq!(apply(&mut current, &new, &live).need_restart.len(), 3);
        assert!(apply(&mut current, &new, &live).applied.is_empty());

        let removed = apply(&mut current, &Config::default(), &live);
        assert_eq!(removed.applied, ["publish-key"]);
        assert_eq!(live.publish_key(), None);
    }

    #[test]
    fn keys_that_are_comments_when_unset_are_found_too() {
        let old = Config::default();
        let new = Config {
            max_connections: Some(100),
            ..Config::default()
        };
        assert_eq!(changed(&old, &new), ["max-connections"]);
        assert_eq!(changed(&new, &old), ["max-connections"]);
        assert!(changed(&old, &old).is_empty());
    }
}
