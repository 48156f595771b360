//! Who is online and which sessions hear which rooms; fan-out of committed
//! messages and presence.
//!
//! A session subscribes to every room its user is a member of; the hub is
//! told of membership changes and mirrors them for online sessions. A
//! message is encoded once and the same bytes are queued for every
//! recipient. A session whose queue is full is not waited for: it is marked
//! lagged in that room, gets no more of that room's live messages, and is
//! told where to resume from history (see `Outbox`). Presence is best
//! effort, except a user's own membership changes: their sessions must
//! learn of them to know what to fetch, so with a full queue those are
//! held and slotted into the stream where they would have been queued.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::codec;
use common::frame::{Message, Presence, PresenceKind, Seq, ServerFrame};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

/// Identifies one connection's session.
pub type SessionId = u64;

/// The hub's side of a session: its queue and lag marks.
pub struct Outbox {
    pub id: SessionId,
    pub user: String,
    tx: mpsc::Sender<Bytes>,
    /// Shared with the session's writer, which must not hold `tx` (the
    /// queue closes when the hub and the session drop their outboxes).
    pub lags: Arc<Lags>,
}

impl Outbox {
    /// Creates an outbox and the receiver its writer drains.
    pub fn new(id: SessionId, user: String, depth: usize) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(depth);
        (
            Arc::new(Outbox {
                id,
                user,
                tx,
                lags: Arc::default(),
            }),
            rx,
        )
    }

    /// Queues a reply, waiting for room: replies are never dropped, and a
    /// client that does not read only slows its own requests.
    pub async fn reply(&self, frame: &ServerFrame) -> bool {
        let Ok(permit) = self.tx.reserve().await else {
            return false;
        };
        let mut held = self.lags.held.lock().expect("held lock");
        permit.send(codec::encode(frame));
        held.queued += 1;
        true
    }

    /// Puts a frame on the queue if it has room, counting it so held
    /// frames can be placed after it.
    fn try_queue(&self, frame: &Bytes) -> bool {
        let mut held = self.lags.held.lock().expect("held lock");
        let ok = self.tx.try_send(frame.clone()).is_ok();
        held.queued += u64::from(ok);
        ok
    }

    /// Queues a change of the session's own user's membership, never
    /// losing it: with a full queue (or frames already held, to keep their
    /// order) it is held until the writer reaches its place in the stream.
    fn offer_own(&self, frame: &Bytes) {
        let mut held = self.lags.held.lock().expect("held lock");
        if held.frames.is_empty() && self.tx.try_send(frame.clone()).is_ok() {
            held.queued += 1;
            return;
        }
        if held.frames.len() >= MAX_HELD {
            // Only a client that never reads gets here; it is dropped by
            // its idle timeout long before it could miss anything else.
            tracing::warn!(user = %self.user, "own membership change dropped: the session does not read");
            return;
        }
        let at = held.queued;
        held.frames.push_back((at, frame.clone()));
    }

    /// Queues a live message unless the session lags in its room. Returns
    /// whether it was queued, and whether this made the session lag.
    fn offer_message(&self, room: &str, seq: Seq, frame: &Bytes) -> (bool, bool) {
        let mut marks = self.lags.marks.lock().expect("lag lock");
        if marks.contains_key(room) {
            return (false, false);
        }
        if !self.try_queue(frame) {
            marks.insert(
                room.to_owned(),
                Lag {
                    from: seq,
                    told: false,
                },
            );
            drop(marks);
            self.lags.signal.notify_one();
            return (false, true);
        }
        (true, false)
    }

    /// Queues a frame that may be lost when the queue is full (presence:
    /// the member list answers the same question on demand).
    fn offer(&self, frame: &Bytes) {
        let _ = self.try_queue(frame);
    }
}

/// Own-membership frames held past a full queue; see [`Outbox::offer_own`].
const MAX_HELD: usize = 1024;

