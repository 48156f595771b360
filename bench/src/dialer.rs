//! A lean protocol client for the workloads that need what
//! `common::client` does not offer: thousands of connections sharing a
//! few UDP sockets (idle), and a member whose reading the workload stops
//! and starts (slow). It speaks the protocol through the same wire module,
//! trust and QUIC settings as the real client; only the session logic on
//! top (reconnects, resends) is left out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::frame::ServerFrame;
use common::limits::KEEP_ALIVE;
use common::trust::{self, TrustMode};
use common::wire::{self, Wire};
use quinn::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::target::Target;

/// Time from dialling to `LoggedIn`, as `common::client` allows.
pub const LOGIN_TIMEOUT: Duration = common::client::CONNECT_TIMEOUT;

/// What lean clients say in `Hello`, for the relay's log.
const CLIENT_NAME: &str = concat!("confab-loadgen/", env!("CARGO_PKG_VERSION"));

/// Opens connections to one relay over a fixed set of client endpoints.
pub struct Dialer {
    endpoints: Vec<Endpoint>,
    config: ClientConfig,
    addr: SocketAddr,
    host: String,
}

/// A logged-in connection with its control stream.
pub struct Link {
    pub conn: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
    /// The user name as the relay spells it.
    pub user: String,
}

impl Dialer {
    /// A dialer with `endpoints` UDP sockets (at least one), each carrying
    /// every `endpoints`-th connection. quinn multiplexes connections on a
    /// socket by connection id, so sharing changes nothing the relay sees
    /// but the source port; it spares the load generator a socket, a
    /// driver task and a receive buffer of several MiB per connection.
    pub async fn new(target: &Target, endpoints: usize) -> Result<Dialer> {
        let server = common::client::with_port(&target.server);
        let addr = wire::resolve(&server).await?;
        let (config, _check) = trust::client_config(&TrustMode::Pinned(target.ca.clone()), &server)
            .context("client TLS configuration")?;
        let endpoints = (0..endpoints.max(1))
            .map(|_| wire::endpoint_for(addr))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dialer {
            endpoints,
            config,
            addr,
            host: trust::server_host(&server).to_owned(),
        })
    }

    /// Replaces the per-stream receive window the relay may fill before
    /// this client reads (the default is quinn's, 1.25 MB), keeping the
    /// real client's keep-alive and idle timeout.
    pub fn stream_window(&mut self, bytes: u32) {
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(Some(trust::idle_timeout()))
            .stream_receive_window(bytes.into());
        self.config.transport_config(Arc::new(transport));
    }

    /// Connects on endpoint `i` (modulo their number) and registers or
    /// logs in `user`, within [`LOGIN_TIMEOUT`].
    pub async fn open(&self, i: usize, user: &str, password: &str, register: bool) -> Result<Link> {
        tokio::time::timeout(LOGIN_TIMEOUT, self.open_inner(i, user, password, register))
            .await
            .unwrap_or_else(|_| bail!("{user}: no login within {LOGIN_TIMEOUT:?}"))
    }

    async fn open_inner(
        &self,
        i: usize,
        user: &str,
        password: &str,
        register: bool,
    ) -> Result<Link> {
        let endpoint = &self.endpoints[i % self.endpoints.len()];
        let conn = wire::dial(endpoint, self.config.clone(), self.addr, &self.host)
            .await
            .with_context(|| format!("{user}: cannot connect"))?;
        let mut link = Wire::open(conn).await.context("control stream")?;
        let user = link
            .login(CLIENT_NAME, user, password, register)
            .await
            .with_context(|| format!("{user}: login"))?;
        let Wire { conn, send, recv } = link;
        Ok(Link {
            conn,
            send,
            recv,
            user,
        })
    }

    /// Closes every endpoint and waits (boundedly) for the close to reach
    /// the relay, so it frees the sessions at once instead of after its
    /// idle timeout.
    pub async fn close(&self) {
        for endpoint in &self.endpoints {
            endpoint.close(0u32.into(), b"bye");
        }
        let idle = async {
            for endpoint in &self.endpoints {
                endpoint.wait_idle().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), idle).await;
    }
}

/// Reads control frames into `tx` until the stream ends. With a small
/// channel, a consumer that stops receiving stops the reading too, so
/// flow control holds the relay back as it would for a client that
/// stopped reading its socket.
pub async fn read_control(mut recv: RecvStream, tx: mpsc::Sender<ServerFrame>) {
    while let Ok(Some(frame)) = wire::read_frame(&mut recv).await {
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// Accepts the relay's bulk streams (history pages, room lists), one frame
/// each, into `tx`.
pub async fn read_bulk(conn: Connection, tx: mpsc::UnboundedSender<ServerFrame>) {
    wire::accept_bulk(conn, move |frame| {
        if let Ok(Some(frame)) = frame {
            let _ = tx.send(frame);
        }
    })
    .await
}
