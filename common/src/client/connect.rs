//! Connecting: the QUIC/TLS handshake with the chosen trust to each
//! address of the list, the control stream, `Hello`, then `Register` or
//! `Login` with the relay that answered first.

use std::future::Future;
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, SendStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::config::Config;
use super::error::ConnectError;
use super::relays::RelayList;
use crate::frame::{ErrorCode, ServerFrame};
use crate::trust;
use crate::wire::{self, WireError};

/// Time a connection attempt to one address may take, handshake and login
/// included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an address of a list may stay silent before the next one is
/// tried alongside it. A relay that is down often just never answers (UDP
/// has no refusal that reaches us), so without this a dead first address
/// would cost the whole [`CONNECT_TIMEOUT`]. Happy Eyeballs (RFC 8305)
/// waits 250 ms between TCP attempts; a QUIC handshake with a distant relay
/// can take two round trips, so twice that.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(500);

/// What the reader tasks pass to the session worker.
#[derive(Debug)]
pub(crate) enum Incoming {
    Frame(ServerFrame),
    /// The control stream ended; the connection is unusable.
    Closed(String),
}

/// A logged-in connection.
pub(crate) struct Link {
    pub conn: Connection,
    pub send: SendStream,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    pub user: String,
    /// The address of the relay, as in the list (`host:port`).
    pub server: String,
    // Kept so the socket outlives the connection, and waited on at the
    // end so the relay hears the close.
    pub endpoint: Endpoint,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// Connects to one of `relays` and logs in (registering first when
/// `register`), trying the addresses in the order of
/// [`RelayList::round`]. Returns the link and the index of its address.
pub(crate) async fn open(
    cfg: &Config,
    relays: &RelayList,
    register: bool,
) -> Result<(Link, usize), ConnectError> {
    race(
        relays.addrs(),
        &relays.round(),
        ATTEMPT_DELAY,
        |i| {
            let cfg = cfg.clone();
            let server = relays.addrs()[i].clone();
            async move { dial(&cfg, server).await }
        },
        |dialed| login(cfg, dialed, register),
    )
    .await
}

/// Runs `attempt` for the addresses in `order` (indexes into `addrs`), one
/// after another: the next starts when every attempt under way has failed,
/// or when the latest has not finished within `delay`. The first attempt to
/// succeed is handed to `finish` (while the others carry on, in case it
/// fails); its success ends the race and drops the rest. An error that
/// retrying cannot mend ends it at once: a refused certificate at any
/// address stops the session as it would with one address.
///
/// When every address failed, one address's error is returned as it is;
/// several are joined into one [`ConnectError::Unreachable`].
pub(crate) async fn race<D, T, A, AF, F, FF>(
    addrs: &[String],
    order: &[usize],
    delay: Duration,
    mut attempt: A,
    mut finish: F,
) -> Result<(T, usize), ConnectError>
where
    A: FnMut(usize) -> AF,
    AF: Future<Output = Result<D, ConnectError>> + Send + 'static,
    D: Send + 'static,
    F: FnMut(D) -> FF,
    FF: Future<Output = Result<T, ConnectError>>,
{
    let mut attempts: JoinSet<(usize, Result<D, ConnectError>)> = JoinSet::new();
    let mut started = 0;
    let mut next_at = Instant::now();
    let mut errors: Vec<(usize, ConnectError)> = Vec::new();
    loop {
        if attempts.is_empty() || (started < order.len() && Instant::now() >= next_at) {
            let Some(&i) = order.get(started) else {
                return Err(combine(addrs, order, errors));
            };
            let run = attempt(i);
            attempts.spawn(async move { (i, run.await) });
            started += 1;
            next_at = Instant::now() + delay;
            continue;
        }
        let waiting = started < order.len();
        tokio::select! {
            done = attempts.join_next() => {
                let (i, result) = match done.expect("attempts under way") {
                    Ok(done) => done,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Cancelled: only when the runtime shuts down under us.
                    Err(_) => continue,
                };
                let result = match result {
                    Ok(dialed) => finish(dialed).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(t) => return Ok((t, i)),
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        tracing::info!(server = %addrs[i], "cannot connect: {e}");
                        errors.push((i, e));
                        // A failure starts the next address at once.
                        next_at = Instant::now();
                    }
                }
            }
            _ = tokio::time::sleep_until(next_at), if waiting => {}
        }
    }
}

