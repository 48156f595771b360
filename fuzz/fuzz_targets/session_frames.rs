//! The relay's session state machine, end to end: a real relay
//! (`relay::server::serve` on SQLite, QUIC on loopback) is fed arbitrary
//! sequences of client frames by a logged-in user, mallory, over a real
//! connection, and everything the relay sends back is checked.
//!
//! One relay per process, started by the first input, with accounts
//! mallory, alice and bob, alice's private room `vault`, bob's private room
//! `ops`, bob's public room `dev` and the DM `@alice+bob`. mallory's session
//! is kept across inputs (a login costs an argon2 hash); an input may end
//! it (`Bye`, a FIN, a frame the relay cannot read, a prefix over the
//! limit) once it has lasted `SESSION_MIN` inputs, and the next input logs
//! in again. alice stays logged in the whole time, reading her frames, and
//! sends lines when an input says so.
//!
//! An input is up to `MAX_OPS` of mallory's requests (names from small
//! tables of rooms and users, valid and not, plus over-long and random
//! ones), payloads sent as the frame they decode to, alice's lines, and
//! the session-ending frames above.
//!
//! Each input's frames are written to mallory's control stream in one go,
//! then a `Ping`; the input ends once the `Pong` and every other answer
//! (acks and bulk replies come later) are in, or once the relay closed the
//! connection when the input asked for that. Nothing within 20 s, with the
//! connection open, is a crash: the relay stopped answering.
//!
//! Checked, for both users, from what the relay sends them:
//! - every frame decodes, on the stream it belongs on (bulk replies alone
//!   on a uni stream, nothing after them);
//! - every request gets exactly one answer, of its kind (`Joined` for a
//!   `Join`, ...) and about what was asked; answers that the relay queues
//!   before reading the next frame arrive before the `Pong`;
//! - membership, tracked from the relay's own answers (`Joined`, `Left`,
//!   and presence about the user itself): no `Message`, `Lagged`, room
//!   `Presence`, `Ack`, history page, `Done` for an invite or resume, or
//!   private room's member list for a room the user was not in at some
//!   point since the request; the room list holds exactly those rooms;
//! - mallory never enters `vault`, `ops` or `@alice+bob`, and nobody ever
//!   sees a line or presence of hers there; nobody receives their own
//!   online/offline presence;
//! - refusals are the documented ones (PROTOCOL §5.1, §9, §10) and fit
//!   what is known: no `NotMember` for a room the user was in throughout,
//!   no `NoSuchRoom` for a room known to exist, `BadBody`/`BadLimit`/
//!   `InvalidName` exactly when the request breaks those rules;
//! - live messages come in increasing seq per room and connection; a
//!   history page holds at most `limit` messages of its room, in
//!   increasing seq, within the page's bound;
//! - a connection closes only when the input asked for it, with the close
//!   code PROTOCOL §7 gives.
//!
//! Any panic in a relay task aborts the process too (see `abort_on_panic`).
//! CONFAB_FUZZ_TRACE=1 prints every frame sent and received.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{BufMut, BytesMut};
use common::codec::{self, FrameError};
use common::frame::{
    close, ClientFrame, ErrorCode, Message, MsgId, Page, Presence, PresenceKind, RoomInfo,
    RoomKind, ServerFrame, ALPN, PROTOCOL_VERSION,
};
use common::limits::{check_body, MAX_BODY, MAX_BULK_FRAME, MAX_CONTROL_FRAME, MAX_PAGE};
use common::names::{self, LOBBY};
use libfuzzer_sys::fuzz_target;
use relay::config::Config;
use relay::store::sqlite::SqliteStore;
use relay::store::Store;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio::time::Instant;

const PASSWORD: &str = "correct horse battery";
const FUZZED: &str = "mallory";
const PEER: &str = "alice";
const USERS: [&str; 3] = [FUZZED, PEER, "bob"];
/// Rooms mallory is never let into: nobody ever invites her.
const MALLORY_NEVER: [&str; 3] = ["vault", "ops", "@alice+bob"];
/// alice is never invited anywhere either, and DMs hold only their two users.
const ALICE_NEVER: [&str; 3] = ["ops", "@bob+mallory", "@mallory+mallory"];

/// A relay that has not answered by then has stopped answering; generous
/// because the machine running the fuzzer may be busy.
const PATIENCE: Duration = Duration::from_secs(20);
/// Frames per input past which the rest is ignored: longer inputs only
/// slow the fuzzer down.
const MAX_OPS: usize = 48;
/// A `Rare` op acts only once the session has served this many inputs
/// (a fresh process's first session counts as old enough, so that a saved
/// input replays alone as it ran). A new login costs ~100 ms, tens of
/// typical inputs; and ending a session runs code whose coverage varies
/// with timing, so with a gate in the input itself the fuzzer filled its
/// corpus with inputs that end it, and one input in six logged in again.
const SESSION_MIN: u64 = 250;
/// Payloads that do not decode (PROTOCOL §3): empty, a variant index past
/// the last, a trailing byte, invalid UTF-8, a bool of 2, a u64 marker in a
/// u32, a frame cut short. A few fixed ones: the decoder's corners are
/// `frame_decode`'s job, and each input that reaches one ends the session.
const MALFORMED: [&[u8]; 7] = [
    b"",
    &[0xff],
    &[0x0c, 0x01, 0x00],
    &[0x04, 0x01, 0x02, 0xc3, 0x28],
    &[0x03, 0x01, 0x01, b'x', 0x02],
    &[0x0c, 0xfd, 1, 0, 0, 0, 0, 0, 0, 0],
    &[0x0a, 0x01, 0x05, b'l', b'o'],
];

