//! The relay's session core, end to end but without a network: a
//! `relay::state::Relay` on a real SQLite store, with sessions
//! (`relay::session::Session`) of mallory, on up to three devices at once,
//! and of alice, fed arbitrary sequences of mallory's requests, and
//! everything the sessions answer and queue checked as their clients
//! would see it.
//!
//! One relay per process, made by the first input, with accounts mallory,
//! alice and bob, alice's private room `vault`, bob's private room `ops`,
//! bob's public room `dev` and the DM `@alice+bob`. Users log in through
//! `relay::login::Login` (their password hash is a cheap argon2 one, so a
//! login costs well under a millisecond), then `Session::start`.
//! mallory's first device is logged in at the start of every input; her
//! other two (`DEVICES`, as many sessions as the relay lets an account
//! have) once an input sends from them. Her sessions are kept across
//! inputs; an input may end the one it sends from (`Bye`, the end of her
//! stream, a frame that cannot be read, a prefix over the limit, a frame
//! cut short) once it has lasted `SESSION_MIN` inputs, and the next input
//! that needs it logs in again. alice stays logged in the whole time,
//! sends lines when an input says so, and resumes any room she lags in.
//!
//! An input is up to `MAX_OPS` of mallory's requests (names from small
//! tables of rooms and users, valid and not, plus over-long and random
//! ones, and rooms the sending device counts itself in), each from the
//! device chosen last, pairs of requests from two of her devices handled
//! at once (about one room, if the input says so), payloads sent as the frame they decode to,
//! one login too many, alice's lines, the session-ending frames above, and
//! steps of the harness: time passing, a client reading, and the work in
//! flight finishing.
//!
//! The harness does what `relay::conn` does with each frame: it is read
//! from its bytes with `codec::read_frame` (a frame that cannot be read
//! goes to `Session::bad_frame`, and ends the session as a protocol error),
//! handed to `Session::handle` with the time, and its `Answer` carried
//! out: a reply queued on the session's outbox, an append handed to the
//! store at once (in arrival order) and acknowledged with `acked` when it
//! commits, bulk work run and sent as `bulk_bytes` says, `Bye` ending the
//! session (`Session::end`). What the outbox queues is drained as
//! `conn::write_loop` does (batches, `Lags::take`, `Lags::next`), and
//! decoded as the client would.
//!
//! A pair is what two connections of one user do at the same time: both
//! requests are handed over, then polled in turns (`Harness::pair`) that
//! the input orders. The store stops a side of a pair before each request
//! it makes and after each answer (`Turns`, `take_turn`), so the sides'
//! reads and writes, and what each does between them (subscribe, tell the
//! hub), interleave anywhere the input says, and the same on every run: a
//! `Leave` on one device can land between a `Resume`'s read of the
//! membership and its subscription on another. A bulk reply's work runs as
//! part of its side.
//!
//! Determinism: time is a virtual clock (a fixed step per input, and
//! `Wait` ops), so the rate limits and the send gate's hold act the same
//! on every run. Appends and bulk work outside pairs wait until the input
//! says `Settle` or ends (or the connection's cap on work in flight is
//! reached), then finish in the order they were started, appends first (a
//! pair's bulk work, too, waits for the appends in flight); the fan-out
//! (what `server.rs`'s task does with the store's channel of committed
//! messages, `hub.publish`) runs inline, publishing exactly the messages
//! of the appends awaited so far, so what a session hears does not depend
//! on when the store's writer thread got to a commit. Queues are small
//! (`QUEUE_DEPTH`): a client that does not read lags, and a reply waits
//! for room as it would.
//!
//! Checked, for every session, from what it sends its client:
//! - every frame decodes, and bulk replies (room lists, member lists,
//!   history pages) come only as bulk replies, never on the control queue;
//! - every request gets exactly one answer, of its kind (`Joined` for a
//!   `Join`, ...) and about what was asked; answers queued before the next
//!   frame is read arrive before the `Pong` of a later `Ping`; once an
//!   input's work is done, nothing is left unanswered;
//! - membership, tracked per device from the relay's own answers
//!   (`Joined`, `Left`, and presence about the user itself): no `Message`,
//!   `Lagged`, room `Presence`, `Ack`, history page, `Done` for an invite
//!   or resume, or private room's member list for a room the user was not
//!   in at some point since the request (a device may hear of a change
//!   made on another only after answers to requests it sent meanwhile);
//!   the room list holds exactly those rooms (a `Lagged` may overtake the
//!   user's own `Joined` held behind a full queue, so it needs the room
//!   only by the end of that drain); no live `Message` of a room after the
//!   device was told it left, unless told it joined again;
//! - membership checked where the data is (PROTOCOL §9.2), per user across
//!   devices: once a `Leave` is answered `Left` (with no join of the room
//!   in flight or handed over since, on any device), no append of the
//!   room handed to the store after that is acknowledged, and no history
//!   page, nor member list of a private room or DM, is read by work begun
//!   after it, until a join of the room is handed over (`Account::gone`);
//! - at rest (the input's work done, every queue read): each session is
//!   subscribed to exactly the rooms the store has its user in, and each
//!   client counts itself in exactly those;
//! - mallory never enters `vault`, `ops` or `@alice+bob`, and nobody ever
//!   sees a line or presence of hers there; nobody receives their own
//!   online/offline presence; a login of hers with all her devices in is
//!   refused `TooManyConnections`;
//! - only mallory invites, so only alice is told of invitations (`Invited`),
//!   each from mallory, never to a DM nor to a room mallory can never be
//!   in, and mallory's room lists hold no invitation;
//! - only mallory sets topics (`SetTopic`, from `Raw` payloads), so every
//!   `Topic` is hers, of a room the device is in, never a DM's nor one she
//!   can never be in, and one line within the limit; `Done` only for a
//!   topic that passes and a room she was in;
//! - refusals are the documented ones (PROTOCOL §5.1, §9, §10) and fit
//!   what is known: no `NotMember` for a room the user was in throughout,
//!   no `NoSuchRoom` for a room known to exist, `NotMember` for a `Join`
//!   only with a leave of the room on another device at the same time,
//!   `BadBody`/`BadLimit`/`InvalidName` exactly when the request breaks
//!   those rules, and `RateLimited` exactly when a `TokenBucket` (room
//!   changes) or `SendGate` (sends) of the same rate, fed the same
//!   requests and times, says so: one bucket of each per account, each
//!   session with its own gate over the account's send bucket, both made
//!   anew when a session starts while none of the account is open (as
//!   `relay::accounts` does);
//! - a room that cannot exist and one hidden from the user (a private room
//!   nobody invited it to, another pair's DM) get the same answers:
//!   `NoSuchRoom`, with the same message for every request of a kind but
//!   for the name, unless refused for something checked first;
//! - live messages come in increasing seq per room and session; a history
//!   page holds at most `limit` messages of its room, in increasing seq,
//!   within the page's bound;
//! - a session ends only on `Bye`, the end of the stream or a frame that
//!   cannot be read, and then with the `Exit` (and so the close code of
//!   PROTOCOL §7) asked for; a bad frame is answered with one
//!   connection-level `Error` of the right code; after the end, nothing
//!   more is queued.
//!
//! What the QUIC target checked and this one cannot: frames on their
//! streams as QUIC delivers them (one bulk reply per uni stream, nothing
//! after it), flow control, the close as the client sees it, and a relay
//! that stops answering for 20 s; the connection code (`relay::conn`)
//! itself does not run.
//!
//! Any panic aborts the process (see `abort_on_panic`).
//! CONFAB_FUZZ_TRACE=1 prints every frame sent and received, and every
//! turn of a pair. A pair of two membership changes (create, join, leave,
//! open a DM, invite) runs one request after the other, as the relay's
//! per-user membership lock makes them.
#![no_main]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use common::codec::{self, FrameError};
use common::frame::{
    close, ClientFrame, ErrorCode, Message, MsgId, Page, Presence, PresenceKind, RequestId,
    RoomInfo, RoomKind, ServerFrame, PROTOCOL_VERSION,
};
use common::limits::{
    check_body, check_topic, MAX_BODY, MAX_BULK_FRAME, MAX_CONTROL_FRAME, MAX_PAGE,
};
use common::names::{self, LOBBY};
use libfuzzer_sys::fuzz_target;
use relay::accounts::lock;
use relay::config::Config;
use relay::defaults::{MAX_BULK_IN_FLIGHT, MAX_IN_FLIGHT, WRITE_BATCH};
use relay::hub::{Lags, Outbox};
use relay::login::{Exit, Login, Step};
use relay::rate::{SendGate, TokenBucket};
use relay::session::{acked, bulk_bytes, Answer, BulkWork, Session};
use relay::state::Relay;
use relay::store::sqlite::SqliteStore;
use relay::store::{Appended, Invited, NewMessage, RoomRow, Store, StoreError, StoredUser};
use tokio::sync::mpsc;
use tokio::task::Unconstrained;

const PASSWORD: &str = "correct horse battery";
const FUZZED: &str = "mallory";
const PEER: &str = "alice";
const USERS: [&str; 3] = [FUZZED, PEER, "bob"];
/// Rooms mallory is never let into: nobody ever invites her.
const MALLORY_NEVER: [&str; 3] = ["vault", "ops", "@alice+bob"];
/// alice is never invited anywhere either, and DMs hold only their two users.
const ALICE_NEVER: [&str; 3] = ["ops", "@bob+mallory", "@mallory+mallory"];

