//! The compatible APIs' shared state on the Redis broker (`Shared for RedisBroker`, see `broker::shared`): their
//! scripts run on the broker thread like the native API's, each answered through the worker's inbox; their events
//! travel as the native events do (a channel's stream, its shard channel, the node's table), carrying the frame
//! the API made.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tokio::sync::watch;

use super::scripts::{keys, millis};
use super::{send_answer, Command, Health, Node, RedisBroker};
use crate::broker::shared::{ChannelKeys, Lua, Shared, Value};
use crate::broker::{Ask, BrokerAnswer, BrokerError, Reply};
use crate::bus::Bus;
use crate::channels::Subscription;
use crate::message::EventId;

/// Events a compatible channel's stream keeps: what a stream subscribing after a script's cursor reads back when
/// this node did not hold the channel yet. Compatible APIs keep their own history where the original had one.
const STREAM_LENGTH: u64 = 1000;

/// The Lua functions every compatible API's script starts with (see `broker::shared`); `SPOUT_LENGTH` and
/// `SPOUT_TTL` are the stream's length and expiry, set per deployment.
const PRELUDE: &str = r"
local function spout_send(stream, shard, kind, to, bytes)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', SPOUT_LENGTH, '*', 'w', kind, 't', to, 'd', bytes)
  redis.call('SPUBLISH', shard, 'W\n' .. id .. '\n' .. kind .. '\n' .. to .. '\n' .. bytes)
  redis.call('PEXPIRE', stream, SPOUT_TTL)
  return id