const ROOM_NAMES: [&str; 18] = [
    LOBBY,
    "dev",
    "ops",
    "vault",
    "music",
    "x",
    "b-o_b9",
    "@alice+bob",
    "@alice+mallory",
    "@bob+mallory",
    "@mallory+mallory",
    "@alice+alice",
    "@mallory+alice",
    "LOBBY",
    "Dev",
    "",
    " dev",
    "dév",
];
const USER_NAMES: [&str; 10] = [
    FUZZED, PEER, "bob", "ALICE", "Bob", "Mallory", "nobody", "", "@alice", "mallory ",
];
const BODIES: [&str; 6] = [
    "hello",
    "x",
    "héllo wörld",
    "\u{200b}",
    "line\nbreak",
    "\u{0}",
];
/// alice's `Send`s: her rooms, the DM mallory may open with her, and a
/// room she is not in.
const PEER_ROOMS: [&str; 5] = [LOBBY, "vault", "@alice+bob", "@alice+mallory", "dev"];

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    CreateRoom {
        room: Name,
        private: bool,
    },
    Join {
        room: Name,
    },
    Leave {
        room: Name,
    },
    Invite {
        room: Name,
        user: Name,
    },
    ListRooms,
    Members {
        room: Name,
    },
    OpenDm {
        user: Name,
    },
    Send {
        room: Name,
        id: Id,
        body: Body,
    },
    History {
        room: Name,
        page: PageSel,
        limit: Limit,
    },
    Ping,
    Resume {
        room: Name,
    },
    /// A pre-login frame after login: refused, the session stays.
    Again(Again),
    /// alice sends a line in `PEER_ROOMS[room]`.
    PeerSend {
        room: u8,
        body: Body,
    },
    /// A payload of up to 256 bytes, sent as the frame it decodes to (with
    /// a fresh `req`); skipped when it does not decode, or is `Bye`.
    Raw(Vec<u8>),
    /// Something that ends the session, when it has lasted `SESSION_MIN`
    /// inputs; the ops after it are not sent.
    Rare(Rare),
}

#[derive(Arbitrary, Debug)]
enum Name {
    /// From `ROOM_NAMES` or `USER_NAMES`.
    Pick(u8),
    /// 30 + n % 40 letters: the 32-byte limit and past it.
    Long(u8),
    /// Cut to 1 character, so that the rooms the fuzzer can create stay few
    /// (36 valid names) and so do the room lists.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Id {
    /// The same 16 bytes each time: resends.
    Fixed(u8),
    Fresh,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Pick(u8),
    /// Cut to 512 bytes.
    Text(String),
    /// Whitespace only (none for 0).
    Blank(u8),
    /// `MAX_BODY - 1 + n % 3` bytes: either side of the limit.
    Edge(u8),
}

#[derive(Arbitrary, Debug)]
enum PageSel {
    Latest,
    Before(u16),
    After(u16),
    BeforeMax,
    AfterMax,
}

#[derive(Arbitrary, Debug)]
enum Limit {
    /// `n % 8`: rooms fill up with 4 KiB lines, and pages of them are slow
    /// to arrive (measured: 4 ms for 8 lines, 19 ms for 15, 30 ms for 200,
    /// where most whole inputs take 1 to 5 ms).
    Small(u8),
    /// `MAX_PAGE` or one past it.
    Edge(bool),
    Raw(u16),
}

#[derive(Arbitrary, Debug)]
enum Again {
    Hello(u16),
    Register,
    Login(bool),
}

#[derive(Arbitrary, Debug)]
enum Rare {
    Bye,
    /// The control stream's FIN, between frames.
    Finish,
    /// `MALFORMED[n]`, as a frame.
    Malformed(u8),
    /// A length prefix over `MAX_CONTROL_FRAME`.
    Oversized(u16),
    /// The first bytes of a `Ping` frame, then the FIN.
    Truncated(u8),
}

static INPUTS: AtomicU64 = AtomicU64::new(0);
static RELOGINS: AtomicU64 = AtomicU64::new(0);

fn trace(what: impl FnOnce() -> String) {
    static TRACE: OnceLock<bool> = OnceLock::new();
    if *TRACE.get_or_init(|| std::env::var_os("CONFAB_FUZZ_TRACE").is_some()) {
        eprintln!("{}", what());
    }
}

macro_rules! fail {
    ($($arg:tt)*) => {
        panic!("session_frames: {}", format!($($arg)*))
    };
}

/// tokio catches a panic in a spawned task and hands it to whoever awaits
/// the task's handle; the relay drops most of those handles, so a relay
/// task could die unseen and only show up (if at all) as a stalled relay.
/// Aborting in the hook makes any panic, on any thread, a crash libFuzzer
/// records with the input that caused it. (libfuzzer-sys installs such a
/// hook too; this one does not depend on it.)
fn abort_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        std::process::abort();
    }));
}

/// What a connection's reader tasks report.
#[derive(Debug)]
enum Event {
    Control(ServerFrame),
    Bulk(ServerFrame),
    Closed(quinn::ConnectionError),
}

/// What a request must be answered with.
#[derive(Debug, Clone)]
enum Want {
    Create {
        room: String,
        private: bool,
    },
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    Invite {
        room: String,
        user: String,
    },
    ListRooms,
    Members {
        room: String,
    },
    OpenDm {
        user: String,
    },
    Send {
        room: String,
        id: MsgId,
        body_ok: bool,
    },
    History {
        room: String,
        page: Page,
        limit: u16,
    },
    Ping,
    Resume {
        room: String,
    },
    /// `Register` or `Login` after login.
    Again,
}

impl Want {
    fn room(&self) -> Option<&String> {
        match self {
            Want::Create { room, .. }
            | Want::Join { room }
            | Want::Leave { room }
            | Want::Invite { room, .. }
            | Want::Members { room }
            | Want::Send { room, .. }
            | Want::History { room, .. }
            | Want::Resume { room } => Some(room),
            Want::ListRooms | Want::OpenDm { .. } | Want::Ping | Want::Again => None,
        }
    }

    /// Answered before the relay reads the next frame, so before a later
    /// `Ping`'s `Pong`: everything but acks and bulk replies.
    fn immediate(&self) -> bool {
        !matches!(
            self,
            Want::Send { .. } | Want::History { .. } | Want::Members { .. } | Want::ListRooms
        )
    }
}

#[derive(Debug)]
struct Pending {
    want: Want,
    /// `Rooms::clock` when the request was sent.
    since: u64,
    /// Rooms to count as entered since, and as not held throughout: see
    /// `Peer::reads`.
    more: BTreeSet<String>,
    less: BTreeSet<String>,
    /// The request's room was known to exist when it was sent (later, a
    /// bulk reply may tell of a room created after the request was handled).
    existed: bool,
}

/// The rooms a user is in, as the relay told it, and when each was last
/// entered and left: enough to tell whether a room was held at some point,
/// or throughout, since a request was sent. A copy of the rooms per
/// request made inputs three times slower once mallory was in a thousand
/// rooms.
#[derive(Debug, Default)]
struct Rooms {
    now: BTreeSet<String>,
    clock: u64,
    entered: HashMap<String, u64>,
    left: HashMap<String, u64>,
}

