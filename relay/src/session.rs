//! What a logged-in session does with a request, without any I/O of its
//! own: [`Session::handle`] is fed a decoded frame and the time, checks and
//! applies it against the store and the hub, and answers with what the
//! connection must do ([`Answer`]). The connection (`conn`) moves the
//! bytes: it writes replies, hands appends to the store in arrival order,
//! and sends bulk replies on streams of their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::codec::{self, FrameError};
use common::frame::{
    ClientFrame, ErrorCode, Invitation, Member, MsgId, Page, RequestId, RoomInfo, RoomKind,
    ServerFrame,
};
use common::limits::{MAX_BULK_FRAME, MAX_PAGE};
use common::names::{self, LOBBY};
use tokio::sync::mpsc;

use crate::accounts::{lock, BulkBudget, Seat};
use crate::defaults::{MAX_LISTED_PUBLIC, ROOM_CREATION_BURST};
use crate::hub::Outbox;
use crate::login::Account;
use crate::metrics::inc;
use crate::rate::{Over, SendGate};
use crate::reply::{frame_error, Refusal};
use crate::state::Relay;
use crate::store::{Appended, NewMessage, RoomRow, Store, StoreError};

/// The work behind a bulk reply: store reads, run by the connection in a
/// task of its own so a big reply never holds up the next request.
pub type BulkWork = Pin<Box<dyn Future<Output = Result<ServerFrame, Refusal>> + Send>>;

/// What the connection must do with a request.
pub enum Answer {
    /// Write this frame on the control stream.
    Reply(ServerFrame),
    /// Hand this message to the store at once, before reading the next
    /// frame, so one sender's messages commit in the order sent; answer
    /// with [`acked`] when the commit lands.
    Append { req: RequestId, msg: NewMessage },
    /// Run `work` and send its frame on a bulk stream of its own (see
    /// [`bulk_bytes`]); a refusal goes on the control stream.
    Bulk { req: RequestId, work: BulkWork },
    /// The client said `Bye`: close the connection normally.
    Bye,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Reply(frame) => f.debug_tuple("Reply").field(frame).finish(),
            Answer::Append { req, msg } => f
                .debug_struct("Append")
                .field("req", req)
                .field("room", &msg.room)
                .finish(),
            Answer::Bulk { req, .. } => f.debug_struct("Bulk").field("req", req).finish(),
            Answer::Bye => f.write_str("Bye"),
        }
    }
}

type Reply = Result<ServerFrame, Refusal>;

/// State of one logged-in session.
pub struct Session<S: Store> {
    relay: Arc<Relay<S>>,
    outbox: Arc<Outbox>,
    gate: SendGate,
    /// The account's place on this relay and the rate limits its sessions share.
    seat: Seat,
}

impl<S: Store> Session<S> {
    /// Starts the session of `user`, who just logged in: attaches it to the
    /// hub and subscribes it to every room of the user before any request
    /// is read, so anything committed from now on arrives live and anything
    /// before is in history. Returns the session and the queue its writer
    /// drains. Refused when the account has as many sessions as it may
    /// (`TooManyConnections`) or on a store failure (`Unavailable`);
    /// nothing then stays attached.
    pub async fn start(
        relay: Arc<Relay<S>>,
        account: Account,
        now: Instant,
    ) -> Result<(Self, mpsc::Receiver<Bytes>), Refusal> {
        let Some(seat) = relay.accounts.seat(&account.name, now) else {
            return Err(too_many_sessions(&relay, &account.name));
        };
        let id = relay.next_session_id();
        let (outbox, rx) = Outbox::new(id, account.name, relay.cfg.queue_depth);
        outbox.set_credential(account.phc);
        // Attached before the rooms are read, so a join or leave on another
        // device meanwhile reaches this session; the epoch catches a stale read.
        let mut epoch = relay.hub.attach(outbox.clone());
        loop {
            let rooms = match relay.store.rooms_of(&outbox.user).await {
                Ok(rows) => rows.into_iter().map(|r| r.name).collect::<Vec<_>>(),
                Err(e) => {
                    relay.hub.detach(id);
                    return Err(cannot_start(&e));
                }
            };
            match relay.hub.subscribe_all(id, &rooms, epoch) {
                Ok(()) => break,
                Err(now) => epoch = now,
            }
        }
        // Attached, the session hears of any change of its account from now
        // on; one made since the password was checked is caught here.
        match relay.store.user(&outbox.user).await {
            Ok(Some(u)) if Some(u.phc.as_str()) == outbox.credential() => {}
            Ok(_) => outbox.revoke(),
            Err(e) => {
                relay.hub.detach(id);
                return Err(cannot_start(&e));
            }
        }
        relay.hub.announce_online(id);
        let session = Session {
            gate: SendGate::over(seat.buckets.sends.clone(), now)
                .with_bytes(seat.buckets.bytes.clone()),
            seat,
            relay,
            outbox,
        };
        Ok((session, rx))
    }

