//! The exchange before login, without I/O of its own: `Hello`, then
//! `Register` or `Login`, each frame answered by a [`Step`] the connection
//! carries out. Password hashing runs on the relay's hashing threads; a
//! failed login's delay is returned, not slept, so the connection decides
//! how to wait.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::frame::{ClientFrame, ErrorCode, ServerFrame, PROTOCOL_VERSION};
use common::limits::{MAX_CLIENT_NAME, MAX_PASSWORD};
use common::names;

use crate::auth::{self, check_password, Gate};
use crate::defaults::SERVER_NAME;
use crate::metrics::inc;
use crate::reply::{error, frame_error, Refusal};
use crate::state::Relay;
use crate::store::{Store, StoreError};

/// How a connection ended, and so how it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The client said `Bye` or closed its stream.
    Normal,
    /// The client broke the protocol; it was told why.
    Protocol,
    /// The client speaks another protocol version; it was told.
    Version,
    /// The relay is shutting down.
    Shutdown,
    /// No login (or no `Hello`) before its deadline; the client was told.
    LoginTimeout,
    /// Every pre-login place was taken and this silent connection's went
    /// to a newcomer.
    Busy,
    /// The connection is already gone.
    Lost,
    /// The account was deleted or its password changed.
    AccountChanged,
}

impl Exit {
    /// The QUIC application close code and reason (PROTOCOL §7).
    pub fn code(self) -> (u32, &'static [u8]) {
        use common::frame::close;
        match self {
            Exit::Normal | Exit::Lost => (close::NORMAL, b"bye"),
            Exit::Protocol => (close::PROTOCOL, b"protocol error"),
            Exit::Version => (close::VERSION, b"protocol version mismatch"),
            Exit::Shutdown => (close::SHUTDOWN, b"relay shutting down"),
            Exit::LoginTimeout => (close::LOGIN_TIMEOUT, b"no login before the deadline"),
            Exit::AccountChanged => (
                close::ACCOUNT_CHANGED,
                b"the account was deleted or its password changed; log in again",
            ),
            Exit::Busy => (
                close::BUSY,
                b"too many connections waiting to log in; reconnect and log in at once",
            ),
        }
    }
}

/// Who logged in: the canonical name, and the password hash the password
/// was checked against, which the session must keep matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub phc: String,
}

/// What the connection does with a frame before login.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Write this frame and read the next one.
    Reply(ServerFrame),
    /// Wait this long, then write the frame and read the next one: a
    /// failed login is answered late, more so the more it fails.
    ReplyAfter(Duration, ServerFrame),
    /// Write the frame: the user is logged in as this account.
    LoggedIn(Account, ServerFrame),
    /// Write the frame, if any, and close the connection.
    Close(Exit, Option<ServerFrame>),
}

/// One connection's pre-login state.
pub struct Login<'a, S> {
    relay: &'a Relay<S>,
    addr: IpAddr,
    hello: bool,
}

impl<'a, S: Store> Login<'a, S> {
    /// The exchange of a connection from `addr`, before its `Hello`.
    pub fn new(relay: &'a Relay<S>, addr: IpAddr) -> Self {
        Login {
            relay,
            addr,
            hello: false,
        }
    }

    /// Answers one frame, at time `now`.
    pub async fn handle(&mut self, frame: ClientFrame, now: Instant) -> Step {
        let relay = self.relay;
        match frame {
            ClientFrame::Hello { version, client } if !self.hello => {
                if version != PROTOCOL_VERSION {
                    let msg = format!(
                        "this relay speaks protocol version {PROTOCOL_VERSION}, the client {version}; update the client"
                    );
                    let frame = error(0, ErrorCode::VersionMismatch, &msg);
                    return Step::Close(Exit::Version, Some(frame));
                }
                if client.len() > MAX_CLIENT_NAME {
                    let frame = error(0, ErrorCode::Malformed, "client name too long");
                    return Step::Close(Exit::Protocol, Some(frame));
                }
                self.hello = true;
                Step::Reply(ServerFrame::Welcome {
                    version: PROTOCOL_VERSION,
                    server: SERVER_NAME.into(),
                    registration_open: relay.cfg.registration_open,
                })
            }
            ClientFrame::Ping { req } if self.hello => Step::Reply(ServerFrame::Pong { req }),
            ClientFrame::Register {
                req,
                user,
                password,
            } if self.hello => match self.register(&user, password.expose(), now).await {
                Ok(phc) => {
                    tracing::info!(%user, "registered");
                    // Where an account is made is a place its owner logs in from.
                    relay.throttle.succeeded(&user, self.addr, now);
                    inc(&relay.metrics.registrations);
                    inc(&relay.metrics.logins);
                    let frame = ServerFrame::LoggedIn {
                        req,
                        user: user.clone(),
                    };
                    Step::LoggedIn(Account { name: user, phc }, frame)
                }
                Err(refusal) => Step::Reply(refusal.into_frame(req)),
            },
            ClientFrame::Login {
                req,
                user,
                password,
            } if self.hello => match self.authenticate(&user, password.expose(), now).await {
                Ok(account) => {
                    let frame = ServerFrame::LoggedIn {
                        req,
                        user: account.name.clone(),
                    };
                    Step::LoggedIn(account, frame)
                }
                Err((delay, refusal)) if delay.is_zero() => Step::Reply(refusal.into_frame(req)),
                Err((delay, refusal)) => Step::ReplyAfter(delay, refusal.into_frame(req)),
            },
            ClientFrame::Bye => Step::Close(Exit::Normal, None),
            other => {
                let msg = if self.hello {
                    "log in first: only Register, Login and Ping are allowed before login"
                } else {
                    "the first frame must be Hello"
                };
                let frame = error(other.req(), ErrorCode::Unexpected, msg);
                Step::Close(Exit::Protocol, Some(frame))
            }
        }
    }