impl Rooms {
    fn enter(&mut self, room: &str) {
        if self.now.insert(room.to_owned()) {
            self.clock += 1;
            self.entered.insert(room.to_owned(), self.clock);
        }
    }

    fn leave(&mut self, room: &str) {
        if self.now.remove(room) {
            self.clock += 1;
            self.left.insert(room.to_owned(), self.clock);
        }
    }

    fn contains(&self, room: &str) -> bool {
        self.now.contains(room)
    }

    /// In the room at some point since `p` was sent.
    fn at_some_point(&self, p: &Pending, room: &str) -> bool {
        self.now.contains(room)
            || self.left.get(room).is_some_and(|&t| t > p.since)
            || p.more.contains(room)
    }

    /// In the room all the time since `p` was sent.
    fn throughout(&self, p: &Pending, room: &str) -> bool {
        self.now.contains(room)
            && self.entered.get(room).is_none_or(|&t| t <= p.since)
            && self.left.get(room).is_none_or(|&t| t <= p.since)
            && !p.less.contains(room)
    }
}

/// What is known of the relay's rooms, from setup and answers.
struct Known {
    existing: BTreeSet<String>,
    kinds: HashMap<String, RoomKind>,
}

impl Known {
    fn kind(&self, room: &str) -> Option<RoomKind> {
        // Only DM names can start with '@' (channel names cannot hold it).
        if room.starts_with(names::DM_PREFIX) {
            return Some(RoomKind::Direct);
        }
        self.kinds.get(room).copied()
    }

    fn learn(&mut self, info: &RoomInfo) {
        self.existing.insert(info.name.clone());
        self.kinds.insert(info.name.clone(), info.kind);
    }
}

fn canonical(user: &str) -> Option<&'static str> {
    USERS.iter().copied().find(|u| u.eq_ignore_ascii_case(user))
}

/// One logged-in connection and what its user was told.
struct Peer {
    user: &'static str,
    never: &'static [&'static str],
    send: quinn::SendStream,
    events: mpsc::UnboundedReceiver<Event>,
    rooms: Rooms,
    pending: HashMap<u32, Pending>,
    /// `Error{req: 0, Unexpected}` owed for `Hello`s after login.
    hellos: u32,
    last_seq: HashMap<String, u64>,
    /// The close code asked for by this input, if it ends the session.
    closing: Option<u32>,
    final_ping: Option<u32>,
    ponged: bool,
    closed: bool,
    /// This input's requests answered on a bulk stream: read from the
    /// store in a task that may run after the relay handled later frames,
    /// and arriving in any order with the control stream, so possibly
    /// before the answers to earlier frames.
    reads: Vec<u32>,
    /// Rooms this input's frames may join or leave.
    joins: BTreeSet<String>,
    leaves: BTreeSet<String>,
}

impl Peer {
    fn fail(&self, what: String) -> ! {
        fail!("{}: {what}", self.user)
    }

    fn gain(&mut self, room: &str) {
        if self.never.contains(&room) {
            self.fail(format!(
                "became a member of {room}, which it can never join"
            ));
        }
        self.rooms.enter(room);
    }

    fn lose(&mut self, room: &str) {
        self.rooms.leave(room);
    }

    /// Records what `frame` must be answered with. Returns the close code
    /// for a `Bye`.
    fn expect(&mut self, frame: &ClientFrame, known: &Known) -> Option<u32> {
        self.may_change_reads(frame);
        let want = match frame {
            ClientFrame::Hello { .. } => {
                self.hellos += 1;
                return None;
            }
            ClientFrame::Bye => return Some(close::NORMAL),
            ClientFrame::Register { .. } | ClientFrame::Login { .. } => Want::Again,
            ClientFrame::CreateRoom { room, private, .. } => Want::Create {
                room: room.clone(),
                private: *private,
            },
            ClientFrame::Join { room, .. } => Want::Join { room: room.clone() },
            ClientFrame::Leave { room, .. } => Want::Leave { room: room.clone() },
            ClientFrame::Invite { room, user, .. } => Want::Invite {
                room: room.clone(),
                user: user.clone(),
            },
            ClientFrame::ListRooms { .. } => Want::ListRooms,
            ClientFrame::Members { room, .. } => Want::Members { room: room.clone() },
            ClientFrame::OpenDm { user, .. } => Want::OpenDm { user: user.clone() },
            ClientFrame::Send { room, id, body, .. } => Want::Send {
                room: room.clone(),
                id: *id,
                body_ok: check_body(body).is_ok(),
            },
            ClientFrame::History {
                room, page, limit, ..
            } => Want::History {
                room: room.clone(),
                page: *page,
                limit: *limit,
            },
            ClientFrame::Ping { .. } => Want::Ping,
            ClientFrame::Resume { room, .. } => Want::Resume { room: room.clone() },
        };
        let old = self.pending.insert(
            frame.req(),
            Pending {
                existed: want.room().is_some_and(|r| known.existing.contains(r)),
                want,
                since: self.rooms.clock,
                more: BTreeSet::new(),
                less: BTreeSet::new(),
            },
        );
        assert!(old.is_none(), "the harness reused req {}", frame.req());
        if matches!(
            frame,
            ClientFrame::ListRooms { .. }
                | ClientFrame::Members { .. }
                | ClientFrame::History { .. }
        ) {
            let p = self.pending.get_mut(&frame.req()).expect("just added");
            p.more.extend(self.joins.iter().cloned());
            p.less.extend(self.leaves.iter().cloned());
            self.reads.push(frame.req());
        }
        None
    }

    /// Starts an input: no frames of it sent yet.
    fn new_input(&mut self) {
        self.reads.clear();
        self.joins.clear();
        self.leaves.clear();
    }

    /// Widens the bulk requests of this input for what `frame` may change:
    /// see `reads`.
    fn may_change_reads(&mut self, frame: &ClientFrame) {
        let (room, joins) = match frame {
            ClientFrame::CreateRoom { room, .. } | ClientFrame::Join { room, .. } => {
                (room.clone(), true)
            }
            ClientFrame::OpenDm { user, .. } => match canonical(user) {
                Some(other) => (names::dm_room(self.user, other), true),
                None => return,
            },
            ClientFrame::Leave { room, .. } => (room.clone(), false),
            _ => return,
        };
        if joins {
            self.joins.insert(room.clone());
        } else {
            self.leaves.insert(room.clone());
        }
        for req in &self.reads {
            if let Some(p) = self.pending.get_mut(req) {
                if joins {
                    p.more.insert(room.clone());
                } else {
                    p.less.insert(room.clone());
                }
            }
        }
    }