/// One error for a round in which every address failed.
fn combine(
    addrs: &[String],
    order: &[usize],
    mut errors: Vec<(usize, ConnectError)>,
) -> ConnectError {
    if errors.len() == 1 {
        return errors.remove(0).1;
    }
    errors.sort_by_key(|(i, _)| order.iter().position(|o| o == i));
    let detail: Vec<String> = errors
        .iter()
        .map(|(i, e)| {
            let (addr, e) = (&addrs[*i], e.to_string());
            if e.contains(addr.as_str()) {
                e
            } else {
                format!("{addr}: {e}")
            }
        })
        .collect();
    ConnectError::Unreachable(format!("no relay could be reached: {}", detail.join("; ")))
}

/// A finished handshake, not logged in yet.
pub(crate) struct Dialed {
    conn: Connection,
    endpoint: Endpoint,
    server: String,
    /// The end of this address's [`CONNECT_TIMEOUT`].
    deadline: Instant,
}

fn no_answer(server: &str) -> ConnectError {
    ConnectError::Unreachable(format!(
        "no answer from {server} within {} s; is the relay running and the address right?",
        CONNECT_TIMEOUT.as_secs()
    ))
}

/// The QUIC/TLS handshake with `server` (`host:port`), its certificate
/// checked as `cfg.trust` says.
async fn dial(cfg: &Config, server: String) -> Result<Dialed, ConnectError> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    tokio::time::timeout_at(deadline, dial_inner(cfg, &server))
        .await
        .unwrap_or_else(|_| Err(no_answer(&server)))
        .map(|(conn, endpoint)| Dialed {
            conn,
            endpoint,
            server,
            deadline,
        })
}

async fn dial_inner(cfg: &Config, server: &str) -> Result<(Connection, Endpoint), ConnectError> {
    let unreachable = |e: WireError| ConnectError::Unreachable(e.to_string());
    let addr = wire::resolve(server).await.map_err(unreachable)?;
    let (client_config, check) = trust::client_config(&cfg.trust, server)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let endpoint = wire::endpoint_for(addr).map_err(unreachable)?;
    let host = trust::server_host(server);
    match wire::dial(&endpoint, client_config, addr, host).await {
        Ok(conn) => Ok((conn, endpoint)),
        Err(WireError::Connect { error, .. }) => Err(ConnectError::Config(format!(
            "cannot connect to {server}: {error}"
        ))),
        Err(WireError::Connection(e)) => match check.outcome() {
            Some(failure) => Err(ConnectError::Trust(failure)),
            None => Err(connection_error(server, e)),
        },
        Err(other) => Err(unreachable(other)),
    }
}

/// Opens the control stream and logs in (or registers) on a handshake
/// that succeeded.
async fn login(cfg: &Config, dialed: Dialed, register: bool) -> Result<Link, ConnectError> {
    let server = dialed.server.clone();
    tokio::time::timeout_at(dialed.deadline, login_inner(cfg, dialed, register))
        .await
        .unwrap_or_else(|_| Err(no_answer(&server)))
}

async fn login_inner(cfg: &Config, dialed: Dialed, register: bool) -> Result<Link, ConnectError> {
    let Dialed {
        conn,
        endpoint,
        server,
        ..
    } = dialed;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connection_error(&server, e))?;
    let lost = |e: String| {
        ConnectError::Closed(format!(
            "the relay at {server} closed the connection during login: {e}"
        ))
    };

    // Pipelined: one round trip saved on every reconnect.
    let frames = wire::login_frames(&cfg.client_name, &cfg.user, &cfg.password, register);
    wire::write_raw(&mut send, &frames)
        .await
        .map_err(|e| lost(e.to_string()))?;
    let user = loop {
        let frame = wire::read_frame(&mut recv)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("stream ended".into()))?;
        match frame {
            ServerFrame::Welcome { .. } => continue,
            ServerFrame::LoggedIn { user, .. } => break user,
            ServerFrame::Error { code, message, .. } => return Err(refusal(code, message)),
            ServerFrame::Shutdown { reason } => return Err(ConnectError::Closed(reason)),
            other => {
                return Err(ConnectError::Protocol(format!(
                    "unexpected reply to login: {other:?}"
                )))
            }
        }
    };

    let (tx, incoming) = mpsc::unbounded_channel();
    let control = tokio::spawn(read_control(recv, tx.clone()));
    let bulk = tokio::spawn(read_bulk(conn.clone(), tx));
    Ok(Link {
        conn,
        send,
        incoming,
        user,
        server,
        endpoint,
        readers: vec![control, bulk],
    })
}