    /// The places a bulk reply of this session must hold (see `conn`).
    pub fn bulk_budget(&self) -> BulkBudget {
        BulkBudget {
            relay: self.relay.bulk_replies.clone(),
            account: self.seat.buckets.bulk.clone(),
        }
    }

    /// The hub's side of this session: its queue of frames to write.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    fn user(&self) -> &str {
        &self.outbox.user
    }

    /// Leaves the hub: the session's user goes offline if this was their
    /// last session.
    pub fn end(self) {
        self.relay.hub.detach(self.outbox.id);
    }

    /// The reply to a frame that could not be read; the connection then
    /// closes as a protocol error.
    pub fn bad_frame(&self, e: &FrameError) -> ServerFrame {
        tracing::info!(user = %self.user(), "bad frame: {e}");
        inc(&self.relay.metrics.protocol_errors);
        frame_error(e)
    }

    /// Decides what a request does, at time `now`.
    pub async fn handle(&mut self, frame: ClientFrame, now: Instant) -> Answer {
        let req = frame.req();
        if is_room_change(&frame) && !lock(&self.seat.buckets.changes).take(now) {
            inc(&self.relay.metrics.rate_limited);
            let msg = format!(
                "more than {} room changes per second from your account; try again in a moment",
                self.relay.cfg.request_rate
            );
            return refused(req, Refusal::new(ErrorCode::RateLimited, msg));
        }
        let reply = match frame {
            ClientFrame::Send {
                req,
                room,
                id,
                body,
            } => return self.send(req, room, id, body, now).await,
            ClientFrame::History {
                req,
                room,
                page,
                limit,
            } => return self.history(req, room, page, limit).await,
            ClientFrame::ListRooms { req } => return self.list_rooms(req),
            ClientFrame::Members { req, room } => return self.members(req, room).await,
            ClientFrame::Bye => return Answer::Bye,
            ClientFrame::Ping { req } => Ok(ServerFrame::Pong { req }),
            ClientFrame::CreateRoom { req, room, private } => {
                self.create_room(req, &room, private, now).await
            }
            ClientFrame::Join { req, room } => self.join(req, &room).await,
            ClientFrame::Leave { req, room } => self.leave(req, &room).await,
            ClientFrame::Invite { req, room, user } => self.invite(req, &room, &user).await,
            ClientFrame::OpenDm { req, user } => self.open_dm(req, &user, now).await,
            ClientFrame::Resume { req, room } => self.resume(req, &room).await,
            ClientFrame::SetTopic { req, room, topic } => self.set_topic(req, &room, &topic).await,
            ClientFrame::Hello { .. }
            | ClientFrame::Register { .. }
            | ClientFrame::Login { .. } => {
                Err(Refusal::new(ErrorCode::Unexpected, "already logged in"))
            }
        };
        Answer::Reply(reply.unwrap_or_else(|refusal| refusal.into_frame(req)))
    }

    async fn send(
        &mut self,
        req: RequestId,
        room: String,
        id: MsgId,
        body: String,
        now: Instant,
    ) -> Answer {
        if let Err(msg) = common::limits::check_body(&body) {
            return refused(req, Refusal::new(ErrorCode::BadBody, msg));
        }
        // The store checks membership again when it writes the message;
        // this only turns most refusals away before they queue.
        if !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            let msg = format!("you are not a member of {room}; join it first");
            return refused(req, self.outsider(&room, msg).await);
        }
        if let Err(over) = self.gate.admit_sized(id, body.len(), now) {
            inc(&self.relay.metrics.rate_limited);
            let msg = match over {
                Over::Rate => format!(
                    "more than {} messages per second from your account; not stored: resend it, and the messages after it, in order in a moment",
                    self.relay.cfg.rate_limit
                ),
                Over::Order => "an earlier message of yours was refused and goes first; not stored: resend that one, then this and the messages after it, in order".to_owned(),
                Over::Bytes => format!(
                    "your account has stored its {} MiB for today; not stored: resend it, and the messages after it, later (room for more comes back gradually over the day)",
                    self.relay.cfg.daily_quota_mib
                ),
            };
            return refused(req, Refusal::new(ErrorCode::RateLimited, msg));
        }
        let msg = NewMessage {
            room,
            from: self.user().to_owned(),
            id,
            body,
        };
        Answer::Append { req, msg }
    }

    async fn history(&mut self, req: RequestId, room: String, page: Page, limit: u16) -> Answer {
        if limit == 0 || limit > MAX_PAGE {
            let msg = format!("page size must be 1 to {MAX_PAGE}");
            return refused(req, Refusal::new(ErrorCode::BadLimit, msg));
        }
        let relay = self.relay.clone();
        let user = self.user().to_owned();
        bulk(req, async move {
            // Checked where the history is read: a subscription may be
            // moments older than a leave on another device.
            if !relay.store.is_member(&room, &user).await? {
                let msg = format!("you are not a member of {room}; join it first");
                return Err(outsider(&*relay.store, &room, &user, msg).await);
            }
            let (messages, more) = relay.store.history(&room, page, limit).await?;
            Ok(ServerFrame::HistoryPage {
                req,
                room,
                messages,
                more,
            })
        })
    }

    fn list_rooms(&mut self, req: RequestId) -> Answer {
        let relay = self.relay.clone();
        let user = self.user().to_owned();
        bulk(req, async move {
            let joined = relay.store.rooms_of(&user).await?;
            let mut invited = relay.store.invitations(&user).await?;
            // The store keeps about this many; several relays inviting at
            // once may leave a few more for a moment.
            invited.truncate(relay.cfg.max_invitations);
            let mut public = relay.store.public_rooms().await?;
            if public.len() > MAX_LISTED_PUBLIC {
                // The busiest, so that rooms made in bulk by one account
                // with nobody in them drop out of the directory first.
                public.sort_by(|a, b| b.members.cmp(&a.members).then(a.name.cmp(&b.name)));
                public.truncate(MAX_LISTED_PUBLIC);
                public.sort_by(|a, b| a.name.cmp(&b.name));
            }
            Ok(ServerFrame::Rooms {
                req,
                joined: joined.iter().map(info).collect(),
                public: public.iter().map(info).collect(),
                invited: invited
                    .into_iter()
                    .map(|i| Invitation {
                        room: info(&i.room),
                        by: i.by,
                    })
                    .collect(),
            })
        })
    }

    async fn members(&mut self, req: RequestId, room: String) -> Answer {
        let row = match self.room_or_refuse(&room).await {
            Ok(row) => row,
            Err(refusal) => return refused(req, refusal),
        };
        let relay = self.relay.clone();
        let user = self.user().to_owned();
        bulk(req, async move {
            if row.kind != RoomKind::Public && !relay.store.is_member(&room, &user).await? {
                let msg = format!("only members can see who is in {room}");
                return Err(outsider(&*relay.store, &room, &user, msg).await);
            }
            let names = relay.store.members(&room).await?;
            let members = names
                .into_iter()
                .map(|user| Member {
                    online: relay.hub.is_online(&user),
                    user,
                })
                .collect();
            Ok(ServerFrame::Members { req, room, members })
        })
    }

    /// The refusal for a room the user is not a member of; see [`outsider`].
    async fn outsider(&self, room: &str, not_member: String) -> Refusal {
        outsider(&*self.relay.store, room, self.user(), not_member).await
    }

    /// Subscribes this session to `room` if its user is a member as the
    /// store says now; `Ok(false)` if not. The hub's membership epoch
    /// guards the gap between the read and the subscription: a leave on
    /// another device in between makes it read again, so a room left
    /// elsewhere is never subscribed again here.
    async fn subscribe_if_member(&self, room: &str) -> Result<bool, Refusal> {
        let rooms = [room.to_owned()];
        for _ in 0..SUBSCRIBE_TRIES {
            let epoch = self.relay.hub.epoch(self.user());
            if !self.relay.store.is_member(room, self.user()).await? {
                return Ok(false);
            }
            if self
                .relay
                .hub
                .subscribe_all(self.outbox.id, &rooms, epoch)
                .is_ok()
            {
                self.outbox.lags.resubscribed(room);
                return Ok(true);
            }
        }
        Err(Refusal::new(
            ErrorCode::Unavailable,
            format!("your memberships kept changing while {room} was looked up; try again"),
        ))
    }

    async fn room_or_refuse(&self, room: &str) -> Result<RoomRow, Refusal> {
        self.relay
            .store
            .room(room)
            .await?
            .ok_or_else(|| no_such_room(room))
    }

    async fn create_room(
        &mut self,
        req: RequestId,
        room: &str,
        private: bool,
        now: Instant,
    ) -> Reply {
        names::check_room(room).map_err(|e| {
            Refusal::new(
                ErrorCode::InvalidName,
                format!("invalid room name {room:?}: {e}"),
            )
        })?;
        let kind = if private {
            RoomKind::Private
        } else {
            RoomKind::Public
        };
        let relay = self.relay.clone();
        let _changing = relay.membership.lock(&[self.user()]).await;
        self.take_creation(now)?;
        self.check_room_cap(self.user(), ROOMS_BY_CHOICE).await?;
        let row = self
            .relay
            .store
            .create_room(room, kind, self.user())
            .await
            .map_err(|e| match e {
                // Not "join it instead": it may be a private room the user
                // cannot see, and must not learn more of.
                StoreError::RoomExists => Refusal::new(
                    ErrorCode::RoomExists,
                    format!("the name {room} is taken; choose another"),
                ),
                other => other.into(),
            })?;
        self.relay.hub.joined(self.user(), room);
        Ok(ServerFrame::Joined {
            req,
            room: info(&row),
        })
    }

    async fn join(&mut self, req: RequestId, room: &str) -> Reply {
        let row = self.room_or_refuse(room).await?;
        let user = self.user().to_owned();
        // The store's change and the hub's mirror of it, with no other
        // change of this user's in between (see `MembershipLocks`).
        let relay = self.relay.clone();
        let _changing = relay.membership.lock(&[&user]).await;
        let store = &self.relay.store;
        if !store.is_member(room, &user).await? {
            let allowed = match row.kind {
                RoomKind::Public => true,
                RoomKind::Private => store.is_invited(room, &user).await?,
                // One's own DM, left before, may be joined again; another
                // pair's is as if it did not exist.
                RoomKind::Direct => in_dm(room, &user),
            };
            if !allowed {
                return Err(no_such_room(room));
            }
            // Only for a room the user may see: checked before, a full
            // account would tell hidden rooms from missing ones.
            self.check_room_cap(&user, ROOMS_BY_CHOICE).await?;
            store.add_member(room, &user).await?;
            self.relay.hub.joined(&user, room);
        }
        // Heals a subscription a concurrent login may have missed, unless
        // the room was left meanwhile on another device.
        if !self.subscribe_if_member(room).await? {
            return Err(Refusal::new(
                ErrorCode::NotMember,
                format!("you left {room} on another device meanwhile; join it again"),
            ));
        }
        let row = self.room_or_refuse(room).await?;
        Ok(ServerFrame::Joined {
            req,
            room: info(&row),
        })
    }

    async fn leave(&mut self, req: RequestId, room: &str) -> Reply {
        if room == LOBBY {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "everyone stays in lobby",
            ));
        }
        self.room_or_refuse(room).await?;
        let user = self.user().to_owned();
        let relay = self.relay.clone();
        let _changing = relay.membership.lock(&[&user]).await;
        let left = ServerFrame::Left {
            req,
            room: room.to_owned(),
        };
        if self.relay.store.remove_member(room, &user).await? {
            self.relay.hub.left(&user, room);
            return Ok(left);
        }
        // Leaving a room one is only invited to declines the invitation.
        if self.relay.store.decline(room, &user).await? {
            return Ok(left);
        }
        let msg = format!("you are neither in {room} nor invited to it");
        Err(self.outsider(room, msg).await)
    }

    async fn invite(&mut self, req: RequestId, room: &str, user: &str) -> Reply {
        let row = self.room_or_refuse(room).await?;
        if !self.relay.store.is_member(room, self.user()).await? {
            let msg = format!("only members of {room} can invite to it");
            return Err(self.outsider(room, msg).await);
        }
        if row.kind == RoomKind::Direct {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "nobody can be invited to a direct-message room",
            ));
        }
        let target = self.canonical_user(user).await?;
        // The invitee's joins and leaves on this relay wait, so one who
        // joins meanwhile is not told of an invitation to their own room.
        let relay = self.relay.clone();
        let _changing = relay.membership.lock(&[&target]).await;
        let keep = self.relay.cfg.max_invitations;
        if self
            .relay
            .store
            .invite(room, &target, self.user(), keep)
            .await?
        {
            let invitation = Invitation {
                room: info(&row),
                by: self.user().to_owned(),
            };
            self.relay.hub.invited(&target, invitation);
        }
        Ok(ServerFrame::Done { req })
    }

    /// Any member of a channel may set its topic (rooms have no roles).
    /// Refusals come in the order PROTOCOL §5.1 lists them: the rate (in
    /// `handle`), the topic, the room, its kind, the membership.
    async fn set_topic(&mut self, req: RequestId, room: &str, topic: &str) -> Reply {
        if let Err(msg) = common::limits::check_topic(topic) {
            return Err(Refusal::new(ErrorCode::BadTopic, msg));
        }
        let row = self.room_or_refuse(room).await?;
        if row.kind == RoomKind::Direct {
            // Another pair's DM is as if it did not exist.
            if !in_dm(room, self.user()) {
                return Err(no_such_room(room));
            }
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "a direct-message room has no topic",
            ));
        }
        // Membership is checked by the store where it writes the topic: a
        // subscription may be moments older than a leave on another device.
        match self.relay.store.set_topic(room, self.user(), topic).await {
            Ok(Some(order)) => self.relay.hub.topic(room, topic, self.user(), order),
            Ok(None) => {}
            Err(StoreError::NotMember) => {
                let msg = format!("only members of {room} can set its topic; join it first");
                return Err(self.outsider(room, msg).await);
            }
            Err(StoreError::NoSuchRoom) => return Err(no_such_room(room)),
            Err(e) => return Err(e.into()),
        }
        Ok(ServerFrame::Done { req })
    }

    /// Live delivery of a room again after `Lagged`. Never changes
    /// membership: a room left on another device stays left.
    async fn resume(&mut self, req: RequestId, room: &str) -> Reply {
        if !self.subscribe_if_member(room).await? {
            let msg = format!("you are not a member of {room}; join it first");
            return Err(self.outsider(room, msg).await);
        }
        Ok(ServerFrame::Done { req })
    }

    async fn open_dm(&mut self, req: RequestId, user: &str, now: Instant) -> Reply {
        let other = self.canonical_user(user).await?;
        let me = self.user().to_owned();
        let room = names::dm_room(&me, &other);
        let relay = self.relay.clone();
        let _changing = relay.membership.lock(&[&me, &other]).await;
        let store = &self.relay.store;
        let exists = store.room(&room).await?.is_some();
        let member = exists && store.is_member(&room, &me).await?;
        if !exists {
            self.take_creation(now)?;
            if other != me {
                self.check_room_cap(&other, ROOMS_BY_OTHERS).await?;
            }
        }
        if !member {
            self.check_room_cap(&me, ROOMS_BY_CHOICE).await?;
        }
        let row = store.open_dm(&me, &other).await?;
        if !member {
            self.relay.hub.joined(&me, &room);
        }
        // The other is a member only of a DM made now: one who left an
        // older one is not brought back.
        if !exists && other != me {
            self.relay.hub.joined(&other, &room);
        }
        Ok(ServerFrame::Joined {
            req,
            room: info(&row),
        })
    }

    /// Takes one of the account's room creations (channels and new DMs).
    fn take_creation(&self, now: Instant) -> Result<(), Refusal> {
        if lock(&self.seat.buckets.creations).take(now) {
            return Ok(());
        }
        inc(&self.relay.metrics.rate_limited);
        Err(Refusal::new(
            ErrorCode::RateLimited,
            format!(
                "your account created too many rooms lately ({} an hour after the first {}); nothing was created, try again later",
                self.relay.cfg.room_creations_per_hour, ROOM_CREATION_BURST
            ),
        ))
    }

    /// Refuses one more room for `user` when they are in as many as they
    /// may be: `share` of the cap (`ROOMS_BY_CHOICE` for rooms they enter
    /// themselves, `ROOMS_BY_OTHERS` for DMs someone else opens with them).
    async fn check_room_cap(&self, user: &str, share: f64) -> Result<(), Refusal> {
        let cap = self.relay.cfg.max_rooms_per_user;
        let max = ((cap as f64) * share) as usize;
        if self.relay.store.room_count(user).await? < max.max(1) {
            return Ok(());
        }
        let msg = if user == self.user() {
            format!("you are in {cap} rooms, as many as anyone may be; leave one first")
        } else {
            format!("{user} is in too many rooms to be added to another conversation")
        };
        Err(Refusal::new(ErrorCode::Forbidden, msg))
    }

    async fn canonical_user(&self, user: &str) -> Result<String, Refusal> {
        match self.relay.store.user(user).await? {
            Some(u) => Ok(u.name),
            None => Err(Refusal::new(
                ErrorCode::NoSuchUser,
                format!("there is no user {user:?}"),
            )),
        }
    }
}