    fn on_event(&mut self, known: &mut Known, event: Event) {
        trace(|| format!("  {} <- {event:?}", self.user));
        match event {
            Event::Control(frame) => self.on_frame(known, frame, false),
            Event::Bulk(frame) => self.on_frame(known, frame, true),
            Event::Closed(reason) => {
                let Some(code) = self.closing else {
                    self.fail(format!("the relay closed the connection: {reason}"));
                };
                match &reason {
                    quinn::ConnectionError::ApplicationClosed(c)
                        if c.error_code == quinn::VarInt::from_u32(code) => {}
                    other => self.fail(format!("closed with {other}, expected code {code}")),
                }
                self.closed = true;
            }
        }
    }

    fn on_frame(&mut self, known: &mut Known, frame: ServerFrame, bulk: bool) {
        let bulk_kind = matches!(
            frame,
            ServerFrame::Rooms { .. }
                | ServerFrame::Members { .. }
                | ServerFrame::HistoryPage { .. }
        );
        if bulk_kind != bulk {
            let on = if bulk {
                "a bulk stream"
            } else {
                "the control stream"
            };
            self.fail(format!("{frame:?} on {on}"));
        }
        match frame {
            ServerFrame::Welcome { .. }
            | ServerFrame::LoggedIn { .. }
            | ServerFrame::Shutdown { .. } => self.fail(format!("unexpected {frame:?}")),
            ServerFrame::Message(m) => {
                if !self.rooms.contains(&m.room) {
                    self.fail(format!("a live message in {}, not its room: {m:?}", m.room));
                }
                check_message(&m);
                let last = self.last_seq.entry(m.room.clone()).or_default();
                if m.seq <= *last {
                    let last = *last;
                    self.fail(format!("live message seq {} after {last}: {m:?}", m.seq));
                }
                *last = m.seq;
            }
            ServerFrame::Presence(p) => self.on_presence(p),
            ServerFrame::Lagged { room, .. } => {
                if !self.rooms.contains(&room) {
                    self.fail(format!("Lagged in {room}, not its room"));
                }
                // Messages below the mark may still come; the order restarts.
                self.last_seq.remove(&room);
            }
            ServerFrame::Error {
                req: 0,
                code,
                ref message,
            } => {
                if code == ErrorCode::Unexpected && self.hellos > 0 {
                    self.hellos -= 1;
                } else if self.closing == Some(close::PROTOCOL)
                    && matches!(code, ErrorCode::Malformed | ErrorCode::FrameTooLarge)
                {
                } else {
                    self.fail(format!("connection error {code:?}: {message}"));
                }
            }
            other => {
                let req = other.req();
                let Some(pending) = self.pending.remove(&req) else {
                    self.fail(format!("an answer to no open request: {other:?}"));
                };
                if self.final_ping == Some(req) {
                    self.ponged = true;
                    let early: Vec<_> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.want.immediate())
                        .collect();
                    if !early.is_empty() || self.hellos > 0 {
                        self.fail(format!(
                            "Pong before the answers to {early:?} ({} Hello refusals owed)",
                            self.hellos
                        ));
                    }
                }
                self.on_answer(known, pending, other);
            }
        }
    }

    fn on_presence(&mut self, p: Presence) {
        if p.user == FUZZED
            && p.room
                .as_deref()
                .is_some_and(|r| MALLORY_NEVER.contains(&r))
        {
            self.fail(format!(
                "presence of {FUZZED} in a room she can never join: {p:?}"
            ));
        }
        match (p.room, p.kind) {
            (Some(room), PresenceKind::Joined) if p.user == self.user => self.gain(&room),
            (Some(room), PresenceKind::Left) if p.user == self.user => {
                if !self.rooms.contains(&room) {
                    self.fail(format!("told it left {room}, which it was not in"));
                }
                self.lose(&room)
            }
            (Some(room), PresenceKind::Joined | PresenceKind::Left) => {
                if !self.rooms.contains(&room) {
                    self.fail(format!(
                        "presence of {} ({:?}) in {room}, not its room",
                        p.user, p.kind
                    ));
                }
            }
            (None, PresenceKind::Online | PresenceKind::Offline) => {
                if p.user == self.user {
                    self.fail(format!("its own {:?} presence", p.kind));
                }
            }
            (room, kind) => self.fail(format!("presence {kind:?} with room {room:?}")),
        }
    }

    fn on_answer(&mut self, known: &mut Known, p: Pending, frame: ServerFrame) {
        let me = self.user;
        match (&p.want, frame) {
            (_, ServerFrame::Error { code, message, .. }) => {
                let throughout = p.want.room().is_some_and(|r| self.rooms.throughout(&p, r));
                if let Err(why) = refusal_ok(&p, code, known, throughout) {
                    self.fail(format!(
                        "{:?} refused with {code:?} ({message}): {why}",
                        p.want
                    ));
                }
            }
            (Want::Create { room, private }, ServerFrame::Joined { room: info, .. }) => {
                let kind = if *private {
                    RoomKind::Private
                } else {
                    RoomKind::Public
                };
                if info.name != *room
                    || info.kind != kind
                    || info.members != 1
                    || info.latest != 0
                    || p.existed
                {
                    self.fail(format!(
                        "CreateRoom {room} private {private} answered {info:?}"
                    ));
                }
                known.learn(&info);
                self.gain(room);
            }
            (Want::Join { room }, ServerFrame::Joined { room: info, .. }) => {
                if info.name != *room || known.kind(room).is_some_and(|k| k != info.kind) {
                    self.fail(format!("Join {room} answered with {info:?}"));
                }
                known.learn(&info);
                self.gain(room);
            }
            (Want::OpenDm { user }, ServerFrame::Joined { room: info, .. }) => {
                let Some(other) = canonical(user) else {
                    self.fail(format!(
                        "OpenDm with {user:?}, no such user, answered {info:?}"
                    ));
                };
                if info.name != names::dm_room(me, other) || info.kind != RoomKind::Direct {
                    self.fail(format!("OpenDm {user} answered with {info:?}"));
                }
                known.learn(&info);
                self.gain(&info.name);
            }
            (Want::Leave { room }, ServerFrame::Left { room: left, .. }) => {
                if left != *room {
                    self.fail(format!("Leave {room} answered Left {left}"));
                }
                if room == LOBBY || known.kind(room) == Some(RoomKind::Direct) {
                    self.fail(format!("left {room}, which cannot be left"));
                }
                self.lose(room);
            }
            (Want::Invite { room, user }, ServerFrame::Done { .. }) => {
                if !self.rooms.at_some_point(&p, room)
                    || canonical(user).is_none()
                    || known.kind(room) == Some(RoomKind::Direct)
                {
                    self.fail(format!(
                        "Invite {user:?} to {room} done (rooms {:?})",
                        self.rooms
                    ));
                }
            }
            (Want::Resume { room }, ServerFrame::Done { .. }) => {
                if !self.rooms.at_some_point(&p, room) {
                    self.fail(format!("Resume {room} done (rooms {:?})", self.rooms));
                }
            }
            (Want::ListRooms, ServerFrame::Rooms { joined, public, .. }) => {
                let names: BTreeSet<String> = joined.iter().map(|r| r.name.clone()).collect();
                let missing = self
                    .rooms
                    .now
                    .iter()
                    .find(|r| self.rooms.throughout(&p, r) && !names.contains(*r));
                let extra = names.iter().find(|r| !self.rooms.at_some_point(&p, r));
                if !names.contains(LOBBY) || missing.is_some() || extra.is_some() {
                    self.fail(format!(
                        "room list {names:?} lacks {missing:?} or has {extra:?}; rooms {:?}",
                        self.rooms
                    ));
                }
                for info in &joined {
                    if self.never.contains(&info.name.as_str()) {
                        self.fail(format!("{} among its rooms", info.name));
                    }
                    known.learn(info);
                }
                for info in &public {
                    if info.kind != RoomKind::Public {
                        self.fail(format!("{info:?} among the public rooms"));
                    }
                    known.learn(info);
                }
            }
            (
                Want::Members { room },
                ServerFrame::Members {
                    room: r, members, ..
                },
            ) => {
                if r != *room {
                    self.fail(format!("Members {room} answered for {r}"));
                }
                let open = known.kind(room) == Some(RoomKind::Public);
                let (some_point, throughout) = (
                    self.rooms.at_some_point(&p, room),
                    self.rooms.throughout(&p, room),
                );
                if !open && !some_point {
                    self.fail(format!(
                        "members of {room} shown to a non-member: {members:?}"
                    ));
                }
                let listed = members.iter().any(|m| m.user == me);
                if (throughout && !listed) || (!some_point && listed) {
                    self.fail(format!(
                        "members of {room} {members:?}; rooms {:?}",
                        self.rooms
                    ));
                }
                for m in &members {
                    if m.user == FUZZED && MALLORY_NEVER.contains(&room.as_str()) {
                        self.fail(format!("{FUZZED} is a member of {room}"));
                    }
                    // mallory and alice are logged in throughout, bob never.
                    if canonical(&m.user).is_some() && m.online != (m.user != "bob") {
                        self.fail(format!("members of {room}: {m:?}"));
                    }
                }
            }
            (Want::Send { room, id, body_ok }, ServerFrame::Ack { room: r, id: i, .. }) => {
                if r != *room || i != *id || !body_ok || !self.rooms.at_some_point(&p, room) {
                    self.fail(format!(
                        "Send to {room} (body ok: {body_ok}) acked as {r} {i:?}; rooms {:?}",
                        self.rooms
                    ));
                }
            }
            (
                Want::History { room, page, limit },
                ServerFrame::HistoryPage {
                    room: r, messages, ..
                },
            ) => {
                if r != *room
                    || !self.rooms.at_some_point(&p, room)
                    || self.never.contains(&room.as_str())
                    || !(1..=MAX_PAGE).contains(limit)
                {
                    self.fail(format!("History {room} limit {limit} answered for {r}"));
                }
                if messages.len() > usize::from(*limit) {
                    self.fail(format!("{} messages for limit {limit}", messages.len()));
                }
                let mut last = 0;
                for m in &messages {
                    check_message(m);
                    let inside = match *page {
                        Page::Latest => true,
                        Page::Before(s) => m.seq < s,
                        Page::After(s) => m.seq > s,
                    };
                    if m.room != *room || m.seq <= last || !inside {
                        self.fail(format!(
                            "History {room} {page:?} holds {m:?} after seq {last}"
                        ));
                    }
                    last = m.seq;
                }
            }
            (Want::Ping, ServerFrame::Pong { .. }) => {}
            (want, frame) => self.fail(format!("{want:?} answered with {frame:?}")),
        }
    }
}

