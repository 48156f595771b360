//! One client connection: the control stream, the login handshake, the
//! writer that drains the session's queue, and the orderly close.

use std::sync::Arc;

use bytes::Bytes;
use common::codec::{self, FrameError};
use common::frame::{close, ClientFrame, ErrorCode, RequestId, ServerFrame, PROTOCOL_VERSION};
use common::limits::{MAX_CLIENT_NAME, MAX_CONTROL_FRAME, MAX_PASSWORD, MIN_PASSWORD};
use common::names;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use crate::auth::{self, Gate};
use crate::defaults::{DRAIN_TIMEOUT, SERVER_NAME, WRITE_BATCH};
use crate::hub::{Lags, Outbox};
use crate::metrics::inc;
use crate::session::Session;
use crate::state::Relay;
use crate::store::{Store, StoreError};

/// How a connection ended, and so how it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The client said `Bye` or closed its stream.
    Normal,
    /// The client broke the protocol; it was told why.
    Protocol,
    /// The relay is shutting down.
    Shutdown,
    /// No login before the deadline; the client was told.
    LoginTimeout,
    /// The connection is already gone.
    Lost,
}

impl Exit {
    fn code(self) -> (u32, &'static [u8]) {
        match self {
            Exit::Normal | Exit::Lost => (close::NORMAL, b"bye"),
            Exit::Protocol => (close::PROTOCOL, b"protocol error"),
            Exit::Shutdown => (close::SHUTDOWN, b"relay shutting down"),
            Exit::LoginTimeout => (close::LOGIN_TIMEOUT, b"no login before the deadline"),
        }
    }
}

/// Serves one established connection until it ends. The login deadline
/// counts from when the connection arrived, handshake included;
/// `unauthenticated` is released at login, freeing a pre-login slot.
pub async fn serve<S: Store>(
    relay: Arc<Relay<S>>,
    conn: Connection,
    deadline: Instant,
    unauthenticated: crate::limits::PreLogin,
) {
    let (mut send, mut recv) = match timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return,
        Err(_) => {
            conn.close(
                close::LOGIN_TIMEOUT.into(),
                b"no control stream before the login deadline",
            );
            return;
        }
    };
    // The deadline covers the whole exchange, writes included: a client
    // that stops reading must not hold a pre-login slot past it.
    let login = timeout_at(
        deadline,
        login(&relay, &conn, &mut send, &mut recv, deadline),
    )
    .await;
    let user = match login.unwrap_or(Err(Exit::LoginTimeout)) {
        Ok(user) => user,
        Err(exit) => {
            drain(&mut send).await;
            let (code, reason) = exit.code();
            conn.close(code.into(), reason);
            return;
        }
    };
    drop(unauthenticated);

    let id = relay.next_session_id();
    let (outbox, rx) = Outbox::new(id, user.clone(), relay.cfg.queue_depth);
    // Attached before the rooms are read, so a join or leave on another
    // device meanwhile reaches this session; the epoch catches a stale read.
    let mut epoch = relay.hub.attach(outbox.clone());
    loop {
        let rooms = match relay.store.rooms_of(&user).await {
            Ok(rooms) => rooms.into_iter().map(|r| r.name).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(%user, "cannot load rooms: {e}");
                relay.hub.detach(id);
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
        // Subscribed before the first reply: anything committed from here
        // on arrives live, anything before is in history.
        match relay.hub.subscribe_all(id, &rooms, epoch) {
            Ok(()) => break,
            Err(now) => epoch = now,
        }
    }
    relay.hub.announce_online(id);
    let writer = tokio::spawn(write_loop(send, rx, outbox.lags.clone()));
    tracing::info!(%user, session = id, addr = %conn.remote_address(), "logged in");

    let exit = Session::new(relay.clone(), outbox.clone(), conn.clone())
        .run(&mut recv)
        .await;

    relay.hub.detach(id);
    drop(outbox);
    // The writer ends once every outbox handle is gone and the queue is empty.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT * 2, writer).await;
    let (code, reason) = exit.code();
    conn.close(code.into(), reason);
    tracing::info!(%user, session = id, ?exit, "disconnected");
}

