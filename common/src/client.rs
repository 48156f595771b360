//! The async client session every confab client is built on: connect,
//! register or log in, join and leave rooms, send (resolving on the
//! relay's durable ack), page history, and a stream of events. When the
//! connection drops it reconnects with backoff, catches every room up from
//! the last sequence delivered, and resends unacknowledged messages with
//! their original ids, so nothing is lost and nothing is shown twice.
//!
//! A session may be given several relays that share one store
//! (`hostA:4433,hostB:4433`): when its relay goes away it moves to the next
//! one and resumes there exactly as it would on the same relay (see
//! [`RelayList`]).

mod connect;
pub mod relays;
pub mod sync;
mod worker;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use connect::{with_port, ATTEMPT_DELAY, CONNECT_TIMEOUT, DEFAULT_PORT};
pub use relays::RelayList;

use crate::frame::{
    ClientFrame, ErrorCode, Member, Message, Page, Presence, RoomInfo, Seq, ServerFrame,
};
use crate::trust::{TrustFailure, TrustMode};

/// How to reach and log in to a relay. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct Config {
    /// `host:port` (port 4433 when left out), or several separated by
    /// commas: relays sharing one store, tried in order (see [`RelayList`]).
    /// Each address's certificate is checked on its own, as `trust` says.
    pub server: String,
    pub trust: TrustMode,
    pub user: String,
    pub password: String,
    /// Create the account on the first connection.
    pub register: bool,
    /// Sent in `Hello`, for the relay's logs.
    pub client_name: String,
    /// First reconnect delay; doubles up to `reconnect_max`. It is waited
    /// once per round over every address, not once per address.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("trust", &self.trust)
            .field("user", &self.user)
            .field("register", &self.register)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with the default reconnect policy.
    pub fn new(server: &str, trust: TrustMode, user: &str, password: &str) -> Self {
        Config {
            server: server.to_owned(),
            trust,
            user: user.to_owned(),
            password: password.to_owned(),
            register: false,
            client_name: concat!("confab-common/", env!("CARGO_PKG_VERSION")).to_owned(),
            reconnect_initial: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

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

/// A message the relay stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub seq: Seq,
    /// Server time, ms since the Unix epoch.
    pub ts: i64,
}

/// What happened, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// Logged in (first time or after a reconnect) at the relay `server`
    /// (`host:port`, as in [`RelayList::addrs`]).
    Connected { user: String, server: String },
    /// The user is in a room the application has not been told of yet:
    /// its latest messages (oldest first) and whether older ones exist.
    Joined {
        room: String,
        recent: Vec<Message>,
        more: bool,
    },
    /// The user is no longer in a room.
    Left { room: String },
    /// A new message, exactly once, in sequence order within its room.
    Message(Message),
    /// Someone joined, left, came online or went offline.
    Presence(Presence),
    /// The connection dropped, or the last round of attempts failed;
    /// retrying after `delay`.
    Reconnecting {
        /// Rounds tried since the connection was last healthy, this one
        /// included.
        attempt: u32,
        delay: Duration,
        reason: String,
        /// The relay whose connection just went away; `None` when this
        /// follows a round in which no relay could be reached.
        lost: Option<String>,
        /// The relay the round tries first; the others of the list follow
        /// if it does not answer ([`Event::Connected`] names the one
        /// reached). With one address, always that address.
        next: String,
    },
    /// The session gave up (e.g. the password was changed, the certificate
    /// changed). Nothing more will come.
    Failed(ConnectError),
}

pub(crate) enum Command {
    Send {
        room: String,
        body: String,
        reply: oneshot::Sender<Result<Acked, RequestError>>,
    },
    Request {
        frame: ClientFrame,
        reply: oneshot::Sender<Result<ServerFrame, RequestError>>,
    },
    Reconnect,
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A handle to a running session. Dropping it ends the session.
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    user: String,
    relay: CurrentRelay,
    worker: JoinHandle<()>,
}

/// The relay the worker is connected to, `None` between connections. A std
/// mutex: it is only ever held to copy a short string, never across an
/// await.
pub(crate) type CurrentRelay = Arc<Mutex<Option<String>>>;