/// Lines nobody may see, wherever they come from.
fn check_message(m: &Message) {
    if m.from == FUZZED && MALLORY_NEVER.contains(&m.room.as_str()) {
        fail!("a line of {FUZZED} in {}: {m:?}", m.room);
    }
    if canonical(&m.from) != Some(m.from.as_str()) {
        fail!("a line from {:?}, not a canonical user name: {m:?}", m.from);
    }
}

/// Whether refusing `p` with `code` is what PROTOCOL §5.1 allows, given
/// what is known.
/// `throughout`: the user was in the request's room all the while.
fn refusal_ok(p: &Pending, code: ErrorCode, known: &Known, throughout: bool) -> Result<(), String> {
    use ErrorCode::*;
    let room = p.want.room();
    if code == NoSuchRoom && p.existed {
        return Err("the room exists".into());
    }
    if code == NotMember && throughout {
        return Err("it was a member throughout".into());
    }
    // Storage failures may answer anything that touches the store.
    if code == Unavailable && !matches!(p.want, Want::Ping | Want::Again) {
        return Ok(());
    }
    let kind = room.and_then(|r| known.kind(r));
    let ok = match &p.want {
        Want::Create { room, .. } => {
            let valid = names::check_room(room).is_ok();
            match code {
                InvalidName => !valid,
                RoomExists => valid,
                _ => false,
            }
        }
        Want::Join { .. } => match code {
            NoSuchRoom => true,
            Forbidden => kind != Some(RoomKind::Public) && !throughout,
            _ => false,
        },
        Want::Leave { room } => match code {
            Forbidden => room == LOBBY || kind == Some(RoomKind::Direct),
            NoSuchRoom | NotMember => room != LOBBY,
            _ => false,
        },
        Want::Invite { user, .. } => match code {
            NoSuchRoom | NotMember => true,
            Forbidden => !matches!(kind, Some(RoomKind::Public | RoomKind::Private)),
            NoSuchUser => canonical(user).is_none(),
            _ => false,
        },
        Want::ListRooms => false,
        Want::Members { .. } => match code {
            NoSuchRoom => true,
            NotMember => kind != Some(RoomKind::Public),
            _ => false,
        },
        Want::OpenDm { user } => code == NoSuchUser && canonical(user).is_none(),
        Want::Send { body_ok, .. } => match code {
            BadBody => !body_ok,
            NoSuchRoom | NotMember => *body_ok,
            _ => false,
        },
        Want::History { limit, .. } => {
            let limit_ok = (1..=MAX_PAGE).contains(limit);
            match code {
                BadLimit => !limit_ok,
                NoSuchRoom | NotMember => limit_ok,
                _ => false,
            }
        }
        Want::Resume { .. } => matches!(code, NoSuchRoom | NotMember),
        Want::Ping => false,
        Want::Again => code == Unexpected,
    };
    if ok {
        Ok(())
    } else {
        Err("not a refusal this request can get here".into())
    }
}

