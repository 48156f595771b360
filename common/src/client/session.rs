//! The state of a client session, without I/O: the pending table, the
//! requests in flight, room catch-up ([`RoomSync`]), the relays and the
//! reconnect backoff. Like `quinn-proto` beside `quinn`: it is fed what
//! happened (a command from the application, a frame from the relay, a
//! connection made or lost, a timer) with the time `now` and, where chance
//! is needed, a random source; it answers with frames to write, events for
//! the application, when to wake it next and what to do with the
//! connection. [`Worker`](super::worker::Worker) owns the connection and
//! moves the bytes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use tokio::sync::oneshot;
// tokio's clock, so the driver's timers and the times fed in here agree
// even when tokio's clock is paused; nothing here reads it.
use tokio::time::Instant;

use super::backoff::Backoff;
use super::command::{Acked, Command};
use super::config::Config;
use super::error::{ConnectError, RequestError};
use super::event::Event;
use super::pending::Pending;
use super::relays::RelayList;
use super::sync::{RoomSync, Step, Token};
use crate::frame::{
    ClientFrame, ErrorCode, Invitation, MsgId, Page, PresenceKind, RequestId, ServerFrame,
};

#[cfg(test)]
mod tests;

/// Wait before resending a message the relay refused as over the rate limit.
pub(crate) const RATE_LIMIT_RETRY: Duration = Duration::from_secs(1);

/// What a reply with this request id is for.
enum Waiting {
    App(oneshot::Sender<Result<ServerFrame, RequestError>>),
    Send(MsgId),
    Page {
        room: String,
        page: Page,
        token: Token,
    },
    Rooms,
    Rejoin {
        room: String,
    },
}

/// Where the session stands with its relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Logged in at `addrs()[at]` since `since`.
    Up { at: usize, since: Instant },
    /// Waiting out the backoff; the next round of attempts is due at `until`.
    Waiting { until: Instant },
    /// A round of attempts should run now, in the order of
    /// [`RelayList::round`]; report its outcome to
    /// [`Session::connected`] or [`Session::connect_failed`].
    Dialing,
    /// The session has ended.
    Closed,
}

/// What the driver must do with the connection the session just left.
#[derive(Debug)]
pub(crate) enum Hangup {
    /// The user asked for a reconnect: close it at once.
    Reconnect,
    /// It failed, or the relay ended it or broke the protocol: drop it.
    Lost,
    /// The session is over: say `Bye` first when `bye` (the session was
    /// connected), then answer `done`.
    Close {
        bye: bool,
        done: Option<oneshot::Sender<()>>,
    },
}

/// A client session's state machine. Frames it asks to write are for the
/// connection it is [`Phase::Up`] on; when it leaves that connection it
/// drops the frames not yet taken and says so with a [`Hangup`].
pub(crate) struct Session {
    relays: RelayList,
    backoff: Backoff,
    sync: RoomSync,
    pending: Pending,
    waiting: HashMap<RequestId, Waiting>,
    next_req: RequestId,
    /// The user name as the relay spells it (own presence is recognised by
    /// it).
    user: String,
    phase: Phase,
    transmit: VecDeque<ClientFrame>,
    events: VecDeque<Event>,
    hangup: Option<Hangup>,
    /// Invitations told live, oldest first, since the room list of this
    /// connection was asked for; `None` once it came. The list may have
    /// been read before them, so they are added to it.
    told: Option<Vec<Invitation>>,
    /// Topics told live since the room list of this connection was asked
    /// for, by room; `None` once it came. The list may have been read
    /// before they were set, so they win over it.
    topics: Option<HashMap<String, String>>,
}

impl Session {
    /// A session for `cfg`'s user and reconnect policy over `relays`, not
    /// connected yet: report the first connection to
    /// [`connected`](Self::connected).
    pub(crate) fn new(cfg: &Config, relays: RelayList) -> Self {
        Session {
            relays,
            backoff: Backoff::new(cfg.reconnect_initial, cfg.reconnect_max),
            sync: RoomSync::default(),
            pending: Pending::default(),
            waiting: HashMap::new(),
            // 1 is the login request.
            next_req: 2,
            user: cfg.user.clone(),
            phase: Phase::Dialing,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            hangup: None,
            told: None,
            topics: None,
        }
    }

