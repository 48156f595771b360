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

mod backoff;
mod command;
mod config;
mod connect;
mod error;
mod event;
mod pending;
pub mod relays;
mod session;
pub mod sync;
mod worker;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use command::Acked;
pub use config::Config;
pub use connect::{ATTEMPT_DELAY, CONNECT_TIMEOUT};
pub use error::{ConnectError, RequestError};
pub use event::Event;
pub use relays::{with_port, RelayList, DEFAULT_PORT};

use command::Command;
use worker::CurrentRelay;

use crate::frame::{
    ClientFrame, ErrorCode, Invitation, Member, Message, Page, RoomInfo, ServerFrame,
};

/// The relay's answer to a room listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomList {
    /// Every room the user is in, of any kind.
    pub joined: Vec<RoomInfo>,
    /// Public channels, joined or not.
    pub public: Vec<RoomInfo>,
    /// Invitations to rooms the user is not in, newest first.
    pub invited: Vec<Invitation>,
}

/// A handle to a running session. Dropping it ends the session.
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    user: String,
    relay: CurrentRelay,
    worker: JoinHandle<()>,
}

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
        let relays = RelayList::parse(&cfg.server).map_err(ConnectError::Config)?;
        let (link, at) = connect::open(&cfg, &relays, cfg.register).await?;
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

    /// Invites `user` to `room` (which a private room needs before they
    /// may join); they are told at once if connected, and see it in their
    /// room list otherwise.
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

    /// Sets the topic of `room`, a channel the user is in; an empty
    /// topic clears it. Every member's sessions (this one included) are
    /// told with [`Event::Topic`]; setting the topic it has changes
    /// nothing. Checked here first, so a topic the relay would refuse is
    /// refused without a round trip (`BadTopic`).
    pub async fn set_topic(&self, room: &str, topic: &str) -> Result<(), RequestError> {
        crate::limits::check_topic(topic).map_err(|message| RequestError::Refused {
            code: ErrorCode::BadTopic,
            message,
        })?;
        match self
            .request(ClientFrame::SetTopic {
                req: 0,
                room: room.to_owned(),
                topic: topic.to_owned(),
            })
            .await?
        {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Declines an invitation to `room`: the relay forgets it, and the
    /// user can join a private room only if invited again. This is a
    /// `Leave`: for a room the user is in, it leaves the room.
    pub async fn decline(&self, room: &str) -> Result<(), RequestError> {
        // A `Leave` of a room one is only invited to is the decline.
        self.leave(room).await
    }

    /// The user's rooms and the public channels.
    pub async fn rooms(&self) -> Result<(Vec<RoomInfo>, Vec<RoomInfo>), RequestError> {
        self.room_list()
            .await
            .map(|list| (list.joined, list.public))
    }

    /// The user's rooms, the public channels and the user's pending
    /// invitations.
    pub async fn room_list(&self) -> Result<RoomList, RequestError> {
        match self.request(ClientFrame::ListRooms { req: 0 }).await? {
            ServerFrame::Rooms {
                joined,
                public,
                invited,
                ..
            } => Ok(RoomList {
                joined,
                public,
                invited,
            }),
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
