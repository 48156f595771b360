//! The wire enums. Field order and variant order are the wire format
//! (bincode encodes a variant by its index and fields in declaration
//! order), so never reorder or remove: only append. docs/PROTOCOL.md
//! describes every frame with its index; keep the two in step.

use serde::{Deserialize, Serialize};

/// ALPN protocol id; a connection offering anything else is refused in the
/// TLS handshake.
pub const ALPN: &[u8] = b"confab/1";

/// Version carried in `Hello`; the relay refuses any other.
pub const PROTOCOL_VERSION: u16 = 1;

/// Client-chosen id that names a request; replies and errors repeat it.
pub type RequestId = u32;

/// Per-room message sequence number: strictly increasing within a room,
/// not necessarily contiguous. 0 means "before the first message".
pub type Seq = u64;

/// Client-chosen message id (random 128 bits). A resend with the same id is
/// acknowledged again but stored once.
pub type MsgId = [u8; 16];

/// A password as it travels in `Register` and `Login`. On the wire it is a
/// plain string; its `Debug` never shows it, so a logged frame cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// The password itself, for checking or hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password(s.to_owned())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Password(s)
    }
}

/// Frames a client sends on its control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// 0. Must be the first frame.
    Hello { version: u16, client: String },
    /// 1. Creates an account and logs in.
    Register {
        req: RequestId,
        user: String,
        password: Password,
    },
    /// 2. Logs in to an existing account.
    Login {
        req: RequestId,
        user: String,
        password: Password,
    },
    /// 3. Creates a channel; the creator becomes its first member.
    CreateRoom {
        req: RequestId,
        room: String,
        private: bool,
    },
    /// 4. Joins a channel (idempotent for members).
    Join { req: RequestId, room: String },
    /// 5. Leaves a room.
    Leave { req: RequestId, room: String },
    /// 6. Invites a user to a room the sender is a member of.
    Invite {
        req: RequestId,
        room: String,
        user: String,
    },
    /// 7. Lists the sender's rooms and the public channels.
    ListRooms { req: RequestId },
    /// 8. Lists a room's members with online state.
    Members { req: RequestId, room: String },
    /// 9. Opens (creating if needed) the direct-message room with a user.
    OpenDm { req: RequestId, user: String },
    /// 10. Sends a message to a room.
    Send {
        req: RequestId,
        room: String,
        id: MsgId,
        body: String,
    },
    /// 11. Asks for a page of a room's history; the reply comes on a bulk stream.
    History {
        req: RequestId,
        room: String,
        page: Page,
        limit: u16,
    },
    /// 12. Liveness check; answered with `Pong`.
    Ping { req: RequestId },
    /// 13. Polite goodbye before closing.
    Bye,
    /// 14. After `Lagged`: resumes live delivery of a room to this session
    ///     (it never changes membership). Answered with `Done`.
    Resume { req: RequestId, room: String },
    /// 15. Sets (or, empty, clears) the topic of a channel the sender is a
    ///     member of. Answered with `Done`; every member's sessions get
    ///     `Topic`.
    SetTopic {
        req: RequestId,
        room: String,
        topic: String,
    },
}

/// Which part of a room's history a `History` request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Page {
    /// 0. The newest `limit` messages.
    Latest,
    /// 1. The newest `limit` messages with a sequence below this one.
    Before(Seq),
    /// 2. The oldest `limit` messages with a sequence above this one.
    After(Seq),
}