/// Whether a request changes rooms or memberships (or a room's topic).
/// These write to the store and fan out to others, so they have a rate
/// limit of their own, like sends (`Config::request_rate`).
pub fn is_room_change(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::CreateRoom { .. }
            | ClientFrame::Join { .. }
            | ClientFrame::Leave { .. }
            | ClientFrame::Invite { .. }
            | ClientFrame::OpenDm { .. }
            | ClientFrame::SetTopic { .. }
    )
}

/// The answer to a send once the store has committed it (or failed to):
/// `Ack` with the message's sequence, or the refusal.
pub fn acked<S>(
    relay: &Relay<S>,
    req: RequestId,
    room: String,
    id: MsgId,
    result: Result<Appended, StoreError>,
) -> ServerFrame {
    match result {
        Ok(a) => {
            inc(if a.duplicate {
                &relay.metrics.messages_duplicate
            } else {
                &relay.metrics.messages_stored
            });
            ServerFrame::Ack {
                req,
                room,
                id,
                seq: a.seq,
                ts: a.ts,
            }
        }
        Err(e) => Refusal::from(e).into_frame(req),
    }
}

/// What a bulk reply puts on the wire: the encoded frame for a bulk stream
/// of its own, or, when there is nothing to send there, the `Error` frame
/// for the control stream. Every request gets an answer.
pub fn bulk_bytes(
    req: RequestId,
    reply: Result<ServerFrame, Refusal>,
) -> Result<Bytes, ServerFrame> {
    let frame = reply.map_err(|refusal| refusal.into_frame(req))?;
    let bytes = codec::encode(&frame);
    if bytes.len() - 4 > MAX_BULK_FRAME {
        return Err(undeliverable(
            req,
            "the reply is too large to send; narrow the request",
        ));
    }
    Ok(bytes)
}

