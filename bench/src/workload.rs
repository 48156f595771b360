//! The workloads: clients that register, meet in the lobby, send stamped
//! messages and count what they receive.
//!
//! - fanout: every client sends its messages as fast as the protocol
//!   allows, with a bounded number of sends awaiting their ack.
//! - rate: every client sends at a steady rate for a fixed time.
//! - ack: the rate load, timing each send until its durable ack.
//! - slow: the rate load with one more member that stops reading for a
//!   while (see `slow`).
//!
//! Every client receives every message, its own included, so each one is
//! both a sender and a receiver.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::client::{Acked, Client, Config, Event, RequestError};
use common::limits::MAX_BODY;
use common::names::LOBBY;
use common::trust::TrustMode;
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::measure::Measurements;
use crate::procfs::Proc;
use crate::stamp::{now_ns, Stamp};
use crate::target::Target;

/// The room every benchmark runs in: accounts are members from the start.
pub const ROOM: &str = LOBBY;

/// The password of every benchmark account.
pub(crate) const PASSWORD: &str = "loadgen password";

/// Seconds of load before slow's first phase: a fresh relay's first
/// seconds (its queues and caches growing) would otherwise count against
/// the phase the others are compared with.
pub const SLOW_WARMUP: u32 = 2;

/// Registrations at once: each costs the relay an argon2id hash, and a
/// crowd of them could keep some connections past the login deadline.
const CONNECTING: usize = 8;

/// After every send is acknowledged, how long deliveries may pause before
/// the rest count as lost. The messages are committed by then, and a
/// receiver catching up from history keeps making progress; 10 s of
/// silence is the protocol's idle timeout.
const DRAIN_QUIET: Duration = Duration::from_secs(10);

/// How often completion, relay liveness and memory are checked.
const POLL: Duration = Duration::from_millis(100);

/// How often progress goes to stderr.
const PROGRESS: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Each client sends `messages` as fast as acks allow, with at most
    /// `window` unacknowledged.
    Fanout { messages: u32, window: usize },
    /// Each client sends `rate` messages per second for `seconds`.
    Rate { rate: u32, seconds: u32 },
    /// The rate load, reported for its send-to-ack latency.
    Ack { rate: u32, seconds: u32 },
    /// The rate load for [`SLOW_WARMUP`] seconds and three phases of
    /// `phase` seconds, with one more member that stops reading during the
    /// second (unless `stall` is false: a control run).
    Slow { rate: u32, phase: u32, stall: bool },
}

impl Workload {
    /// The name in the report and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Fanout { .. } => "fanout",
            Workload::Rate { .. } => "rate",
            Workload::Ack { .. } => "ack",
            Workload::Slow { .. } => "slow",
        }
    }

    /// Messages per second each client sends, for the steady workloads.
    pub fn rate(&self) -> Option<u32> {
        match *self {
            Workload::Fanout { .. } => None,
            Workload::Rate { rate, .. }
            | Workload::Ack { rate, .. }
            | Workload::Slow { rate, .. } => Some(rate),
        }
    }
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// Clients, each sending and receiving.
    pub clients: u32,
    /// Body size in bytes (at least the stamp's header).
    pub bytes: usize,
    /// What they do.
    pub workload: Workload,
}

impl Params {
    /// Messages each client sends.
    pub fn messages(&self) -> u32 {
        match self.workload {
            Workload::Fanout { messages, .. } => messages,
            Workload::Rate { rate, seconds } | Workload::Ack { rate, seconds } => {
                rate.saturating_mul(seconds)
            }
            Workload::Slow { rate, phase, .. } => {
                rate.saturating_mul(phase.saturating_mul(3).saturating_add(SLOW_WARMUP))
            }
        }
    }

    /// Refuses parameters no run can satisfy.
    pub fn check(&self) -> Result<()> {
        ensure!(self.clients > 0, "--clients must be at least 1");
        ensure!(
            self.messages() > 0,
            "each client must send at least one message"
        );
        ensure!(
            self.bytes <= MAX_BODY,
            "--bytes must be at most {MAX_BODY}, the protocol's largest body"
        );
        if let Workload::Fanout { window, .. } = self.workload {
            ensure!(window > 0, "--window must be at least 1");
        }
        Ok(())
    }
}