/// mallory's devices: sessions of hers that may be open at once, as many
/// as the relay lets an account have (`Config::max_sessions_per_user`), so
/// that one login more is refused (`Op::Crowd`).
const DEVICES: usize = 3;
/// Frames per input past which the rest is ignored: longer inputs only
/// slow the fuzzer down.
const MAX_OPS: usize = 48;
/// How long one turn of a pair may wait for the store before the harness
/// gives up: a request of a session waits for nothing else, so a turn that
/// takes this long is a relay that stopped answering.
const TURN_TIMEOUT: Duration = Duration::from_secs(20);
/// A `Rare` op acts only once the session has served this many inputs
/// (a fresh process's first session counts as old enough, so that a saved
/// input replays alone as it ran). Without the gate the fuzzer filled its
/// corpus with inputs that end the session, each new session looking new
/// to it; a long session is what builds up the state (rooms, lags, holds)
/// the interesting frames act on.
const SESSION_MIN: u64 = 20;
/// Live frames a session may have queued before it lags: small, so that
/// an input whose client does not read for a while makes it lag, and
/// `Lagged` and `Resume` get exercised.
const QUEUE_DEPTH: usize = 16;
/// Virtual time between two inputs: half the room-change burst's worth of
/// the request rate, so long runs of them meet the limit now and then. The
/// account's sessions share that limit: at 200 ms, with pairs of room
/// changes, three in four of them were refused.
const STEP: Duration = Duration::from_secs(1);
/// A `Wait(n)` op lets `n` of these pass: up to about 2.5 s, a quarter of
/// the send gate's `HOLD_LIMIT`.
const WAIT_UNIT: Duration = Duration::from_millis(10);
/// The address logins come from.
const ADDR: &str = "192.0.2.1";
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
    /// One of mallory's requests, from the device chosen last.
    Req(Req),
    /// Two of mallory's requests handled at once, as two connections of
    /// hers would: `first` from the device chosen last, `second` from
    /// device `other` (the next one if that is the same), their turns at
    /// the store interleaved as the bits of `turns` say (`Harness::pair`).
    /// With `one_room`, `second` is about `first`'s room, if both name
    /// one: races are in one room, and two names picked apart rarely match.
    Pair {
        other: u8,
        first: Req,
        second: Req,
        one_room: bool,
        turns: u32,
    },
    /// mallory's frames from here on come from device `n % DEVICES`,
    /// logged in first if it is not.
    Device(u8),
    /// A login of mallory's while all her devices are logged in: one
    /// session more than the relay allows an account.
    Crowd,
    /// A pre-login frame after login: refused, the session stays.
    Again(Again),
    /// alice sends a line in `PEER_ROOMS[room]`.
    PeerSend { room: u8, body: Body },
    /// A payload of up to 256 bytes, sent as the frame it decodes to (with
    /// a fresh `req`); skipped when it does not decode, or is `Bye`.
    Raw(Vec<u8>),
    /// Something that ends the session of the device chosen last, when it
    /// has lasted `SESSION_MIN` inputs; the ops after it are not sent.
    Rare(Rare),
    /// `n` × `WAIT_UNIT` of virtual time pass.
    Wait(u8),
    /// The client of mallory's device chosen last reads one batch of what
    /// is queued for it, as the connection's writer would hand it over.
    Read,
    /// Every append and bulk reply started so far finishes, in the order
    /// started, and every client reads everything queued.
    Settle,
}

#[derive(Arbitrary, Debug)]
enum Req {
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
    /// For a room, one the sending device counts itself in, lobby only if
    /// it is in no other (most names picked otherwise are rooms the user
    /// is not in, and races need one it is); for a user, as `Pick`.
    Held(u8),
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
    /// The end of the stream, between frames.
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
static DEVICE_LOGINS: AtomicU64 = AtomicU64::new(0);
static PAIRS: AtomicU64 = AtomicU64::new(0);

fn trace(what: impl FnOnce() -> String) {
    static TRACE: OnceLock<bool> = OnceLock::new();
    if *TRACE.get_or_init(|| std::env::var_os("CONFAB_FUZZ_TRACE").is_some()) {
        eprintln!("{}", what());
    }
}

/// Whether a request takes a membership lock in the relay: a room change
/// that may change who is in a room, or an invitation (which takes the
/// invitee's, mallory's own when she invites herself).
fn locks_membership(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::CreateRoom { .. }
            | ClientFrame::Join { .. }
            | ClientFrame::Leave { .. }
            | ClientFrame::OpenDm { .. }
            | ClientFrame::Invite { .. }
    )
}

macro_rules! fail {
    ($($arg:tt)*) => {
        panic!("session_frames: {}", format!($($arg)*))
    };
}

/// A panic on one of the relay's own threads (the store's writer and
/// readers, the hashing threads) would only show up, if at all, as a store
/// that stops answering. Aborting in the hook makes any panic, on any
/// thread, a crash libFuzzer records with the input that caused it.
/// (libfuzzer-sys installs such a hook too; this one does not depend on it.)
fn abort_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        std::process::abort();
    }));
}

