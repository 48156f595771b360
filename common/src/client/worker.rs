//! The task behind a [`Client`](super::Client): owns the connection, routes
//! replies to requests, drives [`RoomSync`], resends unacknowledged
//! messages, and reconnects with backoff, moving to the next relay of the
//! list when its relay went away.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::connect::{self, Incoming, Link};
use super::relays::RelayList;
use super::sync::{RoomSync, Step, Token};
use super::{Acked, Command, Config, CurrentRelay, Event, RequestError};
use crate::codec;
use crate::frame::{ClientFrame, ErrorCode, MsgId, Page, PresenceKind, RequestId, ServerFrame};

/// Wait before resending a message the relay refused as over the rate limit.
const RATE_LIMIT_RETRY: Duration = Duration::from_secs(1);

/// A connection up this long counts as healthy: the next loss starts the
/// backoff from the beginning again.
const STABLE: Duration = Duration::from_secs(30);

struct PendingSend {
    order: u64,
    room: String,
    body: String,
    reply: oneshot::Sender<Result<Acked, RequestError>>,
    /// Set while waiting out a rate-limit refusal.
    retry_at: Option<Instant>,
}

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

/// How serving a connection ended.
enum Flow {
    /// The connection is gone. `went_away` unless the user asked for a
    /// reconnect: then the same relay is tried first again.
    Lost {
        reason: String,
        went_away: bool,
    },
    Close,
}

impl Flow {
    fn went_away(reason: String) -> Flow {
        Flow::Lost {
            reason,
            went_away: true,
        }
    }
}

pub(crate) struct Worker {
    cfg: Config,
    relays: RelayList,
    relay: CurrentRelay,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    sync: RoomSync,
    pending: HashMap<MsgId, PendingSend>,
    next_order: u64,
    waiting: HashMap<RequestId, Waiting>,
    next_req: RequestId,
    user: String,
}

impl Worker {
    pub(crate) fn new(
        cfg: Config,
        relays: RelayList,
        relay: CurrentRelay,
        events: mpsc::UnboundedSender<Event>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        Worker {
            user: cfg.user.clone(),
            cfg,
            relays,
            relay,
            events,
            commands,
            sync: RoomSync::default(),
            pending: HashMap::new(),
            next_order: 0,
            waiting: HashMap::new(),
            // 1 was the login request.
            next_req: 2,
        }
    }

    /// Serves `first` (the link to `relays.addrs()[at]`), then every link
    /// after it, until the session is closed or cannot go on.
    pub(crate) async fn run(mut self, first: Link, at: usize) {
        let (mut link, mut at) = (first, at);
        let mut attempt = 0;
        loop {
            let up = Instant::now();
            let server = link.server.clone();
            let flow = self.serve(link).await;
            self.set_relay(None);
            let (reason, went_away) = match flow {
                Flow::Close => return,
                Flow::Lost { reason, went_away } => (reason, went_away),
            };
            tracing::info!(%server, "connection lost: {reason}");
            self.connection_lost();
            if went_away {
                self.relays.went_away(at);
            }
            // A connection that dies right after login must not make the
            // backoff start over, or a broken relay gets hammered.
            if up.elapsed() >= STABLE {
                attempt = 0;
            }
            (link, at) = match self.reconnect(reason, server, &mut attempt).await {
                Some(next) => next,
                None => return,
            };
        }
    }

