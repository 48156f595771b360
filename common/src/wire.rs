//! The protocol at the level of connections, streams and frames, with no
//! session on top: dial a relay with any TLS configuration (so any ALPN),
//! write frames or arbitrary bytes on the control stream, and read the
//! relay's frames from the control stream and from its bulk streams.
//!
//! The client session is built on these functions; so are the load
//! generator, whose lean clients need no reconnects, and the tests that
//! must say what no well-behaved client would.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use quinn::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};
use rustls::RootCertStore;

use crate::codec::{self, FrameError};
use crate::frame::{ClientFrame, ErrorCode, ServerFrame, PROTOCOL_VERSION};
use crate::limits::{MAX_BULK_FRAME, MAX_CONTROL_FRAME};

/// Why a step on the wire failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The server name did not resolve.
    #[error("cannot resolve {server}: {error}")]
    Resolve { server: String, error: io::Error },
    /// The server name resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// No local UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(io::Error),
    /// The TLS configuration is unusable (a bug, not an input problem).
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    /// quinn refused to start the connection (e.g. an invalid server name).
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: quinn::ConnectError,
    },
    /// The handshake failed or the connection was lost.
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to the control stream failed.
    #[error(transparent)]
    Write(#[from] quinn::WriteError),
    /// A frame could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The relay ended the stream where a frame was due.
    #[error("the relay ended the stream")]
    Ended,
    /// The relay refused a login or registration.
    #[error("refused ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
    /// The relay answered with a frame the step does not allow.
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<ServerFrame>),
}

/// The first address `server` (`host:port`) resolves to.
pub async fn resolve(server: &str) -> Result<SocketAddr, WireError> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|error| WireError::Resolve {
            server: server.to_owned(),
            error,
        })?
        .next()
        .ok_or_else(|| WireError::NoAddress(server.to_owned()))
}

/// A client endpoint on an ephemeral port of `addr`'s address family, so it
/// can reach `addr`.
pub fn endpoint_for(addr: SocketAddr) -> Result<Endpoint, WireError> {
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    Endpoint::client(bind).map_err(WireError::Socket)
}

/// The QUIC/TLS handshake with `addr` on `endpoint`, the certificate
/// checked for `server_name` as `config` says.
pub async fn dial(
    endpoint: &Endpoint,
    config: ClientConfig,
    addr: SocketAddr,
    server_name: &str,
) -> Result<Connection, WireError> {
    let connecting = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|error| WireError::Connect { addr, error })?;
    Ok(connecting.await?)
}

/// A client configuration that trusts the CAs in `roots` the standard way
/// and offers `alpn`, TLS 1.3 only, with `transport` as it is. Unlike
/// [`crate::trust::client_config`] it lets the caller pick any ALPN and
/// transport, which only a test of the relay's refusals wants.
pub fn raw_config(
    roots: RootCertStore,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> Result<ClientConfig, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WireError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| WireError::Tls(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// `Hello` followed by `Register` (when `register`) or `Login`, both with
/// request id 1, in one buffer: pipelined, they save a round trip on every
/// connect.
pub fn login_frames(client: &str, user: &str, password: &str, register: bool) -> Bytes {
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: client.to_owned(),
    };
    let (req, user, password) = (1, user.to_owned(), password.into());
    let login = match register {
        true => ClientFrame::Register {
            req,
            user,
            password,
        },
        false => ClientFrame::Login {
            req,
            user,
            password,
        },
    };
    let mut both = codec::encode(&hello).to_vec();
    both.extend_from_slice(&codec::encode(&login));
    both.into()
}

/// Writes one frame.
pub async fn write_frame(send: &mut SendStream, frame: &ClientFrame) -> Result<(), WireError> {
    write_raw(send, &codec::encode(frame)).await
}

/// Writes `bytes` as they are: frames encoded earlier, or anything at all.
pub async fn write_raw(send: &mut SendStream, bytes: &[u8]) -> Result<(), WireError> {
    Ok(send.write_all(bytes).await?)
}

/// Reads the next frame of the control stream; `Ok(None)` when the relay
/// ended the stream between frames.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<ServerFrame>, FrameError> {
    codec::read_frame(recv, MAX_CONTROL_FRAME).await
}

/// Reads the one frame a bulk stream carries.
pub async fn read_bulk_frame(stream: &mut RecvStream) -> Result<Option<ServerFrame>, FrameError> {
    codec::read_frame(stream, MAX_BULK_FRAME).await
}

/// Accepts the relay's bulk streams until the connection ends, handing the
/// frame each carries to `deliver`. Streams are read side by side, so a
/// large page never holds up a small one behind it.
pub async fn accept_bulk<F>(conn: Connection, deliver: F)
where
    F: Fn(Result<Option<ServerFrame>, FrameError>) + Clone + Send + Sync + 'static,
{
    let mut readers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            stream = conn.accept_uni() => {
                let Ok(mut stream) = stream else { return };
                let deliver = deliver.clone();
                readers.spawn(async move { deliver(read_bulk_frame(&mut stream).await) });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// A connection with its control stream, driven by hand.
pub struct Wire {
    pub conn: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
}

impl Wire {
    /// Opens the control stream on `conn`.
    pub async fn open(conn: Connection) -> Result<Wire, WireError> {
        let (send, recv) = conn.open_bi().await?;
        Ok(Wire { conn, send, recv })
    }

    /// Sends `Hello` and `Register` or `Login` (see [`login_frames`]) and
    /// waits for `LoggedIn`, returning the user name as the relay spells it.
    pub async fn login(
        &mut self,
        client: &str,
        user: &str,
        password: &str,
        register: bool,
    ) -> Result<String, WireError> {
        self.write_raw(&login_frames(client, user, password, register))
            .await?;
        loop {
            match self.read_frame().await?.ok_or(WireError::Ended)? {
                ServerFrame::Welcome { .. } => {}
                ServerFrame::LoggedIn { user, .. } => return Ok(user),
                ServerFrame::Error { code, message, .. } => {
                    return Err(WireError::Refused { code, message })
                }
                other => return Err(WireError::Unexpected(Box::new(other))),
            }
        }
    }

    /// Writes one frame on the control stream.
    pub async fn write_frame(&mut self, frame: &ClientFrame) -> Result<(), WireError> {
        write_frame(&mut self.send, frame).await
    }

    /// Writes `bytes` on the control stream as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        write_raw(&mut self.send, bytes).await
    }

    /// The next control frame; `Ok(None)` when the relay ended the stream.
    pub async fn read_frame(&mut self) -> Result<Option<ServerFrame>, WireError> {
        Ok(read_frame(&mut self.recv).await?)
    }

    /// Accepts the next bulk stream and reads its frame.
    pub async fn next_bulk(&self) -> Result<Option<ServerFrame>, WireError> {
        let mut stream = self.conn.accept_uni().await?;
        Ok(read_bulk_frame(&mut stream).await?)
    }
}