/// What a receiver tells the run before the clock starts.
enum Notice {
    Joined,
    Failed(String),
}

/// Runs `params` against `target`, recording into `m`. Returns once every
/// delivery has arrived or deliveries stopped (see [`DRAIN_QUIET`]); an
/// error when the run cannot go on (a client cannot connect, the relay
/// exited). Dropping the future stops every task it started.
pub async fn run(params: &Params, target: &Target, m: &Arc<Measurements>) -> Result<()> {
    match m.relay() {
        Some(relay) => tokio::select! {
            result = drive(params, target, m) => result,
            () = watch_relay(relay, m) => bail!("the relay (pid {}) exited during the run", relay.pid()),
        },
        None => drive(params, target, m).await,
    }
}

async fn drive(params: &Params, target: &Target, m: &Arc<Measurements>) -> Result<()> {
    // Receivers and the progress task; dropping the set aborts them.
    let mut background = JoinSet::new();
    let names = Arc::new(account_names("bench", params.clients, target.shared));
    let clients = connect_all(target, &names, m, &mut background).await?;
    m.start();
    tracing::info!(
        "{} clients in {ROOM}; {} {} messages each of {} bytes",
        params.clients,
        params.workload.name(),
        params.messages(),
        params.bytes,
    );
    background.spawn(progress(m.clone()));
    let start = Instant::now();
    let mut senders = JoinSet::new();
    match params.workload {
        Workload::Fanout { messages, window } => {
            for (sender, client) in clients.iter().enumerate() {
                let bytes = params.bytes;
                senders.spawn(send_fast(
                    client.clone(),
                    sender as u32,
                    messages,
                    window,
                    bytes,
                ));
            }
        }
        _ => senders = send_all_steadily(params, &clients, m, start),
    }
    let refused = settle_all(senders).await?;
    tracing::info!(
        "all sends acknowledged after {:.2} s ({refused} refused); waiting for deliveries",
        start.elapsed().as_secs_f64()
    );
    drain(m).await;
    m.finish();
    close_all(clients).await;
    Ok(())
}

/// Starts every client's steady sender (rate, ack, slow); each returns
/// how many of its sends were refused.
pub(crate) fn send_all_steadily(
    params: &Params,
    clients: &[Arc<Client>],
    m: &Arc<Measurements>,
    start: Instant,
) -> JoinSet<u64> {
    let mut senders = JoinSet::new();
    let rate = params.workload.rate().unwrap_or(1);
    for (sender, client) in clients.iter().enumerate() {
        senders.spawn(send_steadily(
            client.clone(),
            m.clone(),
            Steady {
                sender: sender as u32,
                clients: params.clients,
                rate,
                messages: params.messages(),
                bytes: params.bytes,
                start,
            },
        ));
    }
    senders
}

/// Waits for every sender; the number of refused sends.
pub(crate) async fn settle_all(mut senders: JoinSet<u64>) -> Result<u64> {
    let mut refused = 0;
    while let Some(result) = senders.join_next().await {
        refused += result.context("a sender failed")?;
    }
    Ok(refused)
}