end
local function spout_last(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last == 0 then return '0-0' end
  return last[1][1]
end
local function spout_now()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
";

/// A script of a compatible API asked of the broker thread.
pub(super) struct Evaluation {
    pub(super) lua: &'static Lua,
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
    /// `None`: nobody waits (`eval_detached`); a failure is logged.
    pub(super) waiter: Option<crate::broker::Waiter>,
}

impl Shared for RedisBroker {
    fn key(&self, tag: &str, name: &str) -> String {
        format!("{}:{name}", keys(&self.prefix, tag).shard)
    }

    fn channel(&self, channel: &str) -> ChannelKeys {
        let keys = keys(&self.prefix, channel);
        ChannelKeys {
            stream: keys.stream(),
            shard: keys.shard,
        }
    }

    fn eval(
        &self,
        script: &'static Lua,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        ask: Ask<'_>,
    ) -> Result<Reply<Value>, BrokerError> {
        if matches!(ask.answer, Some(BrokerAnswer::Evaluated(_))) {
            if let Some(BrokerAnswer::Evaluated(result)) = ask.answer.take() {
                return result.map(Reply::Now);
            }
        }
        self.queue(Command::Eval(Evaluation {
            lua: script,
            keys,
            args,
            waiter: Some(ask.waiter),
        }))?;
        Ok(Reply::Later)
    }

    fn eval_detached(&self, script: &'static Lua, keys: Vec<String>, args: Vec<Vec<u8>>) {
        self.health.detached.fetch_add(1, Ordering::Relaxed);
        let queued = self.queue(Command::Eval(Evaluation {
            lua: script,
            keys,
            args,
            waiter: None,
        }));
        if queued.is_err() {
            self.health.detached.fetch_sub(1, Ordering::Relaxed);
            log::warn!(
                "broker: a script of a compatible API was dropped: the broker's queue is full"
            );
        }
    }

    fn hold(
        &self,
        channels: &[&str],
        creator: Option<IpAddr>,
        ask: Ask<'_>,
    ) -> Result<Reply<()>, BrokerError> {
        if matches!(ask.answer, Some(BrokerAnswer::Warmed(_))) {
            if let Some(BrokerAnswer::Warmed(result)) = ask.answer.take() {
                result?;
            }
        }
        if self.table.holds_fed(channels) {
            return Ok(Reply::Now(()));
        }
        let cold = channels.iter().map(|name| ((*name).into(), None)).collect();
        self.ask_warm(cold, creator, ask.waiter)?;
        Ok(Reply::Later)
    }

    fn subscribe(
        &self,
        worker: usize,
        channels: &[(&str, Option<EventId>)],
        client_id: &str,
    ) -> Result<Subscription, BrokerError> {
        self.table
            .subscribe_held(worker, channels, client_id)
            .ok_or(BrokerError::Unavailable)
    }

    fn node(&self) -> &str {
        &self.node_name
    }

    fn ttl(&self) -> Duration {
        self.node_ttl
    }
}

/// The broker thread's copies of the compatible APIs' scripts, each with the prelude in front, made on first use
/// (and again after a reconnection: a single Redis publishes with `PUBLISH`); and the order of the scripts nobody
/// waits for.
///
/// Each script runs as a task of its own, so two tasks could reach Redis in either order (a script Redis has not
/// loaded yet takes an extra round trip). Scripts nobody waits for are chained by their first key (the shard and
/// the state they change): each starts once the one queued before it on that key has finished, so the sends of a
/// channel, and a stream's leave before a later join, keep the order they were asked in. A script whose answer is
/// waited for starts after the unfinished ones of its key too, but nothing waits for it.
#[derive(Default)]
pub(super) struct LoadedScripts {
    /// Shared with the tasks that run them: a script's source is not copied per run.
    scripts: HashMap<usize, Arc<Script>>,
    /// Per first key, the last unfinished script nobody waits for: its sender is dropped when it finishes.
    detached: HashMap<String, watch::Receiver<()>>,
}

impl RedisBroker {
    /// Scripts queued without a waiter that have not finished.
    pub(super) fn detached_pending(&self) -> u64 {
        self.health.detached.load(Ordering::Relaxed)
    }
}

impl LoadedScripts {
    pub(super) fn clear(&mut self) {
        self.scripts.clear();
    }

    /// Forgets the chains whose last script has finished.
    pub(super) fn prune(&mut self) {
        self.detached.retain(|_, done| done.has_changed().is_ok());
    }

    fn get(&mut self, lua: &'static Lua, publish: &str, ttl: Duration) -> Arc<Script> {
        let key = std::ptr::from_ref(lua) as usize;
        self.scripts
            .entry(key)
            .or_insert_with(|| {
                let prelude = PRELUDE
                    .replace("SPOUT_LENGTH", &STREAM_LENGTH.to_string())
                    .replace("SPOUT_TTL", &millis(ttl).to_string())
                    .replace("'SPUBLISH'", &format!("'{publish}'"));
                Arc::new(Script::new(&format!("{prelude}\n{}", lua.source)))
            })
            .clone()
    }
}

impl Node {
    /// Runs a compatible API's script as a task of its own; its value goes to the waiter, if any.
    pub(super) fn evaluate(&mut self, evaluation: Evaluation) {
        let Evaluation {
            lua,
            keys,
            args,
            waiter,
        } = evaluation;
        let Some(mut con) = self.con.clone() else {
            match waiter {
                Some(waiter) => send_answer(
                    &self.bus,
                    waiter,
                    BrokerAnswer::Evaluated(Err(BrokerError::Unavailable)),
                ),
                None => {
                    self.health.detached.fetch_sub(1, Ordering::Relaxed);
                }
            }
            return;
        };
        // The stream of a compatible channel lasts as long as native history does, and at least a node's TTL.
        let ttl = self.settings.history_ttl.max(self.settings.node_ttl);
        let script = self.compat_scripts.get(lua, con.publish_command(), ttl);
        let timeout = self.settings.timeout;
        let health: Arc<Health> = Arc::clone(&self.health);
        let bus: Arc<Bus> = Arc::clone(&self.bus);
        let first = keys.first().cloned().unwrap_or_default();
        let mut before = self.compat_scripts.detached.get(&first).cloned();
        let finished = match waiter {
            Some(_) => None,
            None => {
                let (finished, done) = watch::channel(());
                self.compat_scripts.detached.insert(first, done);
                Some(finished)
            }
        };
        tokio::spawn(async move {
            if let Some(before) = before.as_mut() {
                // Resolves once the script before has finished (its sender is dropped).
                let _ = before.changed().await;
            }
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(arg.as_slice());
            }
            let what = || {
                format!(
                    "a compatible API's script on {} failed",
                    keys.first().map_or("", String::as_str)
                )
            };
            let result = health
                .within(
                    timeout,
                    what,
                    invocation.invoke_async::<redis::Value>(&mut con),
                )
                .await
                .map(value_of);
            match waiter {
                Some(waiter) => send_answer(&bus, waiter, BrokerAnswer::Evaluated(result)),
                None => {
                    health.detached.fetch_sub(1, Ordering::Relaxed);
                }
            }
            drop(finished);
        });
    }
}

/// A script's reply as the APIs read it.
fn value_of(value: redis::Value) -> Value {
    match value {
        redis::Value::Int(n) => Value::Int(n),
        redis::Value::BulkString(bytes) => Value::Data(bytes),
        redis::Value::SimpleString(text) => Value::Data(text.into_bytes()),
        redis::Value::VerbatimString { text, .. } => Value::Data(text.into_bytes()),
        redis::Value::Okay => Value::Data(b"OK".to_vec()),
        redis::Value::Boolean(true) => Value::Int(1),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::List(items.into_iter().map(value_of).collect())
        }
        _ => Value::Nil,
    }
}
