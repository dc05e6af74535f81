//! The broker thread's one handle on Redis, however it is deployed.
//!
//! - **A Redis Cluster** (the deployment that scales): the cluster client follows slot moves (`MOVED`, `ASK`),
//!   failovers and restarts, and a channel's events travel on its shard channel (`SSUBSCRIBE`), so each shard
//!   carries only its own channels.
//! - **One Redis that every node shares** (not in cluster mode): a connection manager that reconnects by itself
//!   and subscribes again what it followed; events travel by plain pub/sub, which on one server is the same thing
//!   as sharded pub/sub, with a client that can follow it.
//!
//! Which one is decided at each connection by asking the seeds (`INFO cluster`), so a node started before its
//! Redis finds out once Redis answers. Everything else (scripts, streams, presence) is the same on both: every
//! key of a channel shares one hash tag, so a script's keys always live on one server.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::scripts::{integer, millis};

/// A connection to the cluster, or to the one Redis.
#[derive(Clone)]
pub(super) enum Connection {
    Cluster(ClusterConnection),
    Single(ConnectionManager),
}

impl Connection {
    /// Connects through the first seed that answers; events received and news of the connection (a
    /// disconnection) go to `pushes`.
    pub(super) async fn open(
        seeds: &[String],
        timeout: Duration,
        pushes: UnboundedSender<PushInfo>,
    ) -> RedisResult<Connection> {
        let urls: Vec<String> = seeds
            .iter()
            .map(|seed| format!("redis://{seed}/?protocol=resp3"))
            .collect();
        let mut last_error = None;
        for url in &urls {
            match in_cluster_mode(url, timeout).await {
                Ok(true) => {
                    let client = ClusterClientBuilder::new(urls.clone())
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .push_sender(pushes)
                        .connection_timeout(timeout)
                        .response_timeout(timeout)
                        .build()?;
                    return Ok(Connection::Cluster(client.get_async_connection().await?));
                }
                Ok(false) => {
                    let config = ConnectionManagerConfig::new()
                        .set_push_sender(pushes)
                        .set_automatic_resubscription()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    let client = redis::Client::open(url.as_str())?;
                    let manager = client.get_connection_manager_with_config(config).await?;
                    return Ok(Connection::Single(manager));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis address"))
        }))
    }

    /// What the scripts publish events with.
    pub(super) fn publish_command(&self) -> &'static str {
        match self {
            Connection::Cluster(_) => "SPUBLISH",
            Connection::Single(_) => "PUBLISH",
        }
    }

    /// What Redis is: "a Redis Cluster" or "a single Redis", for the logs.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Connection::Cluster(_) => "a Redis Cluster",
            Connection::Single(_) => "a single Redis",
        }
    }

    /// Receives the events published on `channel` (a shard channel on a cluster), once Redis confirms it.
    pub(super) async fn follow(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Connection::Cluster(con) => con.ssubscribe(channel).await,
            Connection::Single(con) => con.subscribe(channel).await,
        }
    }

    /// Stops receiving the events of `channel`.
    pub(super) async fn leave(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Connection::Cluster(con) => con.sunsubscribe(channel).await,
            Connection::Single(con) => con.unsubscribe(channel).await,
        }
    }

    /// Waits until `replicas` replicas of the server holding `key` have every write made so far on this
    /// connection to it (Redis `WAIT`, sent to that key's master); fewer within `timeout` is an error.
    pub(super) async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: usize,
        timeout: Duration,
    ) -> RedisResult<()> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis(timeout));
        let acknowledged = match self {
            Connection::Cluster(con) => {
                let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                con.route_command(wait, master).await?
            }
            Connection::Single(con) => wait.query_async(con).await?,
        };
        match integer(&acknowledged) {
            Some(n) if usize::try_from(n).is_ok_and(|n| n >= replicas) => Ok(()),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "fewer replicas than --broker-wait-replicas acknowledged the publish",
            ))),
        }
    }
}

/// Whether the Redis at `url` runs in cluster mode (`cluster_enabled:1` in `INFO cluster`).
async fn in_cluster_mode(url: &str, timeout: Duration) -> RedisResult<bool> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut con)
        .await?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Cluster(con) => con.req_packed_command(cmd),
            Connection::Single(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
            Connection::Single(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Cluster(con) => con.get_db(),
            Connection::Single(con) => con.get_db(),
        }
    }
}
