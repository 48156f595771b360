//! `relay::hub::Hub` driven by arbitrary sequences of what sessions and the
//! fan-out task do, against a model of subscriptions, epochs and lag marks.
//!
//! Checked after each operation, besides no panic:
//! - `subscribe_all` succeeds exactly when the epoch is current, and
//!   `attach` returns the current epoch;
//! - `is_subscribed`, `is_online` and `sessions` agree with the model;
//! - `publish`: every session subscribed to the room and not lagging in it
//!   gets the message queued if its queue had room, and is marked lagged
//!   from that seq if not; no other session's queue changes;
//! - `Lags::next` (polled without blocking) returns exactly the marks not
//!   yet told, with the seq of the first message not sent;
//! - each queue yields the queued messages in publish order (per room, in
//!   increasing seq), every one exactly once; a detached session's queue
//!   gets nothing more.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use bytes::Bytes;
use common::codec;
use common::frame::{Message, Seq, ServerFrame};
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
    Drain {
        sid: u8,
        n: u8,
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

struct Session {
    user: usize,
    outbox: Arc<Outbox>,
    rx: mpsc::Receiver<Bytes>,
    depth: usize,
    attach_epoch: u64,
    subs: [bool; ROOMS],
    /// Messages queued for it, oldest first: (room, seq).
    expect: VecDeque<(usize, Seq)>,
    /// Lag marks: room → (from, told).
    marks: HashMap<usize, (Seq, bool)>,
}

struct Model {
    hub: Hub,
    sessions: [Option<Session>; SESSIONS],
    /// Receivers of detached sessions, with the frames they held then.
    gone: Vec<(mpsc::Receiver<Bytes>, usize)>,
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

fn room_index(name: &str) -> usize {
    name[1..].parse().expect("a model room")
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
                    expect: VecDeque::new(),
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
                if let Some(sess) = self.sessions[s].take() {
                    let held = sess.rx.len();
                    self.gone.push((sess.rx, held));
                }
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
            }
            Op::Left { user: u, room: r } => {
                let (u, r) = (usize::from(u) % USERS, usize::from(r) % ROOMS);
                self.hub.left(&user(u), &room(r));
                self.epochs[u] += 1;
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
            }
            Op::Drain { sid, n } => {
                let s = usize::from(sid) % SESSIONS;
                if let Some(sess) = &mut self.sessions[s] {
                    drain(sess, usize::from(n % 4) + 1);
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
    }

    fn publish(&mut self, r: usize, gap: u8) {
        self.seq[r] += 1 + u64::from(gap % 3);
        let seq = self.seq[r];
        let before: Vec<Option<usize>> = self
            .sessions
            .iter()
            .map(|s| s.as_ref().map(|s| s.rx.len()))
            .collect();
        self.hub.publish(&Message {
            room: room(r),
            seq,
            id: [0; 16],
            ts: 0,
            from: "x".into(),
            body: "b".into(),
        });
        for (i, sess) in self.sessions.iter_mut().enumerate() {
            let Some(sess) = sess else { continue };
            let before = before[i].expect("same sessions");
            let after = sess.rx.len();
            if !sess.subs[r] || sess.marks.contains_key(&r) {
                assert_eq!(
                    after,
                    before,
                    "session {i} got r{r}#{seq} (subscribed {}, lagging {})",
                    sess.subs[r],
                    sess.marks.contains_key(&r)
                );
            } else if before < sess.depth {
                assert_eq!(
                    after,
                    before + 1,
                    "session {i} had room but r{r}#{seq} was not queued"
                );
                sess.expect.push_back((r, seq));
            } else {
                assert_eq!(after, before);
                sess.marks.insert(r, (seq, false));
            }
        }
        for (rx, held) in &self.gone {
            assert_eq!(rx.len(), *held, "a detached session got a frame");
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
                drain(sess, usize::MAX);
                assert!(
                    sess.expect.is_empty(),
                    "session {s}: queued messages never came out: {:?}",
                    sess.expect
                );
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
        for (rx, held) in &self.gone {
            assert_eq!(rx.len(), *held, "a detached session got a frame");
        }
    }
}

fn drain(sess: &mut Session, n: usize) {
    for _ in 0..n {
        let Ok(bytes) = sess.rx.try_recv() else {
            return;
        };
        let frame: ServerFrame = codec::decode(&bytes[4..]).expect("the hub encodes frames");
        match frame {
            ServerFrame::Message(m) => {
                let got = (room_index(&m.room), m.seq);
                let want = sess.expect.pop_front();
                assert_eq!(Some(got), want, "message out of the queue");
            }
            ServerFrame::Presence(_) | ServerFrame::Shutdown { .. } => {}
            other => panic!("unexpected frame in a session queue: {other:?}"),
        }
    }
}

fn check_lags(sess: &mut Session) {
    let mut got: Vec<(usize, Seq)> = poll_lags(&sess.outbox)
        .into_iter()
        .map(|f| match f {
            ServerFrame::Lagged { room, from } => (room_index(&room), from),
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
