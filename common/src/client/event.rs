//! What a session tells the application, in order.

use std::time::Duration;

use super::error::ConnectError;
use crate::frame::{Invitation, Message, Presence, RoomInfo};

/// What happened, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// Logged in (first time or after a reconnect) at the relay `server`
    /// (`host:port`, as in [`RelayList::addrs`](super::RelayList::addrs)).
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
    /// Someone invited the user to a room, just now: accept with
    /// [`Client::join`](super::Client::join), decline with
    /// [`Client::decline`](super::Client::decline).
    Invited(Invitation),
    /// The user's pending invitations, newest first, after each login:
    /// those made while the user was away included, those accepted or
    /// declined on another device gone. It replaces any list before it;
    /// [`Event::Invited`] adds to it.
    Invitations(Vec<Invitation>),
    /// The rooms the user is in, as the relay listed them after each login
    /// (kinds, member counts, topics); a topic set after the list was read
    /// is in it already. Rooms joined later come with
    /// [`Event::Joined`]; topics changed later with [`Event::Topic`].
    Rooms(Vec<RoomInfo>),
    /// A member (`by`, as registered) set the topic of one of the user's
    /// rooms, just now; empty when they cleared it. The user's own changes
    /// come too, from every device.
    Topic {
        room: String,
        topic: String,
        by: String,
    },
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