/// The relay and everything that lives as long as the process.
struct World {
    rt: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    addr: SocketAddr,
    harness: Mutex<Option<Harness>>,
}

struct Harness {
    mallory: Option<Peer>,
    alice: Peer,
    known: Known,
    next_req: u32,
    next_id: u64,
    /// Inputs mallory's session has served.
    served: u64,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::start)
}

/// A folder of this process for the relay's certificate and store, on
/// tmpfs when there is one: the store syncs every commit, and on a disk
/// that would be most of the time an input takes. Folders of processes
/// that are gone (crashed runs) are removed.
fn scratch() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    let prefix = "confab-fuzz-session_frames-";
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(prefix) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// At exit (libFuzzer exits when its time is up): the session's counts,
/// which libFuzzer's stats do not have, and the scratch folder.
extern "C" fn at_exit() {
    eprintln!(
        "session_frames: {} inputs, {} relogins",
        INPUTS.load(Ordering::Relaxed),
        RELOGINS.load(Ordering::Relaxed)
    );
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

impl World {
    fn start() -> World {
        abort_on_panic();
        let dir = SCRATCH.get_or_init(scratch).clone();
        // SAFETY: registers a plain function; nothing else to uphold.
        unsafe {
            atexit(at_exit);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let made = relay::cert::generate(&relay::cert::GenCert {
            out: dir.join("certs"),
            sans: vec![],
            days: relay::cert::DEFAULT_DAYS,
            force: true,
        })
        .expect("certificate");
        let (server, _) = relay::cert::load_server_config(&made.cert_path, &made.key_path)
            .expect("server config");
        let (tx, rx) = mpsc::unbounded_channel();
        let store = SqliteStore::open(&dir.join("data"), Some(tx)).expect("store");
        rt.block_on(async {
            let phc = relay::auth::hash_password(PASSWORD);
            for user in USERS {
                store.create_user(user, &phc).await.expect("account");
            }
            store
                .create_room("vault", RoomKind::Private, PEER)
                .await
                .expect("vault");
            store
                .create_room("ops", RoomKind::Private, "bob")
                .await
                .expect("ops");
            store
                .create_room("dev", RoomKind::Public, "bob")
                .await
                .expect("dev");
            store.open_dm(PEER, "bob").await.expect("dm");
        });
        let cfg = Config {
            // Logins wait for argon2, slow under a sanitizer on a busy machine.
            login_timeout: Duration::from_secs(60),
            registration_open: false,
            // Never the fuzzer's limit: a refusal for speed says nothing about
            // the session's logic and would hide what the frames do.
            rate_limit: 1_000_000,
            request_rate: 1_000_000,
            ..Config::default()
        };
        let _guard = rt.enter();
        let endpoint =
            quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).expect("listen");
        let addr = endpoint.local_addr().expect("address");
        rt.spawn(relay::server::serve(
            endpoint,
            store,
            rx,
            cfg,
            None,
            None,
            std::future::pending::<()>(),
        ));
        let client_endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client endpoint");
        World {
            client: client_config(&made.cert_path),
            endpoint: client_endpoint,
            addr,
            harness: Mutex::new(None),
            rt,
        }
    }

    /// Connects, logs `user` in and starts the tasks that read what the
    /// relay sends; the room list comes separately (`Harness::login`).
    async fn connect(&self, user: &'static str, never: &'static [&'static str]) -> Peer {
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), self.addr, "localhost")
            .expect("connect");
        let conn = within(connecting, "the handshake")
            .await
            .expect("handshake");
        let (mut send, mut recv) = within(conn.open_bi(), "a stream").await.expect("stream");
        let mut hello = codec::encode(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            client: "session_frames".into(),
        })
        .to_vec();
        hello.extend_from_slice(&codec::encode(&ClientFrame::Login {
            req: 1,
            user: user.into(),
            password: PASSWORD.into(),
        }));
        within(send.write_all(&hello), "writing the login")
            .await
            .expect("login write");
        loop {
            let frame = within(
                codec::read_frame::<ServerFrame, _>(&mut recv, MAX_CONTROL_FRAME),
                "the login",
            )
            .await;
            match frame {
                Ok(Some(ServerFrame::Welcome { .. })) => {}
                Ok(Some(ServerFrame::LoggedIn { req: 1, user: u })) if u == user => break,
                other => fail!("login of {user}: {other:?}"),
            }
        }
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_control(conn.clone(), recv, tx.clone()));
        tokio::spawn(accept_bulk(conn.clone(), tx));
        Peer {
            user,
            never,
            send,
            events,
            rooms: Rooms::default(),
            pending: HashMap::new(),
            hellos: 0,
            last_seq: HashMap::new(),
            closing: None,
            final_ping: None,
            ponged: false,
            closed: false,
            reads: vec![],
            joins: BTreeSet::new(),
            leaves: BTreeSet::new(),
        }
    }
}

async fn within<F: std::future::Future>(f: F, what: &str) -> F::Output {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => fail!("the relay did not answer within {PATIENCE:?}: {what}"),
    }
}

fn client_config(cert: &Path) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).expect("cert file") {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic config");
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    // libFuzzer may pause between inputs (merging, printing); the session
    // must not time out meanwhile.
    transport.keep_alive_interval(Some(common::limits::KEEP_ALIVE));
    config.transport_config(Arc::new(transport));
    config
}

async fn read_control(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::UnboundedSender<Event>,
) {
    loop {
        match codec::read_frame::<ServerFrame, _>(&mut recv, MAX_CONTROL_FRAME).await {
            Ok(Some(frame)) => {
                let _ = tx.send(Event::Control(frame));
            }
            Ok(None) | Err(FrameError::Io(_)) => break,
            Err(e) => fail!("a control frame from the relay: {e}"),
        }
    }
    let _ = tx.send(Event::Closed(conn.closed().await));
}

