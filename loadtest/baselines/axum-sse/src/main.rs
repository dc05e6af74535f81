//! The idiomatic Rust answer to spout, kept as a benchmark baseline: tokio (multi-thread runtime, `--workers`
//! threads) + axum, `GET /sub/{ch}` answered with `axum::response::Sse`, `POST /pub/{ch}` with 202, and one
//! `tokio::sync::broadcast` per channel in a `DashMap`. No history, no resume, no auth: only the fan-out path,
//! written the way a Rust engineer would write it in an afternoon.
//!
//! Each subscriber is a task reading its `broadcast::Receiver` through `BroadcastStream`; hyper writes each SSE
//! event it yields. A lagging receiver skips events (`RecvError::Lagged`): the buffer is `--capacity` events
//! (default 4096) so that the benchmark's closed loop (window 32) never lags; the harness counts any skip as
//! missing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[derive(Clone)]
struct Hub {
    channels: Arc<DashMap<String, broadcast::Sender<Bytes>>>,
    capacity: usize,
}

impl Hub {
    fn sender(&self, ch: &str) -> broadcast::Sender<Bytes> {
        if let Some(s) = self.channels.get(ch) {
            return s.clone();
        }
        self.channels
            .entry(ch.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(ch): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = hub.sender(&ch).subscribe();
    let stream = BroadcastStream::new(rx).filter_map(|item| async move {
        // A lagged receiver skips what it lost: the harness reports it as missing events.
        let data = item.ok()?;
        let text = String::from_utf8_lossy(&data).into_owned();
        Some(Ok(Event::default().data(text)))
    });
    Sse::new(stream)
}

async fn publish(State(hub): State<Hub>, Path(ch): Path<String>, body: Bytes) -> StatusCode {
    // No subscribers is not an error here: the event is dropped, as nchan and Pushpin do without history.
    let _ = hub.sender(&ch).send(body);
    StatusCode::ACCEPTED
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:8082".into())
        .parse()
        .expect("--listen ADDR:PORT");
    let workers: usize = arg(&args, "--workers")
        .map_or(1, |w| w.parse().expect("--workers N"));
    let capacity: usize = arg(&args, "--capacity")
        .map_or(4096, |w| w.parse().expect("--capacity N"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let hub = Hub {
            channels: Arc::new(DashMap::new()),
            capacity,
        };
        let app = Router::new()
            .route("/sub/{ch}", get(subscribe))
            .route("/pub/{ch}", post(publish))
            .with_state(hub);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("bind --listen");
        eprintln!("axum-sse listening on {listen} with {workers} worker thread(s)");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .expect("serve");
    });
}
