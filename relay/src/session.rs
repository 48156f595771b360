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
    ClientFrame, ErrorCode, Member, MsgId, Page, RequestId, RoomInfo, RoomKind, ServerFrame,
};
use common::limits::{MAX_BULK_FRAME, MAX_PAGE};
use common::names::{self, LOBBY};
use tokio::sync::mpsc;

use crate::hub::Outbox;
use crate::metrics::inc;
use crate::rate::{SendGate, TokenBucket};
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
    requests: TokenBucket,
}

impl<S: Store> Session<S> {
    /// Starts the session of `user`, who just logged in: attaches it to the
    /// hub and subscribes it to every room of the user before any request
    /// is read, so anything committed from now on arrives live and anything
    /// before is in history. Returns the session and the queue its writer
    /// drains. On a store failure nothing stays attached.
    pub async fn start(
        relay: Arc<Relay<S>>,
        user: String,
        now: Instant,
    ) -> Result<(Self, mpsc::Receiver<Bytes>), StoreError> {
        let id = relay.next_session_id();
        let (outbox, rx) = Outbox::new(id, user, relay.cfg.queue_depth);
        // Attached before the rooms are read, so a join or leave on another
        // device meanwhile reaches this session; the epoch catches a stale read.
        let mut epoch = relay.hub.attach(outbox.clone());
        loop {
            let rooms = match relay.store.rooms_of(&outbox.user).await {
                Ok(rows) => rows.into_iter().map(|r| r.name).collect::<Vec<_>>(),
                Err(e) => {
                    relay.hub.detach(id);
                    return Err(e);
                }
            };
            match relay.hub.subscribe_all(id, &rooms, epoch) {
                Ok(()) => break,
                Err(now) => epoch = now,
            }
        }
        relay.hub.announce_online(id);
        let session = Session {
            gate: SendGate::new(relay.cfg.rate_limit, now),
            requests: TokenBucket::new(relay.cfg.request_rate, now),
            relay,
            outbox,
        };
        Ok((session, rx))
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
        if is_room_change(&frame) && !self.requests.take(now) {
            inc(&self.relay.metrics.rate_limited);
            let msg = format!(
                "more than {} room changes per second; try again in a moment",
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
                self.create_room(req, &room, private).await
            }
            ClientFrame::Join { req, room } => self.join(req, &room).await,
            ClientFrame::Leave { req, room } => self.leave(req, &room).await,
            ClientFrame::Invite { req, room, user } => self.invite(req, &room, &user).await,
            ClientFrame::OpenDm { req, user } => self.open_dm(req, &user).await,
            ClientFrame::Resume { req, room } => self.resume(req, &room).await,
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
        if !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            return refused(req, self.not_member(&room).await);
        }
        if !self.gate.admit(id, now) {
            inc(&self.relay.metrics.rate_limited);
            let msg = format!(
                "more than {} messages per second; not stored: resend it, and the messages after it, in order in a moment",
                self.relay.cfg.rate_limit
            );
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
        if !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            return refused(req, self.not_member(&room).await);
        }
        let relay = self.relay.clone();
        bulk(req, async move {
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
            let public = relay.store.public_rooms().await?;
            Ok(ServerFrame::Rooms {
                req,
                joined: joined.iter().map(info).collect(),
                public: public.iter().map(info).collect(),
            })
        })
    }

