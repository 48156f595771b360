//! `relay::hub::Hub` driven by arbitrary sequences of what sessions, their
//! writers and the fan-out task do, against a model of subscriptions,
//! epochs, lag marks and of every session's outgoing stream.
//!
//! Queues are drained the way `write_loop` in relay/src/conn.rs does: a
//! batch taken off the queue, then `Lags::take` on it, which slots in the
//! held own-membership frames. A `Drain` may stop between the two (`split`)
//! so that the hub can act while the writer holds a batch, as it can when
//! they run on different threads.
//!
//! The model keeps, per session, the stream the writer must send: each
//! frame tagged as on the queue, taken into the writer's batch, or held by
//! the hub. A frame goes to the end of the stream when offered:
//! - a live message, to a session subscribed and not lagging in its room:
//!   queued if the queue has room, else the session is marked lagged from
//!   that seq and the message is not sent;
//! - a change of the session's own user's membership (`joined`, and `left`
//!   of a room the session is subscribed to; a session not subscribed never
//!   knew the room): never dropped, queued if the queue has room and
//!   nothing is held, else held;
//! - anything else (other users' joins and leaves, online/offline, the
//!   shutdown broadcast): queued if the queue has room, else dropped.
//!
//! Checked, besides no panic:
//! - `subscribe_all` succeeds exactly when the epoch is current, and
//!   `attach` returns the current epoch;
//! - `is_subscribed`, `is_online` and `sessions` agree with the model;
//! - after every operation each queue holds exactly the frames the model
//!   has on it (so nothing is queued that should not be, and nothing
//!   dropped that had room), and no held frame waits behind an empty queue,
//!   where no batch would ever bring it out;
//! - every batch the writer sends is exactly the next part of the model's
//!   stream: so each own membership change reaches every session that
//!   should hear it exactly once, in order among the frames queued around
//!   it, and at the end (every queue drained, detached ones included)
//!   nothing is left held;
//! - `Lags::next` (polled without blocking) returns exactly the marks not
//!   yet told, with the seq of the first message not sent.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use bytes::Bytes;
use common::codec;
use common::frame::{Message, Presence, PresenceKind, Seq, ServerFrame};
use libfuzzer_sys::fuzz_target;
use relay::hub::{Hub, Outbox};
use tokio::sync::mpsc;

const SESSIONS: usize = 5;
const USERS: usize = 3;
const ROOMS: usize = 3;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Attach {
        sid: u8,
        user: u8,
        depth: u8,
    },
    /// With `current`, the epoch the model holds now; else the one
    /// `attach` returned (stale if membership changed since).
    SubscribeAll {
        sid: u8,
        rooms: u8,
        current: bool,
    },
    AnnounceOnline {
        sid: u8,
    },
    Subscribe {
        sid: u8,
        room: u8,
    },
    Detach {
        sid: u8,
    },
    Joined {
        user: u8,
        room: u8,
    },
    Left {
        user: u8,
        room: u8,
    },
    Publish {
        room: u8,
        gap: u8,
    },
    Broadcast,
    /// The writer takes up to `n` frames off the queue and then calls
    /// `Lags::take` on them; with `split` it stops in between, and the next
    /// `Drain` of the session (or the end) finishes that batch.
    Drain {
        sid: u8,
        n: u8,
        split: bool,
    },
    PollLags {
        sid: u8,
    },
    Resubscribed {
        sid: u8,
        room: u8,
    },
    IsSubscribed {
        sid: u8,
        room: u8,
    },
}

/// A frame of a session's stream, as the model names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Message { room: usize, seq: Seq },
    Joined { room: usize, user: usize },
    Left { room: usize, user: usize },
    Online { user: usize },
    Offline { user: usize },
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Queued,
    /// Taken off the queue into the writer's batch, `Lags::take` not yet
    /// called on it.
    Taken,
    Held,
}