/// A frame as the client receives it.
#[derive(Debug)]
enum Event {
    /// On the control stream: what the outbox queued, or a `Lagged` notice.
    Control(ServerFrame),
    /// A bulk reply, which the connection sends on a stream of its own.
    Bulk(ServerFrame),
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
    SetTopic {
        room: String,
        topic_ok: bool,
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
            | Want::Resume { room }
            | Want::SetTopic { room, .. } => Some(room),
            Want::ListRooms | Want::OpenDm { .. } | Want::Ping | Want::Again => None,
        }
    }

    /// The request's name, for what must be the same across requests of
    /// one kind (`Known::missing`).
    fn kind(&self) -> &'static str {
        match self {
            Want::Create { .. } => "CreateRoom",
            Want::Join { .. } => "Join",
            Want::Leave { .. } => "Leave",
            Want::Invite { .. } => "Invite",
            Want::ListRooms => "ListRooms",
            Want::Members { .. } => "Members",
            Want::OpenDm { .. } => "OpenDm",
            Want::Send { .. } => "Send",
            Want::History { .. } => "History",
            Want::Ping => "Ping",
            Want::Resume { .. } => "Resume",
            Want::SetTopic { .. } => "SetTopic",
            Want::Again => "Again",
        }
    }

    /// Counted by a rate limit: room changes by the request rate, sends
    /// (with a body that passes) by the send gate.
    fn rate_limited(&self) -> bool {
        matches!(
            self,
            Want::Create { .. }
                | Want::Join { .. }
                | Want::Leave { .. }
                | Want::Invite { .. }
                | Want::OpenDm { .. }
                | Want::SetTopic { .. }
                | Want::Send { body_ok: true, .. }
        )
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
    /// For a `Leave`: how many joins of its room the user's devices had
    /// handed over when it was, if none was in flight then (`Account::gone`).
    joins_at: Option<u64>,
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
    /// For each kind of request, its `NoSuchRoom` message with the room's
    /// name as `{room}`, as first seen for a room that cannot exist or is
    /// hidden: every other such refusal must read the same.
    missing: HashMap<&'static str, String>,
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

    /// Whether a refusal of `want` about `room`, a room that cannot exist
    /// or is hidden from the user, is what a room that does not exist gets
    /// (PROTOCOL §9.2): `NoSuchRoom`, word for word but for the name, or a
    /// refusal checked before the room is (§5.1).
    fn as_missing(
        &mut self,
        want: &Want,
        room: &str,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), String> {
        use ErrorCode::*;
        match code {
            NoSuchRoom => {}
            RateLimited | BadBody | BadLimit | BadTopic | InvalidName | RoomExists
            | Unavailable => return Ok(()),
            _ => {
                return Err(format!(
                    "{room} cannot exist or is hidden: NoSuchRoom is due"
                ))
            }
        }
        match self.missing.get(want.kind()) {
            Some(template) if template.replace("{room}", room) != message => Err(format!(
                "{room} cannot exist or is hidden, but the message is not {template:?}"
            )),
            Some(_) => Ok(()),
            // A name this long is not part of the words around it.
            None if room.chars().count() >= 4 => {
                let template = message.replace(room, "{room}");
                self.missing.insert(want.kind(), template);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn canonical(user: &str) -> Option<&'static str> {
    USERS.iter().copied().find(|u| u.eq_ignore_ascii_case(user))
}

/// Whether a room of this name could ever exist: a valid channel name, or
/// the DM room of two of the accounts.
fn can_exist(room: &str) -> bool {
    names::check_room(room).is_ok()
        || USERS
            .iter()
            .any(|a| USERS.iter().any(|b| names::dm_room(a, b) == room))
}

/// The room `frame` may make `user` a member of (`true`: `CreateRoom`,
/// `Join`, `OpenDm`, "joins" below) or take them out of (`false`: `Leave`).
fn membership_change(user: &str, frame: &ClientFrame) -> Option<(String, bool)> {
    match frame {
        ClientFrame::CreateRoom { room, .. } | ClientFrame::Join { room, .. } => {
            Some((room.clone(), true))
        }
        ClientFrame::OpenDm { user: other, .. } => {
            canonical(other).map(|other| (names::dm_room(user, other), true))
        }
        ClientFrame::Leave { room, .. } => Some((room.clone(), false)),
        _ => None,
    }
}

/// The room a request is about, if it names one.
fn room_of(frame: &ClientFrame) -> Option<&String> {
    match frame {
        ClientFrame::CreateRoom { room, .. }
        | ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room, .. }
        | ClientFrame::Invite { room, .. }
        | ClientFrame::Members { room, .. }
        | ClientFrame::Send { room, .. }
        | ClientFrame::History { room, .. }
        | ClientFrame::Resume { room, .. }
        | ClientFrame::SetTopic { room, .. } => Some(room),
        _ => None,
    }
}

fn room_of_mut(frame: &mut ClientFrame) -> Option<&mut String> {
    match frame {
        ClientFrame::CreateRoom { room, .. }
        | ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room, .. }
        | ClientFrame::Invite { room, .. }
        | ClientFrame::Members { room, .. }
        | ClientFrame::Send { room, .. }
        | ClientFrame::History { room, .. }
        | ClientFrame::Resume { room, .. }
        | ClientFrame::SetTopic { room, .. } => Some(room),
        _ => None,
    }
}

/// What the sessions of one account share on the relay, and what its user
/// knows across its devices.
struct Account {
    /// The relay's `accounts::Buckets` for room changes and sends, fed the
    /// same requests at the same times. Made anew when a session starts
    /// while none is open: the relay forgets them with the last one.
    /// (Room creations have a bucket too, set up never to refuse before
    /// this one does: see `open_relay`.)
    changes: TokenBucket,
    sends: Arc<Mutex<TokenBucket>>,
    /// Sessions open.
    open: usize,
    /// Rooms the user left for sure, each with a mark of that leave: a
    /// `Leave` answered `Left` while no join of the room from any device
    /// was in flight, and none handed over since the `Leave` was. No later
    /// append or read of the room may then succeed until a join of it is
    /// handed over, which takes the room out.
    gone: HashMap<String, u64>,
    leaves: u64,
    /// For each room, the joins of it handed over and not yet answered, and
    /// how many were ever handed over.
    joining: HashMap<String, (usize, u64)>,
}

impl Account {
    fn new(cfg: &Config, now: Instant) -> Account {
        Account {
            changes: TokenBucket::new(cfg.request_rate, now),
            sends: Arc::new(Mutex::new(TokenBucket::new(cfg.rate_limit, now))),
            open: 0,
            gone: HashMap::new(),
            leaves: 0,
            joining: HashMap::new(),
        }
    }

    /// A session starts at `now`.
    fn open(&mut self, cfg: &Config, now: Instant) {
        if self.open == 0 {
            self.changes = TokenBucket::new(cfg.request_rate, now);
            self.sends = Arc::new(Mutex::new(TokenBucket::new(cfg.rate_limit, now)));
        }
        self.open += 1;
    }

    /// The mark of the leave that took the user out of `room` for sure.
    fn gone(&self, room: &str) -> Option<u64> {
        self.gone.get(room).copied()
    }
}

/// An append handed to the store, waiting for its commit.
struct Appending {
    req: RequestId,
    room: String,
    id: MsgId,
    /// `Account::gone` for the room when the append was handed over.
    gone: Option<u64>,
    commit: Pin<Box<dyn Future<Output = Result<Appended, StoreError>> + Send>>,
}

/// One logged-in session, the connection's part around it as
/// `relay::conn` plays it, and what its user was told.
struct Peer {
    user: &'static str,
    /// The user, and for mallory the device: "mallory/1".
    name: String,
    never: &'static [&'static str],
    /// Shared with the user's other sessions.
    account: Arc<Mutex<Account>>,
    /// Inputs this session has served.
    served: u64,
    /// `None` once the session ended.
    session: Option<Session<Turns>>,
    /// Held as the connection holds it, to queue replies; dropped at the
    /// end so that the queue closes.
    outbox: Option<Arc<Outbox>>,
    lags: Arc<Lags>,
    queue: mpsc::Receiver<Bytes>,
    /// Sends handed to the store, in arrival order, not yet acknowledged.
    appends: VecDeque<Appending>,
    /// Bulk replies not yet read from the store, in arrival order.
    bulks: VecDeque<(RequestId, BulkWork)>,
    /// What the session's send gate should say, fed the same sends at the
    /// same times, over the account's bucket (`SendGate::over`).
    gate: SendGate,
    rooms: Rooms,
    pending: HashMap<u32, Pending>,
    /// `Error{req: 0, Unexpected}` owed for `Hello`s after login.
    hellos: u32,
    /// The connection-level `Error` owed for a frame that cannot be read.
    bad_frame: Option<ErrorCode>,
    last_seq: HashMap<String, u64>,
    /// The close code asked for by this input, if it ends the session.
    closing: Option<u32>,
    final_ping: Option<u32>,
    ponged: bool,
    /// `Lagged` notices for rooms not (yet) known to be held, with
    /// `Rooms::clock` when they came.
    lagged: Vec<(String, u64)>,
    /// Rooms to resume (alice's client does, as a client would).
    to_resume: BTreeSet<String>,
    /// This input's requests answered with a bulk reply: read from the
    /// store when the work runs, possibly after the session handled later
    /// frames, and reaching the client apart from the control stream, so
    /// possibly before the answers to earlier frames.
    reads: Vec<u32>,
    /// Rooms this input's frames may join or leave.
    joins: BTreeSet<String>,
    leaves: BTreeSet<String>,
    /// Rooms another device of the user may have joined or left since this
    /// client last read its queue to the end, so that the user's own
    /// presence there may not have reached it yet: requests sent meanwhile
    /// count them as their own `Pending::more`/`less`.
    joined_elsewhere: BTreeSet<String>,
    left_elsewhere: BTreeSet<String>,
}

/// Polls a future once. What the harness polls this way is ready at once
/// when it can go on at all (a reply with room in the queue, a frame read
/// from memory, a lag notice); tokio's budget is lifted so that it cannot
/// make a ready future look pending.
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(tokio::task::unconstrained(f));
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Reads one frame from `bytes` as a reader of a stream holding exactly
/// those bytes would: `codec::read_frame`, all of it.
fn read_bytes<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut reader = bytes;
    let read = poll_once(codec::read_frame::<T, _>(&mut reader, max))
        .expect("a read from memory never waits");
    if read.is_ok() && !reader.is_empty() {
        fail!("{} bytes left after a frame", reader.len());
    }
    read
}

/// A frame the relay sends, read as its client reads it.
fn server_frame(bytes: &[u8], max: usize, what: &str) -> ServerFrame {
    match read_bytes::<ServerFrame>(bytes, max) {
        Ok(Some(frame)) => frame,
        other => fail!("{what} from the relay: {other:?} ({} bytes)", bytes.len()),
    }
}

