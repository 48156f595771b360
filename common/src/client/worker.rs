//! The task behind a [`Client`](super::Client): owns the connection, the
//! timers and the channels, and moves what they carry to and from the
//! [`Session`], which decides everything else.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::command::Command;
use super::config::Config;
use super::connect::{self, Incoming, Link};
use super::event::Event;
use super::relays::RelayList;
use super::session::{Hangup, Phase, Session};
use crate::codec;
use crate::frame::ClientFrame;

/// The relay the worker is connected to, `None` between connections. A std
/// mutex: it is only ever held to copy a short string, never across an
/// await.
pub(crate) type CurrentRelay = Arc<Mutex<Option<String>>>;

pub(crate) struct Worker {
    cfg: Config,
    session: Session,
    relay: CurrentRelay,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Message ids and backoff jitter. Owned rather than `thread_rng()`,
    /// which cannot be held by a task that moves between threads.
    rng: StdRng,
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
            session: Session::new(&cfg, relays),
            cfg,
            relay,
            events,
            commands,
            rng: StdRng::from_entropy(),
        }
    }

    /// Serves `first` (the link to `relays.addrs()[at]`), then every link
    /// after it, until the session is closed or cannot go on.
    pub(crate) async fn run(mut self, first: Link, at: usize) {
        let mut link = first;
        self.session
            .connected(at, link.user.clone(), Instant::now());
        loop {
            self.set_relay(Some(link.server.clone()));
            let hangup = self.serve(&mut link).await;
            match hangup {
                Hangup::Lost => {}
                Hangup::Reconnect => link.conn.close(0u32.into(), b"reconnecting"),
                Hangup::Close { bye, done } => {
                    if bye {
                        say_bye(&mut link).await;
                    }
                    self.set_relay(None);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            self.set_relay(None);
            drop(link);
            link = match self.reconnect().await {
                Some(link) => link,
                None => return,
            };
        }
    }

    fn set_relay(&self, server: Option<String>) {
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = server;
    }

    /// Hands the session's events to the application.
    fn emit(&mut self) {
        while let Some(event) = self.session.poll_event() {
            let _ = self.events.send(event);
        }
    }

    /// Writes what the session asks for on `link`, until it leaves it.
    async fn serve(&mut self, link: &mut Link) -> Hangup {
        loop {
            // Events first: the application hears of a login before the
            // writes that follow it can fail.
            self.emit();
            while let Some(frame) = self.session.poll_transmit() {
                if let Err(reason) = write(link, &frame).await {
                    self.session.lost(reason, Instant::now(), &mut self.rng);
                }
            }
            self.emit();
            if let Some(hangup) = self.session.poll_hangup() {
                return hangup;
            }
            let timer = self.session.poll_timeout();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.session.command(command, Instant::now(), &mut self.rng),
                    // The client is gone: nobody waits for anything.
                    None => self.session.close(None),
                },
                incoming = link.incoming.recv() => {
                    let now = Instant::now();
                    match incoming {
                        Some(Incoming::Frame(frame)) => self.session.frame(frame, now, &mut self.rng),
                        Some(Incoming::Closed(reason)) => {
                            self.session.lost(close_reason(link, reason), now, &mut self.rng)
                        }
                        None => self.session.lost(
                            close_reason(link, "connection ended".into()),
                            now,
                            &mut self.rng,
                        ),
                    }
                },
                _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                    self.session.timeout(Instant::now());
                }
            }
        }
    }

    /// Waits out the backoff and runs rounds of attempts until one connects
    /// (`Some`), or until the session is closed or a retry cannot help
    /// (`None`). Commands are served while waiting, not during a round.
    async fn reconnect(&mut self) -> Option<Link> {
        loop {
            self.emit();
            if let Some(Hangup::Close { done, .. }) = self.session.poll_hangup() {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return None;
            }
            match self.session.phase() {
                Phase::Waiting { until } => tokio::select! {
                    _ = tokio::time::sleep_until(until) => self.session.timeout(Instant::now()),
                    command = self.commands.recv() => match command {
                        Some(command) => self.session.command(command, Instant::now(), &mut self.rng),
                        None => return None,
                    },
                },
                Phase::Dialing => {
                    match connect::open(&self.cfg, self.session.relays(), false).await {
                        Ok((link, at)) => {
                            self.session
                                .connected(at, link.user.clone(), Instant::now());
                            return Some(link);
                        }
                        Err(e) => self
                            .session
                            .connect_failed(e, Instant::now(), &mut self.rng),
                    }
                }
                Phase::Up { .. } | Phase::Closed => return None,
            }
        }
    }
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
    // The close is only queued: a process that exits now may never send
    // it, and the relay would keep the session (and any reply it was
    // still delivering) until its idle timeout.
    let _ = tokio::time::timeout(Duration::from_millis(500), link.endpoint.wait_idle()).await;
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