struct Session {
    user: usize,
    outbox: Arc<Outbox>,
    rx: mpsc::Receiver<Bytes>,
    depth: usize,
    attach_epoch: u64,
    subs: [bool; ROOMS],
    /// What the writer has still to send, in order.
    stream: VecDeque<(Frame, Where)>,
    /// The writer's batch between taking it off the queue and `Lags::take`.
    batch: Vec<Bytes>,
    /// Lag marks: room → (from, told).
    marks: HashMap<usize, (Seq, bool)>,
}

impl Session {
    fn count(&self, w: Where) -> usize {
        self.stream.iter().filter(|(_, x)| *x == w).count()
    }

    fn has_room(&self) -> bool {
        self.count(Where::Queued) < self.depth
    }

    /// A best-effort frame: lost when the queue is full.
    fn offer(&mut self, frame: Frame) {
        if self.has_room() {
            self.stream.push_back((frame, Where::Queued));
        }
    }

    /// A change of the session's own user's membership: never lost, and
    /// held while anything else is, so that it keeps its order.
    fn offer_own(&mut self, frame: Frame) {
        let w = if self.count(Where::Held) == 0 && self.has_room() {
            Where::Queued
        } else {
            Where::Held
        };
        self.stream.push_back((frame, w));
    }
}

struct Model {
    hub: Hub,
    sessions: [Option<Session>; SESSIONS],
    /// Detached sessions: they get nothing more, but their writers still
    /// send what was queued and held.
    gone: Vec<Session>,
    epochs: [u64; USERS],
    seq: [Seq; ROOMS],
    next_id: u64,
    ids: [u64; SESSIONS],
}

fn user(u: usize) -> String {
    format!("u{u}")
}

fn room(r: usize) -> String {
    format!("r{r}")
}

fn index(name: &str) -> usize {
    name[1..].parse().expect("a model name")
}

fn model_frame(bytes: &Bytes) -> Frame {
    let frame: ServerFrame = codec::decode(&bytes[4..]).expect("the hub encodes frames");
    match frame {
        ServerFrame::Message(m) => Frame::Message {
            room: index(&m.room),
            seq: m.seq,
        },
        ServerFrame::Presence(Presence {
            room,
            user: u,
            kind,
        }) => {
            let u = index(&u);
            match (kind, room) {
                (PresenceKind::Joined, Some(r)) => Frame::Joined {
                    room: index(&r),
                    user: u,
                },
                (PresenceKind::Left, Some(r)) => Frame::Left {
                    room: index(&r),
                    user: u,
                },
                (PresenceKind::Online, None) => Frame::Online { user: u },
                (PresenceKind::Offline, None) => Frame::Offline { user: u },
                (kind, room) => panic!("presence {kind:?} with room {room:?}"),
            }
        }
        ServerFrame::Shutdown { .. } => Frame::Shutdown,
        other => panic!("unexpected frame in a session queue: {other:?}"),
    }
}

/// Polls `Lags::next` once: the frames it has now, or none.
fn poll_lags(outbox: &Outbox) -> Vec<ServerFrame> {
    let fut = outbox.lags.next();
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(frames) => {
            assert!(!frames.is_empty(), "Lags::next returned nothing");
            frames
        }
        Poll::Pending => Vec::new(),
    }
}

