//! Counters for operators, served in the Prometheus text format by
//! `relay serve --metrics ADDR` at `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::defaults::{ACCEPT_BACKOFF, MAX_ACCEPT_BACKOFF, METRICS_CONNECTIONS, METRICS_DEADLINE};

/// What the relay counts. Every field only grows.
#[derive(Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_evicted: AtomicU64,
    pub address_validations: AtomicU64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub registrations: AtomicU64,
    pub messages_stored: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub deliveries: AtomicU64,
    pub lagged: AtomicU64,
    pub rate_limited: AtomicU64,
    pub protocol_errors: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition of the counters and the gauges given.
    pub fn render(&self, sessions: usize) -> String {
        let counters: [(&str, &str, &AtomicU64); 13] = [
            (
                "connections_accepted_total",
                "QUIC connections admitted",
                &self.connections_accepted,
            ),
            (
                "connections_refused_total",
                "connections refused before the handshake by a limit",
                &self.connections_refused,
            ),
            (
                "connections_evicted_total",
                "silent connections not logged in that gave their place to a newcomer",
                &self.connections_evicted,
            ),
            (
                "address_validations_total",
                "QUIC Retry packets sent to make a client prove its address",
                &self.address_validations,
            ),
            (
                "logins_total",
                "successful logins and registrations",
                &self.logins,
            ),
            (
                "login_failures_total",
                "refused logins (wrong password or throttled)",
                &self.login_failures,
            ),
            (
                "registrations_total",
                "accounts created by clients",
                &self.registrations,
            ),
            (
                "messages_stored_total",
                "messages committed to the store",
                &self.messages_stored,
            ),
            (
                "messages_duplicate_total",
                "resends recognised by their id and acknowledged again",
                &self.messages_duplicate,
            ),
            (
                "deliveries_total",
                "live messages queued to sessions",
                &self.deliveries,
            ),
            (
                "lagged_total",
                "times a session fell behind in a room",
                &self.lagged,
            ),
            (
                "rate_limited_total",
                "requests refused by a rate limit",
                &self.rate_limited,
            ),
            (
                "protocol_errors_total",
                "connections closed for breaking the protocol",
                &self.protocol_errors,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            out.push_str(&format!(
                "# HELP confab_{name} {help}\n# TYPE confab_{name} counter\nconfab_{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP confab_sessions logged-in sessions now\n# TYPE confab_sessions gauge\nconfab_sessions {sessions}\n"
        ));
        out
    }
}

/// What renders the metrics page.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A listener the metrics loop accepts connections from: a TCP listener,
/// or in tests one whose accepts fail or hand out in-memory streams.
pub trait Accept: Send {
    /// One accepted connection.
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Serves `/metrics` over plain HTTP/1.1 until the task is dropped. Tiny on
/// purpose: one request per connection, small bounded reads.
///
/// Bounded like the relay: at most [`METRICS_CONNECTIONS`] connections are
/// served at once, each within [`METRICS_DEADLINE`], so silent connections
/// free their place quickly and the rest wait in the kernel's backlog
/// without taking a file descriptor. A failed accept (EMFILE when the file
/// limit is reached) is retried after a pause growing from
/// [`ACCEPT_BACKOFF`] to [`MAX_ACCEPT_BACKOFF`]: the pending connection
/// stays pending and the accept fails again at once, so retrying without a
/// pause kept a core busy until a descriptor came free.
pub async fn serve<L: Accept>(mut listener: L, render: Render) {
    let places = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    // Owned here: dropping the loop ends every connection it serves.
    let mut handlers = JoinSet::new();
    let mut pause = ACCEPT_BACKOFF;
    loop {
        while handlers.try_join_next().is_some() {}
        let place = places
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        match listener.accept().await {
            Ok(conn) => {
                pause = ACCEPT_BACKOFF;
                let render = render.clone();
                handlers.spawn(async move {
                    let _ = tokio::time::timeout(METRICS_DEADLINE, answer(conn, &*render)).await;
                    drop(place);
                });
            }
            Err(e) => {
                drop(place);
                if pause == ACCEPT_BACKOFF {
                    tracing::warn!("metrics: accept failed: {e}; retrying with a growing pause");
                } else {
                    tracing::debug!("metrics: accept failed: {e}");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Reads one request line and writes the page, or a 404 for any other
/// path. The caller bounds the time it takes.
async fn answer<C: AsyncRead + AsyncWrite + Unpin>(
    mut conn: C,
    render: &(dyn Fn() -> String + Sync),
) {
    // Read until the request line is complete: clients may send it in
    // pieces.
    let mut request = [0u8; 2048];
    let mut n = 0;
    while n < request.len() && !request[..n].windows(2).any(|w| w == b"\r\n") {
        match conn.read(&mut request[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(m) => n += m,
        }
    }
    let head = String::from_utf8_lossy(&request[..n]);
    let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
        let body = render();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
    };
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Binds the metrics address, with an error that names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    fn page() -> Render {
        Arc::new(|| "confab_sessions 0\n".to_owned())
    }

    /// A listener whose every accept fails as at the file limit, counting
    /// the attempts. It stops answering after `MAX` attempts, so a loop
    /// that retries without pausing ends the test instead of spinning.
    struct Exhausted(Arc<AtomicUsize>);

    impl Exhausted {
        const MAX: usize = 1000;
    }

    impl Accept for Exhausted {
        type Conn = DuplexStream;
        async fn accept(&mut self) -> std::io::Result<DuplexStream> {
            if self.0.fetch_add(1, Ordering::Relaxed) >= Self::MAX {
                std::future::pending::<()>().await;
            }
            tokio::task::yield_now().await;
            Err(std::io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_are_retried_after_a_growing_pause() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let serving = tokio::spawn(serve(Exhausted(attempts.clone()), page()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        serving.abort();
        // 0.1 + 0.2 + 0.4 + 0.8 s, then a pause of 1 s each: 14 attempts
        // in 10 s, where a loop without pauses makes them by the thousand.
        let made = attempts.load(Ordering::Relaxed);
        assert!((10..=15).contains(&made), "{made} accepts in 10 s");
    }

    /// A listener handing out the in-memory connections a test sends it,
    /// counting those taken.
    struct Queue(mpsc::UnboundedReceiver<DuplexStream>, Arc<AtomicUsize>);

    impl Accept for Queue {
        type Conn = DuplexStream;
        async fn accept(&mut self) -> std::io::Result<DuplexStream> {
            let conn = self.0.recv().await.expect("the test holds the sender");
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(conn)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connections_hold_a_place_only_until_the_deadline() {
        let (tx, rx) = mpsc::unbounded_channel();
        let taken = Arc::new(AtomicUsize::new(0));
        let serving = tokio::spawn(serve(Queue(rx, taken.clone()), page()));
        // Twice as many silent connections as there are places, held open.
        let mut silent = Vec::new();
        for _ in 0..2 * METRICS_CONNECTIONS {
            let (ours, theirs) = tokio::io::duplex(4096);
            tx.send(theirs).unwrap();
            silent.push(ours);
        }
        let (mut scraper, theirs) = tokio::io::duplex(64 * 1024);
        tx.send(theirs).unwrap();
        scraper
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            taken.load(Ordering::Relaxed),
            METRICS_CONNECTIONS,
            "only as many connections are taken as there are places"
        );
        let started = Instant::now();
        let mut response = String::new();
        tokio::time::timeout(3 * METRICS_DEADLINE, scraper.read_to_string(&mut response))
            .await
            .expect("the scrape is answered once the silent ones time out")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("confab_sessions 0\n"), "{response}");
        // Behind two rounds of silent connections, each cut at the deadline.
        assert!(started.elapsed() <= 2 * METRICS_DEADLINE + Duration::from_millis(10));
        serving.abort();
    }

    #[test]
    fn renders_counters_and_the_session_gauge() {
        let m = Metrics::default();
        inc(&m.messages_stored);
        inc(&m.messages_stored);
        let text = m.render(3);
        assert!(text.contains(
            "# TYPE confab_messages_stored_total counter\nconfab_messages_stored_total 2\n"
        ));
        assert!(text.contains("confab_sessions 3\n"));
        assert!(text.contains("confab_lagged_total 0\n"));
    }
}
