//! What the application asks of a session, and what a send resolves to.

use tokio::sync::oneshot;

use super::error::RequestError;
use crate::frame::{ClientFrame, Seq, ServerFrame};

/// A message the relay stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub seq: Seq,
    /// Server time, ms since the Unix epoch.
    pub ts: i64,
}

/// A call on [`Client`](super::Client), queued for the session. Each carries
/// the channel its answer goes back on.
pub(crate) enum Command {
    /// Send a message; answered once the relay stored it.
    Send {
        room: String,
        body: String,
        reply: oneshot::Sender<Result<Acked, RequestError>>,
    },
    /// Any other request; its `req` is set by the session.
    Request {
        frame: ClientFrame,
        reply: oneshot::Sender<Result<ServerFrame, RequestError>>,
    },
    /// Drop the connection and reconnect now.
    Reconnect,
    /// End the session; `done` is answered once the relay was told.
    Close { done: oneshot::Sender<()> },
}
