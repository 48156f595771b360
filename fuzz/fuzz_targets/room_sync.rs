//! `RoomSync` (the client's exactly-once catch-up) against a small model
//! of the relay, following docs/PROTOCOL.md §9–13.
//!
//! The model keeps every room's messages (increasing seqs with gaps), the
//! user's memberships, and one connection: the control stream to the
//! client (FIFO: live messages, presence, `Lagged`, errors), bulk replies
//! (history pages and the room list, each on its own stream, so they
//! arrive in any order), and the client's requests (handled in order). The
//! harness plays the client session: it feeds frames to `RoomSync` and turns
//! `Fetch`/`Resubscribe` into `History`/`Resume` requests, exactly as
//! `client::session` does.
//!
//! Allowed by the protocol and generated here: a full queue drops a live
//! message and marks the room lagged (`Lagged` may overtake frames already
//! queued); a live message may be seen twice; pages may be shorter than
//! asked (with `more`); disconnects at any point; other devices joining
//! and leaving rooms.
//!
//! The user's own `Presence{Joined/Left}` is never dropped (relay/src/hub.rs
//! holds it past a full queue and slots it in where it would have been
//! queued), so here it always takes its place in the control stream; only
//! a `Lagged` may overtake it, as it may any queued frame. Presence about
//! other users is best effort, but the session passes it to the application
//! without touching `RoomSync`, so the model does not generate it.
//!
//! Checked: the application sees every message at most once and in
//! increasing seq order per room, never before the room's `Joined`; and
//! once everything is answered, every message committed while the user was
//! a member of a room the application shows, newer than what its `Joined`
//! covered, was delivered (nothing lost).
#![no_main]

use std::collections::{BTreeSet, HashMap, VecDeque};

use arbitrary::Arbitrary;
use common::client::sync::{RoomSync, Step, Token};
use common::frame::{Message, Page, RoomInfo, RoomKind, Seq};
use libfuzzer_sys::fuzz_target;

const ROOMS: usize = 3;

fn name(room: usize) -> String {
    format!("r{room}")
}

fn index(room: &str) -> usize {
    room[1..].parse().expect("a model room")
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// Someone commits a message; with `lag` the session's queue is full
    /// for it, and the `Lagged` lands `lag_at` frames into the queue.
    Commit {
        room: u8,
        gap: u8,
        lag: bool,
        lag_at: u8,
    },
    /// The client reads the next control-stream frame.
    Read,
    /// The client reads the next control-stream frame, and if it is a live
    /// message, sees it once more.
    ReadTwice,
    /// The relay handles the client's oldest request.
    Handle,
    /// One of the bulk replies in flight arrives.
    Bulk(u8),
    /// Another device of the user joins a room. With `queue_full` the relay
    /// holds the `Presence` past the session's full queue; the stream ends up
    /// the same, but the field keeps saved inputs decoding as they did when
    /// it dropped the presence.
    Join {
        room: u8,
        queue_full: bool,
    },
    /// Another device of the user leaves a room (never room 0, the lobby);
    /// `queue_full` as for `Join`.
    Leave {
        room: u8,
        queue_full: bool,
    },
    Disconnect,
    Connect,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Largest page the model relay returns (1..=8; `more` says the rest).
    page_cap: u8,
    ops: Vec<Op>,
}

/// Control-stream frames, as the client session sees them.
#[derive(Debug, Clone)]
enum Ctrl {
    Message(Message),
    Lagged(String),
    Presence {
        room: String,
        joined: bool,
    },
    /// The answer to a `History` or `Resume` of a room the user is not in.
    NotMember(String),
}

#[derive(Debug)]
enum Req {
    History {
        room: String,
        page: Page,
        limit: u16,
        token: Token,
    },
    Resume {
        room: String,
    },
    ListRooms,
}

#[derive(Debug)]
enum Bulk {
    Page {
        room: String,
        page: Page,
        messages: Vec<Message>,
        more: bool,
        token: Token,
    },
    Rooms(Vec<RoomInfo>),
}

#[derive(Default)]
struct Conn {
    ctrl: VecDeque<Ctrl>,
    bulk: Vec<Bulk>,
    reqs: VecDeque<Req>,
    /// Hub subscription of the session.
    sub: [bool; ROOMS],
    /// Lag mark: no live messages until `Resume`.
    lag: [bool; ROOMS],
}