impl Model {
    fn new() -> Model {
        Model {
            hub: Hub::default(),
            sessions: Default::default(),
            gone: Vec::new(),
            epochs: [0; USERS],
            seq: [0; ROOMS],
            next_id: 1,
            ids: [0; SESSIONS],
        }
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Attach {
                sid,
                user: u,
                depth,
            } => {
                let s = usize::from(sid) % SESSIONS;
                if self.sessions[s].is_some() {
                    return;
                }
                let u = usize::from(u) % USERS;
                let depth = usize::from(depth % 3) + 1;
                // Session ids are never reused, as in the relay.
                let id = self.next_id;
                self.next_id += 1;
                self.ids[s] = id;
                let (outbox, rx) = Outbox::new(id, user(u), depth);
                assert_eq!(rx.max_capacity(), depth);
                let epoch = self.hub.attach(outbox.clone());
                assert_eq!(epoch, self.epochs[u], "attach returned a stale epoch");
                self.sessions[s] = Some(Session {
                    user: u,
                    outbox,
                    rx,
                    depth,
                    attach_epoch: epoch,
                    subs: [false; ROOMS],
                    stream: VecDeque::new(),
                    batch: Vec::new(),
                    marks: HashMap::new(),
                });
            }
            Op::SubscribeAll {
                sid,
                rooms,
                current,
            } => {
                let s = usize::from(sid) % SESSIONS;
                let names: Vec<String> = (0..ROOMS)
                    .filter(|r| rooms & (1 << r) != 0)
                    .map(room)
                    .collect();
                let Some(sess) = &mut self.sessions[s] else {
                    let ghost = self.next_id + 1000;
                    assert_eq!(self.hub.subscribe_all(ghost, &names, 0), Ok(()));
                    return;
                };
                let now = self.epochs[sess.user];
                let epoch = if current { now } else { sess.attach_epoch };
                let got = self.hub.subscribe_all(self.ids[s], &names, epoch);
                if epoch == now {
                    assert_eq!(got, Ok(()), "subscribe_all refused a current epoch");
                    for r in 0..ROOMS {
                        if rooms & (1 << r) != 0 {
                            sess.subs[r] = true;
                        }
                    }
                } else {
                    assert_eq!(got, Err(now), "subscribe_all accepted a stale epoch");
                }
            }
            Op::AnnounceOnline { sid } => {
                let s = usize::from(sid) % SESSIONS;
                self.hub.announce_online(self.ids[s]);
                let Some(u) = self.sessions[s].as_ref().map(|x| x.user) else {
                    return;
                };
                if self
                    .sessions
                    .iter()
                    .flatten()
                    .filter(|x| x.user == u)
                    .count()
                    == 1
                {
                    for p in self.peers(u) {
                        self.live(p).offer(Frame::Online { user: u });
                    }
                }
            }
            Op::Subscribe { sid, room: r } => {
                let s = usize::from(sid) % SESSIONS;
                let r = usize::from(r) % ROOMS;
                self.hub.subscribe(self.ids[s], &room(r));
                if let Some(sess) = &mut self.sessions[s] {
                    sess.subs[r] = true;
                }
            }
            Op::Detach { sid } => {
                let s = usize::from(sid) % SESSIONS;
                self.hub.detach(self.ids[s]);
                let Some(u) = self.sessions[s].as_ref().map(|x| x.user) else {
                    return;
                };
                if self
                    .sessions
                    .iter()
                    .flatten()
                    .filter(|x| x.user == u)
                    .count()
                    == 1
                {
                    for p in self.peers(u) {
                        self.live(p).offer(Frame::Offline { user: u });
                    }
                }
                let sess = self.sessions[s].take().expect("attached");
                self.gone.push(sess);
            }
            Op::Joined { user: u, room: r } => {
                let (u, r) = (usize::from(u) % USERS, usize::from(r) % ROOMS);
                self.hub.joined(&user(u), &room(r));
                self.epochs[u] += 1;
                for sess in self.sessions.iter_mut().flatten() {
                    if sess.user == u {
                        sess.subs[r] = true;
                    }
                }
                self.membership(Frame::Joined { room: r, user: u });
            }
            Op::Left { user: u, room: r } => {
                let (u, r) = (usize::from(u) % USERS, usize::from(r) % ROOMS);
                self.hub.left(&user(u), &room(r));
                self.epochs[u] += 1;
                self.membership(Frame::Left { room: r, user: u });
                for sess in self.sessions.iter_mut().flatten() {
                    if sess.user == u {
                        sess.subs[r] = false;
                        sess.marks.remove(&r);
                    }
                }
            }
            Op::Publish { room: r, gap } => self.publish(usize::from(r) % ROOMS, gap),
            Op::Broadcast => {
                self.hub.broadcast(&ServerFrame::Shutdown {
                    reason: "fuzz".into(),
                });
                for sess in self.sessions.iter_mut().flatten() {
                    sess.offer(Frame::Shutdown);
                }
            }
            Op::Drain { sid, n, split } => {
                let s = usize::from(sid) % SESSIONS;
                if let Some(sess) = &mut self.sessions[s] {
                    if sess.batch.is_empty() {
                        recv(sess, usize::from(n % 4) + 1);
                        if !split {
                            take(sess);
                        }
                    } else {
                        take(sess);
                    }
                }
            }
            Op::PollLags { sid } => {
                let s = usize::from(sid) % SESSIONS;
                if let Some(sess) = &mut self.sessions[s] {
                    check_lags(sess);
                }
            }
            Op::Resubscribed { sid, room: r } => {
                let s = usize::from(sid) % SESSIONS;
                let r = usize::from(r) % ROOMS;
                if let Some(sess) = &mut self.sessions[s] {
                    sess.outbox.lags.resubscribed(&room(r));
                    sess.marks.remove(&r);
                }
            }
            Op::IsSubscribed { sid, room: r } => {
                let s = usize::from(sid) % SESSIONS;
                let r = usize::from(r) % ROOMS;
                let want = self.sessions[s].as_ref().is_some_and(|x| x.subs[r]);
                assert_eq!(
                    self.hub.is_subscribed(self.ids[s], &room(r)),
                    want,
                    "is_subscribed(session {s}, r{r})"
                );
            }
        }
        self.check_queues(op);
    }

    fn live(&mut self, s: usize) -> &mut Session {
        self.sessions[s].as_mut().expect("attached")
    }

    /// Attached sessions of other users sharing a subscribed room with one
    /// of `u`'s sessions.
    fn peers(&self, u: usize) -> Vec<usize> {
        let own: Vec<&Session> = self
            .sessions
            .iter()
            .flatten()
            .filter(|x| x.user == u)
            .collect();
        (0..SESSIONS)
            .filter(|&p| {
                self.sessions[p].as_ref().is_some_and(|x| {
                    x.user != u
                        && own
                            .iter()
                            .any(|o| (0..ROOMS).any(|r| o.subs[r] && x.subs[r]))
                })
            })
            .collect()
    }

    /// A join or leave goes to the room's sessions, subscribed as of now.
    fn membership(&mut self, frame: Frame) {
        let (Frame::Joined { room: r, user: u } | Frame::Left { room: r, user: u }) = frame else {
            unreachable!("membership frames only");
        };
        for sess in self.sessions.iter_mut().flatten() {
            if !sess.subs[r] {
                continue;
            }
            if sess.user == u {
                sess.offer_own(frame.clone());
            } else {
                sess.offer(frame.clone());
            }
        }
    }

    fn publish(&mut self, r: usize, gap: u8) {
        self.seq[r] += 1 + u64::from(gap % 3);
        let seq = self.seq[r];
        self.hub.publish(&Message {
            room: room(r),
            seq,
            id: [0; 16],
            ts: 0,
            from: "x".into(),
            body: "b".into(),
        });
        for sess in self.sessions.iter_mut().flatten() {
            if !sess.subs[r] || sess.marks.contains_key(&r) {
                continue;
            }
            if sess.has_room() {
                sess.stream
                    .push_back((Frame::Message { room: r, seq }, Where::Queued));
            } else {
                sess.marks.insert(r, (seq, false));
            }
        }
    }

    /// Every queue holds what the model has on it, and nothing is held
    /// behind a queue the writer has emptied: with nothing to take off the
    /// queue, it never calls `Lags::take` again.
    fn check_queues(&self, op: Op) {
        let live = self
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(s, x)| Some((s, x.as_ref()?)));
        let gone = self.gone.iter().map(|x| (usize::MAX, x));
        for (s, sess) in live.chain(gone) {
            let who = if s == usize::MAX {
                "a detached session".to_string()
            } else {
                format!("session {s}")
            };
            let queued = sess.count(Where::Queued);
            assert_eq!(
                sess.rx.len(),
                queued,
                "after {op:?}: {who} has {} frames queued, the model {queued}: {:?}",
                sess.rx.len(),
                sess.stream
            );
            if queued == 0 && sess.batch.is_empty() {
                assert_eq!(
                    sess.count(Where::Held),
                    0,
                    "after {op:?}: {who} has frames held behind an empty queue: {:?}",
                    sess.stream
                );
            }
        }
    }

    fn finish(&mut self) {
        for (s, slot) in self.sessions.iter_mut().enumerate() {
            for r in 0..ROOMS {
                let want = slot.as_ref().is_some_and(|x| x.subs[r]);
                assert_eq!(self.hub.is_subscribed(self.ids[s], &room(r)), want);
            }
            if let Some(sess) = slot {
                check_lags(sess);
            }
        }
        for u in 0..USERS {
            let online = self.sessions.iter().flatten().any(|s| s.user == u);
            assert_eq!(self.hub.is_online(&user(u)), online, "is_online(u{u})");
        }
        assert_eq!(
            self.hub.sessions(),
            self.sessions.iter().flatten().count(),
            "session count"
        );
        let all = self
            .sessions
            .iter_mut()
            .flatten()
            .chain(self.gone.iter_mut());
        for sess in all {
            if !sess.batch.is_empty() {
                take(sess);
            }
            while !sess.rx.is_empty() {
                recv(sess, usize::MAX);
                take(sess);
            }
            assert!(
                sess.stream.is_empty(),
                "u{}: frames never sent with the queue drained: {:?}",
                sess.user,
                sess.stream
            );
        }
    }
}

