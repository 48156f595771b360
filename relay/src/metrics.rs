//! Counters for operators, served in the Prometheus text format by
//! `relay serve --metrics ADDR` at `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

/// Serves `/metrics` over plain HTTP/1.1 until the task is dropped. Tiny on
/// purpose: one request per connection, small bounded reads, a timeout.
pub async fn serve(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            // Read until the request line is complete: clients may send it
            // in pieces.
            let mut request = [0u8; 2048];
            let mut n = 0;
            let read_line = async {
                while n < request.len() && !request[..n].windows(2).any(|w| w == b"\r\n") {
                    match stream.read(&mut request[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(m) => n += m,
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read_line)
                .await
                .is_err()
            {
                return;
            }
            let head = String::from_utf8_lossy(&request[..n]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let body = render();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds the metrics address, with an error that names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