async fn accept_bulk(conn: quinn::Connection, tx: mpsc::UnboundedSender<Event>) {
    while let Ok(mut stream) = conn.accept_uni().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let frame = match codec::read_frame::<ServerFrame, _>(&mut stream, MAX_BULK_FRAME).await
            {
                Ok(Some(frame)) => frame,
                // The connection went: the reply is lost, as it may be.
                Err(FrameError::Io(_)) => return,
                other => fail!("a bulk stream from the relay: {other:?}"),
            };
            match codec::read_payload(&mut stream, MAX_BULK_FRAME).await {
                Ok(None) | Err(FrameError::Io(_)) => {}
                other => fail!("after {frame:?} on a bulk stream: {other:?}"),
            }
            let _ = tx.send(Event::Bulk(frame));
        });
    }
}

/// A new session of `user`, with its rooms from a `ListRooms` (`req`):
/// what arrives before that list is checked against it.
async fn login(
    w: &World,
    known: &mut Known,
    req: u32,
    user: &'static str,
    never: &'static [&'static str],
) -> Peer {
    let mut peer = w.connect(user, never).await;
    within(
        peer.send
            .write_all(&codec::encode(&ClientFrame::ListRooms { req })),
        "writing ListRooms",
    )
    .await
    .expect("ListRooms write");
    let mut early = vec![];
    let (joined, public) = loop {
        match within(peer.events.recv(), "the room list at login").await {
            Some(Event::Bulk(ServerFrame::Rooms {
                req: r,
                joined,
                public,
            })) if r == req => break (joined, public),
            Some(Event::Closed(reason)) => fail!("{user} closed at login: {reason}"),
            Some(e) => early.push(e),
            None => fail!("{user}'s readers ended at login"),
        }
    };
    for info in &joined {
        peer.rooms.enter(&info.name);
    }
    if !peer.rooms.contains(LOBBY) || never.iter().any(|r| peer.rooms.contains(r)) {
        fail!("{user}'s rooms after login: {:?}", peer.rooms.now);
    }
    for info in joined.iter().chain(&public) {
        known.learn(info);
    }
    for e in early {
        peer.on_event(known, e);
    }
    peer
}

fn pick<'a>(table: &[&'a str], i: u8) -> &'a str {
    table[usize::from(i) % table.len()]
}

impl Name {
    fn resolve(&self, table: &[&str]) -> String {
        match self {
            Name::Pick(i) => pick(table, *i).to_owned(),
            Name::Long(n) => "z".repeat(30 + usize::from(*n % 40)),
            Name::Raw(s) => s.chars().take(1).collect(),
        }
    }
}

impl Body {
    fn resolve(&self) -> String {
        match self {
            Body::Pick(i) => pick(&BODIES, *i).to_owned(),
            Body::Text(s) => {
                let mut end = s.len().min(512);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_owned()
            }
            Body::Blank(n) => " \t\n\u{3000}".repeat(usize::from(*n % 4)),
            Body::Edge(n) => "m".repeat(MAX_BODY - 1 + usize::from(*n % 3)),
        }
    }
}

impl Harness {
    async fn start(w: &World) -> Harness {
        let mut known = Known {
            existing: [LOBBY, "dev", "ops", "vault", "@alice+bob"]
                .map(String::from)
                .into(),
            kinds: HashMap::new(),
        };
        for (room, kind) in [
            (LOBBY, RoomKind::Public),
            ("dev", RoomKind::Public),
            ("ops", RoomKind::Private),
            ("vault", RoomKind::Private),
        ] {
            known.kinds.insert(room.into(), kind);
        }
        let alice = login(w, &mut known, 2, PEER, &ALICE_NEVER).await;
        let mallory = login(w, &mut known, 3, FUZZED, &MALLORY_NEVER).await;
        Harness {
            mallory: Some(mallory),
            alice,
            known,
            next_req: 100,
            next_id: 0,
            served: SESSION_MIN,
        }
    }

    fn req(&mut self) -> u32 {
        self.next_req = self.next_req.wrapping_add(1).max(100);
        self.next_req
    }

    fn frame(&mut self, op: &Op) -> ClientFrame {
        let req = self.req();
        let room = |n: &Name| n.resolve(&ROOM_NAMES);
        let user = |n: &Name| n.resolve(&USER_NAMES);
        match op {
            Op::CreateRoom { room: r, private } => ClientFrame::CreateRoom {
                req,
                room: room(r),
                private: *private,
            },
            Op::Join { room: r } => ClientFrame::Join { req, room: room(r) },
            Op::Leave { room: r } => ClientFrame::Leave { req, room: room(r) },
            Op::Invite { room: r, user: u } => ClientFrame::Invite {
                req,
                room: room(r),
                user: user(u),
            },
            Op::ListRooms => ClientFrame::ListRooms { req },
            Op::Members { room: r } => ClientFrame::Members { req, room: room(r) },
            Op::OpenDm { user: u } => ClientFrame::OpenDm { req, user: user(u) },
            Op::Send { room: r, id, body } => ClientFrame::Send {
                req,
                room: room(r),
                id: match id {
                    Id::Fixed(b) => [*b; 16],
                    Id::Fresh => self.fresh_id(),
                },
                body: body.resolve(),
            },
            Op::History {
                room: r,
                page,
                limit,
            } => ClientFrame::History {
                req,
                room: room(r),
                page: match page {
                    PageSel::Latest => Page::Latest,
                    PageSel::Before(s) => Page::Before(u64::from(*s)),
                    PageSel::After(s) => Page::After(u64::from(*s)),
                    PageSel::BeforeMax => Page::Before(u64::MAX),
                    PageSel::AfterMax => Page::After(u64::MAX),
                },
                limit: match limit {
                    Limit::Small(n) => u16::from(*n % 8),
                    Limit::Edge(over) => MAX_PAGE + u16::from(*over),
                    Limit::Raw(n) => *n,
                },
            },
            Op::Ping => ClientFrame::Ping { req },
            Op::Resume { room: r } => ClientFrame::Resume { req, room: room(r) },
            Op::Again(Again::Hello(version)) => ClientFrame::Hello {
                version: *version,
                client: "again".into(),
            },
            Op::Again(Again::Register) => ClientFrame::Register {
                req,
                user: "mallory2".into(),
                password: PASSWORD.into(),
            },
            Op::Again(Again::Login(right)) => ClientFrame::Login {
                req,
                user: FUZZED.into(),
                password: if *right { PASSWORD } else { "wrong password" }.into(),
            },
            Op::PeerSend { .. } | Op::Raw(_) | Op::Rare(_) => {
                unreachable!("not made here")
            }
        }
    }