/// Frames the relay sends: on the control stream, except the replies that
/// can grow large (`HistoryPage`, `Rooms`, `Members`), which each travel
/// alone on a unidirectional bulk stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// 0. Reply to `Hello`.
    Welcome {
        version: u16,
        server: String,
        registration_open: bool,
    },
    /// 1. Reply to `Register` or `Login`.
    LoggedIn { req: RequestId, user: String },
    /// 2. Reply to `CreateRoom`, `Join` and `OpenDm`.
    Joined { req: RequestId, room: RoomInfo },
    /// 3. Reply to `Leave`.
    Left { req: RequestId, room: String },
    /// 4. Reply to requests with nothing to return (`Invite`, `Resume`,
    ///    `SetTopic`).
    Done { req: RequestId },
    /// 5. Reply to `ListRooms`.
    Rooms {
        req: RequestId,
        joined: Vec<RoomInfo>,
        public: Vec<RoomInfo>,
        /// The user's pending invitations, newest first.
        invited: Vec<Invitation>,
    },
    /// 6. Reply to `Members`.
    Members {
        req: RequestId,
        room: String,
        members: Vec<Member>,
    },
    /// 7. A message was committed to disk.
    Ack {
        req: RequestId,
        room: String,
        id: MsgId,
        seq: Seq,
        ts: i64,
    },
    /// 8. A new message in one of the session's rooms (its own included).
    Message(Message),
    /// 9. Reply to `History` (on a bulk stream).
    HistoryPage {
        req: RequestId,
        room: String,
        messages: Vec<Message>,
        more: bool,
    },
    /// 10. Someone joined, left, came online or went offline.
    Presence(Presence),
    /// 11. The session fell behind in a room: live messages from `from` on
    ///     were not sent. Send `Resume` and page `After` the last seen sequence.
    Lagged { room: String, from: Seq },
    /// 12. Reply to `Ping`.
    Pong { req: RequestId },
    /// 13. A request failed (`req` 0: the connection as a whole).
    Error {
        req: RequestId,
        code: ErrorCode,
        message: String,
    },
    /// 14. The relay is shutting down; reconnect later.
    Shutdown { reason: String },
    /// 15. Someone invited the session's user to a room: `Join` accepts,
    ///     `Leave` declines.
    Invited(Invitation),
    /// 16. A member set (or, empty, cleared) the topic of one of the
    ///     session's rooms.
    Topic {
        room: String,
        topic: String,
        /// Who set it, as registered.
        by: String,
    },
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: String,
    pub seq: Seq,
    pub id: MsgId,
    /// Server time of commit, milliseconds since the Unix epoch (UTC).
    pub ts: i64,
    pub from: String,
    pub body: String,
}

/// What kind of room a room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoomKind {
    /// 0. Anyone may join.
    Public,
    /// 1. Only invited users may join or read.
    Private,
    /// 2. Direct messages between two users.
    Direct,
}

/// A room as the relay describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub kind: RoomKind,
    pub members: u32,
    /// Sequence of the newest message, 0 if none.
    pub latest: Seq,
    /// What the room is for, as its members set it; empty for none (and
    /// always for a DM room).
    pub topic: String,
}

/// An invitation to a room the user is not a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub room: RoomInfo,
    /// Who invited, as registered.
    pub by: String,
}

/// A room member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub online: bool,
}

/// A presence change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The room for `Joined`/`Left`; `None` for `Online`/`Offline`, which
    /// are sent once to every session sharing a room with the user.
    pub room: Option<String>,
    pub user: String,
    pub kind: PresenceKind,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceKind {
    /// 0.
    Joined,
    /// 1.
    Left,
    /// 2. The user's first device logged in.
    Online,
    /// 3. The user's last device disconnected.
    Offline,
}

/// Why a request failed. The number beside each is its wire index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 0. The frame could not be decoded; the connection is closed.
    Malformed,
    /// 1. The frame is over the size limit; the connection is closed.
    FrameTooLarge,
    /// 2. The frame is not allowed in this state (e.g. before login).
    Unexpected,
    /// 3. `Hello` carried another protocol version; the connection is closed.
    VersionMismatch,
    /// 4. Unknown user or wrong password.
    BadCredentials,
    /// 5. Registration: the name is taken.
    NameTaken,
    /// 6. A user or room name breaks the naming rules.
    InvalidName,
    /// 7. Registration is closed on this relay.
    RegistrationClosed,
    /// 8. Too many failed logins; wait and retry.
    Throttled,
    /// 9. Sending too fast; the message was not stored, resend it later.
    RateLimited,
    /// 10. No such room.
    NoSuchRoom,
    /// 11. No such user.
    NoSuchUser,
    /// 12. The session's user is not a member of the room.
    NotMember,
    /// 13. Not allowed (private room without invite, leaving lobby, ...).
    Forbidden,
    /// 14. `CreateRoom`: the room exists.
    RoomExists,
    /// 15. Message body over the limit or empty.
    BadBody,
    /// 16. Password too short or too long.
    BadPassword,
    /// 17. Storage failed; nothing was stored, retry later.
    Unavailable,
    /// 18. Login did not happen in time; the connection is closed.
    LoginTimeout,
    /// 19. A limit on connections was reached; the connection is closed.
    TooManyConnections,
    /// 20. History `limit` out of range.
    BadLimit,
    /// 21. `SetTopic`: the topic is too long or holds control characters.
    BadTopic,
}

impl ClientFrame {
    /// The request id the frame carries; 0 for `Hello` and `Bye`.
    pub fn req(&self) -> RequestId {
        use ClientFrame::*;
        match self {
            Register { req, .. }
            | Login { req, .. }
            | CreateRoom { req, .. }
            | Join { req, .. }
            | Leave { req, .. }
            | Invite { req, .. }
            | ListRooms { req }
            | Members { req, .. }
            | OpenDm { req, .. }
            | Send { req, .. }
            | History { req, .. }
            | Ping { req }
            | Resume { req, .. }
            | SetTopic { req, .. } => *req,
            Hello { .. } | Bye => 0,
        }
    }

