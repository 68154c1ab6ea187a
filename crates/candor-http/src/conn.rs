//! Accepting connections without letting idle or slow clients take the server down: a cap on
//! open connections that keeps the process within its open-file limit, a deadline for each
//! request head (which is also how long an idle keep-alive connection stays open), and, when the
//! cap is reached, the least recently active idle connections are closed to make room; only when
//! none is idle is a newcomer refused with a JSON `503`. Both are logged, at most every
//! [`REPORT_EVERY`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// Descriptors kept free for everything but client connections: database and key-store files,
/// PostgreSQL connections, the log, outgoing webhooks.
const RESERVED_DESCRIPTORS: u64 = 128;
/// Connections accepted at most when `[server] max_connections` is not set (and the open-file
/// limit allows it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How often, at most, shedding and accept failures are logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How the server treats connections (`[server]` in candor.toml).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open client connections at most.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head this long after it opened or
    /// after its previous answer is closed: slow senders and idle keep-alive connections alike.
    pub header_timeout: Duration,
}

/// The connection cap: the configured one (or [`DEFAULT_MAX_CONNECTIONS`]), lowered so that
/// connections and [`RESERVED_DESCRIPTORS`] fit in the open-file limit `nofile`.
pub fn connection_cap(configured: Option<usize>, nofile: Option<u64>) -> usize {
    let wanted = configured.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1);
    match nofile {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(limit / 2).max(1);
            wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
}

/// Raises this process's soft open-file limit to its hard limit (as most servers do at start)
/// and returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(max)) = (limit.current, limit.maximum)
            && current < max
        {
            limit.current = Some(max);
            if setrlimit(Resource::Nofile, limit).is_err() {
                limit.current = Some(current);
            }
        }
        limit.current
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// When it last began or finished answering a request (milliseconds since the loop started).
    last_active: AtomicU64,
    /// Asks the connection to close now (it is idle and room is needed).
    close: Notify,
    /// Whether it was asked (counted in [`Table::closing`] until it is gone).
    asked: AtomicBool,
}

/// The open connections, and what was shed since the last report.
struct Table {
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Open>>>,
    /// Connections asked to close that have not closed yet.
    closing: AtomicUsize,
    report: Mutex<Report>,
}

#[derive(Default)]
struct Report {
    last: Option<Instant>,
    idle_closed: u64,
    refused: u64,
}

impl Table {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            closing: AtomicUsize::new(0),
            report: Mutex::new(Report::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.open.lock().map_or(0, |o| o.len())
    }