impl Peer {
    /// Hands the client one batch of its queue as `conn::write_loop`
    /// does: any lag notices first (they go past the queue), then up to
    /// `WRITE_BATCH` frames with the held ones slotted in. Returns whether
    /// anything came.
    fn read_batch(&mut self, known: &mut Known) -> bool {
        let mut any = false;
        if let Some(notices) = poll_once(self.lags.next()) {
            for frame in notices {
                any = true;
                self.on_event(known, Event::Control(frame));
            }
        }
        let mut batch = Vec::new();
        while batch.len() < WRITE_BATCH {
            match self.queue.try_recv() {
                Ok(bytes) => batch.push(bytes),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return any;
        }
        self.lags.take(&mut batch);
        for bytes in batch {
            let frame = server_frame(&bytes, MAX_CONTROL_FRAME, "a control frame");
            self.on_event(known, Event::Control(frame));
        }
        true
    }

    /// Reads everything queued, then checks the lag notices that came
    /// before the client knew their room.
    fn read_all(&mut self, known: &mut Known) {
        while self.read_batch(known) {}
        for (room, at) in std::mem::take(&mut self.lagged) {
            if self.rooms.entered.get(&room).is_none_or(|&t| t <= at) {
                self.fail(format!("Lagged in {room}, not its room"));
            }
        }
        // Called only between requests: whatever another device changed
        // has been told to this one by now.
        self.joined_elsewhere.clear();
        self.left_elsewhere.clear();
    }

    /// Queues a reply as the connection does, waiting for room: the
    /// client reads a batch whenever the queue is full.
    fn reply(&mut self, known: &mut Known, frame: &ServerFrame) {
        let outbox = self.outbox.clone().expect("a session's outbox");
        loop {
            match poll_once(outbox.reply(frame)) {
                Some(true) => return,
                Some(false) => self.fail(format!("the queue closed before {frame:?}")),
                None if self.read_batch(known) => {}
                None => self.fail(format!("{frame:?} waits for room in an empty queue")),
            }
        }
    }
}

/// What lives as long as the relay: its state, the store's channel of
/// committed messages, and the virtual clock.
struct Core {
    relay: Arc<Relay<Turns>>,
    committed: mpsc::UnboundedReceiver<Arc<Message>>,
    start: Instant,
    elapsed: Duration,
}

impl Core {
    fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// The fan-out task of `server.rs`, for one committed message. The store
    /// publishes a message before its append resolves, and commits in the
    /// order appends were handed to it, so one message per append awaited
    /// is always there, and which ones reach the hub when is the same on
    /// every run.
    async fn publish_one(&mut self) {
        let msg = self
            .committed
            .recv()
            .await
            .expect("the store's channel of committed messages");
        trace(|| format!("  fan-out: {} #{} from {}", msg.room, msg.seq, msg.from));
        self.relay.fan_out(&msg);
    }
}

/// What the model decided as the session began on a frame: the limits
/// take their tokens before anything else the request does, in its first
/// poll, so with two requests at once in the order they began.
struct Begun {
    room_change: bool,
    over_rate: bool,
    send_id: Option<MsgId>,
    bye: bool,
    /// The room of a join (`membership_change`).
    joins: Option<String>,
    now: Instant,
}

fn begin(peer: &Peer, frame: &ClientFrame, now: Instant) -> Begun {
    let room_change = relay::session::is_room_change(frame);
    Begun {
        room_change,
        over_rate: room_change && !lock(&peer.account).changes.take(now),
        send_id: match frame {
            ClientFrame::Send { id, .. } => Some(*id),
            _ => None,
        },
        bye: matches!(frame, ClientFrame::Bye),
        joins: membership_change(peer.user, frame)
            .filter(|(_, joins)| *joins)
            .map(|(room, _)| room),
        now,
    }
}

/// What is left to do once an answer is carried out.
enum Carried {
    Done,
    /// A bulk reply's work, to run.
    Bulk(RequestId, BulkWork),
    /// The session ends.
    Exit(Exit),
}

/// Hands a frame to the session and does what its answer says, as
/// `conn::run` does. Returns how the session ends, if it does.
async fn drive(
    core: &mut Core,
    peer: &mut Peer,
    known: &mut Known,
    frame: ClientFrame,
) -> Option<Exit> {
    let now = core.now();
    let begun = begin(peer, &frame, now);
    let session = peer.session.as_mut().expect("a session");
    let answer = session.handle(frame, now).await;
    match carry_out(core, peer, known, begun, answer).await {
        Carried::Done => {}
        Carried::Bulk(req, work) => {
            if peer.bulks.len() >= MAX_BULK_IN_FLIGHT {
                // Appends first, as at `Settle`: what the read sees is then
                // the same on every run.
                while !peer.appends.is_empty() {
                    finish_append(core, peer, known).await;
                }
                run_bulk(peer, known).await;
            }
            peer.bulks.push_back((req, work));
        }
        Carried::Exit(exit) => return Some(exit),
    }
    None
}

/// Checks a session's answer against the model and does what it says, as
/// `conn::run` does, but for a bulk reply's work, which it hands back.
async fn carry_out(
    core: &mut Core,
    peer: &mut Peer,
    known: &mut Known,
    begun: Begun,
    answer: Answer,
) -> Carried {
    trace(|| format!("  {} answer: {answer:?}", peer.name));
    let rate_limited = matches!(
        answer,
        Answer::Reply(ServerFrame::Error {
            code: ErrorCode::RateLimited,
            ..
        })
    );
    if begun.room_change && rate_limited != begun.over_rate {
        peer.fail(format!(
            "a room change rate limited: {rate_limited}, by the account's request rate: {}",
            begun.over_rate
        ));
    }
    if let Some(id) = begun.send_id {
        let appended = matches!(answer, Answer::Append { .. });
        // Only a send that passed the body and membership checks meets the gate.
        if (appended || rate_limited) && peer.gate.admit(id, begun.now) != appended {
            peer.fail(format!(
                "a send appended: {appended}, rate limited: {rate_limited}; the gate says otherwise"
            ));
        }
    }
    if begun.bye != matches!(answer, Answer::Bye) {
        peer.fail(format!("Bye sent: {}, answered {answer:?}", begun.bye));
    }
    if let Some(room) = &begun.joins {
        if let Some(j) = lock(&peer.account).joining.get_mut(room) {
            j.0 -= 1;
        }
    }
    match answer {
        Answer::Reply(frame) => {
            if let ServerFrame::Left { req, room } = &frame {
                peer.left(*req, room);
            }
            peer.reply(known, &frame);
        }
        Answer::Append { req, msg } => {
            // The connection waits for a permit past this many.
            if peer.appends.len() >= MAX_IN_FLIGHT {
                finish_append(core, peer, known).await;
            }
            let gone = lock(&peer.account).gone(&msg.room);
            let (room, id) = (msg.room.clone(), msg.id);
            // Handed to the store now, in arrival order.
            let commit = Box::pin(core.relay.store.append(msg));
            peer.appends.push_back(Appending {
                req,
                room,
                id,
                gone,
                commit,
            });
        }
        Answer::Bulk { req, work } => return Carried::Bulk(req, work),
        Answer::Bye => return Carried::Exit(Exit::Normal),
    }
    Carried::Done
}

/// Awaits the oldest append and queues its answer, as the connection's
/// task for it does.
async fn finish_append(core: &mut Core, peer: &mut Peer, known: &mut Known) {
    let Some(a) = peer.appends.pop_front() else {
        return;
    };
    let result = a.commit.await;
    if matches!(&result, Ok(a) if !a.duplicate) {
        core.publish_one().await;
    }
    // PROTOCOL §9.2: once `Left` is answered, no later `Send` of the user
    // is stored in the room, from whichever device.
    if result.is_ok() && a.gone.is_some() && lock(&peer.account).gone(&a.room) == a.gone {
        peer.fail(format!(
            "a Send to {} handed to the store after its user left the room (Left answered, no join since) was stored: {result:?}",
            a.room
        ));
    }
    let frame = acked(&core.relay, a.req, a.room, a.id, result);
    peer.reply(known, &frame);
}

/// Runs the oldest bulk work and delivers its reply.
async fn run_bulk(peer: &mut Peer, known: &mut Known) {
    let Some((req, work)) = peer.bulks.pop_front() else {
        return;
    };
    let gone = peer.gone_for(req);
    let reply = work.await;
    deliver_bulk(peer, known, req, reply, gone);
}

/// Delivers a bulk reply as `conn::send_bulk` does: on a stream of its
/// own, or as an error on the control stream. `gone`: what
/// `Peer::gone_for` said as the work began.
fn deliver_bulk(
    peer: &mut Peer,
    known: &mut Known,
    req: RequestId,
    reply: Result<ServerFrame, relay::reply::Refusal>,
    gone: Option<(String, u64)>,
) {
    match bulk_bytes(req, reply) {
        Ok(bytes) => {
            let frame = server_frame(&bytes, MAX_BULK_FRAME, "a bulk reply");
            if let Some((room, mark)) = gone {
                // PROTOCOL §9.2: no page of a room is read after its `Left`
                // is answered; public rooms' member lists are for anyone.
                let read = match &frame {
                    ServerFrame::HistoryPage { .. } => true,
                    ServerFrame::Members { .. } => matches!(
                        known.kind(&room),
                        Some(RoomKind::Private | RoomKind::Direct)
                    ),
                    _ => false,
                };
                if read && lock(&peer.account).gone(&room) == Some(mark) {
                    peer.fail(format!(
                        "{frame:?} read after its user left {room} (Left answered, no join since)"
                    ));
                }
            }
            peer.on_event(known, Event::Bulk(frame));
        }
        Err(frame) => peer.reply(known, &frame),
    }
}

/// Finishes everything the session started, appends first.
async fn finish_work(core: &mut Core, peer: &mut Peer, known: &mut Known) {
    while !peer.appends.is_empty() {
        finish_append(core, peer, known).await;
    }
    while !peer.bulks.is_empty() {
        run_bulk(peer, known).await;
    }
}

/// One side of a pair of requests handled at once (`Harness::pair`).
enum Side<'s> {
    /// Not begun yet.
    Ready(&'s mut Session<Turns>, ClientFrame),
    Handling(Begun, Pin<Box<dyn Future<Output = Answer> + 's>>),
    /// Its bulk work, not begun yet.
    Read(RequestId, BulkWork),
    Reading(
        RequestId,
        Pin<Box<Unconstrained<BulkWork>>>,
        Option<(String, u64)>,
    ),
    Done,
}

/// Records a wake of a side of a pair and unparks the harness's thread,
/// which waits for it.
struct Wake {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl std::task::Wake for Wake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The side of a pair being polled, if any, and whether it may send one
/// more request to the store in this turn (`your_turn`).
struct Gate {
    side: Option<usize>,
    may: bool,
    /// The side stopped at its next request to the store.
    parked: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    side: None,
    may: false,
    parked: false,
});

/// A turn of side `i` of a pair: lets it past one gate (`gated`), and
/// polls it (waiting for the store in between) until it finishes or stops
/// at its next gate; so a turn either sends one request to the store and
/// waits for the answer, or goes on from an answer to the next request.
/// The store answers in the background, possibly before the request's
/// future is polled again, so where a side waits is not a place to stop
/// it: where it asks the store and where it is answered are. One side
/// reaches the store at a time, so the sides' requests are served in the
/// order of their turns, and the same on every run. A session's request
/// awaits nothing but the store (no lock is held across an await, no timer
/// is set), one store request at a time.
fn take_turn<F: Future + ?Sized>(
    i: usize,
    mut future: Pin<&mut F>,
    wake: &Arc<Wake>,
) -> Option<F::Output> {
    *lock(&GATE) = Gate {
        side: Some(i),
        may: true,
        parked: false,
    };
    let waker = Waker::from(wake.clone());
    let deadline = Instant::now() + TURN_TIMEOUT;
    let out = loop {
        wake.woken.store(false, Ordering::Release);
        if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            break Some(out);
        }
        if lock(&GATE).parked {
            break None;
        }
        while !wake.woken.swap(false, Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                fail!("a request of a pair waited {TURN_TIMEOUT:?} for the store");
            }
            std::thread::park_timeout(left);
        }
    };
    lock(&GATE).side = None;
    out
}

/// A gate of a side of a pair: passes once in each of the side's turns,
/// and at once outside pairs (`take_turn`).
fn your_turn() -> impl Future<Output = ()> + Send {
    std::future::poll_fn(|_| {
        let mut gate = lock(&GATE);
        match gate.side {
            None => Poll::Ready(()),
            Some(_) if gate.may => {
                gate.may = false;
                Poll::Ready(())
            }
            Some(_) => {
                gate.parked = true;
                Poll::Pending
            }
        }
    })
}

/// A store request of a side of a pair: waits for the side's turn before
/// it reaches the store, and again once answered, so that a turn can end
/// between a read and what the request does with it.
async fn gated<T>(request: impl Future<Output = T>) -> T {
    your_turn().await;
    let answer = request.await;
    your_turn().await;
    answer
}

/// The relay's store: SQLite, each request `gated`. Appends pass at once:
/// the harness hands them over, never a side.
struct Turns(SqliteStore);