/// How the stream of a bulk reply ended (PROTOCOL §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The client's QUIC stack acknowledged every byte and the end of the
    /// stream: the reply is the answer.
    Delivered,
    /// The client stopped the stream (STOP_SENDING) before it had all of it.
    Stopped,
    /// Not all of it acknowledged in time; the relay reset the stream.
    TimedOut,
    /// The connection failed under the stream.
    Lost,
}

/// The answer to a bulk request that found no place among the relay's
/// bulk replies in time: nothing was read.
pub fn bulk_busy(req: RequestId) -> ServerFrame {
    undeliverable(
        req,
        "the relay is sending too many replies right now; ask again in a moment",
    )
}

/// The answer a bulk request is still owed once its stream has ended:
/// nothing when the reply arrived, `Unavailable` on the control stream
/// otherwise, so every request gets exactly one answer however its
/// stream failed.
pub fn bulk_undelivered(req: RequestId, delivery: Delivery) -> Option<ServerFrame> {
    let why = match delivery {
        Delivery::Delivered => return None,
        Delivery::Stopped => "the reply's stream was stopped before it arrived; ask again",
        Delivery::TimedOut => "the reply could not be delivered in time; ask again",
        Delivery::Lost => "the reply's stream failed; ask again",
    };
    Some(undeliverable(req, why))
}

