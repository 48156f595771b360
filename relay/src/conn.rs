//! One client connection's I/O: the control stream, the pre-login exchange
//! and the session driven from their cores (`login`, `session`), the writer
//! that drains the session's queue, bulk replies on streams of their own,
//! and the orderly close. Nothing here decides what a request means.

mod bulk;

use std::sync::Arc;

use bytes::Bytes;
use common::codec::{self, FrameError};
use common::frame::{close, ClientFrame, ErrorCode, ServerFrame};
use common::limits::MAX_CONTROL_FRAME;
use quinn::{Connection, RecvStream, SendStream, WriteError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::accounts::BulkBudget;
use crate::defaults::{
    BULK_WAIT, BULK_WRITE_TIMEOUT, DRAIN_TIMEOUT, MAX_BULK_IN_FLIGHT, MAX_IN_FLIGHT, WRITE_BATCH,
};
use crate::hub::{Lags, Outbox};
use crate::limits::PreLogin;
use crate::login::{Account, Exit, Login, Step};
use crate::metrics::inc;
use crate::session::{acked, bulk_busy, bulk_bytes, bulk_undelivered, Answer, BulkWork, Session};
use crate::state::{until_shutdown, Relay};
use crate::store::Store;

/// Serves one established connection until it ends. `deadline` is the
/// login deadline, counted from when the connection arrived, handshake
/// included. `place` is its pre-login place: given up at login, or earlier
/// to a newcomer while the connection is silent, which closes it with
/// `BUSY`.
pub async fn serve<S: Store>(
    relay: Arc<Relay<S>>,
    conn: Connection,
    deadline: Instant,
    mut place: PreLogin,
) {
    // Clients send Hello as soon as the handshake is done: one that stays
    // silent gives its place back long before the login deadline.
    let hello_deadline = (Instant::now() + relay.cfg.hello_timeout).min(deadline);
    let opened = tokio::select! {
        opened = timeout_at(hello_deadline, conn.accept_bi()) => Some(opened),
        _ = place.evicted() => None,
    };
    let (mut send, mut recv) = match opened {
        Some(Ok(Ok(streams))) => streams,
        Some(Ok(Err(_))) => return,
        Some(Err(_)) => {
            conn.close(
                close::LOGIN_TIMEOUT.into(),
                b"no control stream before the Hello deadline",
            );
            return;
        }
        None => {
            evicted(&relay, &conn);
            return;
        }
    };
    // The deadline covers the whole exchange, writes included: a client
    // that stops reading must not hold a pre-login slot past it.
    let login = timeout_at(
        deadline,
        login(
            &relay,
            &conn,
            &mut send,
            &mut recv,
            (hello_deadline, deadline),
            &mut place,
        ),
    )
    .await;
    let account = match login.unwrap_or(Err(Exit::LoginTimeout)) {
        Ok(account) => account,
        Err(Exit::Busy) => {
            evicted(&relay, &conn);
            return;
        }
        Err(exit) => {
            // The place is not needed while the last frame drains.
            drop(place);
            drain(&mut send).await;
            close_with(&conn, exit);
            return;
        }
    };
    drop(place);

    let user = account.name.clone();
    let (session, rx) = match Session::start(relay.clone(), account, now()).await {
        Ok(started) => started,
        Err(refusal) => {
            tracing::warn!(%user, "session refused: {}", refusal.message);
            let code = match refusal.code {
                ErrorCode::TooManyConnections => close::BUSY,
                _ => close::NORMAL,
            };
            let _ = send.write_all(&codec::encode(&refusal.into_frame(0))).await;
            drain(&mut send).await;
            conn.close(code.into(), b"session refused");
            return;
        }
    };
    let outbox = session.outbox().clone();
    let id = outbox.id;
    let (write_failed, mut writer_failed) = oneshot::channel();
    let writer = tokio::spawn(write_loop(send, rx, outbox.lags.clone(), write_failed));
    tracing::info!(%user, session = id, addr = %conn.remote_address(), "logged in");

    let exit = run(&relay, session, &conn, &mut recv, &mut writer_failed).await;

    drop(outbox);
    // The writer ends once every outbox handle is gone and the queue is empty.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT * 2, writer).await;
    close_with(&conn, exit);
    tracing::info!(%user, session = id, ?exit, "disconnected");
}

/// Closes a connection whose pre-login place went to a newcomer. Nothing
/// is drained: it has said nothing to answer.
fn evicted<S>(relay: &Relay<S>, conn: &Connection) {
    inc(&relay.metrics.connections_evicted);
    tracing::debug!(addr = %conn.remote_address(), "silent connection evicted for a newcomer");
    close_with(conn, Exit::Busy);
}

fn close_with(conn: &Connection, exit: Exit) {
    let (code, reason) = exit.code();
    conn.close(code.into(), reason);
}

/// The time as the cores take it.
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Runs the pre-login exchange, all before the deadlines: the first is
/// for `Hello`, the second for the login. Returns the account logged in.
async fn login<S: Store>(
    relay: &Relay<S>,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    (hello_deadline, deadline): (Instant, Instant),
    place: &mut PreLogin,
) -> Result<Account, Exit> {
    let mut core = Login::new(relay, conn.remote_address().ip());
    let mut shutdown = relay.shutdown_signal();
    let stopped = stopped(send);
    tokio::pin!(stopped);
    loop {
        let until = if core.greeted() {
            deadline
        } else {
            hello_deadline
        };
        let read = tokio::select! {
            r = timeout_at(until, codec::read_frame::<ClientFrame, _>(recv, MAX_CONTROL_FRAME)) => r,
            _ = place.evicted() => return Err(Exit::Busy),
            _ = until_shutdown(&mut shutdown) => {
                write(send, &ServerFrame::Shutdown { reason: "relay shutting down".into() }).await;
                return Err(Exit::Shutdown);
            }
            () = &mut stopped => return Err(control_stopped(relay)),
        };
        let step = match read {
            Err(_) if until < deadline => core.hello_timed_out(),
            Err(_) => core.timed_out(),
            Ok(Ok(Some(frame))) => {
                // A few password checks per network at a time; waiting for
                // its turn, a connection is silent and may lose its place.
                let _turn = if matches!(
                    frame,
                    ClientFrame::Login { .. } | ClientFrame::Register { .. }
                ) {
                    tokio::select! {
                        turn = relay.password_checks.turn(conn.remote_address().ip()) => Some(turn),
                        _ = place.evicted() => return Err(Exit::Busy),
                    }
                } else {
                    None
                };
                // A login being checked keeps its place: only silent
                // connections give theirs to newcomers.
                let _checking = place.checking();
                core.handle(frame, now()).await
            }
            Ok(Ok(None)) => return Err(Exit::Normal),
            // The client reset its side of the stream (or the connection
            // is gone): it left, as after login; nothing to tell it.
            Ok(Err(FrameError::Io(_))) => return Err(Exit::Lost),
            Ok(Err(e)) => core.bad_frame(&e),
        };
        match step {
            Step::Reply(frame) => write(send, &frame).await,
            Step::ReplyAfter(delay, frame) => {
                tokio::time::sleep(delay).await;
                write(send, &frame).await;
            }
            Step::LoggedIn(account, frame) => {
                write(send, &frame).await;
                return Ok(account);
            }
            Step::Close(exit, frame) => {
                if let Some(frame) = frame {
                    write(send, &frame).await;
                }
                return Err(exit);
            }
        }
    }
}

/// Serves a logged-in session's requests until the client leaves, breaks
/// the protocol, or the relay shuts down. Sends are pipelined: each is
/// handed to the store in arrival order and acknowledged by a task when its
/// commit lands, so one client's commits overlap instead of queueing
/// behind each other.
async fn run<S: Store>(
    relay: &Arc<Relay<S>>,
    mut session: Session<S>,
    conn: &Connection,
    recv: &mut RecvStream,
    writer_failed: &mut oneshot::Receiver<Exit>,
) -> Exit {
    let outbox = session.outbox().clone();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bulk = Arc::new(Semaphore::new(MAX_BULK_IN_FLIGHT));
    // Owned here so that they end with the session: no orphan tasks.
    let mut appends = JoinSet::new();
    let mut bulks = JoinSet::new();
    let mut shutdown = relay.shutdown_signal();
    let exit = loop {
        // Finished tasks are reaped here rather than in the select:
        // `read_frame` is not cancel-safe, and dropping it half-way
        // through a frame would lose bytes and desync the stream.
        while appends.try_join_next().is_some() {}
        while bulks.try_join_next().is_some() {}
        let frame = tokio::select! {
            frame = codec::read_frame::<ClientFrame, _>(recv, MAX_CONTROL_FRAME) => frame,
            // Shutdown may drop a half-read frame: the connection ends anyway.
            _ = until_shutdown(&mut shutdown) => break Exit::Shutdown,
            _ = outbox.revoked() => break Exit::AccountChanged,
            // So may a writer that can write no more: requests could
            // still be read, stored and acted on, but never answered.
            Ok(exit) = &mut *writer_failed => match exit {
                Exit::Protocol => break control_stopped(relay),
                other => break other,
            },
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Exit::Normal,
            Err(FrameError::Io(_)) => break Exit::Lost,
            Err(e) => {
                outbox.reply(&session.bad_frame(&e)).await;
                break Exit::Protocol;
            }
        };
        match session.handle(frame, now()).await {
            Answer::Reply(frame) => {
                outbox.reply(&frame).await;
            }
            Answer::Append { req, msg } => {
                let permit = acquire(&in_flight).await;
                let (room, id) = (msg.room.clone(), msg.id);
                // Handed to the store now, in arrival order; awaited in a task.
                let appended = relay.store.append(msg);
                let (relay, outbox) = (relay.clone(), outbox.clone());
                appends.spawn(async move {
                    let frame = acked(&relay, req, room, id, appended.await);
                    outbox.reply(&frame).await;
                    drop(permit);
                });
            }
            Answer::Bulk { req, work } => {
                // At most MAX_BULK_IN_FLIGHT per session: past that the
                // reader waits, and so does a client that asks faster than
                // it reads.
                let permit = acquire(&bulk).await;
                let budget = session.bulk_budget();
                bulks.spawn(send_bulk(
                    conn.clone(),
                    outbox.clone(),
                    (req, work),
                    budget,
                    permit,
                ));
            }
            Answer::Bye => break Exit::Normal,
        }
    };
    // Sends already handed to the store finish and are acknowledged.
    while appends.join_next().await.is_some() {}
    // Replies still on their way are not: the client has left, or is
    // about to be told to. Waiting for it to acknowledge one could hold
    // the session, and the relay's shutdown, for the whole delivery limit.
    bulks.abort_all();
    while bulks.join_next().await.is_some() {}
    session.end();
    exit
}

async fn acquire(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed")
}

/// Sends a bulk reply on a stream of its own, so a big reply never holds up
/// chat lines. A reply that does not reach the client (its stream stopped,
/// reset after the time limit, or failed) becomes an `Unavailable` error on
/// the control stream: one answer either way.
///
/// Before the store is read, the reply takes a place among its account's
/// and the relay's (`BulkBudget`), held until its stream ends: clients
/// that ask and never read can make the relay hold only so many replies,
/// however many sessions and accounts they use. With none free within
/// [`BULK_WAIT`], the answer is `Unavailable` and nothing is read.
async fn send_bulk(
    conn: Connection,
    outbox: Arc<Outbox>,
    (req, work): (common::frame::RequestId, BulkWork),
    budget: BulkBudget,
    _permit: OwnedSemaphorePermit,
) {
    let Some(_places) = budget.take(BULK_WAIT).await else {
        outbox.reply(&bulk_busy(req)).await;
        return;
    };
    // The page itself is dropped once encoded: only its bytes are held.
    let bytes = match bulk_bytes(req, work.await) {
        Ok(bytes) => bytes,
        Err(frame) => {
            outbox.reply(&frame).await;
            return;
        }
    };
    let delivery = bulk::deliver(&conn, bytes, BULK_WRITE_TIMEOUT).await;
    if let Some(frame) = bulk_undelivered(req, delivery) {
        tracing::debug!(req, ?delivery, "bulk reply not delivered");
        outbox.reply(&frame).await;
    }
}

async fn write(send: &mut SendStream, frame: &ServerFrame) {
    let _ = send.write_all(&codec::encode(frame)).await;
}

/// Finishes a stream and gives the peer a moment to receive what is on it,
/// so a closing error frame is not cut off by the connection close.
async fn drain(send: &mut SendStream) {
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, send.stopped()).await;
    }
}

