//! One client connection's I/O: the control stream, the pre-login exchange
//! and the session driven from their cores (`login`, `session`), the writer
//! that drains the session's queue, bulk replies on streams of their own,
//! and the orderly close. Nothing here decides what a request means.

use std::sync::Arc;

use bytes::Bytes;
use common::codec::{self, FrameError};
use common::frame::{close, ClientFrame, ErrorCode, ServerFrame};
use common::limits::MAX_CONTROL_FRAME;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::defaults::{
    BULK_WRITE_TIMEOUT, DRAIN_TIMEOUT, MAX_BULK_IN_FLIGHT, MAX_IN_FLIGHT, WRITE_BATCH,
};
use crate::hub::{Lags, Outbox};
use crate::limits::PreLogin;
use crate::login::{Exit, Login, Step};
use crate::metrics::inc;
use crate::reply::error;
use crate::session::{acked, bulk_bytes, bulk_timed_out, Answer, BulkWork, Session};
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
    let user = match login.unwrap_or(Err(Exit::LoginTimeout)) {
        Ok(user) => user,
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

    let (session, rx) = match Session::start(relay.clone(), user.clone(), now()).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(%user, "cannot load rooms: {e}");
            let frame = error(
                0,
                ErrorCode::Unavailable,
                "the relay cannot read its store; try again later",
            );
            let _ = send.write_all(&codec::encode(&frame)).await;
            drain(&mut send).await;
            conn.close(close::NORMAL.into(), b"store unavailable");
            return;
        }
    };
    let outbox = session.outbox().clone();
    let id = outbox.id;
    let writer = tokio::spawn(write_loop(send, rx, outbox.lags.clone()));
    tracing::info!(%user, session = id, addr = %conn.remote_address(), "logged in");

    let exit = run(&relay, session, &conn, &mut recv).await;

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
/// for `Hello`, the second for the login. Returns the canonical user name.
async fn login<S: Store>(
    relay: &Relay<S>,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    (hello_deadline, deadline): (Instant, Instant),
    place: &mut PreLogin,
) -> Result<String, Exit> {
    let mut core = Login::new(relay, conn.remote_address().ip());
    let mut shutdown = relay.shutdown_signal();
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
        };
        let step = match read {
            Err(_) if until < deadline => core.hello_timed_out(),
            Err(_) => core.timed_out(),
            Ok(Ok(Some(frame))) => {
                // A login being checked keeps its place: only silent
                // connections give theirs to newcomers.
                let _checking = place.checking();
                core.handle(frame, now()).await
            }
            Ok(Ok(None)) => return Err(Exit::Normal),
            Ok(Err(e)) => core.bad_frame(&e),
        };
        match step {
            Step::Reply(frame) => write(send, &frame).await,
            Step::ReplyAfter(delay, frame) => {
                tokio::time::sleep(delay).await;
                write(send, &frame).await;
            }
            Step::LoggedIn(user, frame) => {
                write(send, &frame).await;
                return Ok(user);
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
) -> Exit {
    let outbox = session.outbox().clone();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bulk = Arc::new(Semaphore::new(MAX_BULK_IN_FLIGHT));
    // Owned here so that they end with the session: no orphan tasks.
    let mut tasks = JoinSet::new();
    let mut shutdown = relay.shutdown_signal();
    let exit = loop {
        // Finished tasks are reaped here rather than in the select:
        // `read_frame` is not cancel-safe, and dropping it half-way
        // through a frame would lose bytes and desync the stream.
        while tasks.try_join_next().is_some() {}
        let frame = tokio::select! {
            frame = codec::read_frame::<ClientFrame, _>(recv, MAX_CONTROL_FRAME) => frame,
            // Shutdown may drop a half-read frame: the connection ends anyway.
            _ = until_shutdown(&mut shutdown) => break Exit::Shutdown,
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
                tasks.spawn(async move {
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
                tasks.spawn(send_bulk(conn.clone(), outbox.clone(), req, work, permit));
            }
            Answer::Bye => break Exit::Normal,
        }
    };
    // Sends already handed to the store finish and are acknowledged.
    while tasks.join_next().await.is_some() {}
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
/// chat lines. A reply that cannot be delivered becomes an `Unavailable`
/// error on the control stream.
async fn send_bulk(
    conn: Connection,
    outbox: Arc<Outbox>,
    req: common::frame::RequestId,
    work: BulkWork,
    _permit: OwnedSemaphorePermit,
) {
    let bytes = match bulk_bytes(req, work.await) {
        Ok(bytes) => bytes,
        Err(frame) => {
            outbox.reply(&frame).await;
            return;
        }
    };
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
        outbox.reply(&bulk_timed_out(req)).await;
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
/// `Lagged` notices past a full queue.
async fn write_loop(mut send: SendStream, mut rx: mpsc::Receiver<Bytes>, lags: Arc<Lags>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break;
                }
                lags.take(&mut batch);
                if send.write_all_chunks(&mut batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
            frames = lags.next() => {
                for frame in frames {
                    if send.write_all(&codec::encode(&frame)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    drain(&mut send).await;
}