impl Store for Turns {
    async fn create_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        gated(self.0.create_user(name, phc)).await
    }

    async fn user(&self, name: &str) -> Result<Option<StoredUser>, StoreError> {
        gated(self.0.user(name)).await
    }

    async fn set_password(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        gated(self.0.set_password(name, phc)).await
    }

    async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        gated(self.0.delete_user(name)).await
    }

    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        gated(self.0.list_users()).await
    }

    async fn account_changes(&self) -> Result<mpsc::UnboundedReceiver<String>, StoreError> {
        gated(self.0.account_changes()).await
    }

    async fn create_room(
        &self,
        name: &str,
        kind: RoomKind,
        creator: &str,
    ) -> Result<RoomRow, StoreError> {
        gated(self.0.create_room(name, kind, creator)).await
    }

    async fn open_dm(&self, a: &str, b: &str) -> Result<RoomRow, StoreError> {
        gated(self.0.open_dm(a, b)).await
    }

    async fn room(&self, name: &str) -> Result<Option<RoomRow>, StoreError> {
        gated(self.0.room(name)).await
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        gated(self.0.add_member(room, user)).await
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        gated(self.0.remove_member(room, user)).await
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        gated(self.0.members(room)).await
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        gated(self.0.is_member(room, user)).await
    }

    async fn room_count(&self, user: &str) -> Result<usize, StoreError> {
        gated(self.0.room_count(user)).await
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<RoomRow>, StoreError> {
        gated(self.0.rooms_of(user)).await
    }

    async fn public_rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        gated(self.0.public_rooms()).await
    }

    async fn invite(
        &self,
        room: &str,
        user: &str,
        by: &str,
        keep: usize,
    ) -> Result<bool, StoreError> {
        gated(self.0.invite(room, user, by, keep)).await
    }

    async fn decline(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        gated(self.0.decline(room, user)).await
    }

    async fn invitations(&self, user: &str) -> Result<Vec<Invited>, StoreError> {
        gated(self.0.invitations(user)).await
    }

    async fn is_invited(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        gated(self.0.is_invited(room, user)).await
    }

    async fn set_topic(
        &self,
        room: &str,
        by: &str,
        topic: &str,
    ) -> Result<Option<u64>, StoreError> {
        gated(self.0.set_topic(room, by, topic)).await
    }

    fn append(
        &self,
        msg: NewMessage,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
        self.0.append(msg)
    }

    async fn history(
        &self,
        room: &str,
        page: Page,
        limit: u16,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        gated(self.0.history(room, page, limit)).await
    }

    async fn close(&self) {
        self.0.close().await
    }
}