fn refusal(code: ErrorCode, message: String) -> ConnectError {
    match code {
        ErrorCode::VersionMismatch => ConnectError::Version(message),
        ErrorCode::BadCredentials
        | ErrorCode::NameTaken
        | ErrorCode::InvalidName
        | ErrorCode::RegistrationClosed
        | ErrorCode::Throttled
        | ErrorCode::BadPassword => ConnectError::Auth { code, message },
        ErrorCode::TooManyConnections | ErrorCode::Unavailable | ErrorCode::LoginTimeout => {
            ConnectError::Closed(message)
        }
        _ => ConnectError::Protocol(message),
    }
}

fn connection_error(server: &str, e: ConnectionError) -> ConnectError {
    match e {
        ConnectionError::TimedOut => ConnectError::Unreachable(format!(
            "no answer from {server}; is the relay running and the address right?"
        )),
        ConnectionError::ConnectionClosed(c) => {
            ConnectError::Tls(format!("the relay at {server} refused the connection: {c}"))
        }
        ConnectionError::TransportError(t) => {
            ConnectError::Tls(format!("TLS/QUIC handshake with {server} failed: {t}"))
        }
        ConnectionError::ApplicationClosed(c) => ConnectError::Closed(format!(
            "the relay at {server} closed the connection: {}",
            String::from_utf8_lossy(&c.reason)
        )),
        ConnectionError::Reset => {
            ConnectError::Unreachable(format!("{server} reset the connection"))
        }
        other => ConnectError::Unreachable(format!("cannot reach {server}: {other}")),
    }
}

