//! Why connecting or a request failed.

use crate::frame::ErrorCode;
use crate::trust::TrustFailure;

/// Why connecting failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The relay could not be reached (resolve, no answer, reset).
    #[error("{0}")]
    Unreachable(String),
    /// The relay's certificate was refused; see the failure for what to do.
    #[error("{0}")]
    Trust(TrustFailure),
    /// The TLS or QUIC handshake failed for another reason (e.g. ALPN).
    #[error("{0}")]
    Tls(String),
    /// The relay refused the login or registration.
    #[error("{message}")]
    Auth { code: ErrorCode, message: String },
    /// The relay speaks another protocol version.
    #[error("{0}")]
    Version(String),
    /// The relay closed the connection (shutting down, busy, ...).
    #[error("{0}")]
    Closed(String),
    /// The relay answered something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The local configuration is unusable (e.g. unreadable --ca file).
    #[error("{0}")]
    Config(String),
}

impl ConnectError {
    /// Whether retrying cannot help without the user changing something.
    pub fn is_fatal(&self) -> bool {
        match self {
            // A lockout ends by itself: keep trying, with backoff.
            ConnectError::Auth {
                code: ErrorCode::Throttled,
                ..
            } => false,
            ConnectError::Trust(_)
            | ConnectError::Auth { .. }
            | ConnectError::Version(_)
            | ConnectError::Config(_) => true,
            _ => false,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The relay refused it.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// Not connected right now (the session is reconnecting); retry later.
    #[error("not connected to the relay; retry when reconnected")]
    NotConnected,
    /// The session has ended.
    #[error("the session is closed")]
    Closed,
    /// The relay answered with a frame that does not fit the request.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}