/// `PREFIX-0`, `PREFIX-1`, … or, on a shared relay where those may exist,
/// with a random part: `PREFIX-k3x9q-0`, …
pub(crate) fn account_names(prefix: &str, count: u32, shared: bool) -> Vec<String> {
    let prefix = if shared {
        let suffix = Alphanumeric.sample_string(&mut rand::thread_rng(), 6);
        format!("{prefix}-{}-", suffix.to_ascii_lowercase())
    } else {
        format!("{prefix}-")
    };
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

/// Registers and connects every client, starts its receiver, and returns
/// once each has seen the lobby.
pub(crate) async fn connect_all(
    target: &Target,
    names: &Arc<Vec<String>>,
    m: &Arc<Measurements>,
    background: &mut JoinSet<()>,
) -> Result<Vec<Arc<Client>>> {
    tracing::info!("registering {} clients at {}", names.len(), target.server);
    let permits = Arc::new(Semaphore::new(CONNECTING));
    let mut connecting = JoinSet::new();
    // Several relays (comma-separated): clients are spread over them, each
    // with the others as its fallbacks.
    let relays: Vec<&str> = target.server.split(',').collect();
    for (i, name) in names.iter().enumerate() {
        let k = i % relays.len();
        let servers = [&relays[k..], &relays[..k]].concat().join(",");
        let mut cfg = Config::new(
            &servers,
            TrustMode::Pinned(target.ca.clone()),
            name,
            PASSWORD,
        );
        cfg.register = true;
        cfg.client_name = concat!("confab-loadgen/", env!("CARGO_PKG_VERSION")).to_owned();
        let permits = permits.clone();
        connecting.spawn(async move {
            let _permit = permits
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let name = cfg.user.clone();
            let session = Client::connect(cfg)
                .await
                .with_context(|| format!("{name} cannot connect"));
            (i, session)
        });
    }
    let (notices, mut noticed) = mpsc::unbounded_channel();
    let mut clients: Vec<Option<Arc<Client>>> = vec![None; names.len()];
    while let Some(joined) = connecting.join_next().await {
        let (i, session) = joined.context("a connecting task failed")?;
        let (client, events) = session?;
        clients[i] = Some(Arc::new(client));
        background.spawn(receive(
            i,
            names.clone(),
            events,
            m.clone(),
            notices.clone(),
        ));
    }
    drop(notices);
    for _ in 0..names.len() {
        match noticed.recv().await {
            Some(Notice::Joined) => {}
            Some(Notice::Failed(why)) => bail!(why),
            None => bail!("every receiver ended before joining {ROOM}"),
        }
    }
    Ok(clients.into_iter().flatten().collect())
}

/// Receiver `i`: counts every stamped message from a benchmark account.
async fn receive(
    i: usize,
    names: Arc<Vec<String>>,
    mut events: mpsc::UnboundedReceiver<Event>,
    m: Arc<Measurements>,
    notices: mpsc::UnboundedSender<Notice>,
) {
    let mut joined = false;
    while let Some(event) = events.recv().await {
        match event {
            Event::Message(msg) if msg.room == ROOM => {
                let Some(stamp) = Stamp::decode(&msg.body) else {
                    continue;
                };
                // Someone else's text that happens to parse is not ours.
                let ours = names
                    .get(stamp.sender as usize)
                    .is_some_and(|name| name.eq_ignore_ascii_case(&msg.from));
                if ours {
                    m.record(i, stamp);
                }
            }
            Event::Joined { room, .. } if room == ROOM && !joined => {
                joined = true;
                let _ = notices.send(Notice::Joined);
            }
            Event::Reconnecting {
                attempt, reason, ..
            } => tracing::warn!("{}: reconnecting (attempt {attempt}): {reason}", names[i]),
            Event::Failed(e) => {
                tracing::error!("{}: session failed: {e}", names[i]);
                let _ = notices.send(Notice::Failed(format!("{}: {e}", names[i])));
            }
            _ => {}
        }
    }
}

/// fanout: `messages` messages as fast as acks come back, with at most
/// `window` awaiting theirs. Returns how many were refused.
async fn send_fast(
    client: Arc<Client>,
    sender: u32,
    messages: u32,
    window: usize,
    bytes: usize,
) -> u64 {
    let mut in_flight = VecDeque::with_capacity(window);
    let mut refused = 0;
    for index in 0..messages {
        if in_flight.len() >= window {
            if let Some(oldest) = in_flight.pop_front() {
                refused += settle(client.user(), oldest.await);
            }
        }
        let body = Stamp {
            sender,
            index,
            sent_ns: now_ns(),
        }
        .encode(bytes);
        in_flight.push_back(client.send(ROOM, &body));
    }
    for ack in in_flight {
        refused += settle(client.user(), ack.await);
    }
    refused
}

/// One steady sender's part of the load.
pub(crate) struct Steady {
    pub sender: u32,
    pub clients: u32,
    pub rate: u32,
    pub messages: u32,
    pub bytes: usize,
    pub start: Instant,
}

/// rate: one message every 1/`rate` s until `messages` are sent, each ack
/// timed as it arrives. Returns how many were refused.
pub(crate) async fn send_steadily(client: Arc<Client>, m: Arc<Measurements>, s: Steady) -> u64 {
    let period = Duration::from_secs(1) / s.rate;
    // Clients spread over one period: a steady stream, not a burst of
    // every client's message at each tick.
    let offset = period.mul_f64(f64::from(s.sender) / f64::from(s.clients));
    let mut ticks = tokio::time::interval_at(s.start + offset, period);
    // A late tick is made up for, so every client sends its full count
    // and the delay shows up as latency rather than as fewer messages.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // A task per send, so each ack is timed when it comes rather than
    // when the sender gets round to it.
    let mut acks = JoinSet::new();
    for index in 0..s.messages {
        ticks.tick().await;
        let sent_ns = now_ns();
        let body = Stamp {
            sender: s.sender,
            index,
            sent_ns,
        }
        .encode(s.bytes);
        let ack = client.send(ROOM, &body);
        let m = m.clone();
        acks.spawn(async move {
            let result = ack.await;
            if result.is_ok() {
                m.record_ack(now_ns().saturating_sub(sent_ns) / 1_000);
            }
            result
        });
    }
    let mut refused = 0;
    while let Some(result) = acks.join_next().await {
        refused += match result {
            Ok(result) => settle(client.user(), result),
            Err(_) => 1,
        };
    }
    refused
}

/// 1 for a refused send, after saying why.
fn settle(user: &str, result: Result<Acked, RequestError>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(e) => {
            tracing::warn!("{user}: send failed: {e}");
            1
        }
    }
}