/// Rooms in which a session fell behind.
#[derive(Default)]
pub struct Lags {
    marks: Mutex<HashMap<String, Lag>>,
    signal: Notify,
    held: Mutex<Held>,
}

/// Frames that belong at a given place in the queue's stream.
#[derive(Default)]
struct Held {
    /// Frames ever put on the queue.
    queued: u64,
    /// Frames the writer has taken off it.
    taken: u64,
    /// Each with the number of queued frames it goes after, ascending.
    frames: VecDeque<(u64, Bytes)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lag {
    from: Seq,
    told: bool,
}

impl Lags {
    /// Clears the lag mark of a room once the client has resubscribed: from
    /// here it gets live messages again and pages history for the gap.
    pub fn resubscribed(&self, room: &str) {
        self.marks.lock().expect("lag lock").remove(room);
    }

    /// Called by the writer with each batch it took off the queue, in
    /// order: slots held frames into the batch where they belong.
    pub fn take(&self, batch: &mut Vec<Bytes>) {
        let mut held = self.held.lock().expect("held lock");
        let first = held.taken;
        held.taken += batch.len() as u64;
        let mut inserted = 0;
        while let Some(&(at, _)) = held.frames.front() {
            if at > held.taken {
                break;
            }
            let (at, frame) = held.frames.pop_front().expect("front");
            let index = (at.saturating_sub(first) as usize + inserted).min(batch.len());
            batch.insert(index, frame);
            inserted += 1;
        }
    }

    /// Waits until some room lags and returns the `Lagged` frames not yet
    /// sent. The writer sends them past the full queue.
    pub async fn next(&self) -> Vec<ServerFrame> {
        loop {
            let notified = self.signal.notified();
            let frames: Vec<_> = {
                let mut marks = self.marks.lock().expect("lag lock");
                marks
                    .iter_mut()
                    .filter(|(_, l)| !l.told)
                    .map(|(room, l)| {
                        l.told = true;
                        ServerFrame::Lagged {
                            room: room.clone(),
                            from: l.from,
                        }
                    })
                    .collect()
            };
            if !frames.is_empty() {
                return frames;
            }
            notified.await;
        }
    }
}

/// What one relay tells the others when relays share a cluster store:
/// membership changes (so other relays subscribe their sessions of that
/// user) and who is online on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubEvent {
    Joined {
        user: String,
        room: String,
    },
    Left {
        user: String,
        room: String,
    },
    /// The user's first session on this relay, with their rooms.
    Online {
        user: String,
        rooms: Vec<String>,
    },
    /// The user's last session on this relay went.
    Offline {
        user: String,
        rooms: Vec<String>,
    },
}

/// Online sessions and their room subscriptions.
#[derive(Default)]
pub struct Hub {
    // A std mutex: every critical section is short and never awaits, and
    // fan-out only does `try_send`s under it.
    state: Mutex<State>,
    /// Where this relay's events go to reach the other relays, if any.
    events: std::sync::OnceLock<mpsc::UnboundedSender<HubEvent>>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Arc<Outbox>>,
    by_user: HashMap<String, HashSet<SessionId>>,
    rooms: HashMap<String, HashSet<SessionId>>,
    subs: HashMap<SessionId, HashSet<String>>,
    /// Bumped on every membership change of a user, so a login that read
    /// the user's rooms from the store can tell whether they went stale.
    epochs: HashMap<String, u64>,
    /// Users online on other relays, with on how many.
    remote: HashMap<String, usize>,
}

impl State {
    fn user_sessions(&self, user: &str) -> impl Iterator<Item = &Arc<Outbox>> {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
    }