impl Drop for Client {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

impl Client {
    /// Connects and logs in (registering when `cfg.register`), then keeps
    /// the session alive in a background task. With several addresses, the
    /// first that answers is used (see [`ATTEMPT_DELAY`]). Errors of this
    /// first round are returned; later ones come as events. The first event
    /// is [`Event::Connected`], naming the relay.
    pub async fn connect(
        cfg: Config,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Event>), ConnectError> {
        let mut relays = RelayList::parse(&cfg.server).map_err(ConnectError::Config)?;
        let (link, at) = connect::open(&cfg, &relays, cfg.register).await?;
        relays.connected(at);
        let user = link.user.clone();
        let relay: CurrentRelay = Arc::new(Mutex::new(Some(link.server.clone())));
        let (commands, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let worker = worker::Worker::new(cfg, relays, relay.clone(), events_tx, rx);
        let worker = tokio::spawn(worker.run(link, at));
        Ok((
            Client {
                commands,
                user,
                relay,
                worker,
            },
            events,
        ))
    }

    /// The user name as the relay spells it.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The relay the session is connected to now (`host:port`), or `None`
    /// while it reconnects or after it ended.
    pub fn relay(&self) -> Option<String> {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends a message; resolves once the relay has stored it. While the
    /// session reconnects the message waits and is sent (once) after.
    ///
    /// The message is queued when this is called, not when the future is
    /// first polled, so futures made in order are sent in order even when
    /// awaited together: callers may pipeline.
    pub fn send(
        &self,
        room: &str,
        body: &str,
    ) -> impl Future<Output = Result<Acked, RequestError>> + Send + 'static {
        let queued = check_body(body).and_then(|()| {
            let (reply, rx) = oneshot::channel();
            self.commands
                .send(Command::Send {
                    room: room.to_owned(),
                    body: body.to_owned(),
                    reply,
                })
                .map_err(|_| RequestError::Closed)?;
            Ok(rx)
        });
        async move { queued?.await.map_err(|_| RequestError::Closed)? }
    }

    async fn request(&self, frame: ClientFrame) -> Result<ServerFrame, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { frame, reply })
            .map_err(|_| RequestError::Closed)?;
        rx.await.map_err(|_| RequestError::Closed)?
    }

    /// Joins a channel; its latest messages follow as [`Event::Joined`].
    pub async fn join(&self, room: &str) -> Result<RoomInfo, RequestError> {
        joined(
            self.request(ClientFrame::Join {
                req: 0,
                room: room.to_owned(),
            })
            .await?,
        )
    }

    /// Creates a channel and joins it.
    pub async fn create_room(&self, room: &str, private: bool) -> Result<RoomInfo, RequestError> {
        joined(
            self.request(ClientFrame::CreateRoom {
                req: 0,
                room: room.to_owned(),
                private,
            })
            .await?,
        )
    }

    /// Opens the direct-message room with `user`.
    pub async fn open_dm(&self, user: &str) -> Result<RoomInfo, RequestError> {
        joined(
            self.request(ClientFrame::OpenDm {
                req: 0,
                user: user.to_owned(),
            })
            .await?,
        )
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<(), RequestError> {
        match self
            .request(ClientFrame::Leave {
                req: 0,
                room: room.to_owned(),
            })
            .await?
        {
            ServerFrame::Left { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lets `user` join private `room`.
    pub async fn invite(&self, room: &str, user: &str) -> Result<(), RequestError> {
        match self
            .request(ClientFrame::Invite {
                req: 0,
                room: room.to_owned(),
                user: user.to_owned(),
            })
            .await?
        {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The user's rooms and the public channels.
    pub async fn rooms(&self) -> Result<(Vec<RoomInfo>, Vec<RoomInfo>), RequestError> {
        match self.request(ClientFrame::ListRooms { req: 0 }).await? {
            ServerFrame::Rooms { joined, public, .. } => Ok((joined, public)),
            other => Err(unexpected(other)),
        }
    }

    /// A room's members with online state.
    pub async fn members(&self, room: &str) -> Result<Vec<Member>, RequestError> {
        match self
            .request(ClientFrame::Members {
                req: 0,
                room: room.to_owned(),
            })
            .await?
        {
            ServerFrame::Members { members, .. } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// A page of history, oldest first, and whether more lies beyond it.
    pub async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), RequestError> {
        match self
            .request(ClientFrame::History {
                req: 0,
                room: room.to_owned(),
                page,
                limit,
            })
            .await?
        {
            ServerFrame::HistoryPage { messages, more, .. } => Ok((messages, more)),
            other => Err(unexpected(other)),
        }
    }

    /// Round trip to the relay.
    pub async fn ping(&self) -> Result<(), RequestError> {
        self.request(ClientFrame::Ping { req: 0 }).await.map(|_| ())
    }

    /// Drops the connection and reconnects now (e.g. after a network
    /// change), starting with the same relay.
    pub fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect);
    }

    /// Says goodbye to the relay and ends the session. Unacknowledged sends
    /// fail with [`RequestError::Closed`], and so does everything after.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Close { done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}

fn check_body(body: &str) -> Result<(), RequestError> {
    crate::limits::check_body(body).map_err(|message| RequestError::Refused {
        code: ErrorCode::BadBody,
        message,
    })
}

fn joined(frame: ServerFrame) -> Result<RoomInfo, RequestError> {
    match frame {
        ServerFrame::Joined { room, .. } => Ok(room),
        other => Err(unexpected(other)),
    }
}

fn unexpected(frame: ServerFrame) -> RequestError {
    RequestError::Unexpected(format!("{frame:?}"))
}
