//! The network side of the window: a subscription that runs one `common`
//! client session and talks to the UI only through messages. The session's
//! own task does the reconnecting and buffering, so a busy UI never stalls
//! the network; requests run in tasks of their own so a slow one never
//! holds up the event stream.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use common::client::{Acked, Client, Config, ConnectError, Event as SessionEvent, RequestError};
use common::frame::{ErrorCode, Member, Message, Page, RoomInfo, Seq};
use common::trust::TrustMode;
use iced::futures::{SinkExt, Stream};
use tokio::sync::mpsc;

/// Page size when scrolling back.
pub const OLDER_PAGE: u16 = 50;

/// Everything needed to log in. The password takes no part in the
/// subscription's identity; `attempt` makes each try a new subscription.
#[derive(Clone)]
pub struct Params {
    pub server: String,
    pub user: String,
    pub password: String,
    pub register: bool,
    pub trust: TrustMode,
    pub attempt: u64,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("register", &self.register)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Hash for Params {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&self.server, &self.user, self.register, self.attempt).hash(state);
    }
}

impl Params {
    fn config(&self) -> Config {
        let mut cfg = Config::new(&self.server, self.trust.clone(), &self.user, &self.password);
        cfg.register = self.register;
        cfg.client_name = concat!("client-gui/", env!("CARGO_PKG_VERSION")).into();
        cfg
    }
}

/// What the UI asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        local: u64,
        room: String,
        body: String,
    },
    Join(String),
    Create {
        room: String,
        private: bool,
    },
    Leave(String),
    OpenDm(String),
    Older {
        room: String,
        before: Seq,
    },
    /// The page after `after`, when coming back down a long room.
    Newer {
        room: String,
        after: Seq,
    },
    Members(String),
    /// The relay's list of rooms, for the room browser.
    ListRooms,
    /// Let `user` join the private `room`.
    Invite {
        room: String,
        user: String,
    },
    /// Decline the invitation to `room`.
    Decline(String),
    /// Set (empty: clear) the topic of `room`.
    SetTopic {
        room: String,
        topic: String,
    },
    Logout,
}

/// What the session tells the UI.
#[derive(Debug, Clone)]
pub enum Event {
    /// Logged in at `relay` (one address of the list); commands go through
    /// the handle.
    Connected {
        user: String,
        relay: String,
        handle: Handle,
    },
    /// The first connection failed; nothing more follows.
    Failed(ConnectError),
    /// Something happened in the session.
    Session(SessionEvent),
    /// A send finished (stored, or refused).
    Sent {
        local: u64,
        room: String,
        result: Result<Acked, RequestError>,
    },
    /// A join, create or DM succeeded.
    Opened(RoomInfo),
    /// Older messages of a room, oldest first.
    Older {
        room: String,
        messages: Vec<Message>,
        more: bool,
    },
    /// Newer messages of a room, oldest first; `more` if more follow.
    Newer {
        room: String,
        messages: Vec<Message>,
        more: bool,
    },
    Members {
        room: String,
        members: Vec<Member>,
    },
    /// A request failed; the text says what to do.
    Refused(String),
    /// A join failed; the text says why and what to do.
    JoinRefused {
        room: String,
        why: String,
    },
    /// The relay's room list, or why it could not be read.
    Rooms(Result<RoomList, String>),
    /// An invitation was recorded, or why not.
    Invited {
        room: String,
        user: String,
        result: Result<(), String>,
    },
    /// The invitation to `room` was declined, or why not.
    Declined {
        room: String,
        result: Result<(), String>,
    },
    /// The relay took a new topic for `room` (every member is told with
    /// a session event), or why not.
    TopicSet {
        room: String,
        result: Result<(), String>,
    },
    /// The session ended after a logout.
    LoggedOut,
}

/// The relay's answer to `ListRooms`.
pub use common::client::RoomList;

/// The UI's end of the command channel.
#[derive(Debug, Clone)]
pub struct Handle(mpsc::UnboundedSender<Command>);

impl Handle {
    /// A handle and the receiving end of its commands, for driving the
    /// window without a relay (the widget tests do).
    pub fn pair() -> (Handle, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Handle(tx), rx)
    }

    /// Queues a command; a closed session ignores it.
    pub fn send(&self, command: Command) {
        let _ = self.0.send(command);
    }
}

/// The subscription's stream: connect, then relay events and commands.
pub fn run(params: &Params) -> impl Stream<Item = Event> + use<> {
    let params = params.clone();
    iced::stream::channel(
        256,
        async move |mut output: iced::futures::channel::mpsc::Sender<Event>| {
            let (client, mut events) = match Client::connect(params.config()).await {
                Ok(connected) => connected,
                Err(e) => {
                    let _ = output.send(Event::Failed(e)).await;
                    return;
                }
            };
            let client = Arc::new(client);
            let (commands_tx, mut commands) = mpsc::unbounded_channel();
            let (results_tx, mut results) = mpsc::unbounded_channel();
            let connected = Event::Connected {
                user: client.user().to_owned(),
                // Read before any event: a move to another relay comes as a
                // session event after this.
                relay: client.relay().unwrap_or_default(),
                handle: Handle(commands_tx),
            };
            if output.send(connected).await.is_err() {
                return;
            }
            loop {
                let event = tokio::select! {
                    event = events.recv() => match event {
                        Some(e) => Event::Session(e),
                        None => break,
                    },
                    Some(result) = results.recv() => result,
                    command = commands.recv() => match command {
                        None | Some(Command::Logout) => {
                            client.close().await;
                            let _ = output.send(Event::LoggedOut).await;
                            return;
                        }
                        Some(command) => {
                            tokio::spawn(perform(client.clone(), command, results_tx.clone()));
                            continue;
                        }
                    },
                };
                if output.send(event).await.is_err() {
                    // The window dropped the subscription: log out politely.
                    client.close().await;
                    return;
                }
            }
        },
    )
}