    /// Where the session stands.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The relays, in the order the next round tries them.
    pub(crate) fn relays(&self) -> &RelayList {
        &self.relays
    }

    /// The next frame to write on the connection.
    pub(crate) fn poll_transmit(&mut self) -> Option<ClientFrame> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Set once when the session leaves its connection or ends.
    pub(crate) fn poll_hangup(&mut self) -> Option<Hangup> {
        self.hangup.take()
    }

    /// When [`timeout`](Self::timeout) is next due: a rate-limited message
    /// to resend, or the end of the backoff.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Up { .. } => self.pending.next_retry(),
            Phase::Waiting { until } => Some(until),
            Phase::Dialing | Phase::Closed => None,
        }
    }

    /// Logged in as `user` at `relays().addrs()[at]`: ask for the room
    /// list (which drives catch-up) and resend every unacknowledged message
    /// with its original id.
    pub(crate) fn connected(&mut self, at: usize, user: String, now: Instant) {
        self.relays.connected(at);
        self.user = user;
        self.phase = Phase::Up { at, since: now };
        self.events.push_back(Event::Connected {
            user: self.user.clone(),
            server: self.relays.addrs()[at].clone(),
        });
        self.sync.logged_in();
        self.told = Some(Vec::new());
        self.topics = Some(HashMap::new());
        let req = self.req();
        self.waiting.insert(req, Waiting::Rooms);
        self.transmit.push_back(ClientFrame::ListRooms { req });
        for id in self.pending.take_all() {
            self.write_send(id);
        }
    }

    /// The round of attempts failed with `error`. Retrying cannot mend a
    /// fatal error: the session ends. Otherwise the next round starts one
    /// relay further on, after the backoff.
    pub(crate) fn connect_failed(&mut self, error: ConnectError, now: Instant, rng: &mut impl Rng) {
        if self.phase != Phase::Dialing {
            return;
        }
        if error.is_fatal() {
            tracing::error!("giving up: {error}");
            self.fail_all();
            self.events.push_back(Event::Failed(error));
            self.phase = Phase::Closed;
            return;
        }
        self.relays.round_failed();
        self.start_round(error.to_string(), None, now, rng);
    }

    /// The connection failed (a read or write error, the relay closed it).
    pub(crate) fn lost(&mut self, reason: String, now: Instant, rng: &mut impl Rng) {
        self.leave(reason, true, Hangup::Lost, now, rng);
    }

    /// Leaves the connection: requests in flight die with it; sends stay
    /// pending and are resent after the next login. Unless the user asked
    /// for it, the relay went away and the next round starts after it.
    fn leave(
        &mut self,
        reason: String,
        went_away: bool,
        hangup: Hangup,
        now: Instant,
        rng: &mut impl Rng,
    ) {
        let Phase::Up { at, since } = self.phase else {
            return;
        };
        let server = self.relays.addrs()[at].clone();
        tracing::info!(%server, "connection lost: {reason}");
        self.transmit.clear();
        self.fail_waiting();
        if went_away {
            self.relays.went_away(at);
        }
        self.backoff
            .lost_after(now.saturating_duration_since(since));
        self.start_round(reason, Some(server), now, rng);
        self.hangup = Some(hangup);
    }

    fn start_round(
        &mut self,
        reason: String,
        lost: Option<String>,
        now: Instant,
        rng: &mut impl Rng,
    ) {
        let (attempt, delay) = self.backoff.next_round(rng);
        self.events.push_back(Event::Reconnecting {
            attempt,
            delay,
            reason,
            lost,
            next: self.relays.next().to_owned(),
        });
        self.phase = Phase::Waiting { until: now + delay };
    }

    /// Time has passed: resend what the rate limit held back, or end the
    /// backoff.
    pub(crate) fn timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Up { .. } => {
                for id in self.pending.take_due(now) {
                    self.write_send(id);
                }
            }
            Phase::Waiting { until } if now >= until => self.phase = Phase::Dialing,
            _ => {}
        }
    }

    /// A call from the application. `rng` picks a new message's id.
    pub(crate) fn command(&mut self, command: Command, now: Instant, rng: &mut impl Rng) {
        match command {
            Command::Send { room, body, reply } => {
                if self.phase == Phase::Closed {
                    let _ = reply.send(Err(RequestError::Closed));
                    return;
                }
                let id: MsgId = rng.gen();
                self.pending.insert(id, room, body, reply);
                if !matches!(self.phase, Phase::Up { .. }) {
                    return;
                }
                // Behind messages waiting out the rate limit, a new one
                // waits too: sent now it would only be refused, and the
                // order of the user's lines is theirs to keep.
                match self.pending.next_retry() {
                    Some(at) => self.pending.retry_at(id, at),
                    None => self.write_send(id),
                }
            }
            Command::Request { mut frame, reply } => match self.phase {
                Phase::Up { .. } => {
                    let req = self.req();
                    frame.set_req(req);
                    self.waiting.insert(req, Waiting::App(reply));
                    self.transmit.push_back(frame);
                }
                Phase::Closed => {
                    let _ = reply.send(Err(RequestError::Closed));
                }
                Phase::Waiting { .. } | Phase::Dialing => {
                    let _ = reply.send(Err(RequestError::NotConnected));
                }
            },
            Command::Reconnect => match self.phase {
                Phase::Up { .. } => self.leave(
                    "reconnect requested".into(),
                    false,
                    Hangup::Reconnect,
                    now,
                    rng,
                ),
                Phase::Waiting { .. } => self.phase = Phase::Dialing,
                Phase::Dialing | Phase::Closed => {}
            },
            Command::Close { done } => self.close(Some(done)),
        }
    }

    /// Ends the session: everything waiting fails, sends with
    /// [`RequestError::Closed`]; `done` is handed back in
    /// [`Hangup::Close`].
    pub(crate) fn close(&mut self, done: Option<oneshot::Sender<()>>) {
        let bye = matches!(self.phase, Phase::Up { .. });
        self.transmit.clear();
        self.fail_all();
        self.phase = Phase::Closed;
        self.hangup = Some(Hangup::Close { bye, done });
    }

    /// A frame from the relay.
    pub(crate) fn frame(&mut self, frame: ServerFrame, now: Instant, rng: &mut impl Rng) {
        if !matches!(self.phase, Phase::Up { .. }) {
            return;
        }
        if let Err(reason) = self.on_frame(frame, now) {
            self.lost(reason, now, rng);
        }
    }

    /// `Err` when the connection can no longer serve the session.
    fn on_frame(&mut self, frame: ServerFrame, now: Instant) -> Result<(), String> {
        match frame {
            ServerFrame::Ack {
                req, id, seq, ts, ..
            } => {
                self.waiting.remove(&req);
                self.pending.resolve(id, Ok(Acked { seq, ts }));
            }
            ServerFrame::Error {
                req: 0,
                code,
                message,
            } => tracing::warn!(?code, "relay: {message}"),
            ServerFrame::Error { req, code, message } => match self.waiting.remove(&req) {
                Some(Waiting::App(tx)) => {
                    let _ = tx.send(Err(RequestError::Refused { code, message }));
                }
                Some(Waiting::Send(id)) if code == ErrorCode::RateLimited => {
                    self.pending.retry_at(id, now + RATE_LIMIT_RETRY);
                }
                Some(Waiting::Send(id)) => {
                    self.pending
                        .resolve(id, Err(RequestError::Refused { code, message }));
                }
                Some(Waiting::Page { room, .. } | Waiting::Rejoin { room })
                    if matches!(code, ErrorCode::NotMember | ErrorCode::NoSuchRoom) =>
                {
                    let steps = self.sync.left(&room);
                    self.apply(steps);
                }
                // Without this answer a room would stay held back forever:
                // start over on a fresh connection instead.
                Some(_) => return Err(format!("catch-up failed ({code:?}: {message})")),
                None => {}
            },
            ServerFrame::Message(msg) => {
                let steps = self.sync.live(msg);
                self.apply(steps);
            }
            ServerFrame::HistoryPage {
                req,
                room,
                messages,
                more,
            } => match self.waiting.remove(&req) {
                Some(Waiting::App(tx)) => {
                    let _ = tx.send(Ok(ServerFrame::HistoryPage {
                        req,
                        room,
                        messages,
                        more,
                    }));
                }
                Some(Waiting::Page { room, page, token }) => {
                    let steps = self.sync.page(&room, token, page, messages, more);
                    self.apply(steps);
                }
                _ => {}
            },
            ServerFrame::Rooms {
                req,
                joined,
                public,
                invited,
            } => match self.waiting.remove(&req) {
                Some(Waiting::Rooms) => {
                    let steps = self.sync.room_list(&joined);
                    let told = self.topics.take().unwrap_or_default();
                    let mut rooms = joined;
                    for room in &mut rooms {
                        if let Some(topic) = told.get(&room.name) {
                            room.topic.clone_from(topic);
                        }
                    }
                    self.events.push_back(Event::Rooms(rooms));
                    self.apply(steps);
                    let told = self.told.take().unwrap_or_default();
                    let mut all: Vec<Invitation> = told.into_iter().rev().collect();
                    for i in invited {
                        if all.iter().all(|t| t.room.name != i.room.name) {
                            all.push(i);
                        }
                    }
                    self.events.push_back(Event::Invitations(all));
                }
                Some(Waiting::App(tx)) => {
                    let _ = tx.send(Ok(ServerFrame::Rooms {
                        req,
                        joined,
                        public,
                        invited,
                    }));
                }
                _ => {}
            },
            ServerFrame::Invited(invitation) => {
                if let Some(told) = &mut self.told {
                    told.retain(|t| t.room.name != invitation.room.name);
                    told.push(invitation.clone());
                }
                self.events.push_back(Event::Invited(invitation));
            }
            ServerFrame::Topic { room, topic, by } => {
                if let Some(told) = &mut self.topics {
                    told.insert(room.clone(), topic.clone());
                }
                self.events.push_back(Event::Topic { room, topic, by });
            }
            ServerFrame::Presence(p) => {
                if p.user == self.user {
                    if let Some(room) = &p.room {
                        let steps = match p.kind {
                            PresenceKind::Joined => self.sync.joined(room),
                            PresenceKind::Left => self.sync.left(room),
                            _ => Vec::new(),
                        };
                        self.apply(steps);
                    }
                }
                self.events.push_back(Event::Presence(p));
            }
            ServerFrame::Lagged { room, from } => {
                tracing::info!(%room, from, "lagged; catching up from history");
                let steps = self.sync.lagged(&room);
                self.apply(steps);
            }
            ServerFrame::Shutdown { reason } => return Err(reason),
            reply => {
                let req = reply.req();
                let membership = match &reply {
                    ServerFrame::Joined { room, .. } => self.sync.joined(&room.name),
                    ServerFrame::Left { room, .. } => self.sync.left(room),
                    _ => Vec::new(),
                };
                if let Some(Waiting::App(tx)) = self.waiting.remove(&req) {
                    let _ = tx.send(Ok(reply));
                }
                self.apply(membership);
            }
        }
        Ok(())
    }

    fn apply(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Deliver(msg) => self.events.push_back(Event::Message(msg)),
                Step::Joined { room, recent, more } => {
                    self.events.push_back(Event::Joined { room, recent, more })
                }
                Step::Left { room } => self.events.push_back(Event::Left { room }),
                Step::Fetch {
                    room,
                    page,
                    limit,
                    token,
                } => {
                    let req = self.req();
                    self.transmit.push_back(ClientFrame::History {
                        req,
                        room: room.clone(),
                        page,
                        limit,
                    });
                    self.waiting
                        .insert(req, Waiting::Page { room, page, token });
                }
                Step::Resubscribe { room } => {
                    let req = self.req();
                    self.transmit.push_back(ClientFrame::Resume {
                        req,
                        room: room.clone(),
                    });
                    self.waiting.insert(req, Waiting::Rejoin { room });
                }
            }
        }
    }

    fn req(&mut self) -> RequestId {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(2);
        req
    }

    fn write_send(&mut self, id: MsgId) {
        let req = self.req();
        if let Some(frame) = self.pending.frame(id, req) {
            self.waiting.insert(req, Waiting::Send(id));
            self.transmit.push_back(frame);
        }
    }

    fn fail_waiting(&mut self) {
        for (_, w) in self.waiting.drain() {
            if let Waiting::App(tx) = w {
                let _ = tx.send(Err(RequestError::NotConnected));
            }
        }
    }

    fn fail_all(&mut self) {
        self.fail_waiting();
        self.pending.fail_all(RequestError::Closed);
    }
}
