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

mod outbox;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::codec;
use common::frame::{Invitation, Message, Presence, PresenceKind, ServerFrame};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::outbox::{Lags, Outbox, SessionId};

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
    /// Someone invited the user to a room: their sessions on every relay
    /// are told.
    Invited {
        user: String,
        invitation: Invitation,
    },
    /// A member set a room's topic: the room's sessions on every relay are
    /// told. `order` is the store's (see `Store::set_topic`), so a change
    /// that arrives after a newer one is not told.
    Topic {
        room: String,
        topic: String,
        by: String,
        order: u64,
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
    /// The store's order of the newest topic told per room: one entry per
    /// room whose topic changed since the relay started, so as many as
    /// there are rooms at most.
    topics: HashMap<String, u64>,
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

    /// The user's membership epoch now: read it before reading the user's
    /// memberships from the store, then subscribe with [`Hub::subscribe_all`].
    pub fn epoch(&self, user: &str) -> u64 {
        let st = self.state.lock().expect("hub lock");
        st.epochs.get(user).copied().unwrap_or(0)
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
            HubEvent::Invited { user, invitation } => self.tell_invited(&user, &invitation),
            HubEvent::Topic {
                room,
                topic,
                by,
                order,
            } => self.tell_topic(&room, &topic, &by, order),
        }
    }

    /// `by` set `room`'s topic, the store's change number `order`: tells
    /// the room's sessions here and, through the cluster link, on the
    /// other relays.
    pub fn topic(&self, room: &str, topic: &str, by: &str, order: u64) {
        self.tell_topic(room, topic, by, order);
        self.emit(HubEvent::Topic {
            room: room.to_owned(),
            topic: topic.to_owned(),
            by: by.to_owned(),
            order,
        });
    }

    /// Best effort, as presence: a session with a full queue misses it,
    /// and finds the topic in its next room list. Two changes of one room
    /// may reach the hub in either order (two sessions, two relays); the
    /// store's order says which is newer, and an older one is dropped, so
    /// every session ends with the topic the store kept.
    fn tell_topic(&self, room: &str, topic: &str, by: &str, order: u64) {
        let mut st = self.state.lock().expect("hub lock");
        let newest = st.topics.entry(room.to_owned()).or_default();
        if order <= *newest {
            return;
        }
        *newest = order;
        let frame = codec::encode(&ServerFrame::Topic {
            room: room.to_owned(),
            topic: topic.to_owned(),
            by: by.to_owned(),
        });
        for s in st.room_sessions(room) {
            s.offer(&frame);
        }
    }

    /// `user` was invited to a room: tells their sessions here and, through
    /// the cluster link, on the other relays.
    pub fn invited(&self, user: &str, invitation: Invitation) {
        self.tell_invited(user, &invitation);
        self.emit(HubEvent::Invited {
            user: user.to_owned(),
            invitation,
        });
    }

    /// Best effort, as presence: a session with a full queue misses it,
    /// and finds the invitation in its next room list.
    fn tell_invited(&self, user: &str, invitation: &Invitation) {
        let frame = codec::encode(&ServerFrame::Invited(invitation.clone()));
        let st = self.state.lock().expect("hub lock");
        for s in st.user_sessions(user) {
            s.offer(&frame);
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

    /// The sessions of `user` on this relay.
    pub fn sessions_of(&self, user: &str) -> Vec<Arc<Outbox>> {
        let st = self.state.lock().expect("hub lock");
        st.user_sessions(user).cloned().collect()
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