/// Runs the pre-login exchange: `Hello`, then `Register` or `Login`, all
/// before the deadline. Returns the canonical user name.
async fn login<S: Store>(
    relay: &Relay<S>,
    conn: &Connection,
    send: &mut SendStream,
    recv: &mut RecvStream,
    deadline: Instant,
) -> Result<String, Exit> {
    let mut hello = false;
    let mut shutdown = relay.shutdown_signal();
    loop {
        let frame = tokio::select! {
            r = timeout_at(deadline, codec::read_frame::<ClientFrame, _>(recv, MAX_CONTROL_FRAME)) => r,
            _ = crate::state::until_shutdown(&mut shutdown) => {
                write(send, &ServerFrame::Shutdown { reason: "relay shutting down".into() }).await;
                return Err(Exit::Shutdown);
            }
        };
        let frame = match frame {
            Err(_) => {
                let secs = relay.cfg.login_timeout.as_secs_f32();
                write(
                    send,
                    &error(
                        0,
                        ErrorCode::LoginTimeout,
                        &format!("log in within {secs} s of connecting"),
                    ),
                )
                .await;
                return Err(Exit::LoginTimeout);
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(Exit::Normal),
            Ok(Err(e)) => {
                inc(&relay.metrics.protocol_errors);
                write(send, &frame_error(&e)).await;
                return Err(Exit::Protocol);
            }
        };
        match frame {
            ClientFrame::Hello { version, client } if !hello => {
                if version != PROTOCOL_VERSION {
                    let msg = format!(
                        "this relay speaks protocol version {PROTOCOL_VERSION}, the client {version}; update the client"
                    );
                    write(send, &error(0, ErrorCode::VersionMismatch, &msg)).await;
                    drain(send).await;
                    conn.close(close::VERSION.into(), b"protocol version mismatch");
                    return Err(Exit::Lost);
                }
                if client.len() > MAX_CLIENT_NAME {
                    write(
                        send,
                        &error(0, ErrorCode::Malformed, "client name too long"),
                    )
                    .await;
                    return Err(Exit::Protocol);
                }
                hello = true;
                let welcome = ServerFrame::Welcome {
                    version: PROTOCOL_VERSION,
                    server: SERVER_NAME.into(),
                    registration_open: relay.cfg.registration_open,
                };
                write(send, &welcome).await;
            }
            ClientFrame::Ping { req } if hello => write(send, &ServerFrame::Pong { req }).await,
            ClientFrame::Register {
                req,
                user,
                password,
            } if hello => match register(relay, &user, password.expose()).await {
                Ok(()) => {
                    tracing::info!(%user, "registered");
                    inc(&relay.metrics.registrations);
                    inc(&relay.metrics.logins);
                    write(
                        send,
                        &ServerFrame::LoggedIn {
                            req,
                            user: user.clone(),
                        },
                    )
                    .await;
                    return Ok(user);
                }
                Err((code, msg)) => write(send, &error(req, code, &msg)).await,
            },
            ClientFrame::Login {
                req,
                user,
                password,
            } if hello => match authenticate(relay, conn, &user, password.expose()).await {
                Ok(name) => {
                    write(
                        send,
                        &ServerFrame::LoggedIn {
                            req,
                            user: name.clone(),
                        },
                    )
                    .await;
                    return Ok(name);
                }
                Err((code, msg)) => write(send, &error(req, code, &msg)).await,
            },
            ClientFrame::Bye => return Err(Exit::Normal),
            other => {
                let msg = if hello {
                    "log in first: only Register, Login and Ping are allowed before login"
                } else {
                    "the first frame must be Hello"
                };
                write(send, &error(other.req(), ErrorCode::Unexpected, msg)).await;
                return Err(Exit::Protocol);
            }
        }
    }
}

type Refusal = (ErrorCode, String);

async fn register<S: Store>(relay: &Relay<S>, user: &str, password: &str) -> Result<(), Refusal> {
    if !relay.cfg.registration_open {
        return Err((
            ErrorCode::RegistrationClosed,
            "registration is closed on this relay; ask its operator for an account".into(),
        ));
    }
    names::check_user(user).map_err(|e| {
        (
            ErrorCode::InvalidName,
            format!("invalid user name {user:?}: {e}"),
        )
    })?;
    check_password(password)?;
    // Cheap refusal first: NameTaken says as much as the hash would time.
    if relay
        .store
        .user(user)
        .await
        .map_err(store_refusal)?
        .is_some()
    {
        return Err((
            ErrorCode::NameTaken,
            format!("the name {user:?} is taken; choose another"),
        ));
    }
    let password = password.to_owned();
    let phc = relay
        .hash(move || auth::hash_password(&password))
        .await
        .ok_or_else(|| {
            (
                ErrorCode::Unavailable,
                "password hashing failed; try again".to_owned(),
            )
        })?;
    relay
        .store
        .create_user(user, &phc)
        .await
        .map_err(|e| match e {
            StoreError::NameTaken => (
                ErrorCode::NameTaken,
                format!("the name {user:?} is taken; choose another"),
            ),
            other => store_refusal(other),
        })
}

/// Checks the password rules shared by registration and `relay user`.
pub fn check_password(password: &str) -> Result<(), Refusal> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err((
            ErrorCode::BadPassword,
            format!("a password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long"),
        ));
    }
    Ok(())
}