impl Peer {
    fn fail(&self, what: String) -> ! {
        fail!("{}: {what}", self.name)
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
            ClientFrame::SetTopic { room, topic, .. } => Want::SetTopic {
                room: room.clone(),
                topic_ok: check_topic(topic).is_ok(),
            },
        };
        let mut account = lock(&self.account);
        let joins_at = match &want {
            Want::Leave { room } => match account.joining.get(room) {
                Some(&(in_flight, _)) if in_flight > 0 => None,
                j => Some(j.map_or(0, |j| j.1)),
            },
            _ => None,
        };
        if let Some((room, true)) = membership_change(self.user, frame) {
            account.gone.remove(&room);
            let j = account.joining.entry(room).or_default();
            j.0 += 1;
            j.1 += 1;
        }
        drop(account);
        let old = self.pending.insert(
            frame.req(),
            Pending {
                existed: want.room().is_some_and(|r| known.existing.contains(r)),
                want,
                since: self.rooms.clock,
                more: self.joined_elsewhere.clone(),
                less: self.left_elsewhere.clone(),
                joins_at,
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

    /// Another device of the user may join (`true`) or leave `room`: this
    /// client may hear of it only after answers to its requests sent
    /// until then (`joined_elsewhere`).
    fn elsewhere(&mut self, room: &str, joins: bool) {
        for p in self.pending.values_mut() {
            if joins {
                p.more.insert(room.to_owned());
            } else {
                p.less.insert(room.to_owned());
            }
        }
        if joins {
            self.joined_elsewhere.insert(room.to_owned());
        } else {
            self.left_elsewhere.insert(room.to_owned());
        }
    }

    /// The session answered `Leave` `req` with `Left`: the user left the
    /// room for sure unless a join of it was in flight or handed over since
    /// the `Leave` was (`Account::gone`).
    fn left(&mut self, req: RequestId, room: &str) {
        let Some(joins_at) = self.pending.get(&req).and_then(|p| p.joins_at) else {
            return;
        };
        let mut account = lock(&self.account);
        if account.joining.get(room).map_or(0, |j| j.1) == joins_at {
            account.leaves += 1;
            let mark = account.leaves;
            account.gone.insert(room.to_owned(), mark);
        }
    }

    /// The leave that took the user out of the room of bulk request `req`
    /// for sure, if one did: checked against its reply.
    fn gone_for(&self, req: RequestId) -> Option<(String, u64)> {
        let room = self.pending.get(&req)?.want.room()?;
        let mark = lock(&self.account).gone(room)?;
        Some((room.clone(), mark))
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
        let Some((room, joins)) = membership_change(self.user, frame) else {
            return;
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
                "a bulk reply"
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
            // Only mallory invites, and only to rooms she is in.
            ServerFrame::Invited(i) => {
                if self.user == FUZZED
                    || i.by != FUZZED
                    || self.never.contains(&i.room.name.as_str())
                    || MALLORY_NEVER.contains(&i.room.name.as_str())
                    || i.room.kind == RoomKind::Direct
                {
                    self.fail(format!("invited: {i:?}"));
                }
            }
            // Only mallory sets topics, and only of channels she is in.
            ServerFrame::Topic { room, topic, by } => {
                if !self.rooms.contains(&room)
                    || by != FUZZED
                    || check_topic(&topic).is_err()
                    || MALLORY_NEVER.contains(&room.as_str())
                    || known.kind(&room) == Some(RoomKind::Direct)
                {
                    self.fail(format!(
                        "topic of {room} by {by}: {topic:?}; rooms {:?}",
                        self.rooms
                    ));
                }
            }
            ServerFrame::Lagged { room, .. } => {
                if bulk {
                    self.fail(format!("Lagged in {room} as a bulk reply"));
                }
                // The writer sends it past a full queue, so it may overtake
                // the user's own `Joined` held there: checked once the
                // queue is read to its end (`read_all`).
                if !self.rooms.contains(&room) {
                    self.lagged.push((room.clone(), self.rooms.clock));
                }
                if self.user == PEER {
                    self.to_resume.insert(room.clone());
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
                } else if self.bad_frame == Some(code) {
                    self.bad_frame = None;
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
                let mut why = refusal_ok(&p, code, known, throughout);
                if let Some(room) = p.want.room() {
                    if why.is_ok() && (self.never.contains(&room.as_str()) || !can_exist(room)) {
                        why = known.as_missing(&p.want, room, code, &message);
                    }
                }
                if let Err(why) = why {
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
                if room == LOBBY {
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
            (Want::SetTopic { room, topic_ok }, ServerFrame::Done { .. }) => {
                if !topic_ok
                    || !self.rooms.at_some_point(&p, room)
                    || known.kind(room) == Some(RoomKind::Direct)
                {
                    self.fail(format!(
                        "SetTopic of {room} (topic ok: {topic_ok}) done (rooms {:?})",
                        self.rooms
                    ));
                }
            }
            (
                Want::ListRooms,
                ServerFrame::Rooms {
                    joined,
                    public,
                    invited,
                    ..
                },
            ) => {
                if !invited.is_empty() {
                    self.fail(format!("invitations nobody made: {invited:?}"));
                }
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
    let kind = room.and_then(|r| known.kind(r));
    // A private room one is not invited to and another pair's DM are
    // answered as if they did not exist; a public room never is.
    if code == NoSuchRoom && p.existed && (kind == Some(RoomKind::Public) || throughout) {
        return Err("the room exists and is visible".into());
    }
    if code == NotMember && throughout {
        return Err("it was a member throughout".into());
    }
    // Whether it was due is checked when the session answers (`drive`).
    if code == RateLimited && p.want.rate_limited() {
        return Ok(());
    }
    // Storage failures may answer anything that touches the store.
    if code == Unavailable && !matches!(p.want, Want::Ping | Want::Again) {
        return Ok(());
    }
    let ok = match &p.want {
        Want::Create { room, .. } => {
            let valid = names::check_room(room).is_ok();
            match code {
                InvalidName => !valid,
                RoomExists => valid,
                _ => false,
            }
        }
        // `NotMember`: left on another device while the join was answered.
        Want::Join { room } => code == NoSuchRoom || (code == NotMember && p.less.contains(room)),
        Want::Leave { room } => match code {
            Forbidden => room == LOBBY,
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
        Want::SetTopic { topic_ok, .. } => match code {
            BadTopic => !topic_ok,
            NoSuchRoom | NotMember => *topic_ok,
            Forbidden => *topic_ok && kind == Some(RoomKind::Direct),
            _ => false,
        },
        Want::Ping => false,
        Want::Again => code == Unexpected,
    };
    if ok {
        Ok(())
    } else {
        Err("not a refusal this request can get here".into())
    }
}
/// Everything that lives as long as the process.
struct World {
    rt: tokio::runtime::Runtime,
    harness: Mutex<Option<Harness>>,
}

struct Harness {
    core: Core,
    /// mallory's devices: the first logged in at the start of every input,
    /// the others once an input sends from them, each until an input ends it.
    mallory: [Option<Peer>; DEVICES],
    /// What mallory's sessions share.
    account: Arc<Mutex<Account>>,
    /// The device mallory's next frame comes from.
    current: usize,
    alice: Peer,
    known: Known,
    next_req: u32,
    next_id: u64,
}

impl World {
    fn start() -> World {
        abort_on_panic();
        SCRATCH.get_or_init(scratch);
        // SAFETY: registers a plain function; nothing else to uphold.
        unsafe {
            atexit(at_exit);
        }
        // One thread: the harness is the only task, and the store's threads
        // answer through channels.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        World {
            rt,
            harness: Mutex::new(None),
        }
    }
}

/// A hash of `PASSWORD` at argon2's smallest cost: the relay verifies with
/// the parameters a hash names, so a login costs microseconds instead of
/// the tens of milliseconds the default costs (hundreds under a sanitizer).
fn cheap_hash() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2 parameters");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("c2Vzc2lvbmZyYW1lcw").expect("salt");
    let phc = argon2
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string();
    assert!(relay::auth::verify_password(&phc, PASSWORD));
    phc
}

/// The relay with its accounts and rooms, on a fresh store.
async fn open_relay() -> Core {
    let dir = SCRATCH.get().expect("scratch folder").join("data");
    let (tx, committed) = mpsc::unbounded_channel();
    let store = SqliteStore::open(&dir, Some(tx)).expect("store");
    let phc = cheap_hash();
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
    let defaults = Config::default();
    // The creations' bucket holds at least as many as the room changes'
    // (twice the rate): see below.
    assert!(relay::defaults::ROOM_CREATION_BURST >= 2 * defaults.request_rate);
    let cfg = Config {
        registration_open: false,
        queue_depth: QUEUE_DEPTH,
        // Refilled as fast as room changes, from at least as many, and
        // every creation takes a room change first, from the same account:
        // a creation is never refused before the room-change limit refuses
        // it, whichever of the account's sessions asks, and the model needs
        // only the one bucket.
        room_creations_per_hour: defaults.request_rate * 3600,
        max_sessions_per_user: DEVICES,
        ..defaults
    };
    Core {
        relay: Arc::new(Relay::new(Turns(store), cfg)),
        committed,
        start: Instant::now(),
        elapsed: Duration::ZERO,
    }
}

/// Logs `user` in through the login core, starts the session, and reads
/// the user's rooms with a `ListRooms` (`req`), as a client does first.
/// `name` names the session in failures and traces.
async fn login(
    core: &mut Core,
    known: &mut Known,
    account: &Arc<Mutex<Account>>,
    req: u32,
    user: &'static str,
    name: String,
    never: &'static [&'static str],
) -> Peer {
    let now = core.now();
    let mut login = Login::new(&*core.relay, ADDR.parse().expect("address"));
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        client: "session_frames".into(),
    };
    match login.handle(hello, now).await {
        Step::Reply(ServerFrame::Welcome { .. }) => {}
        other => fail!("{user}'s Hello: {other:?}"),
    }
    let frame = ClientFrame::Login {
        req: 1,
        user: user.into(),
        password: PASSWORD.into(),
    };
    let logged_in = match login.handle(frame, now).await {
        Step::LoggedIn(a, ServerFrame::LoggedIn { req: 1, user: u })
            if a.name == user && u == user =>
        {
            a
        }
        other => fail!("{user}'s Login: {other:?}"),
    };
    let (mut session, queue) = Session::start(core.relay.clone(), logged_in, now)
        .await
        .expect("session starts");
    let outbox = session.outbox().clone();
    let gate = {
        let mut account = lock(account);
        account.open(&core.relay.cfg, now);
        SendGate::over(account.sends.clone(), now)
    };
    let (joined, public) = match session.handle(ClientFrame::ListRooms { req }, now).await {
        Answer::Bulk { req: r, work } if r == req => match bulk_bytes(req, work.await) {
            Ok(bytes) => match server_frame(&bytes, MAX_BULK_FRAME, "the room list") {
                ServerFrame::Rooms {
                    req: r,
                    joined,
                    public,
                    ..
                } if r == req => (joined, public),
                other => fail!("{user}'s room list: {other:?}"),
            },
            Err(frame) => fail!("{user}'s room list: {frame:?}"),
        },
        other => fail!("{user}'s ListRooms: {other:?}"),
    };
    let mut peer = Peer {
        user,
        name,
        never,
        account: account.clone(),
        served: 0,
        session: Some(session),
        lags: outbox.lags.clone(),
        outbox: Some(outbox),
        queue,
        appends: VecDeque::new(),
        bulks: VecDeque::new(),
        gate,
        rooms: Rooms::default(),
        pending: HashMap::new(),
        hellos: 0,
        bad_frame: None,
        last_seq: HashMap::new(),
        closing: None,
        final_ping: None,
        ponged: false,
        lagged: vec![],
        to_resume: BTreeSet::new(),
        reads: vec![],
        joins: BTreeSet::new(),
        leaves: BTreeSet::new(),
        joined_elsewhere: BTreeSet::new(),
        left_elsewhere: BTreeSet::new(),
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
    peer.read_all(known);
    peer
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::start)
}

/// A folder of this process for the relay's store, on
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
        "session_frames: {} inputs, {} relogins, {} logins of other devices, {} pairs",
        INPUTS.load(Ordering::Relaxed),
        RELOGINS.load(Ordering::Relaxed),
        DEVICE_LOGINS.load(Ordering::Relaxed),
        PAIRS.load(Ordering::Relaxed)
    );
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fn pick<'a>(table: &[&'a str], i: u8) -> &'a str {
    table[usize::from(i) % table.len()]
}

impl Name {
    /// `held`: the rooms for `Held`, none for a user.
    fn resolve(&self, table: &[&str], held: &[&String]) -> String {
        match self {
            Name::Pick(i) => pick(table, *i).to_owned(),
            Name::Long(n) => "z".repeat(30 + usize::from(*n % 40)),
            Name::Raw(s) => s.chars().take(1).collect(),
            Name::Held(i) if held.is_empty() => pick(table, *i).to_owned(),
            Name::Held(i) => held[usize::from(*i) % held.len()].clone(),
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
    async fn start() -> Harness {
        let mut core = open_relay().await;
        let mut known = Known {
            existing: [LOBBY, "dev", "ops", "vault", "@alice+bob"]
                .map(String::from)
                .into(),
            kinds: HashMap::new(),
            missing: HashMap::new(),
        };
        for (room, kind) in [
            (LOBBY, RoomKind::Public),
            ("dev", RoomKind::Public),
            ("ops", RoomKind::Private),
            ("vault", RoomKind::Private),
        ] {
            known.kinds.insert(room.into(), kind);
        }
        let now = core.now();
        let account = Arc::new(Mutex::new(Account::new(&core.relay.cfg, now)));
        let alice_account = Arc::new(Mutex::new(Account::new(&core.relay.cfg, now)));
        let alice = login(
            &mut core,
            &mut known,
            &alice_account,
            2,
            PEER,
            PEER.into(),
            &ALICE_NEVER,
        )
        .await;
        let mut h = Harness {
            core,
            mallory: [const { None }; DEVICES],
            account,
            current: 0,
            alice,
            known,
            next_req: 100,
            next_id: 0,
        };
        h.log_in(0).await;
        h.mallory[0].as_mut().expect("logged in").served = SESSION_MIN;
        h
    }

    /// Logs mallory's device `d` in.
    async fn log_in(&mut self, d: usize) {
        let req = self.req();
        let peer = login(
            &mut self.core,
            &mut self.known,
            &self.account,
            req,
            FUZZED,
            format!("{FUZZED}/{d}"),
            &MALLORY_NEVER,
        )
        .await;
        self.mallory[d] = Some(peer);
    }

    fn device(&mut self, d: usize) -> &mut Peer {
        self.mallory[d].as_mut().expect("logged in")
    }

    fn req(&mut self) -> u32 {
        self.next_req = self.next_req.wrapping_add(1).max(100);
        self.next_req
    }

    /// Mallory's request `r` from device `d`.
    fn frame(&mut self, d: usize, r: &Req) -> ClientFrame {
        let req = self.req();
        let rooms = &self.device(d).rooms.now;
        let mut held: Vec<String> = rooms.iter().filter(|r| *r != LOBBY).cloned().collect();
        if held.is_empty() {
            held.push(LOBBY.to_owned());
        }
        let held: Vec<&String> = held.iter().collect();
        let room = |n: &Name| n.resolve(&ROOM_NAMES, &held);
        let user = |n: &Name| n.resolve(&USER_NAMES, &[]);
        match r {
            Req::CreateRoom { room: r, private } => ClientFrame::CreateRoom {
                req,
                room: room(r),
                private: *private,
            },
            Req::Join { room: r } => ClientFrame::Join { req, room: room(r) },
            Req::Leave { room: r } => ClientFrame::Leave { req, room: room(r) },
            Req::Invite { room: r, user: u } => ClientFrame::Invite {
                req,
                room: room(r),
                user: user(u),
            },
            Req::ListRooms => ClientFrame::ListRooms { req },
            Req::Members { room: r } => ClientFrame::Members { req, room: room(r) },
            Req::OpenDm { user: u } => ClientFrame::OpenDm { req, user: user(u) },
            Req::Send { room: r, id, body } => ClientFrame::Send {
                req,
                room: room(r),
                id: match id {
                    Id::Fixed(b) => [*b; 16],
                    Id::Fresh => self.fresh_id(),
                },
                body: body.resolve(),
            },
            Req::History {
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
            Req::Ping => ClientFrame::Ping { req },
            Req::Resume { room: r } => ClientFrame::Resume { req, room: room(r) },
        }
    }

    fn again_frame(&mut self, again: &Again) -> ClientFrame {
        let req = self.req();
        match again {
            Again::Hello(version) => ClientFrame::Hello {
                version: *version,
                client: "again".into(),
            },
            Again::Register => ClientFrame::Register {
                req,
                user: "mallory2".into(),
                password: PASSWORD.into(),
            },
            Again::Login(right) => ClientFrame::Login {
                req,
                user: FUZZED.into(),
                password: if *right { PASSWORD } else { "wrong password" }.into(),
            },
        }
    }

    fn fresh_id(&mut self) -> MsgId {
        self.next_id += 1;
        let mut id = [0xf5; 16];
        id[..8].copy_from_slice(&self.next_id.to_le_bytes());
        id
    }

    async fn run(&mut self, input: &Input) {
        self.core.elapsed += STEP;
        if self.mallory[0].is_none() {
            RELOGINS.fetch_add(1, Ordering::Relaxed);
            self.log_in(0).await;
        }
        for m in self.mallory.iter_mut().flatten() {
            m.served += 1;
            m.new_input();
        }
        self.current = 0;
        // The device whose session ends, and how.
        let mut exit = None;
        for op in input.ops.iter().take(MAX_OPS) {
            let d = self.current;
            // What mallory's client on device `d` writes next: one frame,
            // or bytes that do not make one.
            let bytes = match op {
                Op::PeerSend { room, body } => {
                    let frame = ClientFrame::Send {
                        req: self.req(),
                        room: pick(&PEER_ROOMS, *room).into(),
                        id: self.fresh_id(),
                        body: body.resolve(),
                    };
                    trace(|| format!("{PEER} -> {frame:?}"));
                    self.alice.expect(&frame, &self.known);
                    let a = &mut self.alice;
                    if drive(&mut self.core, a, &mut self.known, frame)
                        .await
                        .is_some()
                    {
                        a.fail("a Send ended the session".into());
                    }
                    continue;
                }
                Op::Wait(n) => {
                    self.core.elapsed += WAIT_UNIT * u32::from(*n);
                    continue;
                }
                Op::Read => {
                    let m = self.mallory[d].as_mut().expect("logged in");
                    m.read_batch(&mut self.known);
                    continue;
                }
                Op::Settle => {
                    self.settle().await;
                    continue;
                }
                Op::Device(n) => {
                    self.current = usize::from(*n) % DEVICES;
                    self.sign_in(self.current).await;
                    continue;
                }
                Op::Crowd => {
                    if self.mallory.iter().all(Option::is_some) {
                        self.crowd().await;
                    }
                    continue;
                }
                Op::Pair {
                    other,
                    first,
                    second,
                    one_room,
                    turns,
                } => {
                    let mut e = usize::from(*other) % DEVICES;
                    if e == d {
                        e = (d + 1) % DEVICES;
                    }
                    self.sign_in(e).await;
                    let mut frames = [self.frame(d, first), self.frame(e, second)];
                    if let (true, Some(room)) = (*one_room, room_of(&frames[0]).cloned()) {
                        if let Some(r) = room_of_mut(&mut frames[1]) {
                            *r = room;
                        }
                    }
                    self.hand_over(d, &frames[0]);
                    self.hand_over(e, &frames[1]);
                    self.pair([d, e], frames, *turns).await;
                    continue;
                }
                Op::Rare(_) if self.device(d).served < SESSION_MIN => continue,
                Op::Rare(what) => {
                    let req = self.req();
                    let m = self.mallory[d].as_mut().expect("logged in");
                    match what {
                        Rare::Bye => {
                            m.closing = m.expect(&ClientFrame::Bye, &self.known);
                            codec::encode(&ClientFrame::Bye)
                        }
                        Rare::Finish => {
                            m.closing = Some(close::NORMAL);
                            Bytes::new()
                        }
                        Rare::Malformed(n) => {
                            let payload = MALFORMED[usize::from(*n) % MALFORMED.len()];
                            if let Ok(frame) = codec::decode::<ClientFrame>(payload) {
                                fail!("harness: {payload:?} decodes, as {frame:?}");
                            }
                            m.closing = Some(close::PROTOCOL);
                            m.bad_frame = Some(ErrorCode::Malformed);
                            let mut out = BytesMut::new();
                            out.put_u32(payload.len() as u32);
                            out.put_slice(payload);
                            out.freeze()
                        }
                        Rare::Oversized(n) => {
                            m.closing = Some(close::PROTOCOL);
                            m.bad_frame = Some(ErrorCode::FrameTooLarge);
                            let mut out = BytesMut::new();
                            out.put_u32((MAX_CONTROL_FRAME + 1) as u32 + u32::from(*n));
                            out.freeze()
                        }
                        Rare::Truncated(n) => {
                            let ping = codec::encode(&ClientFrame::Ping { req });
                            m.closing = Some(close::PROTOCOL);
                            m.bad_frame = Some(ErrorCode::Malformed);
                            ping.slice(..1 + usize::from(*n) % (ping.len() - 1))
                        }
                    }
                }
                Op::Raw(payload) => {
                    let payload = &payload[..payload.len().min(256)];
                    match codec::decode::<ClientFrame>(payload) {
                        Ok(ClientFrame::Bye) | Err(_) => continue,
                        Ok(mut frame) => {
                            frame.set_req(self.req());
                            self.expect_encoded(d, &frame)
                        }
                    }
                }
                Op::Again(again) => {
                    let frame = self.again_frame(again);
                    self.expect_encoded(d, &frame)
                }
                Op::Req(r) => {
                    let frame = self.frame(d, r);
                    self.expect_encoded(d, &frame)
                }
            };
            let m = self.mallory[d].as_mut().expect("logged in");
            // As `conn::run` reads the control stream.
            let read = read_bytes::<ClientFrame>(&bytes, MAX_CONTROL_FRAME);
            trace(|| format!("{} -> {read:?} ({} bytes)", m.name, bytes.len()));
            match read {
                Ok(Some(frame)) => {
                    if let Some(end) = drive(&mut self.core, m, &mut self.known, frame).await {
                        exit = Some((d, end));
                        break;
                    }
                }
                Ok(None) => {
                    exit = Some((d, Exit::Normal));
                    break;
                }
                Err(FrameError::Io(e)) => fail!("harness: reading from memory: {e}"),
                Err(e) => {
                    let frame = m.session.as_ref().expect("a session").bad_frame(&e);
                    m.reply(&mut self.known, &frame);
                    exit = Some((d, Exit::Protocol));
                    break;
                }
            }
        }
        for d in 0..DEVICES {
            let Some(m) = self.mallory[d].as_mut() else {
                continue;
            };
            let ends = exit.filter(|&(e, _)| e == d).map(|(_, how)| how);
            if ends.is_none() != m.closing.is_none() {
                m.fail(format!(
                    "asked to close with {:?}, the session's end: {ends:?}",
                    m.closing
                ));
            }
            m.ponged = false;
            m.final_ping = None;
            if ends.is_none() {
                let req = self.req();
                let m = self.mallory[d].as_mut().expect("logged in");
                let ping = ClientFrame::Ping { req };
                m.expect(&ping, &self.known);
                m.final_ping = Some(req);
                drive(&mut self.core, m, &mut self.known, ping).await;
            }
        }
        // alice's work finishes before mallory's session ends, so that
        // mallory counts as online throughout for alice's member lists.
        self.settle().await;
        if let Some((d, how)) = exit {
            self.end_device(d, how).await;
        }
        let alice = &self.alice;
        if !alice.pending.is_empty() || alice.hellos > 0 {
            alice.fail(format!("unanswered: {:?}", alice.pending));
        }
        for m in self.mallory.iter().flatten() {
            if !m.ponged || !m.pending.is_empty() || m.hellos > 0 || m.bad_frame.is_some() {
                m.fail(format!(
                    "unanswered: {:?} (ponged {}, Hello refusals owed {}, bad frame error owed {:?})",
                    m.pending, m.ponged, m.hellos, m.bad_frame
                ));
            }
        }
        self.check_at_rest().await;
    }

    /// Logs mallory's device `d` in if it is not.
    async fn sign_in(&mut self, d: usize) {
        if self.mallory[d].is_none() {
            DEVICE_LOGINS.fetch_add(1, Ordering::Relaxed);
            self.log_in(d).await;
            self.device(d).new_input();
        }
    }

    /// Records what mallory's `frame` from device `d` must be answered
    /// with, and that her other devices may hear of what it changes only
    /// later; returns the close code for a `Bye`.
    fn hand_over(&mut self, d: usize, frame: &ClientFrame) -> Option<u32> {
        if let Some((room, joins)) = membership_change(FUZZED, frame) {
            for (e, m) in self.mallory.iter_mut().enumerate() {
                if let Some(m) = m.as_mut().filter(|_| e != d) {
                    m.elsewhere(&room, joins);
                }
            }
        }
        let m = self.mallory[d].as_mut().expect("logged in");
        m.expect(frame, &self.known)
    }

    /// Records what mallory's `frame` from device `d` must be answered
    /// with; its bytes.
    fn expect_encoded(&mut self, d: usize, frame: &ClientFrame) -> Bytes {
        let closing = self.hand_over(d, frame);
        self.device(d).closing = closing;
        codec::encode(frame)
    }

    /// Handles two of mallory's requests from two of her devices at once,
    /// as the relay's tasks for two connections would, each read from its
    /// bytes first. A side's turn (`take_turn`) polls it until it waits
    /// for the store, then waits for the store's answer: the sides reach
    /// the store in the order of their turns, one request at a time, so
    /// the interleaving is the same on every run. Bit i of `turns` (lowest
    /// first) says which side has turn i while both still run; once the
    /// bits are used up, the first side runs to its end, then the second.
    /// A bulk reply's work runs as part of its side, once the appends in
    /// flight have finished (so that its read is the same on every run).
    async fn pair(&mut self, devices: [usize; 2], frames: [ClientFrame; 2], turns: u32) {
        PAIRS.fetch_add(1, Ordering::Relaxed);
        let now = self.core.now();
        let frames = frames.map(|f| {
            match read_bytes::<ClientFrame>(&codec::encode(&f), MAX_CONTROL_FRAME) {
                Ok(Some(frame)) => frame,
                other => fail!("harness: {f:?} read back as {other:?}"),
            }
        });
        // The relay makes one membership change of a user at a time
        // (`MembershipLocks`): the second waits for the first to finish, a
        // wait no store request of the harness's gate can end, so such a
        // pair runs one request after the other, the input choosing which
        // goes first.
        let serial = frames
            .iter()
            .all(locks_membership)
            .then_some(usize::from(turns & 1 == 1));
        let mut peers = devices.map(|d| self.mallory[d].take().expect("logged in"));
        trace(|| {
            format!(
                "{} -> {:?} with {} -> {:?}, turns {turns:#b}",
                peers[0].name, frames[0], peers[1].name, frames[1]
            )
        });
        let mut sessions = peers
            .each_mut()
            .map(|p| p.session.take().expect("a session"));
        let [s0, s1] = &mut sessions;
        let [f0, f1] = frames;
        let mut sides = [Side::Ready(s0, f0), Side::Ready(s1, f1)];
        let wake = Arc::new(Wake {
            woken: AtomicBool::new(false),
            thread: std::thread::current(),
        });
        let mut turns = turns;
        loop {
            let running = sides.each_ref().map(|s| !matches!(s, Side::Done));
            let i = match running {
                [false, false] => break,
                [true, false] => 0,
                [false, true] => 1,
                [true, true] => match serial {
                    Some(first) => first,
                    None => {
                        let i = usize::from(turns & 1 == 1);
                        turns >>= 1;
                        i
                    }
                },
            };
            let side = std::mem::replace(&mut sides[i], Side::Done);
            trace(|| format!("  turn of {}", peers[i].name));
            sides[i] = self.turn(side, &mut peers, i, now, &wake).await;
        }
        drop(sides);
        for (peer, session) in peers.iter_mut().zip(sessions) {
            peer.session = Some(session);
        }
        for (d, peer) in devices.into_iter().zip(peers) {
            self.mallory[d] = Some(peer);
        }
    }

    /// One turn of side `i` of a pair (see `pair`).
    async fn turn<'s>(
        &mut self,
        side: Side<'s>,
        peers: &mut [Peer; 2],
        i: usize,
        now: Instant,
        wake: &Arc<Wake>,
    ) -> Side<'s> {
        let (begun, mut handling) = match side {
            Side::Ready(session, frame) => {
                let begun = begin(&peers[i], &frame, now);
                let handling: Pin<Box<dyn Future<Output = Answer> + 's>> =
                    Box::pin(tokio::task::unconstrained(session.handle(frame, now)));
                (begun, handling)
            }
            Side::Handling(begun, handling) => (begun, handling),
            Side::Read(req, work) => {
                let (core, known) = (&mut self.core, &mut self.known);
                let everyone = peers
                    .iter_mut()
                    .chain(self.mallory.iter_mut().flatten())
                    .chain([&mut self.alice]);
                for p in everyone {
                    while !p.appends.is_empty() {
                        finish_append(core, p, known).await;
                    }
                }
                let gone = peers[i].gone_for(req);
                let work = Box::pin(tokio::task::unconstrained(work));
                return self.read_turn(i, req, work, gone, &mut peers[i], wake);
            }
            Side::Reading(req, work, gone) => {
                return self.read_turn(i, req, work, gone, &mut peers[i], wake);
            }
            Side::Done => return Side::Done,
        };
        let Some(answer) = take_turn(i, handling.as_mut(), wake) else {
            return Side::Handling(begun, handling);
        };
        let peer = &mut peers[i];
        match carry_out(&mut self.core, peer, &mut self.known, begun, answer).await {
            Carried::Done => Side::Done,
            Carried::Bulk(req, work) => Side::Read(req, work),
            Carried::Exit(how) => peer.fail(format!("a request ended the session: {how:?}")),
        }
    }

    fn read_turn<'s>(
        &mut self,
        i: usize,
        req: RequestId,
        mut work: Pin<Box<Unconstrained<BulkWork>>>,
        gone: Option<(String, u64)>,
        peer: &mut Peer,
        wake: &Arc<Wake>,
    ) -> Side<'s> {
        match take_turn(i, work.as_mut(), wake) {
            None => Side::Reading(req, work, gone),
            Some(reply) => {
                deliver_bulk(peer, &mut self.known, req, reply, gone);
                Side::Done
            }
        }
    }

    /// A login of mallory's with every device of hers logged in: refused
    /// with `TooManyConnections`, said only as the password is right.
    async fn crowd(&mut self) {
        let now = self.core.now();
        let req = self.req();
        let mut login = Login::new(&*self.core.relay, ADDR.parse().expect("address"));
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            client: "session_frames".into(),
        };
        match login.handle(hello, now).await {
            Step::Reply(ServerFrame::Welcome { .. }) => {}
            other => fail!("{FUZZED}'s Hello: {other:?}"),
        }
        let frame = ClientFrame::Login {
            req,
            user: FUZZED.into(),
            password: PASSWORD.into(),
        };
        let step = login.handle(frame, now).await;
        trace(|| format!("{FUZZED}/{DEVICES} logs in: {step:?}"));
        match step {
            Step::Reply(ServerFrame::Error {
                req: r,
                code: ErrorCode::TooManyConnections,
                ..
            }) if r == req => {}
            other => fail!("a login of {FUZZED} with {DEVICES} sessions open: {other:?}"),
        }
    }