    async fn members(&mut self, req: RequestId, room: String) -> Answer {
        let row = match self.room_or_refuse(&room).await {
            Ok(row) => row,
            Err(refusal) => return refused(req, refusal),
        };
        if row.kind != RoomKind::Public && !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            let msg = format!("only members can see who is in {room}");
            return refused(req, Refusal::new(ErrorCode::NotMember, msg));
        }
        let relay = self.relay.clone();
        bulk(req, async move {
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

    /// The refusal for a room the user is not in: distinguishes rooms that
    /// do not exist, so a typo is not reported as a permission problem.
    async fn not_member(&self, room: &str) -> Refusal {
        match self.relay.store.room(room).await {
            Ok(Some(_)) => Refusal::new(
                ErrorCode::NotMember,
                format!("you are not a member of {room}; join it first"),
            ),
            Ok(None) => no_such_room(room),
            Err(e) => e.into(),
        }
    }

    async fn room_or_refuse(&self, room: &str) -> Result<RoomRow, Refusal> {
        self.relay
            .store
            .room(room)
            .await?
            .ok_or_else(|| no_such_room(room))
    }

    async fn create_room(&mut self, req: RequestId, room: &str, private: bool) -> Reply {
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
        let row = self
            .relay
            .store
            .create_room(room, kind, self.user())
            .await
            .map_err(|e| match e {
                StoreError::RoomExists => Refusal::new(
                    ErrorCode::RoomExists,
                    format!("{room} exists; join it instead"),
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
        let store = &self.relay.store;
        if !store.is_member(room, &user).await? {
            match row.kind {
                RoomKind::Public => {}
                RoomKind::Private => {
                    if !store.is_invited(room, &user).await? {
                        return Err(Refusal::new(
                            ErrorCode::Forbidden,
                            format!("{room} is private; ask a member to invite you"),
                        ));
                    }
                }
                RoomKind::Direct => {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        "direct-message rooms cannot be joined",
                    ))
                }
            }
            store.add_member(room, &user).await?;
            self.relay.hub.joined(&user, room);
        }
        // Heals a subscription a concurrent login may have missed.
        self.relay.hub.subscribe(self.outbox.id, room);
        self.outbox.lags.resubscribed(room);
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
        let row = self.room_or_refuse(room).await?;
        if row.kind == RoomKind::Direct {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "direct-message rooms cannot be left",
            ));
        }
        let user = self.user().to_owned();
        if !self.relay.store.remove_member(room, &user).await? {
            return Err(Refusal::new(
                ErrorCode::NotMember,
                format!("you are not a member of {room}"),
            ));
        }
        self.relay.hub.left(&user, room);
        Ok(ServerFrame::Left {
            req,
            room: room.to_owned(),
        })
    }

    async fn invite(&mut self, req: RequestId, room: &str, user: &str) -> Reply {
        let row = self.room_or_refuse(room).await?;
        if !self.relay.hub.is_subscribed(self.outbox.id, room) {
            return Err(Refusal::new(
                ErrorCode::NotMember,
                format!("only members of {room} can invite to it"),
            ));
        }
        if row.kind == RoomKind::Direct {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "nobody can be invited to a direct-message room",
            ));
        }
        let target = self.canonical_user(user).await?;
        self.relay.store.invite(room, &target).await?;
        Ok(ServerFrame::Done { req })
    }

    /// Live delivery of a room again after `Lagged`. Never changes
    /// membership: a room left on another device stays left.
    async fn resume(&mut self, req: RequestId, room: &str) -> Reply {
        if !self.relay.store.is_member(room, self.user()).await? {
            return Err(self.not_member(room).await);
        }
        self.relay.hub.subscribe(self.outbox.id, room);
        self.outbox.lags.resubscribed(room);
        Ok(ServerFrame::Done { req })
    }

    async fn open_dm(&mut self, req: RequestId, user: &str) -> Reply {
        let other = self.canonical_user(user).await?;
        let me = self.user().to_owned();
        let room = names::dm_room(&me, &other);
        let known = self.relay.hub.is_subscribed(self.outbox.id, &room);
        let row = self.relay.store.open_dm(&me, &other).await?;
        if !known {
            self.relay.hub.joined(&me, &room);
            if other != me {
                self.relay.hub.joined(&other, &room);
            }
        }
        Ok(ServerFrame::Joined {
            req,
            room: info(&row),
        })
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

/// Whether a request changes rooms or memberships. These write to the
/// store and fan out presence, so they have a rate limit of their own,
/// like sends (`Config::request_rate`).
pub fn is_room_change(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::CreateRoom { .. }
            | ClientFrame::Join { .. }
            | ClientFrame::Leave { .. }
            | ClientFrame::Invite { .. }
            | ClientFrame::OpenDm { .. }
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

fn no_such_room(room: &str) -> Refusal {
    Refusal::new(ErrorCode::NoSuchRoom, format!("there is no room {room}"))
}

fn info(row: &RoomRow) -> RoomInfo {
    RoomInfo {
        name: row.name.clone(),
        kind: row.kind,
        members: row.members,
        latest: row.latest,
    }
}

#[cfg(test)]
mod tests;