    fn room_sessions(&self, room: &str) -> impl Iterator<Item = &Arc<Outbox>> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
    }

    fn subscribe(&mut self, id: SessionId, room: &str) {
        self.rooms.entry(room.to_owned()).or_default().insert(id);
        self.subs.entry(id).or_default().insert(room.to_owned());
    }

    fn unsubscribe(&mut self, id: SessionId, room: &str) {
        if let Some(set) = self.rooms.get_mut(room) {
            set.remove(&id);
            if set.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(set) = self.subs.get_mut(&id) {
            set.remove(room);
        }
    }

    /// Sessions of other users that share a room with `user`.
    fn peers(&self, user: &str) -> HashSet<SessionId> {
        let mut peers = HashSet::new();
        for own in self.by_user.get(user).into_iter().flatten() {
            for room in self.subs.get(own).into_iter().flatten() {
                peers.extend(self.rooms.get(room).into_iter().flatten().copied());
            }
        }
        peers.retain(|id| self.sessions.get(id).is_some_and(|s| s.user != user));
        peers
    }

    /// Tells a room's sessions that `user` joined or left it; the user's
    /// own sessions are told even past a full queue.
    fn membership_to(&self, room: &str, user: &str, kind: PresenceKind) {
        let frame = codec::encode(&ServerFrame::Presence(Presence {
            room: Some(room.to_owned()),
            user: user.to_owned(),
            kind,
        }));
        for s in self.room_sessions(room) {
            if s.user == user {
                s.offer_own(&frame);
            } else {
                s.offer(&frame);
            }
        }
    }

    fn presence_to(&self, ids: impl IntoIterator<Item = SessionId>, p: Presence) {
        let frame = codec::encode(&ServerFrame::Presence(p));
        for id in ids {
            if let Some(s) = self.sessions.get(&id) {
                s.offer(&frame);
            }
        }
    }
}

impl Hub {
    /// Sends this hub's membership and online changes to `events` from now
    /// on (the cluster link forwards them). Only the first call counts.
    pub fn set_events(&self, events: mpsc::UnboundedSender<HubEvent>) {
        let _ = self.events.set(events);
    }