fn undeliverable(req: RequestId, msg: &str) -> ServerFrame {
    Refusal::new(ErrorCode::Unavailable, msg).into_frame(req)
}

fn refused(req: RequestId, refusal: Refusal) -> Answer {
    Answer::Reply(refusal.into_frame(req))
}

fn bulk(
    req: RequestId,
    work: impl Future<Output = Result<ServerFrame, Refusal>> + Send + 'static,
) -> Answer {
    Answer::Bulk {
        req,
        work: Box::pin(work),
    }
}

fn cannot_start(e: &StoreError) -> Refusal {
    tracing::error!("cannot start a session: {e}");
    Refusal::new(
        ErrorCode::Unavailable,
        "the relay cannot read its store; try again later",
    )
}

/// The refusal of one session too many for `user`.
pub fn too_many_sessions<S>(relay: &Relay<S>, user: &str) -> Refusal {
    Refusal::new(
        ErrorCode::TooManyConnections,
        format!(
            "{user} already has {} sessions open on this relay; close one (log out on another device) and try again",
            relay.accounts.max_sessions()
        ),
    )
}

/// Of the cap on rooms per user, the share anyone may fill by entering
/// rooms themselves.
const ROOMS_BY_CHOICE: f64 = 1.0;

/// The share that DMs opened by others may fill: half, so that a crowd of
/// accounts opening DMs with someone cannot leave them unable to enter a
/// room of their own choosing.
const ROOMS_BY_OTHERS: f64 = 0.5;