    /// Finishes all work in flight and reads every queue to its end;
    /// alice resumes the rooms she lags in.
    async fn settle(&mut self) {
        loop {
            for m in self.mallory.iter_mut().flatten() {
                finish_work(&mut self.core, m, &mut self.known).await;
            }
            finish_work(&mut self.core, &mut self.alice, &mut self.known).await;
            for m in self.mallory.iter_mut().flatten() {
                m.read_all(&mut self.known);
            }
            self.alice.read_all(&mut self.known);
            let rooms = std::mem::take(&mut self.alice.to_resume);
            if rooms.is_empty() {
                return;
            }
            for room in rooms {
                let frame = ClientFrame::Resume {
                    req: self.req(),
                    room,
                };
                trace(|| format!("{PEER} -> {frame:?}"));
                self.alice.expect(&frame, &self.known);
                drive(&mut self.core, &mut self.alice, &mut self.known, frame).await;
            }
        }
    }

    /// With nothing in flight and every queue read: each session is
    /// subscribed to exactly the rooms the store has its user in, and its
    /// client, from what it was told, counts itself in exactly those
    /// (PROTOCOL §9.2: a membership change made on one device applies to
    /// all the user's devices).
    async fn check_at_rest(&mut self) {
        let devices: Vec<&Peer> = self.mallory.iter().flatten().collect();
        for (user, peers) in [(FUZZED, devices), (PEER, vec![&self.alice])] {
            if peers.is_empty() {
                continue;
            }
            let rooms: BTreeSet<String> = match self.core.relay.store.rooms_of(user).await {
                Ok(rows) => rows.into_iter().map(|r| r.name).collect(),
                Err(e) => fail!("harness: {user}'s rooms: {e}"),
            };
            for p in peers {
                if p.rooms.now != rooms {
                    p.fail(format!(
                        "told it is in {:?}, the store has it in {rooms:?}",
                        p.rooms.now
                    ));
                }
                let id = p.outbox.as_ref().expect("an outbox").id;
                for room in rooms.iter().chain(&self.known.existing) {
                    if self.core.relay.hub.is_subscribed(id, room) != rooms.contains(room) {
                        p.fail(format!(
                            "subscribed to {room}: {}, the store has it in {rooms:?}",
                            !rooms.contains(room)
                        ));
                    }
                }
            }
        }
    }

