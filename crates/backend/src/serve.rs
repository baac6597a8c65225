//! Serving the HTTP listeners with bounds a hostile client cannot get around: a connection that
//! sends no complete request head within [`HEADER_READ_TIMEOUT`] (a slowloris, or a keep-alive
//! connection left idle) is closed; the connections held at once are capped below what the
//! process's descriptors allow, so `accept` never fails for want of them and a flood of idle
//! sockets is turned away at the door instead of starving `/healthz`; and a failing `accept`
//! waits instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client of the API may take to send a request's head, and how long a kept-alive
/// connection may wait for its next request (hyper arms the same timer for both).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for the broker's auth listener (loopback, the broker's few pooled connections):
/// longer, so a pooled connection is seldom closed just as the broker reuses it.
pub const AUTH_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Descriptors kept for everything but the listeners (registry, broker, mail, files).
const RESERVED_FDS: u64 = 512;
/// The most connections one listener holds, whatever the descriptor limit.
const MAX_CONNECTIONS: u64 = 16_384;
/// How long a shutdown waits for answers in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The connection cap of each of the two listeners: the descriptors this process may open
/// (raised to its hard limit first), less a reserve, shared between them.
pub fn connection_cap() -> usize {
    let descriptors = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let cap = descriptors.saturating_sub(RESERVED_FDS) / 2;
    cap.clamp(16, MAX_CONNECTIONS) as usize
}

/// Serves `router` on `listener` until `stop`: HTTP/1.1 with `header_timeout`, at most
/// `cap` connections (one more is closed at once), TCP_NODELAY on each (small answers, one at a
/// time per connection: the broker's above all), and the answers in flight drained at the end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cap: usize,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: wait, never spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("connection cap reached: a connection is closed at once");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection =
            builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}