struct Model {
    store: [Vec<Message>; ROOMS],
    member: [bool; ROOMS],
    conn: Option<Conn>,
    page_cap: usize,
    sync: RoomSync,
    /// What the application shows: room → highest seq shown.
    app: HashMap<String, Seq>,
    /// Messages the application must still be shown, per room.
    owed: [BTreeSet<Seq>; ROOMS],
    /// A `Lagged` for the room changed nothing (the client did not know it).
    lag_ignored: [bool; ROOMS],
    /// A room list without the room arrived while the user was a member.
    stale_list: [bool; ROOMS],
    /// Token of the newest `Fetch` per room (None: none since `Left`).
    latest_fetch: [Option<Token>; ROOMS],
    trace: Vec<String>,
}

impl Model {
    fn new(page_cap: u8) -> Model {
        Model {
            store: Default::default(),
            member: [true, false, false],
            conn: None,
            page_cap: usize::from(page_cap % 8) + 1,
            sync: RoomSync::default(),
            app: HashMap::new(),
            owed: Default::default(),
            lag_ignored: [false; ROOMS],
            stale_list: [false; ROOMS],
            latest_fetch: [None; ROOMS],
            trace: Vec::new(),
        }
    }

    /// Records an event for the failure report (with CONFAB_FUZZ_TRACE set:
    /// formatting every event would slow fuzzing down).
    fn note(&mut self, event: impl FnOnce() -> String) {
        static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *TRACE.get_or_init(|| std::env::var_os("CONFAB_FUZZ_TRACE").is_some()) {
            self.trace.push(event());
        }
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.trace.iter().rev().take(40).collect();
        let tail: Vec<&String> = tail.into_iter().rev().collect();
        let events: Vec<&str> = tail.iter().map(|s| s.as_str()).collect();
        panic!(
            "{what}\nlast events (set CONFAB_FUZZ_TRACE=1 to record them):\n  {}",
            events.join("\n  ")
        );
    }

    fn apply(&mut self, steps: Vec<Step>) {
        for step in steps {
            self.note(|| format!("    -> {}", short(&step)));
            match step {
                Step::Deliver(m) => {
                    let Some(last) = self.app.get(&m.room).copied() else {
                        self.fail(format!(
                            "{} seq {} delivered before the room's Joined",
                            m.room, m.seq
                        ));
                    };
                    if m.seq <= last {
                        self.fail(format!(
                            "{} seq {} delivered after seq {last}: duplicate or out of order",
                            m.room, m.seq
                        ));
                    }
                    self.app.insert(m.room.clone(), m.seq);
                    self.owed[index(&m.room)].remove(&m.seq);
                }
                Step::Joined { room, recent, .. } => {
                    if recent.windows(2).any(|w| w[0].seq >= w[1].seq) {
                        self.fail(format!("{room}: Joined with unordered recent messages"));
                    }
                    let top = recent.last().map_or(0, |m| m.seq);
                    match self.app.get(&room).copied() {
                        Some(last) => {
                            // Shown again: anything at or below what the
                            // application has is a second delivery.
                            let repeat = recent.iter().find(|m| m.seq <= last);
                            if let (Some(m), false) = (repeat, allowed("joined-twice")) {
                                self.fail(format!(
                                    "{room}: Joined again repeats seq {} (already showed up to {last})",
                                    m.seq
                                ));
                            }
                            let owed = &mut self.owed[index(&room)];
                            for m in &recent {
                                owed.remove(&m.seq);
                            }
                            if top > last {
                                self.app.insert(room, top);
                            }
                        }
                        None => {
                            // The first screen: older messages are scrollback.
                            self.owed[index(&room)].retain(|&s| s > top);
                            self.app.insert(room, top);
                        }
                    }
                }
                Step::Left { room } => {
                    self.latest_fetch[index(&room)] = None;
                    self.app.remove(&room);
                    self.owed[index(&room)].clear();
                }
                Step::Fetch {
                    room,
                    page,
                    limit,
                    token,
                } => {
                    self.latest_fetch[index(&room)] = Some(token);
                    let conn = self.conn.as_mut().expect("steps only while connected");
                    conn.reqs.push_back(Req::History {
                        room,
                        page,
                        limit,
                        token,
                    });
                }
                Step::Resubscribe { room } => {
                    let conn = self.conn.as_mut().expect("steps only while connected");
                    conn.reqs.push_back(Req::Resume { room });
                }
            }
        }
    }

    fn commit(&mut self, room: usize, gap: u8, lag: bool, lag_at: u8) {
        let seq = self.store[room].last().map_or(0, |m| m.seq) + 1 + u64::from(gap % 3);
        let msg = Message {
            room: name(room),
            seq,
            id: [0; 16],
            ts: 0,
            from: "other".into(),
            body: format!("{seq}"),
        };
        self.store[room].push(msg.clone());
        if self.member[room] {
            self.owed[room].insert(seq);
        }
        let mut how = "not subscribed";
        if let Some(conn) = &mut self.conn {
            if conn.sub[room] && !conn.lag[room] {
                if lag {
                    conn.lag[room] = true;
                    let at = usize::from(lag_at) % (conn.ctrl.len() + 1);
                    conn.ctrl.insert(at, Ctrl::Lagged(name(room)));
                    how = "queue full: lagged";
                } else {
                    conn.ctrl.push_back(Ctrl::Message(msg));
                    how = "queued";
                }
            } else if conn.sub[room] {
                how = "lagging: not sent";
            }
        }
        self.note(|| format!("commit r{room} seq {seq} ({how})"));
    }