    /// Ends mallory's session on device `d` as the connection does once it
    /// stops reading: its work finished (already, by `settle`),
    /// `Session::end`, the writer draining the queue, the close.
    async fn end_device(&mut self, d: usize, exit: Exit) {
        let mut m = self.mallory[d].take().expect("logged in");
        let (code, _) = exit.code();
        if m.closing != Some(code) {
            m.fail(format!(
                "the session ended with {exit:?}, close code {code}, asked for {:?}",
                m.closing
            ));
        }
        finish_work(&mut self.core, &mut m, &mut self.known).await;
        m.session.take().expect("a session").end();
        lock(&m.account).open -= 1;
        m.outbox = None;
        m.read_all(&mut self.known);
        match m.queue.try_recv() {
            Err(mpsc::error::TryRecvError::Disconnected) => {}
            other => m.fail(format!("the queue after the end: {other:?}")),
        }
        if !m.pending.is_empty() || m.hellos > 0 || m.bad_frame.is_some() {
            m.fail(format!(
                "unanswered at the end: {:?} (Hello refusals owed {}, bad frame error owed {:?})",
                m.pending, m.hellos, m.bad_frame
            ));
        }
        // What the end tells alice (mallory offline, if it was her last).
        self.alice.read_all(&mut self.known);
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    let mut guard = w.harness.lock().unwrap_or_else(|e| e.into_inner());
    INPUTS.fetch_add(1, Ordering::Relaxed);
    w.rt.block_on(async {
        let h = match guard.as_mut() {
            Some(h) => h,
            None => guard.insert(Harness::start().await),
        };
        h.run(&input).await;
    });
});