async fn perform(client: Arc<Client>, command: Command, results: mpsc::UnboundedSender<Event>) {
    // A refusal names what failed, so the notice makes sense on its own.
    let refused =
        |what: String| move |e: RequestError| Event::Refused(format!("{what}: {}.", words(&e)));
    let event = match command {
        Command::Send { local, room, body } => {
            let result = client.send(&room, &body).await;
            Event::Sent {
                local,
                room,
                result,
            }
        }
        Command::Join(room) => match client.join(&room).await {
            Ok(info) => Event::Opened(info),
            Err(e) => Event::JoinRefused {
                why: format!("Could not join #{room}: {}.", words(&e)),
                room,
            },
        },
        Command::Create { room, private } => client
            .create_room(&room, private)
            .await
            .map_or_else(refused(format!("Could not create #{room}")), Event::Opened),
        Command::OpenDm(user) => client.open_dm(&user).await.map_or_else(
            refused(format!("Could not open a conversation with {user}")),
            Event::Opened,
        ),
        Command::Leave(room) => match client.leave(&room).await {
            Ok(()) => return,
            Err(e) => refused(format!("Could not leave #{room}"))(e),
        },
        Command::Older { room, before } => match client
            .history(&room, Page::Before(before), OLDER_PAGE)
            .await
        {
            Ok((messages, more)) => Event::Older {
                room,
                messages,
                more,
            },
            Err(e) => refused("Could not load older messages".into())(e),
        },
        Command::Newer { room, after } => {
            match client.history(&room, Page::After(after), OLDER_PAGE).await {
                Ok((messages, more)) => Event::Newer {
                    room,
                    messages,
                    more,
                },
                Err(e) => refused("Could not load newer messages".into())(e),
            }
        }
        Command::Members(room) => match client.members(&room).await {
            Ok(members) => Event::Members { room, members },
            Err(e) => refused("Could not load the member list".into())(e),
        },
        Command::ListRooms => Event::Rooms(
            client
                .room_list()
                .await
                .map_err(|e| format!("Could not load the room list: {}.", words(&e))),
        ),
        Command::Invite { room, user } => {
            let result = client
                .invite(&room, &user)
                .await
                .map_err(|e| format!("Could not invite {user} to #{room}: {}.", invite_words(&e)));
            Event::Invited { room, user, result }
        }
        Command::Decline(room) => {
            let result = match client.decline(&room).await {
                // Not invited (any more): nothing is left to decline.
                Err(RequestError::Refused {
                    code: ErrorCode::NoSuchRoom | ErrorCode::NotMember,
                    ..
                }) => Ok(()),
                other => other.map_err(|e| {
                    format!(
                        "Could not decline the invitation to #{room}: {}.",
                        words(&e)
                    )
                }),
            };
            Event::Declined { room, result }
        }
        Command::SetTopic { room, topic } => {
            let result = client
                .set_topic(&room, &topic)
                .await
                .map_err(|e| format!("Could not set the topic of #{room}: {}.", words(&e)));
            Event::TopicSet { room, result }
        }
        Command::Logout => return,
    };
    let _ = results.send(event);
}

/// Why a request failed, in words for the person who asked, with what to do.
pub fn words(e: &RequestError) -> String {
    match e {
        RequestError::Refused { code, message } => match code {
            ErrorCode::RateLimited => {
                "the relay is limiting your requests just now; wait a moment and try again".into()
            }
            ErrorCode::Unavailable => {
                "the relay cannot answer right now (its store is busy or it is shutting down); try again in a moment".into()
            }
            ErrorCode::NoSuchRoom => {
                "there is no such room (or it is private and you were not invited)".into()
            }
            ErrorCode::NoSuchUser => "there is no user of that name".into(),
            ErrorCode::NotMember => "you are not a member of that room; join it first".into(),
            ErrorCode::RoomExists => "a room of that name exists; join it instead".into(),
            // The relay's own words name the rule (a limit, the lobby, …).
            _ => message.trim_end_matches('.').to_owned(),
        },
        RequestError::NotConnected => {
            "not connected to the relay; try again once it is reconnected".into()
        }
        RequestError::Closed => "the session has ended; press Reconnect first".into(),
        RequestError::Unexpected(what) => {
            format!("the relay answered something unexpected ({what}); update confab")
        }
    }
}

/// [`words`], with what `Forbidden` means for an invitation.
fn invite_words(e: &RequestError) -> String {
    match e {
        RequestError::Refused {
            code: ErrorCode::Forbidden,
            ..
        } => "a direct-message room takes no invitations".into(),
        other => words(other),
    }
}