    fn read(&mut self, twice: bool) {
        let Some(frame) = self.conn.as_mut().and_then(|c| c.ctrl.pop_front()) else {
            return;
        };
        self.note(|| format!("read {}", short_ctrl(&frame)));
        let steps = match frame {
            Ctrl::Message(m) => {
                let mut steps = self.sync.live(m.clone());
                if twice {
                    self.apply(steps);
                    self.note(|| format!("read {}#{} again", m.room, m.seq));
                    steps = self.sync.live(m);
                }
                steps
            }
            Ctrl::Lagged(room) => {
                let steps = self.sync.lagged(&room);
                if steps.is_empty() {
                    self.lag_ignored[index(&room)] = true;
                }
                steps
            }
            Ctrl::Presence { room, joined: true } => self.sync.joined(&room),
            Ctrl::Presence {
                room,
                joined: false,
            } => self.sync.left(&room),
            Ctrl::NotMember(room) => self.sync.left(&room),
        };
        self.apply(steps);
    }

    fn handle(&mut self) {
        let page_cap = self.page_cap;
        let Some(req) = self.conn.as_mut().and_then(|c| c.reqs.pop_front()) else {
            return;
        };
        self.note(|| format!("handle {req:?}"));
        let conn = self.conn.as_mut().expect("connected");
        match req {
            Req::History {
                room,
                page,
                limit,
                token,
            } => {
                let r = index(&room);
                if !conn.sub[r] {
                    conn.ctrl.push_back(Ctrl::NotMember(room));
                } else {
                    let (messages, more) = history(&self.store[r], page, limit, page_cap);
                    conn.bulk.push(Bulk::Page {
                        room,
                        page,
                        messages,
                        more,
                        token,
                    });
                }
            }
            Req::Resume { room } => {
                let r = index(&room);
                if !self.member[r] {
                    conn.ctrl.push_back(Ctrl::NotMember(room));
                } else {
                    conn.sub[r] = true;
                    conn.lag[r] = false;
                }
            }
            Req::ListRooms => {
                let joined = (0..ROOMS)
                    .filter(|&r| self.member[r])
                    .map(|r| RoomInfo {
                        name: name(r),
                        kind: RoomKind::Public,
                        members: 1,
                        latest: self.store[r].last().map_or(0, |m| m.seq),
                        topic: String::new(),
                    })
                    .collect();
                conn.bulk.push(Bulk::Rooms(joined));
            }
        }
    }