    fn register(&self) -> (u64, Arc<Open>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Open {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
            asked: AtomicBool::new(false),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, entry.clone());
        }
        (id, entry)
    }

    fn remove(&self, id: u64) {
        let gone = self.open.lock().ok().and_then(|mut open| open.remove(&id));
        if gone.is_some_and(|o| o.asked.load(Ordering::Relaxed)) {
            self.closing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Makes room for one more connection under `cap`: asks the least recently active idle
    /// connections to close (a few at once, so a flood is not handled one accept at a time).
    /// Returns whether the newcomer may be served.
    fn make_room(&self, cap: usize) -> bool {
        let Ok(open) = self.open.lock() else { return false };
        let closing = self.closing.load(Ordering::Relaxed);
        if open.len().saturating_sub(closing) < cap {
            return true;
        }
        let mut idle: Vec<(u64, &Arc<Open>)> = open
            .values()
            .filter(|o| o.in_flight.load(Ordering::Relaxed) == 0 && !o.asked.load(Ordering::Relaxed))
            .map(|o| (o.last_active.load(Ordering::Relaxed), o))
            .collect();
        if idle.is_empty() {
            drop(open);
            self.note(0, 1);
            return false;
        }
        let batch = (cap / 32).clamp(1, 64).min(idle.len());
        idle.select_nth_unstable_by_key(batch - 1, |(at, _)| *at);
        for (_, o) in &idle[..batch] {
            o.asked.store(true, Ordering::Relaxed);
            self.closing.fetch_add(1, Ordering::Relaxed);
            o.close.notify_one();
        }
        drop(open);
        self.note(batch as u64, 0);
        true
    }

    /// Counts shedding and logs it: the first time at once, then at most every [`REPORT_EVERY`].
    fn note(&self, idle_closed: u64, refused: u64) {
        let Ok(mut r) = self.report.lock() else { return };
        r.idle_closed += idle_closed;
        r.refused += refused;
        if r.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        tracing::warn!(
            open = self.len_hint(),
            idle_closed = r.idle_closed,
            refused = r.refused,
            "connection limit reached: closed the least recently active idle connections to make room, and refused \
             new connections (503) while none was idle; raise [server] max_connections or the open-file limit if \
             this is normal load"
        );
        r.last = Some(Instant::now());
        r.idle_closed = 0;
        r.refused = 0;
    }

    fn len_hint(&self) -> usize {
        self.open.try_lock().map_or(0, |o| o.len())
    }
}

/// The answer to a connection refused because the server is full: written without waiting
/// (a client that does not read it just loses it), then the connection is closed.
const FULL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 106\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server is at its connection limit; retry shortly\"}}";

/// Accepts connections on `listener` and serves `app` on each until `shutdown` resolves; then
/// stops accepting, lets requests in progress finish (closing idle connections at once) and
/// returns when every connection has closed or `drain` has passed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
    drain: Duration,
) {
    let table = Arc::new(Table::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_failed_at: Option<Instant> = None;
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_seconds = limits.header_timeout.as_secs_f64(),
        "accepting connections"
    );
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_per_connection(&e) {
                        // Out of descriptors (or memory): say so, then wait a moment instead of
                        // spinning on the same failure.
                        if accept_failed_at.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                            tracing::error!(error = %e, open = table.len(), "cannot accept connections");
                            accept_failed_at = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
        };
        if !table.make_room(limits.max_connections) {
            let _ = stream.try_write(FULL);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, entry) = table.register();
        let table = table.clone();
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_one(stream, peer, app, limits, entry, stop, &table).await;
            table.remove(id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + drain;
    while table.len() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    entry: Arc<Open>,
    mut stop: watch::Receiver<bool>,
    table: &Table,
) {
    let counted = entry.clone();
    let started = table.started;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        let counted = counted.clone();
        counted.in_flight.fetch_add(1, Ordering::Relaxed);
        counted.last_active.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        async move {
            let _done = InFlight { open: counted, started };
            tower::ServiceExt::oneshot(app, req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let asked_to_close = tokio::select! {
        _ = conn.as_mut() => return,
        () = entry.close.notified() => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    if asked_to_close && entry.in_flight.load(Ordering::Relaxed) == 0 {
        // Idle (or still sending its request head): close now.
        return;
    }
    // Finish the request in progress, then close; idle connections close at once.
    conn.as_mut().graceful_shutdown();
    if entry.in_flight.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _ = conn.await;
}

/// Marks the end of a request on its connection when dropped (answered or abandoned).
struct InFlight {
    open: Arc<Open>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.open.last_active.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.open.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_the_open_file_limit() {
        assert_eq!(connection_cap(None, None), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(100), Some(1_048_576)), 100);
        assert_eq!(connection_cap(None, Some(1024)), 1024 - 128);
        assert_eq!(connection_cap(Some(5000), Some(1024)), 896);
        // A tiny limit still leaves half of it to clients.
        assert_eq!(connection_cap(None, Some(200)), 100);
        assert_eq!(connection_cap(Some(0), Some(1024)), 1);
    }

    #[test]
    fn room_is_made_by_closing_the_least_recently_active_idle_connections() {
        let table = Table::new();
        let cap = 4;
        let entries: Vec<_> = (0..cap).map(|_| table.register()).collect();
        for (i, (_, e)) in entries.iter().enumerate() {
            e.last_active.store(10 * (i as u64 + 1), Ordering::Relaxed);
        }
        // Busy: the oldest one is answering a request, so it is not the one closed.
        entries[0].1.in_flight.store(1, Ordering::Relaxed);
        assert!(table.make_room(cap));
        assert_eq!(table.closing.load(Ordering::Relaxed), 1);
        // The second (the oldest idle one) was asked, not the others.
        let asked: Vec<bool> = entries.iter().map(|(_, e)| e.asked.load(Ordering::Relaxed)).collect();
        assert_eq!(asked, vec![false, true, false, false]);
        // Once it is gone, it no longer counts as closing.
        table.remove(entries[1].0);
        assert_eq!(table.closing.load(Ordering::Relaxed), 0);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn the_answer_to_a_refused_connection_is_well_formed_json() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
        assert!(head.starts_with("HTTP/1.1 503 "));
    }

    #[test]
    fn a_newcomer_is_refused_only_when_every_connection_is_busy() {
        let table = Table::new();
        let entries: Vec<_> = (0..2).map(|_| table.register()).collect();
        for (_, e) in &entries {
            e.in_flight.store(1, Ordering::Relaxed);
        }
        assert!(!table.make_room(2));
        assert!(table.make_room(3), "under the cap, always room");
    }
}
