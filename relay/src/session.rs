//! A logged-in session: reads requests from the control stream and answers
//! them. Sends are pipelined: each is handed to the store in arrival order
//! and acknowledged by a task when its commit lands, so one client's
//! commits overlap instead of queueing behind each other.

use std::sync::Arc;
use std::time::Instant;

use common::codec;
use common::frame::{
    ClientFrame, ErrorCode, Member, Page, RequestId, RoomInfo, RoomKind, ServerFrame,
};
use common::limits::{MAX_BULK_FRAME, MAX_CONTROL_FRAME, MAX_PAGE};
use common::names::{self, LOBBY};
use quinn::{Connection, RecvStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::conn::{error, frame_error, store_refusal, Exit};
use crate::defaults::{BULK_WRITE_TIMEOUT, MAX_BULK_IN_FLIGHT, MAX_IN_FLIGHT};
use crate::hub::Outbox;
use crate::metrics::inc;
use crate::rate::{SendGate, TokenBucket};
use crate::state::Relay;
use crate::store::{NewMessage, RoomRow, Store, StoreError};

type Reply = Result<ServerFrame, (ErrorCode, String)>;

/// State of one logged-in connection.
pub struct Session<S: Store> {
    relay: Arc<Relay<S>>,
    outbox: Arc<Outbox>,
    conn: Connection,
    gate: SendGate,
    requests: TokenBucket,
    in_flight: Arc<Semaphore>,
    bulk: Arc<Semaphore>,
    // Owned here so that they end with the session: no orphan tasks.
    tasks: JoinSet<()>,
}

impl<S: Store> Session<S> {
    /// A session for a user who just logged in.
    pub fn new(relay: Arc<Relay<S>>, outbox: Arc<Outbox>, conn: Connection) -> Self {
        let gate = SendGate::new(relay.cfg.rate_limit, Instant::now());
        let requests = TokenBucket::new(relay.cfg.request_rate, Instant::now());
        Session {
            relay,
            outbox,
            conn,
            gate,
            requests,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            bulk: Arc::new(Semaphore::new(MAX_BULK_IN_FLIGHT)),
            tasks: JoinSet::new(),
        }
    }

    fn user(&self) -> &str {
        &self.outbox.user
    }

    /// Serves requests until the client leaves, breaks the protocol, or the
    /// relay shuts down.
    pub async fn run(mut self, recv: &mut RecvStream) -> Exit {
        let mut shutdown = self.relay.shutdown_signal();
        let exit = loop {
            // Finished tasks are reaped here rather than in the select:
            // `read_frame` is not cancel-safe, and dropping it half-way
            // through a frame would lose bytes and desync the stream.
            while self.tasks.try_join_next().is_some() {}
            tokio::select! {
                frame = codec::read_frame::<ClientFrame, _>(recv, MAX_CONTROL_FRAME) => match frame {
                    Ok(Some(ClientFrame::Bye)) | Ok(None) => break Exit::Normal,
                    Ok(Some(frame)) => self.handle(frame).await,
                    Err(common::codec::FrameError::Io(_)) => break Exit::Lost,
                    Err(e) => {
                        tracing::info!(user = %self.user(), "bad frame: {e}");
                        inc(&self.relay.metrics.protocol_errors);
                        self.outbox.reply(&frame_error(&e)).await;
                        break Exit::Protocol;
                    }
                },
                // Shutdown may drop a half-read frame: the connection ends anyway.
                _ = crate::state::until_shutdown(&mut shutdown) => break Exit::Shutdown,
            }
        };
        // Sends already handed to the store finish and are acknowledged.
        while self.tasks.join_next().await.is_some() {}
        exit
    }

    async fn handle(&mut self, frame: ClientFrame) {
        let req = frame.req();
        let changes_membership = matches!(
            frame,
            ClientFrame::CreateRoom { .. }
                | ClientFrame::Join { .. }
                | ClientFrame::Leave { .. }
                | ClientFrame::Invite { .. }
                | ClientFrame::OpenDm { .. }
        );
        // These write to the store and fan out presence: bounded like sends.
        if changes_membership && !self.requests.take(Instant::now()) {
            inc(&self.relay.metrics.rate_limited);
            let msg = format!(
                "more than {} room changes per second; try again in a moment",
                self.relay.cfg.request_rate
            );
            self.outbox
                .reply(&error(req, ErrorCode::RateLimited, &msg))
                .await;
            return;
        }
        let reply = match frame {
            ClientFrame::Send {
                req,
                room,
                id,
                body,
            } => return self.send(req, room, id, body).await,
            ClientFrame::History {
                req,
                room,
                page,
                limit,
            } => return self.history(req, room, page, limit).await,
            ClientFrame::Ping { req } => Ok(ServerFrame::Pong { req }),
            ClientFrame::CreateRoom { req, room, private } => {
                self.create_room(req, &room, private).await
            }
            ClientFrame::Join { req, room } => self.join(req, &room).await,
            ClientFrame::Leave { req, room } => self.leave(req, &room).await,
            ClientFrame::Invite { req, room, user } => self.invite(req, &room, &user).await,
            ClientFrame::ListRooms { req } => return self.list_rooms(req).await,
            ClientFrame::Members { req, room } => return self.members(req, room).await,
            ClientFrame::OpenDm { req, user } => self.open_dm(req, &user).await,
            ClientFrame::Resume { req, room } => self.resume(req, &room).await,
            ClientFrame::Hello { .. }
            | ClientFrame::Register { .. }
            | ClientFrame::Login { .. } => Err((ErrorCode::Unexpected, "already logged in".into())),
            ClientFrame::Bye => return,
        };
        let frame = reply.unwrap_or_else(|(code, msg)| error(req, code, &msg));
        self.outbox.reply(&frame).await;
    }

    async fn send(&mut self, req: RequestId, room: String, id: common::frame::MsgId, body: String) {
        let refusal = if let Err(msg) = common::limits::check_body(&body) {
            Some((ErrorCode::BadBody, msg))
        } else if !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            Some(self.not_member(&room).await)
        } else if !self.gate.admit(id, Instant::now()) {
            Some((
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; not stored: resend it, and the messages after it, in order in a moment",
                    self.relay.cfg.rate_limit
                ),
            ))
        } else {
            None
        };
        if let Some((code, msg)) = refusal {
            if code == ErrorCode::RateLimited {
                inc(&self.relay.metrics.rate_limited);
            }
            self.outbox.reply(&error(req, code, &msg)).await;
            return;
        }
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        // Handed to the store now, in arrival order; awaited in a task.
        let appended = self.relay.store.append(NewMessage {
            room: room.clone(),
            from: self.user().to_owned(),
            id,
            body,
        });
        let outbox = self.outbox.clone();
        let relay = self.relay.clone();
        self.tasks.spawn(async move {
            let frame = match appended.await {
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
                Err(e) => {
                    let (code, msg) = store_refusal(e);
                    error(req, code, &msg)
                }
            };
            outbox.reply(&frame).await;
            drop(permit);
        });
    }

    async fn history(&mut self, req: RequestId, room: String, page: Page, limit: u16) {
        if limit == 0 || limit > MAX_PAGE {
            let msg = format!("page size must be 1 to {MAX_PAGE}");
            self.outbox
                .reply(&error(req, ErrorCode::BadLimit, &msg))
                .await;
            return;
        }
        if !self.relay.hub.is_subscribed(self.outbox.id, &room) {
            let (code, msg) = self.not_member(&room).await;
            self.outbox.reply(&error(req, code, &msg)).await;
            return;
        }
        let relay = self.relay.clone();
        self.send_bulk(req, async move {
            let (messages, more) = relay
                .store
                .history(&room, page, limit)
                .await
                .map_err(store_refusal)?;
            Ok(ServerFrame::HistoryPage {
                req,
                room,
                messages,
                more,
            })
        })
        .await;
    }

    /// Answers on a bulk stream of its own, in a task, so a big reply never
    /// holds up chat lines. At most [`MAX_BULK_IN_FLIGHT`] per session: past
    /// that, the reader waits, and so does a client that asks faster than it
    /// reads. Every request gets an answer: a reply that cannot be delivered
    /// becomes an `Unavailable` error on the control stream.
    async fn send_bulk<F>(&mut self, req: RequestId, reply: F)
    where
        F: std::future::Future<Output = Reply> + Send + 'static,
    {
        let permit = self
            .bulk
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let outbox = self.outbox.clone();
        let conn = self.conn.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            let frame = match reply.await {
                Ok(frame) => frame,
                Err((code, msg)) => {
                    outbox.reply(&error(req, code, &msg)).await;
                    return;
                }
            };
            let bytes = codec::encode(&frame);
            if bytes.len() - 4 > MAX_BULK_FRAME {
                let msg = "the reply is too large to send; narrow the request";
                outbox.reply(&error(req, ErrorCode::Unavailable, msg)).await;
                return;
            }
            let write = async {
                let mut stream = conn.open_uni().await.ok()?;
                stream.write_all(&bytes).await.ok()?;
                stream.finish().ok()
            };
            if tokio::time::timeout(BULK_WRITE_TIMEOUT, write)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                let msg = "the reply could not be delivered in time; ask again";
                outbox.reply(&error(req, ErrorCode::Unavailable, msg)).await;
            }
        });
    }

    /// The refusal for a room the user is not in: distinguishes rooms that
    /// do not exist, so a typo is not reported as a permission problem.
    async fn not_member(&self, room: &str) -> (ErrorCode, String) {
        match self.relay.store.room(room).await {
            Ok(Some(_)) => (
                ErrorCode::NotMember,
                format!("you are not a member of {room}; join it first"),
            ),
            Ok(None) => (ErrorCode::NoSuchRoom, format!("there is no room {room}")),
            Err(e) => store_refusal(e),
        }
    }

    async fn room_or_refuse(&self, room: &str) -> Result<RoomRow, (ErrorCode, String)> {
        match self.relay.store.room(room).await {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err((ErrorCode::NoSuchRoom, format!("there is no room {room}"))),
            Err(e) => Err(store_refusal(e)),
        }
    }

    async fn create_room(&mut self, req: RequestId, room: &str, private: bool) -> Reply {
        names::check_room(room).map_err(|e| {
            (
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
                StoreError::RoomExists => (
                    ErrorCode::RoomExists,
                    format!("{room} exists; join it instead"),
                ),
                other => store_refusal(other),
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
        let member = self
            .relay
            .store
            .is_member(room, &user)
            .await
            .map_err(store_refusal)?;
        if !member {
            match row.kind {
                RoomKind::Public => {}
                RoomKind::Private => {
                    if !self
                        .relay
                        .store
                        .is_invited(room, &user)
                        .await
                        .map_err(store_refusal)?
                    {
                        return Err((
                            ErrorCode::Forbidden,
                            format!("{room} is private; ask a member to invite you"),
                        ));
                    }
                }
                RoomKind::Direct => {
                    return Err((
                        ErrorCode::Forbidden,
                        "direct-message rooms cannot be joined".into(),
                    ))
                }
            }
            self.relay
                .store
                .add_member(room, &user)
                .await
                .map_err(store_refusal)?;
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
            return Err((ErrorCode::Forbidden, "everyone stays in lobby".into()));
        }
        let row = self.room_or_refuse(room).await?;
        if row.kind == RoomKind::Direct {
            return Err((
                ErrorCode::Forbidden,
                "direct-message rooms cannot be left".into(),
            ));
        }
        let user = self.user().to_owned();
        if !self
            .relay
            .store
            .remove_member(room, &user)
            .await
            .map_err(store_refusal)?
        {
            return Err((
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
            return Err((
                ErrorCode::NotMember,
                format!("only members of {room} can invite to it"),
            ));
        }
        if row.kind == RoomKind::Direct {
            return Err((
                ErrorCode::Forbidden,
                "nobody can be invited to a direct-message room".into(),
            ));
        }
        let target = self.canonical_user(user).await?;
        self.relay
            .store
            .invite(room, &target)
            .await
            .map_err(store_refusal)?;
        Ok(ServerFrame::Done { req })
    }

    async fn list_rooms(&mut self, req: RequestId) {
        let relay = self.relay.clone();
        let user = self.user().to_owned();
        self.send_bulk(req, async move {
            let joined = relay.store.rooms_of(&user).await.map_err(store_refusal)?;
            let public = relay.store.public_rooms().await.map_err(store_refusal)?;
            Ok(ServerFrame::Rooms {
                req,
                joined: joined.iter().map(info).collect(),
                public: public.iter().map(info).collect(),
            })
        })
        .await;
    }

    async fn members(&mut self, req: RequestId, room: String) {
        let allowed = match self.room_or_refuse(&room).await {
            Ok(row)
                if row.kind != RoomKind::Public
                    && !self.relay.hub.is_subscribed(self.outbox.id, &room) =>
            {
                Err((
                    ErrorCode::NotMember,
                    format!("only members can see who is in {room}"),
                ))
            }
            Ok(_) => Ok(()),
            Err(refusal) => Err(refusal),
        };
        if let Err((code, msg)) = allowed {
            self.outbox.reply(&error(req, code, &msg)).await;
            return;
        }
        let relay = self.relay.clone();
        self.send_bulk(req, async move {
            let names = relay.store.members(&room).await.map_err(store_refusal)?;
            let members = names
                .into_iter()
                .map(|user| Member {
                    online: relay.hub.is_online(&user),
                    user,
                })
                .collect();
            Ok(ServerFrame::Members { req, room, members })
        })
        .await;
    }

    /// Live delivery of a room again after `Lagged`. Never changes
    /// membership: a room left on another device stays left.
    async fn resume(&mut self, req: RequestId, room: &str) -> Reply {
        if !self
            .relay
            .store
            .is_member(room, self.user())
            .await
            .map_err(store_refusal)?
        {
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
        let row = self
            .relay
            .store
            .open_dm(&me, &other)
            .await
            .map_err(store_refusal)?;
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

    async fn canonical_user(&self, user: &str) -> Result<String, (ErrorCode, String)> {
        match self.relay.store.user(user).await {
            Ok(Some(u)) => Ok(u.name),
            Ok(None) => Err((ErrorCode::NoSuchUser, format!("there is no user {user:?}"))),
            Err(e) => Err(store_refusal(e)),
        }
    }
}

fn info(row: &RoomRow) -> RoomInfo {
    RoomInfo {
        name: row.name.clone(),
        kind: row.kind,
        members: row.members,
        latest: row.latest,
    }
}