/// Reads of the store a subscription may take when memberships keep
/// changing under it; each change is a rate-limited request, so this is
/// only reached by a user racing their own devices.
const SUBSCRIBE_TRIES: usize = 8;

/// Why `user`, who is not a member of `room`, is refused it: `not_member`
/// for a room they could join (their own DM included), and for a private
/// room they are not invited to, or another pair's DM, exactly the answer for a room that
/// does not exist, so nobody can probe which private rooms exist or who
/// writes to whom.
async fn outsider<S: Store>(store: &S, room: &str, user: &str, not_member: String) -> Refusal {
    let visible = match store.room(room).await {
        Ok(None) => Ok(false),
        Ok(Some(row)) => match row.kind {
            RoomKind::Public => Ok(true),
            RoomKind::Private => store.is_invited(room, user).await,
            RoomKind::Direct => Ok(in_dm(room, user)),
        },
        Err(e) => Err(e),
    };
    match visible {
        Ok(true) => Refusal::new(ErrorCode::NotMember, not_member),
        Ok(false) => no_such_room(room),
        Err(e) => e.into(),
    }
}

/// Whether `user` is one of the two users a DM room is named after.
fn in_dm(room: &str, user: &str) -> bool {
    names::dm_users(room)
        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(user) || b.eq_ignore_ascii_case(user))
}

fn no_such_room(room: &str) -> Refusal {
    Refusal::new(ErrorCode::NoSuchRoom, format!("there is no room {room}"))
}

fn info(row: &RoomRow) -> RoomInfo {
    RoomInfo {
        name: row.name.clone(),
        kind: row.kind,
        members: row.members,
        latest: row.latest,
        topic: row.topic.clone(),
    }
}

#[cfg(test)]
mod tests;