/// The writer's `recv_many`: up to `n` frames off the queue into its batch.
fn recv(sess: &mut Session, n: usize) {
    while sess.batch.len() < n {
        let Ok(bytes) = sess.rx.try_recv() else {
            break;
        };
        let at = sess
            .stream
            .iter()
            .position(|(_, w)| *w == Where::Queued)
            .expect("the model has the frame on the queue");
        sess.stream[at].1 = Where::Taken;
        sess.batch.push(bytes);
    }
}

/// The writer's `Lags::take` and send of its batch: it must be the stream
/// up to the last frame taken off the queue and the held frames right after
/// it.
fn take(sess: &mut Session) {
    // The writer only calls `take` once `recv_many` returned frames.
    if sess.batch.is_empty() {
        return;
    }
    let mut batch = std::mem::take(&mut sess.batch);
    let taken = batch.len();
    sess.outbox.lags.take(&mut batch);
    let got: Vec<Frame> = batch.iter().map(model_frame).collect();
    let mut want = Vec::new();
    let mut left = taken;
    while left > 0 {
        let (frame, w) = sess
            .stream
            .pop_front()
            .expect("frames taken are in the stream");
        assert_ne!(
            w,
            Where::Queued,
            "a frame still on the queue came before one taken"
        );
        left -= usize::from(w == Where::Taken);
        want.push(frame);
    }
    while let Some((_, Where::Held)) = sess.stream.front() {
        want.push(sess.stream.pop_front().expect("front").0);
    }
    assert_eq!(
        got, want,
        "u{}: the writer's batch of {taken} vs the model's stream",
        sess.user
    );
}

fn check_lags(sess: &mut Session) {
    let mut got: Vec<(usize, Seq)> = poll_lags(&sess.outbox)
        .into_iter()
        .map(|f| match f {
            ServerFrame::Lagged { room, from } => (index(&room), from),
            other => panic!("Lags::next returned {other:?}"),
        })
        .collect();
    got.sort_unstable();
    let mut want: Vec<(usize, Seq)> = sess
        .marks
        .iter()
        .filter(|(_, (_, told))| !told)
        .map(|(r, (from, _))| (*r, *from))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want, "Lagged frames vs the lag marks not yet told");
    for mark in sess.marks.values_mut() {
        mark.1 = true;
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut model = Model::new();
    for op in ops.into_iter().take(500) {
        model.run(op);
    }
    model.finish();
});