/// Waits until every receiver has every message, or until deliveries
/// stop for [`DRAIN_QUIET`].
pub(crate) async fn drain(m: &Measurements) {
    let mut seen = m.deliveries();
    let mut since = Instant::now();
    while !m.complete() {
        tokio::time::sleep(POLL).await;
        let now = m.deliveries();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= DRAIN_QUIET {
            tracing::warn!(
                "no delivery for {DRAIN_QUIET:?}: {} of {} arrived; the rest count as lost",
                now,
                m.expected_deliveries()
            );
            return;
        }
    }
}

/// Says goodbye for every client at once.
pub(crate) async fn close_all(clients: Vec<Arc<Client>>) {
    let mut closing = JoinSet::new();
    for client in clients {
        closing.spawn(async move { client.close().await });
    }
    while closing.join_next().await.is_some() {}
}

/// Samples the relay's memory until it exits, and returns then.
pub(crate) async fn watch_relay(relay: Proc, m: &Measurements) {
    watch_relay_rss(relay, || m.sample_rss()).await
}

/// Calls `sample` every [`POLL`] until the relay exits, and returns then.
pub(crate) async fn watch_relay_rss(relay: Proc, mut sample: impl FnMut()) {
    let mut ticks = tokio::time::interval(POLL);
    while relay.running() {
        sample();
        ticks.tick().await;
    }
}

/// Deliveries so far, to stderr, now and then.
pub(crate) async fn progress(m: Arc<Measurements>) {
    let mut ticks = tokio::time::interval(PROGRESS);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        tracing::info!(
            "{} of {} deliveries",
            m.deliveries(),
            m.expected_deliveries()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_shared_relays_get_a_fresh_prefix() {
        let own = account_names("bench", 3, false);
        assert_eq!(own, ["bench-0", "bench-1", "bench-2"]);
        let shared = account_names("bench", 100, true);
        assert_ne!(shared[0], account_names("bench", 1, true)[0]);
        for name in own.iter().chain(&shared) {
            common::names::check_user(name).unwrap();
        }
    }

    #[test]
    fn rate_sends_rate_times_seconds() {
        let params = Params {
            clients: 50,
            bytes: 100,
            workload: Workload::Rate {
                rate: 20,
                seconds: 10,
            },
        };
        assert_eq!(params.messages(), 200);
        params.check().unwrap();
    }

    #[test]
    fn impossible_parameters_are_refused() {
        let fanout = |clients, messages, window, bytes| Params {
            clients,
            bytes,
            workload: Workload::Fanout { messages, window },
        };
        assert!(fanout(50, 200, 64, 100).check().is_ok());
        assert!(fanout(0, 200, 64, 100).check().is_err());
        assert!(fanout(50, 0, 64, 100).check().is_err());
        assert!(fanout(50, 200, 0, 100).check().is_err());
        assert!(fanout(50, 200, 64, MAX_BODY + 1).check().is_err());
    }
}