    fn fresh_id(&mut self) -> MsgId {
        self.next_id += 1;
        let mut id = [0xf5; 16];
        id[..8].copy_from_slice(&self.next_id.to_le_bytes());
        id
    }

    async fn run(&mut self, w: &World, input: &Input) {
        if self.mallory.is_none() {
            RELOGINS.fetch_add(1, Ordering::Relaxed);
            let req = self.req();
            self.mallory = Some(login(w, &mut self.known, req, FUZZED, &MALLORY_NEVER).await);
            self.served = 0;
        }
        self.served += 1;
        self.mallory.as_mut().expect("logged in").new_input();
        let mut out = BytesMut::new();
        let mut peer_out = BytesMut::new();
        let mut finish = false;
        let mut closing = None;
        for op in input.ops.iter().take(MAX_OPS) {
            let frame = match op {
                Op::PeerSend { room, body } => {
                    let frame = ClientFrame::Send {
                        req: self.req(),
                        room: pick(&PEER_ROOMS, *room).into(),
                        id: self.fresh_id(),
                        body: body.resolve(),
                    };
                    trace(|| format!("{PEER} -> {frame:?}"));
                    self.alice.expect(&frame, &self.known);
                    peer_out.put(codec::encode(&frame));
                    continue;
                }
                Op::Rare(_) if self.served < SESSION_MIN => continue,
                Op::Rare(what) => match what {
                    Rare::Bye => ClientFrame::Bye,
                    Rare::Finish => {
                        trace(|| format!("{FUZZED} -> FIN"));
                        finish = true;
                        closing = Some(close::NORMAL);
                        break;
                    }
                    Rare::Malformed(n) => {
                        let payload = MALFORMED[usize::from(*n) % MALFORMED.len()];
                        if let Ok(frame) = codec::decode::<ClientFrame>(payload) {
                            fail!("harness: {payload:?} decodes, as {frame:?}");
                        }
                        trace(|| format!("{FUZZED} -> malformed {payload:?}"));
                        out.put_u32(payload.len() as u32);
                        out.put_slice(payload);
                        closing = Some(close::PROTOCOL);
                        break;
                    }
                    Rare::Oversized(n) => {
                        trace(|| format!("{FUZZED} -> oversized prefix"));
                        out.put_u32((MAX_CONTROL_FRAME + 1) as u32 + u32::from(*n));
                        closing = Some(close::PROTOCOL);
                        break;
                    }
                    Rare::Truncated(n) => {
                        let ping = codec::encode(&ClientFrame::Ping { req: self.req() });
                        let cut = &ping[..1 + usize::from(*n) % (ping.len() - 1)];
                        trace(|| format!("{FUZZED} -> truncated {cut:?}"));
                        out.put_slice(cut);
                        finish = true;
                        closing = Some(close::PROTOCOL);
                        break;
                    }
                },
                Op::Raw(payload) => {
                    let payload = &payload[..payload.len().min(256)];
                    match codec::decode::<ClientFrame>(payload) {
                        Ok(ClientFrame::Bye) | Err(_) => continue,
                        Ok(mut frame) => {
                            frame.set_req(self.req());
                            frame
                        }
                    }
                }
                op => self.frame(op),
            };
            trace(|| format!("{FUZZED} -> {frame:?}"));
            let m = self.mallory.as_mut().expect("logged in");
            out.put(codec::encode(&frame));
            if let Some(code) = m.expect(&frame, &self.known) {
                closing = Some(code);
                break;
            }
        }
        let req = self.req();
        let m = self.mallory.as_mut().expect("logged in");
        m.closing = closing;
        m.ponged = false;
        m.final_ping = None;
        if closing.is_none() {
            let ping = ClientFrame::Ping { req };
            m.expect(&ping, &self.known);
            m.final_ping = Some(req);
            out.put(codec::encode(&ping));
        }
        let deadline = Instant::now() + PATIENCE;
        if !peer_out.is_empty() {
            let write = self.alice.send.write_all(&peer_out);
            if tokio::time::timeout_at(deadline, write).await.is_err() {
                fail!("the relay stopped reading {PEER}'s frames");
            }
        }
        // A write refused because the relay closed the connection is fine:
        // whether that was asked for is checked on its close.
        match tokio::time::timeout_at(deadline, m.send.write_all(&out)).await {
            Err(_) => fail!("the relay stopped reading {FUZZED}'s frames"),
            Ok(_) if finish => {
                let _ = m.send.finish();
            }
            Ok(_) => {}
        }
        self.settle(deadline).await;
        if self.mallory.as_ref().is_some_and(|m| m.closed) {
            self.mallory = None;
        }
    }

    /// Handles what the relay sends until the input is answered.
    async fn settle(&mut self, deadline: Instant) {
        loop {
            let m_done = match &self.mallory {
                None => true,
                Some(m) if m.closing.is_some() => m.closed,
                Some(m) => m.ponged && m.pending.is_empty(),
            };
            if m_done && self.alice.pending.is_empty() {
                return;
            }
            let mallory = match self.mallory.as_mut() {
                Some(m) if !m.closed => Some(&mut m.events),
                _ => None,
            };
            let m_events = async {
                match mallory {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                Some(e) = m_events => Some((true, e)),
                Some(e) = self.alice.events.recv() => Some((false, e)),
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match next {
                Some((true, event)) => {
                    let m = self.mallory.as_mut().expect("events from a session");
                    m.on_event(&mut self.known, event);
                }
                Some((false, event)) => self.alice.on_event(&mut self.known, event),
                None => {
                    let m = self
                        .mallory
                        .as_ref()
                        .map(|m| (&m.pending, m.ponged, m.closing, m.hellos));
                    fail!(
                        "the relay stopped answering: {FUZZED} (pending, ponged, closing, hellos) {m:?}; {PEER} pending {:?}",
                        self.alice.pending
                    );
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    let mut guard = w.harness.lock().unwrap_or_else(|e| e.into_inner());
    INPUTS.fetch_add(1, Ordering::Relaxed);
    w.rt.block_on(async {
        let h = match guard.as_mut() {
            Some(h) => h,
            None => guard.insert(Harness::start(w).await),
        };
        h.run(w, &input).await;
    });
});