    fn set_relay(&self, server: Option<String>) {
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = server;
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn req(&mut self) -> RequestId {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(2);
        req
    }

    async fn serve(&mut self, mut link: Link) -> Flow {
        self.user = link.user.clone();
        self.set_relay(Some(link.server.clone()));
        self.emit(Event::Connected {
            user: self.user.clone(),
            server: link.server.clone(),
        });
        match self.start(&mut link).await {
            Ok(()) => {}
            Err(reason) => return Flow::went_away(reason),
        }
        loop {
            let retry = self.pending.values().filter_map(|p| p.retry_at).min();
            let result = tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    None => {
                        say_bye(&mut link).await;
                        return Flow::Close;
                    }
                    Some(Command::Close { done }) => {
                        say_bye(&mut link).await;
                        self.fail_all();
                        let _ = done.send(());
                        return Flow::Close;
                    }
                    Some(Command::Reconnect) => {
                        link.conn.close(0u32.into(), b"reconnecting");
                        return Flow::Lost {
                            reason: "reconnect requested".into(),
                            went_away: false,
                        };
                    }
                    Some(Command::Send { room, body, reply }) => {
                        let id = self.queue_send(room, body, reply);
                        self.write_send(&mut link, id).await
                    }
                    Some(Command::Request { mut frame, reply }) => {
                        let req = self.req();
                        frame.set_req(req);
                        self.waiting.insert(req, Waiting::App(reply));
                        write(&mut link, &frame).await
                    }
                },
                incoming = link.incoming.recv() => match incoming {
                    Some(Incoming::Frame(frame)) => self.on_frame(&mut link, frame).await,
                    Some(Incoming::Closed(reason)) => Err(close_reason(&link, reason)),
                    None => Err(close_reason(&link, "connection ended".into())),
                },
                _ = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                    self.resend_due(&mut link).await
                }
            };
            if let Err(reason) = result {
                return Flow::went_away(reason);
            }
        }
    }

    /// After a login: ask for the room list (which drives catch-up) and
    /// resend every unacknowledged message with its original id.
    async fn start(&mut self, link: &mut Link) -> Result<(), String> {
        self.sync.logged_in();
        let req = self.req();
        self.waiting.insert(req, Waiting::Rooms);
        write(link, &ClientFrame::ListRooms { req }).await?;
        let mut ids: Vec<(u64, MsgId)> =
            self.pending.iter().map(|(id, p)| (p.order, *id)).collect();
        ids.sort_unstable();
        for (_, id) in ids {
            if let Some(p) = self.pending.get_mut(&id) {
                p.retry_at = None;
            }
            self.write_send(link, id).await?;
        }
        Ok(())
    }

    fn queue_send(
        &mut self,
        room: String,
        body: String,
        reply: oneshot::Sender<Result<Acked, RequestError>>,
    ) -> MsgId {
        let id: MsgId = rand::thread_rng().gen();
        let order = self.next_order;
        self.next_order += 1;
        self.pending.insert(
            id,
            PendingSend {
                order,
                room,
                body,
                reply,
                retry_at: None,
            },
        );
        id
    }

    async fn write_send(&mut self, link: &mut Link, id: MsgId) -> Result<(), String> {
        let req = self.req();
        let Some(p) = self.pending.get(&id) else {
            return Ok(());
        };
        let frame = ClientFrame::Send {
            req,
            room: p.room.clone(),
            id,
            body: p.body.clone(),
        };
        self.waiting.insert(req, Waiting::Send(id));
        write(link, &frame).await
    }

    async fn resend_due(&mut self, link: &mut Link) -> Result<(), String> {
        let now = Instant::now();
        let mut due: Vec<(u64, MsgId)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|t| t <= now))
            .map(|(id, p)| (p.order, *id))
            .collect();
        due.sort_unstable();
        for (_, id) in due {
            if let Some(p) = self.pending.get_mut(&id) {
                p.retry_at = None;
            }
            self.write_send(link, id).await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, link: &mut Link, frame: ServerFrame) -> Result<(), String> {
        match frame {
            ServerFrame::Ack {
                req, id, seq, ts, ..
            } => {
                self.waiting.remove(&req);
                if let Some(p) = self.pending.remove(&id) {
                    let _ = p.reply.send(Ok(Acked { seq, ts }));
                }
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
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.retry_at = Some(Instant::now() + RATE_LIMIT_RETRY);
                    }
                }
                Some(Waiting::Send(id)) => {
                    if let Some(p) = self.pending.remove(&id) {
                        let _ = p.reply.send(Err(RequestError::Refused { code, message }));
                    }
                }
                Some(Waiting::Page { room, .. } | Waiting::Rejoin { room })
                    if matches!(code, ErrorCode::NotMember | ErrorCode::NoSuchRoom) =>
                {
                    let steps = self.sync.left(&room);
                    self.apply(link, steps).await?;
                }
                // Without this answer a room would stay held back forever:
                // start over on a fresh connection instead.
                Some(_) => return Err(format!("catch-up failed ({code:?}: {message})")),
                None => {}
            },
            ServerFrame::Message(msg) => {
                let steps = self.sync.live(msg);
                self.apply(link, steps).await?;
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
                    self.apply(link, steps).await?;
                }
                _ => {}
            },
            ServerFrame::Rooms {
                req,
                joined,
                public,
            } => match self.waiting.remove(&req) {
                Some(Waiting::Rooms) => {
                    let steps = self.sync.room_list(&joined);
                    self.apply(link, steps).await?;
                }
                Some(Waiting::App(tx)) => {
                    let _ = tx.send(Ok(ServerFrame::Rooms {
                        req,
                        joined,
                        public,
                    }));
                }
                _ => {}
            },
            ServerFrame::Presence(p) => {
                if p.user == self.user {
                    if let Some(room) = &p.room {
                        let steps = match p.kind {
                            PresenceKind::Joined => self.sync.joined(room),
                            PresenceKind::Left => self.sync.left(room),
                            _ => Vec::new(),
                        };
                        self.apply(link, steps).await?;
                    }
                }
                self.emit(Event::Presence(p));
            }
            ServerFrame::Lagged { room, from } => {
                tracing::info!(%room, from, "lagged; catching up from history");
                let steps = self.sync.lagged(&room);
                self.apply(link, steps).await?;
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
                self.apply(link, membership).await?;
            }
        }
        Ok(())
    }

    async fn apply(&mut self, link: &mut Link, steps: Vec<Step>) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Deliver(msg) => self.emit(Event::Message(msg)),
                Step::Joined { room, recent, more } => {
                    self.emit(Event::Joined { room, recent, more })
                }
                Step::Left { room } => self.emit(Event::Left { room }),
                Step::Fetch {
                    room,
                    page,
                    limit,
                    token,
                } => self.fetch(link, room, page, limit, token).await?,
                Step::Resubscribe { room } => {
                    let req = self.req();
                    self.waiting
                        .insert(req, Waiting::Rejoin { room: room.clone() });
                    write(link, &ClientFrame::Resume { req, room }).await?;
                }
            }
        }
        Ok(())
    }

    async fn fetch(
        &mut self,
        link: &mut Link,
        room: String,
        page: Page,
        limit: u16,
        token: Token,
    ) -> Result<(), String> {
        let req = self.req();
        let frame = ClientFrame::History {
            req,
            room: room.clone(),
            page,
            limit,
        };
        self.waiting
            .insert(req, Waiting::Page { room, page, token });
        write(link, &frame).await
    }

    /// Requests in flight die with the connection; sends stay pending and
    /// are resent after the next login.
    fn connection_lost(&mut self) {
        for (_, w) in self.waiting.drain() {
            if let Waiting::App(tx) = w {
                let _ = tx.send(Err(RequestError::NotConnected));
            }
        }
    }

    fn fail_all(&mut self) {
        self.connection_lost();
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(RequestError::Closed));
        }
    }

    /// Retries with backoff until connected (`Some`, with the index of the
    /// relay reached), or until the session is closed or a retry cannot
    /// help (`None`). The backoff is waited once per round: within a round
    /// every address is tried without waiting, so a dead relay does not
    /// hold up a live one.
    async fn reconnect(
        &mut self,
        mut reason: String,
        lost: String,
        attempt: &mut u32,
    ) -> Option<(Link, usize)> {
        let mut lost = Some(lost);
        loop {
            *attempt += 1;
            let delay = backoff(&self.cfg, *attempt);
            self.emit(Event::Reconnecting {
                attempt: *attempt,
                delay,
                reason: reason.clone(),
                lost: lost.take(),
                next: self.relays.next().to_owned(),
            });
            let deadline = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return None,
                        Some(Command::Close { done }) => {
                            self.fail_all();
                            let _ = done.send(());
                            return None;
                        }
                        Some(Command::Reconnect) => break,
                        Some(Command::Send { room, body, reply }) => {
                            self.queue_send(room, body, reply);
                        }
                        Some(Command::Request { reply, .. }) => {
                            let _ = reply.send(Err(RequestError::NotConnected));
                        }
                    },
                }
            }
            match connect::open(&self.cfg, &self.relays, false).await {
                Ok((link, at)) => {
                    self.relays.connected(at);
                    return Some((link, at));
                }
                Err(e) if e.is_fatal() => {
                    tracing::error!("giving up: {e}");
                    self.fail_all();
                    self.emit(Event::Failed(e));
                    return None;
                }
                Err(e) => {
                    reason = e.to_string();
                    self.relays.round_failed();
                }
            }
        }
    }
}

/// Delay before reconnect attempt `attempt` (1-based): doubling from the
/// initial delay to the cap, with ±25% jitter so that clients dropped
/// together do not return together.
fn backoff(cfg: &Config, attempt: u32) -> Duration {
    let base = cfg
        .reconnect_initial
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(cfg.reconnect_max);
    base.mul_f64(rand::thread_rng().gen_range(0.75..=1.25))
}

async fn write(link: &mut Link, frame: &ClientFrame) -> Result<(), String> {
    link.send
        .write_all(&codec::encode(frame))
        .await
        .map_err(|e| format!("write failed: {e}"))
}

async fn say_bye(link: &mut Link) {
    let _ = write(link, &ClientFrame::Bye).await;
    let _ = link.send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(500), link.send.stopped()).await;
    link.conn.close(0u32.into(), b"bye");
}

fn close_reason(link: &Link, fallback: String) -> String {
    match link.conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            String::from_utf8_lossy(&c.reason).into_owned()
        }
        Some(quinn::ConnectionError::TimedOut) => "the relay stopped answering".into(),
        Some(other) => other.to_string(),
        None => fallback,
    }
}