    /// Sets the request id (no effect on `Hello` and `Bye`).
    pub fn set_req(&mut self, new: RequestId) {
        use ClientFrame::*;
        match self {
            Register { req, .. }
            | Login { req, .. }
            | CreateRoom { req, .. }
            | Join { req, .. }
            | Leave { req, .. }
            | Invite { req, .. }
            | ListRooms { req }
            | Members { req, .. }
            | OpenDm { req, .. }
            | Send { req, .. }
            | History { req, .. }
            | Ping { req }
            | Resume { req, .. }
            | SetTopic { req, .. } => *req = new,
            Hello { .. } | Bye => {}
        }
    }
}

impl ServerFrame {
    /// The request a reply answers; 0 for unsolicited frames.
    pub fn req(&self) -> RequestId {
        use ServerFrame::*;
        match self {
            LoggedIn { req, .. }
            | Joined { req, .. }
            | Left { req, .. }
            | Done { req }
            | Rooms { req, .. }
            | Members { req, .. }
            | Ack { req, .. }
            | HistoryPage { req, .. }
            | Pong { req }
            | Error { req, .. } => *req,
            Welcome { .. }
            | Message(_)
            | Presence(_)
            | Lagged { .. }
            | Shutdown { .. }
            | Invited(_)
            | Topic { .. } => 0,
        }
    }
}

/// QUIC application close codes the relay uses.
pub mod close {
    /// Normal close (`Bye`, logout).
    pub const NORMAL: u32 = 0;
    /// The peer broke the protocol (malformed or oversized frame, ...).
    pub const PROTOCOL: u32 = 1;
    /// Login deadline passed.
    pub const LOGIN_TIMEOUT: u32 = 2;
    /// The relay is shutting down.
    pub const SHUTDOWN: u32 = 3;
    /// Connection limits reached.
    pub const BUSY: u32 = 4;
    /// Protocol version not supported.
    pub const VERSION: u32 = 5;
    /// The account was deleted or its password changed while logged in.
    pub const ACCOUNT_CHANGED: u32 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;

    /// Pinned: PROTOCOL.md §15 shows these bytes to implementers.
    #[test]
    fn invitations_encode_as_documented() {
        let ops = Invitation {
            room: RoomInfo {
                name: "ops".into(),
                kind: RoomKind::Private,
                members: 2,
                latest: 0,
                topic: String::new(),
            },
            by: "bob".into(),
        };
        let told = ServerFrame::Invited(ops.clone());
        assert_eq!(
            &encode(&told)[..],
            &[0, 0, 0, 13, 0x0f, 3, b'o', b'p', b's', 1, 2, 0, 0, 3, b'b', b'o', b'b']
        );
        let rooms = ServerFrame::Rooms {
            req: 7,
            joined: vec![],
            public: vec![],
            invited: vec![ops],
        };
        assert_eq!(
            &encode(&rooms)[..],
            &[0, 0, 0, 17, 5, 7, 0, 0, 1, 3, b'o', b'p', b's', 1, 2, 0, 0, 3, b'b', b'o', b'b']
        );
    }

    /// Pinned: PROTOCOL.md §15 shows these bytes to implementers.
    #[test]
    fn topics_encode_as_documented() {
        let set = ClientFrame::SetTopic {
            req: 9,
            room: "ops".into(),
            topic: "pages".into(),
        };
        assert_eq!(
            &encode(&set)[..],
            &[0, 0, 0, 12, 0x0f, 9, 3, b'o', b'p', b's', 5, b'p', b'a', b'g', b'e', b's']
        );
        let told = ServerFrame::Topic {
            room: "ops".into(),
            topic: "pages".into(),
            by: "bob".into(),
        };
        assert_eq!(
            &encode(&told)[..],
            &[
                0, 0, 0, 15, 0x10, 3, b'o', b'p', b's', 5, b'p', b'a', b'g', b'e', b's', 3, b'b',
                b'o', b'b'
            ]
        );
        let joined = ServerFrame::Joined {
            req: 3,
            room: RoomInfo {
                name: "ops".into(),
                kind: RoomKind::Public,
                members: 2,
                latest: 0,
                topic: "pages".into(),
            },
        };
        assert_eq!(
            &encode(&joined)[..],
            &[0, 0, 0, 15, 2, 3, 3, b'o', b'p', b's', 0, 2, 0, 5, b'p', b'a', b'g', b'e', b's']
        );
        let refused = ServerFrame::Error {
            req: 9,
            code: ErrorCode::BadTopic,
            message: String::new(),
        };
        assert_eq!(&encode(&refused)[..], &[0, 0, 0, 4, 0x0d, 9, 21, 0]);
    }
}