/// Drains a session's queue onto its control stream in batches, and sends
/// `Lagged` notices past a full queue. If the stream fails, or the client
/// stops it, `failed` says how the connection must end.
async fn write_loop(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Bytes>,
    lags: Arc<Lags>,
    failed: oneshot::Sender<Exit>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let stopped = stopped(&send);
    tokio::pin!(stopped);
    let result = loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break Ok(());
                }
                lags.take(&mut batch);
                if let Err(e) = send.write_all_chunks(&mut batch).await {
                    break Err(e);
                }
                batch.clear();
            }
            frames = lags.next() => {
                for frame in frames {
                    if let Err(e) = send.write_all(&codec::encode(&frame)).await {
                        return report(failed, e);
                    }
                }
            }
            // Noticed at once, not at the next write: a session with no
            // traffic would otherwise go on until the client leaves.
            () = &mut stopped => break Err(WriteError::Stopped(0u32.into())),
        }
    };
    match result {
        Ok(()) => drain(&mut send).await,
        Err(e) => report(failed, e),
    }
}

fn report(failed: oneshot::Sender<Exit>, e: WriteError) {
    let exit = match e {
        WriteError::Stopped(_) => Exit::Protocol,
        _ => Exit::Lost,
    };
    let _ = failed.send(exit);
}

/// Completes if the client stops the relay's side of the control stream
/// (STOP_SENDING). That side carries every answer, so the client broke the
/// protocol (PROTOCOL §2) and the connection is closed with code 1.
fn stopped(send: &SendStream) -> impl std::future::Future<Output = ()> {
    let stopped = send.stopped();
    async move {
        if !matches!(stopped.await, Ok(Some(_))) {
            // The connection failed or the stream ended: the reader finds out.
            std::future::pending::<()>().await;
        }
    }
}

/// Logs and counts a control stream the client stopped.
fn control_stopped<S>(relay: &Relay<S>) -> Exit {
    tracing::info!("the client stopped the control stream");
    inc(&relay.metrics.protocol_errors);
    Exit::Protocol
}