    fn emit(&self, event: HubEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    /// Registers a logged-in session, not yet subscribed to anything, so
    /// that membership changes from now on reach it. Returns the user's
    /// membership epoch for [`Hub::subscribe_all`].
    pub fn attach(&self, outbox: Arc<Outbox>) -> u64 {
        let mut st = self.state.lock().expect("hub lock");
        let (id, user) = (outbox.id, outbox.user.clone());
        st.sessions.insert(id, outbox);
        st.by_user.entry(user.clone()).or_default().insert(id);
        st.subs.entry(id).or_default();
        st.epochs.get(&user).copied().unwrap_or(0)
    }

    /// Subscribes a session to the rooms its user was in at `epoch`. Fails
    /// (subscribing nothing) when the membership changed since: read the
    /// rooms again and retry.
    pub fn subscribe_all(&self, id: SessionId, rooms: &[String], epoch: u64) -> Result<(), u64> {
        let mut st = self.state.lock().expect("hub lock");
        let Some(user) = st.sessions.get(&id).map(|s| s.user.clone()) else {
            return Ok(());
        };
        let now = st.epochs.get(&user).copied().unwrap_or(0);
        if now != epoch {
            return Err(now);
        }
        for room in rooms {
            st.subscribe(id, room);
        }
        Ok(())
    }

    /// Announces a user online to everyone sharing a room, if this session
    /// is their only one here and they are not online on another relay.
    pub fn announce_online(&self, id: SessionId) {
        let st = self.state.lock().expect("hub lock");
        let Some(user) = st.sessions.get(&id).map(|s| s.user.clone()) else {
            return;
        };
        if st.by_user.get(&user).is_none_or(|s| s.len() != 1) {
            return;
        }
        if !st.remote.contains_key(&user) {
            let peers = st.peers(&user);
            st.presence_to(
                peers,
                Presence {
                    room: None,
                    user: user.clone(),
                    kind: PresenceKind::Online,
                },
            );
        }
        let rooms = st.subs.get(&id).into_iter().flatten().cloned().collect();
        drop(st);
        self.emit(HubEvent::Online { user, rooms });
    }

    /// Subscribes one session to a room its user is a member of.
    pub fn subscribe(&self, id: SessionId, room: &str) {
        let mut st = self.state.lock().expect("hub lock");
        if st.sessions.contains_key(&id) {
            st.subscribe(id, room);
        }
    }

    /// Removes a session. The user's last session announces them offline,
    /// unless they are online on another relay.
    pub fn detach(&self, id: SessionId) {
        let mut st = self.state.lock().expect("hub lock");
        let Some(outbox) = st.sessions.get(&id).cloned() else {
            return;
        };
        let user = outbox.user.clone();
        let last = st.by_user.get(&user).is_none_or(|s| s.len() <= 1);
        // Peers are computed while the session still holds its rooms.
        let peers = if last && !st.remote.contains_key(&user) {
            st.peers(&user)
        } else {
            HashSet::new()
        };
        let rooms = st.subs.remove(&id).unwrap_or_default();
        for room in &rooms {
            st.unsubscribe(id, room);
        }
        st.sessions.remove(&id);
        if let Some(set) = st.by_user.get_mut(&user) {
            set.remove(&id);
            if set.is_empty() {
                st.by_user.remove(&user);
            }
        }
        if !peers.is_empty() {
            st.presence_to(
                peers,
                Presence {
                    room: None,
                    user: user.clone(),
                    kind: PresenceKind::Offline,
                },
            );
        }
        drop(st);
        if last {
            let rooms = rooms.into_iter().collect();
            self.emit(HubEvent::Offline { user, rooms });
        }
    }

    /// Applies another relay's event to this relay's sessions.
    pub fn apply_remote(&self, event: HubEvent) {
        match event {
            HubEvent::Joined { user, room } => self.change_membership(&user, &room, true),
            HubEvent::Left { user, room } => self.change_membership(&user, &room, false),
            HubEvent::Online { user, rooms } => self.remote_presence(&user, &rooms, true),
            HubEvent::Offline { user, rooms } => self.remote_presence(&user, &rooms, false),
        }
    }

    /// Counts a user online or offline on another relay; the first such
    /// relay (or the last to go) is news to local sessions sharing a room,
    /// unless the user has sessions here too.
    fn remote_presence(&self, user: &str, rooms: &[String], online: bool) {
        let mut st = self.state.lock().expect("hub lock");
        let count = st.remote.entry(user.to_owned()).or_default();
        let news = if online {
            *count += 1;
            *count == 1
        } else {
            *count = count.saturating_sub(1);
            *count == 0
        };
        if *count == 0 {
            st.remote.remove(user);
        }
        if !news || st.by_user.contains_key(user) {
            return;
        }
        let ids: HashSet<SessionId> = rooms
            .iter()
            .flat_map(|r| st.room_sessions(r).map(|s| s.id))
            .collect();
        st.presence_to(
            ids,
            Presence {
                room: None,
                user: user.to_owned(),
                kind: if online {
                    PresenceKind::Online
                } else {
                    PresenceKind::Offline
                },
            },
        );
    }

    /// Brings a user's subscriptions here in line with their rooms in the
    /// store, as if told of every change: for when changes made on other
    /// relays may have been missed (the link to them was down).
    pub fn resync(&self, user: &str, rooms: &[String]) {
        let now: HashSet<String> = {
            let st = self.state.lock().expect("hub lock");
            let Some(first) = st.by_user.get(user).and_then(|ids| ids.iter().next()) else {
                return;
            };
            st.subs.get(first).cloned().unwrap_or_default()
        };
        let want: HashSet<&String> = rooms.iter().collect();
        for room in rooms.iter().filter(|r| !now.contains(*r)) {
            self.change_membership(user, room, true);
        }
        for room in now.iter().filter(|r| !want.contains(r)) {
            self.change_membership(user, room, false);
        }
    }

    /// Forgets who is online on other relays (the link to them was lost;
    /// they are told again once it is back).
    pub fn forget_remote(&self) {
        self.state.lock().expect("hub lock").remote.clear();
    }

    /// `user` became a member of `room`: subscribes their sessions and
    /// tells the room (the user's own sessions included).
    pub fn joined(&self, user: &str, room: &str) {
        self.change_membership(user, room, true);
        self.emit(HubEvent::Joined {
            user: user.to_owned(),
            room: room.to_owned(),
        });
    }

    /// `user` left `room`: tells the room, then unsubscribes their sessions.
    pub fn left(&self, user: &str, room: &str) {
        self.change_membership(user, room, false);
        self.emit(HubEvent::Left {
            user: user.to_owned(),
            room: room.to_owned(),
        });
    }

    fn change_membership(&self, user: &str, room: &str, joined: bool) {
        let mut st = self.state.lock().expect("hub lock");
        *st.epochs.entry(user.to_owned()).or_default() += 1;
        if joined {
            let own: Vec<SessionId> = st.user_sessions(user).map(|s| s.id).collect();
            for id in own {
                st.subscribe(id, room);
            }
            st.membership_to(room, user, PresenceKind::Joined);
        } else {
            st.membership_to(room, user, PresenceKind::Left);
            let own: Vec<Arc<Outbox>> = st.user_sessions(user).cloned().collect();
            for session in own {
                st.unsubscribe(session.id, room);
                // A lag in a room left behind must not outlive the membership.
                session.lags.resubscribed(room);
            }
        }
    }

    /// Whether the session is subscribed to the room, i.e. its user is a member.
    pub fn is_subscribed(&self, id: SessionId, room: &str) -> bool {
        let st = self.state.lock().expect("hub lock");
        st.subs.get(&id).is_some_and(|r| r.contains(room))
    }

    /// Whether any session of `user` is online, here or on another relay.
    pub fn is_online(&self, user: &str) -> bool {
        let st = self.state.lock().expect("hub lock");
        st.by_user.contains_key(user) || st.remote.contains_key(user)
    }

    /// Users with a session here and the rooms of one of their sessions,
    /// for the roster this relay sends to the others.
    pub fn local_users(&self) -> Vec<(String, Vec<String>)> {
        let st = self.state.lock().expect("hub lock");
        st.by_user
            .iter()
            .map(|(user, ids)| {
                let rooms = ids
                    .iter()
                    .next()
                    .and_then(|id| st.subs.get(id))
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                (user.clone(), rooms)
            })
            .collect()
    }

    /// Number of sessions online.
    pub fn sessions(&self) -> usize {
        self.state.lock().expect("hub lock").sessions.len()
    }

    /// Delivers a committed message to every session in its room. Called by
    /// the one fan-out task, in commit order, so each room's messages reach
    /// every session in sequence order.
    ///
    /// Returns how many sessions it was queued for and how many fell behind.
    pub fn publish(&self, msg: &Message) -> (u64, u64) {
        let frame = codec::encode(&ServerFrame::Message(msg.clone()));
        let st = self.state.lock().expect("hub lock");
        let (mut queued, mut lagged) = (0, 0);
        for s in st.room_sessions(&msg.room) {
            let (q, l) = s.offer_message(&msg.room, msg.seq, &frame);
            queued += u64::from(q);
            lagged += u64::from(l);
        }
        (queued, lagged)
    }

    /// Queues a frame for every session (shutdown notice).
    pub fn broadcast(&self, frame: &ServerFrame) {
        let bytes = codec::encode(frame);
        let st = self.state.lock().expect("hub lock");
        for s in st.sessions.values() {
            s.offer(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(hub: &Hub, outbox: Arc<Outbox>, rooms: &[&str]) {
        let id = outbox.id;
        let epoch = hub.attach(outbox);
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        hub.subscribe_all(id, &rooms, epoch).unwrap();
        hub.announce_online(id);
    }

    #[test]
    fn a_membership_change_during_login_is_not_missed() {
        let hub = Hub::default();
        let (s, _rx) = Outbox::new(1, "alice".into(), 16);
        let epoch = hub.attach(s);
        // The rooms were read from the store here; then another device joins.
        hub.joined("alice", "dev");
        assert!(hub.is_subscribed(1, "dev"), "the attached session hears it");
        assert!(
            hub.subscribe_all(1, &["lobby".to_string()], epoch).is_err(),
            "stale room list refused"
        );
    }

    fn decode(b: Bytes) -> ServerFrame {
        codec::decode(&b[4..]).unwrap()
    }

    fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
        let mut out = vec![];
        while let Ok(b) = rx.try_recv() {
            out.push(decode(b));
        }
        out
    }

    fn msg(room: &str, seq: Seq) -> Message {
        Message {
            room: room.into(),
            seq,
            id: [seq as u8; 16],
            ts: 0,
            from: "a".into(),
            body: "hi".into(),
        }
    }

    #[test]
    fn fanout_reaches_room_members_only_and_presence_flows() {
        let hub = Hub::default();
        let (a, mut ra) = Outbox::new(1, "alice".into(), 16);
        let (b, mut rb) = Outbox::new(2, "bob".into(), 16);
        let (a2, mut ra2) = Outbox::new(3, "alice".into(), 16);
        attach(&hub, a, &["lobby", "dev"]);
        attach(&hub, b, &["lobby"]);
        assert!(
            matches!(
                &drain(&mut ra)[..],
                [ServerFrame::Presence(Presence {
                    kind: PresenceKind::Online,
                    room: None,
                    user,
                })] if user == "bob"
            ),
            "alice hears bob come online"
        );
        attach(&hub, a2, &["lobby", "dev"]);
        assert!(drain(&mut rb).is_empty(), "a second device is not news");

        hub.publish(&msg("dev", 1));
        assert!(matches!(&drain(&mut ra)[..], [ServerFrame::Message(m)] if m.seq == 1));
        assert_eq!(drain(&mut ra2).len(), 1, "every device of the user");
        assert!(drain(&mut rb).is_empty(), "bob is not in dev");

        hub.joined("bob", "dev");
        assert!(hub.is_subscribed(2, "dev"));
        assert!(matches!(
            &drain(&mut ra)[..],
            [ServerFrame::Presence(Presence {
                kind: PresenceKind::Joined,
                room: Some(room),
                user,
            })] if room == "dev" && user == "bob"
        ));
        hub.publish(&msg("dev", 2));
        assert!(drain(&mut rb)
            .iter()
            .any(|f| matches!(f, ServerFrame::Message(_))));

        hub.left("bob", "dev");
        assert!(!hub.is_subscribed(2, "dev"));
        assert!(
            matches!(
                &drain(&mut rb)[..],
                [ServerFrame::Presence(Presence {
                    kind: PresenceKind::Left,
                    ..
                })]
            ),
            "the leaver's own sessions hear it too"
        );
        drain(&mut ra);
        hub.detach(1);
        assert!(drain(&mut rb).is_empty(), "alice still has a device");
        hub.detach(3);
        assert!(matches!(
            &drain(&mut rb)[..],
            [ServerFrame::Presence(Presence {
                kind: PresenceKind::Offline,
                ..
            })]
        ));
        assert!(!hub.is_online("alice"));
    }

    #[tokio::test]
    async fn a_full_queue_lags_that_room_until_resubscribed() {
        let hub = Hub::default();
        let (slow, mut rx) = Outbox::new(1, "slow".into(), 2);
        attach(&hub, slow.clone(), &["lobby"]);
        for seq in 1..=5 {
            hub.publish(&msg("lobby", seq));
        }
        assert_eq!(
            slow.lags.next().await,
            vec![ServerFrame::Lagged {
                room: "lobby".into(),
                from: 3
            }]
        );
        let got: Vec<Seq> = drain(&mut rx)
            .into_iter()
            .filter_map(|f| {
                if let ServerFrame::Message(m) = f {
                    Some(m.seq)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(got, vec![1, 2]);
        hub.publish(&msg("lobby", 6));
        assert!(
            drain(&mut rx).is_empty(),
            "nothing live while lagging: the gap is paged"
        );
        slow.lags.resubscribed("lobby");
        hub.publish(&msg("lobby", 7));
        assert_eq!(drain(&mut rx).len(), 1);
    }

    /// What the writer sends now: the queue as batches through `take`.
    fn written(outbox: &Outbox, rx: &mut mpsc::Receiver<Bytes>) -> Vec<ServerFrame> {
        let mut batch = Vec::new();
        while let Ok(b) = rx.try_recv() {
            batch.push(b);
        }
        outbox.lags.take(&mut batch);
        batch.into_iter().map(decode).collect()
    }

    fn own_membership(frames: &[ServerFrame]) -> Vec<(String, PresenceKind)> {
        frames
            .iter()
            .filter_map(|f| match f {
                ServerFrame::Presence(Presence {
                    room: Some(r),
                    user,
                    kind,
                }) if user == "alice" => Some((r.clone(), *kind)),
                _ => None,
            })
            .collect()
    }

    // Found by fuzzing the client's room sync: a dropped `Joined` of the
    // user's own other device left the client not knowing a room it is in.
    #[test]
    fn own_membership_changes_pass_a_full_queue_in_order() {
        let hub = Hub::default();
        let (alice, mut rx) = Outbox::new(1, "alice".into(), 1);
        attach(&hub, alice.clone(), &["lobby"]);
        hub.publish(&msg("lobby", 1)); // the queue (depth 1) is now full
        hub.joined("alice", "dev");
        hub.left("alice", "dev");
        hub.joined("alice", "dev");
        assert!(hub.is_subscribed(1, "dev"));

        let frames = written(&alice, &mut rx);
        assert!(matches!(&frames[0], ServerFrame::Message(m) if m.seq == 1));
        assert_eq!(
            own_membership(&frames),
            vec![
                ("dev".into(), PresenceKind::Joined),
                ("dev".into(), PresenceKind::Left),
                ("dev".into(), PresenceKind::Joined),
            ]
        );
        hub.publish(&msg("dev", 1));
        assert!(
            matches!(&written(&alice, &mut rx)[..], [ServerFrame::Message(m)] if m.room == "dev")
        );
    }

    #[test]
    fn a_held_change_keeps_its_place_among_frames_queued_around_it() {
        let hub = Hub::default();
        let (alice, mut rx) = Outbox::new(1, "alice".into(), 2);
        attach(&hub, alice.clone(), &["lobby"]);
        hub.publish(&msg("lobby", 1));
        hub.left("alice", "lobby"); // queued: Message 1, Left
        hub.joined("alice", "lobby"); // full: held after 2 frames
                                      // The writer takes one frame; room opens for a later message.
        let first = rx.try_recv().unwrap();
        let mut batch = vec![first];
        alice.lags.take(&mut batch);
        assert_eq!(batch.len(), 1, "nothing held belongs after frame 1");
        hub.publish(&msg("lobby", 2));
        let frames = written(&alice, &mut rx);
        assert!(matches!(&frames[0], ServerFrame::Presence(p) if p.kind == PresenceKind::Left));
        assert!(matches!(&frames[1], ServerFrame::Presence(p) if p.kind == PresenceKind::Joined));
        assert!(matches!(&frames[2], ServerFrame::Message(m) if m.seq == 2));
    }

    #[test]
    fn resync_applies_membership_changes_that_were_missed() {
        let hub = Hub::default();
        let (alice, mut rx) = Outbox::new(1, "alice".into(), 16);
        attach(&hub, alice.clone(), &["lobby", "old"]);
        hub.resync("alice", &["lobby".to_string(), "new".to_string()]);
        assert!(hub.is_subscribed(1, "new"));
        assert!(!hub.is_subscribed(1, "old"));
        let mut told = own_membership(&written(&alice, &mut rx));
        told.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            told,
            vec![
                ("new".into(), PresenceKind::Joined),
                ("old".into(), PresenceKind::Left)
            ]
        );
        hub.resync("nobody", &["lobby".to_string()]);
    }
}