async fn authenticate<S: Store>(
    relay: &Relay<S>,
    conn: &Connection,
    user: &str,
    password: &str,
) -> Result<String, Refusal> {
    let wrong = || {
        (
            ErrorCode::BadCredentials,
            "wrong user name or password".to_owned(),
        )
    };
    // No account can have an invalid name: refuse without any work, and
    // without filling the throttle's table with junk keys.
    if names::check_user(user).is_err() || password.len() > MAX_PASSWORD {
        return Err(wrong());
    }
    let addr = conn.remote_address().ip();
    if let Gate::Locked(wait) = relay.throttle.begin(user, addr, std::time::Instant::now()) {
        inc(&relay.metrics.login_failures);
        return Err((
            ErrorCode::Throttled,
            format!(
                "too many failed logins for {user:?} from this address; try again in {} s",
                wait.as_secs() + 1
            ),
        ));
    }
    let found = relay.store.user(user).await.map_err(store_refusal)?;
    let (name, phc) = match &found {
        Some(u) => (u.name.clone(), u.phc.clone()),
        None => (user.to_owned(), auth::dummy_hash().to_owned()),
    };
    let password = password.to_owned();
    let ok = relay
        .hash(move || auth::verify_password(&phc, &password))
        .await
        .unwrap_or(false);
    if ok && found.is_some() {
        relay.throttle.succeeded(user, addr);
        inc(&relay.metrics.logins);
        return Ok(name);
    }
    inc(&relay.metrics.login_failures);
    let delay = relay.throttle.failed(user, addr);
    tracing::info!(user, %addr, "failed login");
    tokio::time::sleep(delay).await;
    Err(wrong())
}

/// Maps a storage failure to what the client is told.
pub fn store_refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::NoSuchUser => (ErrorCode::NoSuchUser, "no such user".into()),
        StoreError::NoSuchRoom => (ErrorCode::NoSuchRoom, "no such room".into()),
        StoreError::RoomExists => (
            ErrorCode::RoomExists,
            "the room exists; join it instead".into(),
        ),
        StoreError::NameTaken => (ErrorCode::NameTaken, "the name is taken".into()),
        StoreError::Db(e) => {
            tracing::error!("store: {e}");
            (
                ErrorCode::Unavailable,
                "the relay could not store this; nothing was saved, try again later".into(),
            )
        }
        StoreError::Closed => (
            ErrorCode::Unavailable,
            "the relay is shutting down; try again shortly".into(),
        ),
    }
}

/// An `Error` frame.
pub fn error(req: RequestId, code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error {
        req,
        code,
        message: message.to_owned(),
    }
}

/// The `Error` frame for a frame that could not be read.
pub fn frame_error(e: &FrameError) -> ServerFrame {
    match e {
        FrameError::TooLarge { .. } => error(0, ErrorCode::FrameTooLarge, &e.to_string()),
        _ => error(0, ErrorCode::Malformed, &e.to_string()),
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