async fn read_control(mut recv: quinn::RecvStream, tx: mpsc::UnboundedSender<Incoming>) {
    loop {
        match wire::read_frame(&mut recv).await {
            Ok(Some(frame)) => {
                if tx.send(Incoming::Frame(frame)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Incoming::Closed("the relay ended the session".into()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Incoming::Closed(e.to_string()));
                return;
            }
        }
    }
}

/// Accepts the relay's bulk streams (history pages): one frame each.
async fn read_bulk(conn: Connection, tx: mpsc::UnboundedSender<Incoming>) {
    wire::accept_bulk(conn, move |frame| match frame {
        Ok(Some(frame)) => {
            let _ = tx.send(Incoming::Frame(frame));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("bad bulk frame from the relay: {e}"),
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// How a fake address behaves when dialled.
    #[derive(Clone, Copy)]
    enum Fake {
        /// Nothing listening: no answer, ever.
        Silent,
        /// Refuses after this long.
        Fails(u64),
        /// Answers after this long.
        Answers(u64),
        /// Presents a changed certificate after this long.
        Untrusted(u64),
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("relay{i}:4433")).collect()
    }

    /// Races fake addresses; returns the outcome, the addresses started in
    /// order, and the (paused) time it took.
    async fn run(
        fakes: &[Fake],
        order: &[usize],
    ) -> (Result<usize, ConnectError>, Vec<usize>, Duration) {
        let names = addrs(fakes.len());
        let started = Arc::new(Mutex::new(Vec::new()));
        let begin = Instant::now();
        let result = race(
            &names,
            order,
            ATTEMPT_DELAY,
            |i| {
                started.lock().unwrap().push(i);
                let (fake, name) = (fakes[i], names[i].clone());
                async move {
                    let ms = Duration::from_millis;
                    match fake {
                        Fake::Silent => std::future::pending().await,
                        Fake::Fails(t) => {
                            tokio::time::sleep(ms(t)).await;
                            Err(ConnectError::Unreachable(format!("{name} reset")))
                        }
                        Fake::Answers(t) => {
                            tokio::time::sleep(ms(t)).await;
                            Ok(i)
                        }
                        Fake::Untrusted(t) => {
                            tokio::time::sleep(ms(t)).await;
                            Err(ConnectError::Trust(crate::trust::TrustFailure::Invalid(
                                "changed".into(),
                            )))
                        }
                    }
                }
            },
            |i| async move { Ok(i) },
        )
        .await
        .map(|(i, at)| {
            assert_eq!(i, at, "the index handed back is the one that answered");
            at
        });
        let started = started.lock().unwrap().clone();
        (result, started, begin.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_first_address_costs_only_the_attempt_delay() {
        let (won, started, took) = run(&[Fake::Silent, Fake::Answers(5)], &[0, 1]).await;
        assert_eq!(won.unwrap(), 1);
        assert_eq!(started, [0, 1]);
        assert_eq!(took, ATTEMPT_DELAY + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_starts_the_next_address_at_once() {
        let (won, started, took) = run(&[Fake::Fails(3), Fake::Answers(5)], &[0, 1]).await;
        assert_eq!(won.unwrap(), 1);
        assert_eq!(started, [0, 1]);
        assert_eq!(took, Duration::from_millis(8));
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_that_answers_in_time_is_the_only_one_tried() {
        let (won, started, _) = run(&[Fake::Answers(100), Fake::Answers(1)], &[0, 1]).await;
        assert_eq!(won.unwrap(), 0);
        assert_eq!(started, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_round_starts_where_it_is_told() {
        let fakes = [Fake::Answers(1), Fake::Silent, Fake::Answers(1)];
        let (won, started, _) = run(&fakes, &[1, 2, 0]).await;
        assert_eq!(won.unwrap(), 2);
        assert_eq!(started, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_address_still_wins_if_it_answers_first() {
        let fakes = [Fake::Answers(600), Fake::Answers(400)];
        let (won, started, _) = run(&fakes, &[0, 1]).await;
        assert_eq!(won.unwrap(), 0, "at 600 ms, before the second's 500 + 400");
        assert_eq!(started, [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_certificate_ends_the_round() {
        let fakes = [Fake::Untrusted(1), Fake::Answers(1)];
        let (won, started, _) = run(&fakes, &[0, 1]).await;
        assert!(matches!(won, Err(ConnectError::Trust(_))), "{won:?}");
        assert_eq!(started, [0], "no other relay is tried behind its back");
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_fails_with_its_own_error() {
        let (won, _, _) = run(&[Fake::Fails(1)], &[0]).await;
        match won {
            Err(ConnectError::Unreachable(e)) => assert_eq!(e, "relay0:4433 reset"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_in_which_all_fail_names_every_address_in_order() {
        let fakes = [Fake::Fails(50), Fake::Fails(1), Fake::Fails(1)];
        let (won, started, _) = run(&fakes, &[2, 0, 1]).await;
        assert_eq!(started, [2, 0, 1]);
        match won {
            Err(ConnectError::Unreachable(e)) => assert_eq!(
                e,
                "no relay could be reached: relay2:4433 reset; relay0:4433 reset; relay1:4433 reset"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_login_moves_on_to_the_next_answer() {
        let names = addrs(2);
        let result = race(
            &names,
            &[0, 1],
            ATTEMPT_DELAY,
            |i| async move { Ok(i) },
            |i| async move {
                if i == 0 {
                    Err(ConnectError::Closed("relay shutting down".into()))
                } else {
                    Ok(i)
                }
            },
        )
        .await;
        assert_eq!(result.unwrap().1, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_round_joins_errors_without_naming_an_address_twice() {
        let names = addrs(2);
        let result: Result<((), usize), _> = race(
            &names,
            &[0, 1],
            ATTEMPT_DELAY,
            |i| async move { Ok(i) },
            |i| async move {
                Err(if i == 0 {
                    ConnectError::Closed("relay shutting down".into())
                } else {
                    ConnectError::Unreachable("relay1:4433 reset".into())
                })
            },
        )
        .await;
        match result {
            Err(ConnectError::Unreachable(e)) => assert_eq!(
                e,
                "no relay could be reached: relay0:4433: relay shutting down; relay1:4433 reset"
            ),
            other => panic!("{other:?}"),
        }
    }
}
