//! One connection attempt: resolve, QUIC/TLS handshake with the chosen
//! trust, control stream, `Hello`, then `Register` or `Login`.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, SendStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Config, ConnectError};
use crate::codec;
use crate::frame::{ClientFrame, ErrorCode, ServerFrame, PROTOCOL_VERSION};
use crate::limits::{MAX_BULK_FRAME, MAX_CONTROL_FRAME};
use crate::trust;

/// Time a connection attempt may take, handshake and login included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Port used when the server address names none.
pub const DEFAULT_PORT: u16 = 4433;

/// What the reader tasks pass to the session worker.
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(ServerFrame),
    /// The control stream ended; the connection is unusable.
    Closed(String),
}

/// A logged-in connection.
pub(crate) struct Link {
    pub conn: Connection,
    pub send: SendStream,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    pub user: String,
    // Kept so the socket outlives the connection.
    _endpoint: Endpoint,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The server address with the default port added when it has none.
pub fn with_port(server: &str) -> String {
    let s = server.trim();
    if s.parse::<SocketAddr>().is_ok() {
        return s.to_owned();
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return SocketAddr::new(ip, DEFAULT_PORT).to_string();
    }
    match s.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => s.to_owned(),
        _ => format!("{s}:{DEFAULT_PORT}"),
    }
}

/// Connects and logs in (registering first when `register`).
pub(crate) async fn open(cfg: &Config, register: bool) -> Result<Link, ConnectError> {
    tokio::time::timeout(CONNECT_TIMEOUT, open_inner(cfg, register))
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Unreachable(format!(
                "no answer from {} within {} s; is the relay running and the address right?",
                cfg.server,
                CONNECT_TIMEOUT.as_secs()
            )))
        })
}

async fn open_inner(cfg: &Config, register: bool) -> Result<Link, ConnectError> {
    let server = with_port(&cfg.server);
    let addr: SocketAddr = tokio::net::lookup_host(&server)
        .await
        .map_err(|e| ConnectError::Unreachable(format!("cannot resolve {server}: {e}")))?
        .next()
        .ok_or_else(|| ConnectError::Unreachable(format!("{server} resolves to no address")))?;
    let (client_config, check) = trust::client_config(&cfg.trust, &server)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let endpoint = Endpoint::client(bind)
        .map_err(|e| ConnectError::Unreachable(format!("cannot open a UDP socket: {e}")))?;
    let host = trust::server_host(&server);
    let connecting = endpoint
        .connect_with(client_config, addr, host)
        .map_err(|e| ConnectError::Config(format!("cannot connect to {server}: {e}")))?;
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            if let Some(failure) = check.outcome() {
                return Err(ConnectError::Trust(failure));
            }
            return Err(connection_error(&server, e));
        }
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connection_error(&server, e))?;
    let lost = |e: String| {
        ConnectError::Closed(format!(
            "the relay at {server} closed the connection during login: {e}"
        ))
    };

    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: cfg.client_name.clone(),
    };
    send.write_all(&codec::encode(&hello))
        .await
        .map_err(|e| lost(e.to_string()))?;
    let login = if register {
        ClientFrame::Register {
            req: 1,
            user: cfg.user.clone(),
            password: cfg.password.as_str().into(),
        }
    } else {
        ClientFrame::Login {
            req: 1,
            user: cfg.user.clone(),
            password: cfg.password.as_str().into(),
        }
    };
    // Pipelined after Hello: one round trip saved on every reconnect.
    send.write_all(&codec::encode(&login))
        .await
        .map_err(|e| lost(e.to_string()))?;
    let user = loop {
        let frame = codec::read_frame::<ServerFrame, _>(&mut recv, MAX_CONTROL_FRAME)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("stream ended".into()))?;
        match frame {
            ServerFrame::Welcome { .. } => continue,
            ServerFrame::LoggedIn { user, .. } => break user,
            ServerFrame::Error { code, message, .. } => return Err(refusal(code, message)),
            ServerFrame::Shutdown { reason } => return Err(ConnectError::Closed(reason)),
            other => {
                return Err(ConnectError::Protocol(format!(
                    "unexpected reply to login: {other:?}"
                )))
            }
        }
    };

    let (tx, incoming) = mpsc::unbounded_channel();
    let control = tokio::spawn(read_control(recv, tx.clone()));
    let bulk = tokio::spawn(read_bulk(conn.clone(), tx));
    Ok(Link {
        conn,
        send,
        incoming,
        user,
        _endpoint: endpoint,
        readers: vec![control, bulk],
    })
}

fn refusal(code: ErrorCode, message: String) -> ConnectError {
    match code {
        ErrorCode::VersionMismatch => ConnectError::Version(message),
        ErrorCode::BadCredentials
        | ErrorCode::NameTaken
        | ErrorCode::InvalidName
        | ErrorCode::RegistrationClosed
        | ErrorCode::Throttled
        | ErrorCode::BadPassword => ConnectError::Auth { code, message },
        ErrorCode::TooManyConnections | ErrorCode::Unavailable | ErrorCode::LoginTimeout => {
            ConnectError::Closed(message)
        }
        _ => ConnectError::Protocol(message),
    }
}

fn connection_error(server: &str, e: ConnectionError) -> ConnectError {
    match e {
        ConnectionError::TimedOut => ConnectError::Unreachable(format!(
            "no answer from {server}; is the relay running and the address right?"
        )),
        ConnectionError::ConnectionClosed(c) => {
            ConnectError::Tls(format!("the relay at {server} refused the connection: {c}"))
        }
        ConnectionError::TransportError(t) => {
            ConnectError::Tls(format!("TLS/QUIC handshake with {server} failed: {t}"))
        }
        ConnectionError::ApplicationClosed(c) => ConnectError::Closed(format!(
            "the relay at {server} closed the connection: {}",
            String::from_utf8_lossy(&c.reason)
        )),
        ConnectionError::Reset => {
            ConnectError::Unreachable(format!("{server} reset the connection"))
        }
        other => ConnectError::Unreachable(format!("cannot reach {server}: {other}")),
    }
}

async fn read_control(mut recv: quinn::RecvStream, tx: mpsc::UnboundedSender<Incoming>) {
    loop {
        match codec::read_frame::<ServerFrame, _>(&mut recv, MAX_CONTROL_FRAME).await {
            Ok(Some(frame)) => {
                if tx.send(Incoming::Frame(frame)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Incoming::Closed("the relay ended the session".into()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Incoming::Closed(e.to_string()));
                return;
            }
        }
    }
}

/// Accepts the relay's bulk streams (history pages): one frame each.
async fn read_bulk(conn: Connection, tx: mpsc::UnboundedSender<Incoming>) {
    let mut readers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => {
                let Ok(mut stream) = stream else { return };
                let tx = tx.clone();
                readers.spawn(async move {
                    match codec::read_frame::<ServerFrame, _>(&mut stream, MAX_BULK_FRAME).await {
                        Ok(Some(frame)) => { let _ = tx.send(Incoming::Frame(frame)); }
                        Ok(None) => {}
                        Err(e) => tracing::warn!("bad bulk frame from the relay: {e}"),
                    }
                });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}