    /// The answer to a frame that could not be read.
    pub fn bad_frame(&self, e: &common::codec::FrameError) -> Step {
        inc(&self.relay.metrics.protocol_errors);
        Step::Close(Exit::Protocol, Some(frame_error(e)))
    }

    /// Whether the client has sent its `Hello`.
    pub fn greeted(&self) -> bool {
        self.hello
    }

    /// The answer when the login deadline passes.
    pub fn timed_out(&self) -> Step {
        let secs = self.relay.cfg.login_timeout.as_secs_f32();
        let msg = format!("log in within {secs} s of connecting");
        let frame = error(0, ErrorCode::LoginTimeout, &msg);
        Step::Close(Exit::LoginTimeout, Some(frame))
    }

    /// The answer when no `Hello` came in time after the handshake.
    pub fn hello_timed_out(&self) -> Step {
        let secs = self.relay.cfg.hello_timeout.as_secs_f32();
        let msg = format!("send Hello within {secs} s of the handshake");
        let frame = error(0, ErrorCode::LoginTimeout, &msg);
        Step::Close(Exit::LoginTimeout, Some(frame))
    }

    /// The new account's password hash.
    async fn register(&self, user: &str, password: &str, now: Instant) -> Result<String, Refusal> {
        let relay = self.relay;
        if !relay.cfg.registration_open {
            return Err(Refusal::new(
                ErrorCode::RegistrationClosed,
                "registration is closed on this relay; ask its operator for an account",
            ));
        }
        names::check_user(user).map_err(|e| {
            Refusal::new(
                ErrorCode::InvalidName,
                format!("invalid user name {user:?}: {e}"),
            )
        })?;
        check_password(password)?;
        let taken = || {
            Refusal::new(
                ErrorCode::NameTaken,
                format!("the name {user:?} is taken; choose another"),
            )
        };
        let looks_like = |existing: &str| {
            Refusal::new(
                ErrorCode::NameTaken,
                format!(
                    "the name {user:?} looks like an existing user's ({existing:?}); choose another"
                ),
            )
        };
        // Cheap refusals first: NameTaken says as much as the hash would
        // time, and a refused registration gives its place in the hourly
        // allowance back, so without these a client could make the relay
        // hash passwords without end.
        if relay.store.user(user).await?.is_some() {
            return Err(taken());
        }
        if let Some(existing) = relay.store.lookalike(user).await? {
            return Err(looks_like(&existing));
        }
        if !relay.registrations.take(self.addr, now) {
            let msg = format!(
                "too many accounts registered from your network; try again in an hour (at most {} an hour)",
                relay.cfg.registrations_per_hour
            );
            return Err(Refusal::new(ErrorCode::Throttled, msg));
        }
        let password = password.to_owned();
        let phc = relay
            .hash(move || auth::hash_password(&password))
            .await
            .ok_or_else(|| {
                relay.registrations.give_back(self.addr);
                Refusal::new(ErrorCode::Unavailable, "password hashing failed; try again")
            })?;
        relay.store.create_user(user, &phc).await.map_err(|e| {
            // Taken meanwhile, or not stored: no account was made.
            relay.registrations.give_back(self.addr);
            match e {
                StoreError::NameTaken => taken(),
                StoreError::LooksLike(existing) => looks_like(&existing),
                other => other.into(),
            }
        })?;
        Ok(phc)
    }

    /// The account, or the refusal and how long to wait before giving it.
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Result<Account, (Duration, Refusal)> {
        let relay = self.relay;
        let addr = self.addr;
        let wrong = || Refusal::new(ErrorCode::BadCredentials, "wrong user name or password");
        // No account can have an invalid name: refuse without any work, and
        // without filling the throttle's table with junk keys.
        if names::check_user(user).is_err() || password.len() > MAX_PASSWORD {
            return Err((Duration::ZERO, wrong()));
        }
        let _turn = relay.throttle.turn(user, addr).await;
        let (wait, whose) = match relay.throttle.begin(user, addr, now) {
            Gate::Open => (None, ""),
            Gate::Locked(wait) => (Some(wait), " from this address"),
            Gate::AccountLocked(wait) => (Some(wait), " from addresses it is not used from"),
        };
        if let Some(wait) = wait {
            inc(&relay.metrics.login_failures);
            let msg = format!(
                "too many failed logins for {user:?}{whose}; try again in {} s",
                wait.as_secs() + 1
            );
            return Err((Duration::ZERO, Refusal::new(ErrorCode::Throttled, msg)));
        }
        let found = relay
            .store
            .user(user)
            .await
            .map_err(|e| (Duration::ZERO, e.into()))?;
        let (name, phc) = match &found {
            Some(u) => (u.name.clone(), u.phc.clone()),
            None => (user.to_owned(), auth::dummy_hash().to_owned()),
        };
        let password = password.to_owned();
        let checked = phc.clone();
        let ok = relay
            .hash(move || auth::verify_password(&checked, &password))
            .await
            .unwrap_or(false);
        if ok && found.is_some() {
            relay.throttle.succeeded(user, addr, now);
            // Said only to whoever knows the password.
            if !relay.accounts.has_room(&name) {
                let refusal = crate::session::too_many_sessions(relay, &name);
                return Err((Duration::ZERO, refusal));
            }
            inc(&relay.metrics.logins);
            return Ok(Account { name, phc });
        }
        inc(&relay.metrics.login_failures);
        tracing::info!(user, %addr, "failed login");
        Err((relay.throttle.failed(user, addr, now), wrong()))
    }
}

#[cfg(test)]
mod tests;