    fn bulk(&mut self, i: u8) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.bulk.is_empty() {
            return;
        }
        let reply = conn.bulk.remove(usize::from(i) % conn.bulk.len());
        self.note(|| format!("bulk {}", short_bulk(&reply)));
        let steps = match reply {
            Bulk::Page {
                room,
                page,
                messages,
                more,
                token,
            } => {
                if Some(token) != self.latest_fetch[index(&room)] && allowed("stale-pages") {
                    // What a worker that only accepts the page it asked for
                    // last would do.
                    self.note(|| "    (stale page dropped)".into());
                    return;
                }
                self.sync.page(&room, token, page, messages, more)
            }
            Bulk::Rooms(joined) => {
                for r in 0..ROOMS {
                    if self.member[r] && !joined.iter().any(|i| i.name == name(r)) {
                        self.stale_list[r] = true;
                    }
                }
                self.sync.room_list(&joined)
            }
        };
        self.apply(steps);
    }

    fn join(&mut self, room: usize, queue_full: bool) {
        if self.member[room] {
            return;
        }
        self.member[room] = true;
        self.note(|| format!("other device joins r{room} (queue full: {queue_full})"));
        if let Some(conn) = &mut self.conn {
            conn.sub[room] = true;
            conn.ctrl.push_back(Ctrl::Presence {
                room: name(room),
                joined: true,
            });
        }
    }

    fn leave(&mut self, room: usize, queue_full: bool) {
        if room == 0 || !self.member[room] {
            return;
        }
        self.member[room] = false;
        if !self.app.contains_key(&name(room)) {
            // Never shown: nothing from that membership is owed any more.
            self.owed[room].clear();
        }
        self.note(|| format!("other device leaves r{room} (queue full: {queue_full})"));
        if let Some(conn) = &mut self.conn {
            conn.ctrl.push_back(Ctrl::Presence {
                room: name(room),
                joined: false,
            });
            conn.sub[room] = false;
            conn.lag[room] = false;
        }
    }

    fn connect(&mut self) {
        if self.conn.is_some() {
            return;
        }
        self.note(|| "connect + login".into());
        // Subscribed at login, before anything else is read.
        let mut conn = Conn {
            sub: self.member,
            ..Conn::default()
        };
        self.sync.logged_in();
        conn.reqs.push_back(Req::ListRooms);
        self.conn = Some(conn);
    }

    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            self.note(|| "disconnect".into());
        }
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Commit {
                room,
                gap,
                lag,
                lag_at,
            } => self.commit(usize::from(room) % ROOMS, gap, lag, lag_at),
            Op::Read => self.read(false),
            Op::ReadTwice => self.read(true),
            Op::Handle => self.handle(),
            Op::Bulk(i) => self.bulk(i),
            Op::Join { room, queue_full } => self.join(usize::from(room) % ROOMS, queue_full),
            Op::Leave { room, queue_full } => self.leave(usize::from(room) % ROOMS, queue_full),
            Op::Disconnect => self.disconnect(),
            Op::Connect => self.connect(),
        }
    }

    /// Connected, with every frame read, request handled and reply read.
    fn settle(&mut self) {
        self.note(|| "-- settle --".into());
        self.connect();
        for _ in 0..100_000 {
            let conn = self.conn.as_ref().expect("connected");
            if !conn.ctrl.is_empty() {
                self.read(false);
            } else if !conn.reqs.is_empty() {
                self.handle();
            } else if !conn.bulk.is_empty() {
                self.bulk(0);
            } else {
                return;
            }
        }
        self.fail("the session never settles".into());
    }

    fn check_nothing_lost(&self) {
        for r in 0..ROOMS {
            if self.lag_ignored[r] && allowed("lagged-unknown")
                || self.stale_list[r] && allowed("stale-rooms")
            {
                continue;
            }
            if let Some(&seq) = self.owed[r].iter().next() {
                let shown = self.app.get(&name(r));
                self.fail(format!(
                    "r{r} seq {seq} (committed while a member) never delivered; \
                     member now: {}, application shows the room: {}",
                    self.member[r],
                    shown.map_or("no".to_string(), |s| format!("up to {s}"))
                ));
            }
        }
    }
}

/// Whether a known failure is to be let through (CONFAB_FUZZ_ALLOW, a
/// comma-separated list), so that fuzzing can look past it.
fn allowed(check: &str) -> bool {
    static ALLOW: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALLOW
        .get_or_init(|| {
            std::env::var("CONFAB_FUZZ_ALLOW")
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect()
        })
        .iter()
        .any(|a| a == check)
}

/// The relay's answer to `History` (PROTOCOL §11), at most `cap` messages.
fn history(store: &[Message], page: Page, limit: u16, cap: usize) -> (Vec<Message>, bool) {
    let n = usize::from(limit).min(cap);
    match page {
        Page::Latest => {
            let from = store.len().saturating_sub(n);
            (store[from..].to_vec(), from > 0)
        }
        Page::Before(s) => {
            let end = store.partition_point(|m| m.seq < s);
            let from = end.saturating_sub(n);
            (store[from..end].to_vec(), from > 0)
        }
        Page::After(s) => {
            let from = store.partition_point(|m| m.seq <= s);
            let end = (from + n).min(store.len());
            (store[from..end].to_vec(), end < store.len())
        }
    }
}

fn short(step: &Step) -> String {
    match step {
        Step::Deliver(m) => format!("Deliver {}#{}", m.room, m.seq),
        Step::Joined { room, recent, more } => format!(
            "Joined {room} recent {:?} more {more}",
            recent.iter().map(|m| m.seq).collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

fn short_ctrl(c: &Ctrl) -> String {
    match c {
        Ctrl::Message(m) => format!("Message {}#{}", m.room, m.seq),
        other => format!("{other:?}"),
    }
}

fn short_bulk(b: &Bulk) -> String {
    match b {
        Bulk::Page {
            room,
            page,
            messages,
            more,
            ..
        } => format!(
            "HistoryPage {room} {page:?} {:?} more {more}",
            messages.iter().map(|m| m.seq).collect::<Vec<_>>()
        ),
        Bulk::Rooms(r) => format!(
            "Rooms {:?}",
            r.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()
        ),
    }
}

fuzz_target!(|input: Input| {
    let mut model = Model::new(input.page_cap);
    for op in input.ops.iter().take(400) {
        model.run(*op);
    }
    model.settle();
    model.check_nothing_lost();
});
