//! idle: many logged-in connections that do nothing, to measure what a
//! quiet online user costs the relay: resident memory per connection, how
//! fast logins are served, and the CPU keep-alives take.
//!
//! Every connection logs in to one of a few accounts (a user with many
//! devices), so the relay's "came online" notices, which go to everyone
//! sharing a room, are sent once per account rather than once per
//! connection.
//!
//! By default the accounts are created in the store before the relay
//! starts, through the relay's own `Store::create_user`, with argon2id
//! hashes of the smallest cost the format allows. The relay checks a
//! password with the parameters stored in its hash, so each login then
//! costs microseconds instead of the ~20 ms of CPU and 19 MiB a default
//! hash takes: 10,000 logins take seconds rather than minutes, and the
//! relay's memory shows the connections rather than what its allocator
//! keeps from hashing. `--register` registers them through the network
//! instead, with the relay's real hashing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Version};
use hdrhistogram::Histogram;
use relay::store::sqlite::SqliteStore;
use relay::store::Store;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dialer::{Dialer, Link};
use crate::procfs::Proc;
use crate::report::{round, Latency};
use crate::stamp::now_ns;
use crate::target::Target;
use crate::workload::{account_names, watch_relay_rss, PASSWORD};

/// How often progress goes to stderr while connecting.
const PROGRESS: Duration = Duration::from_secs(2);

/// Time given to the registration connections' close to reach the relay
/// before its memory is taken as the baseline.
const SETTLE: Duration = Duration::from_secs(1);

/// Login errors shown on stderr; the rest are only counted.
const SHOWN_ERRORS: u64 = 5;

/// Tries a connection gets before it counts as failed.
const ATTEMPTS: u32 = 3;

/// Pause before trying a failed connection again.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Debug, Clone)]
pub struct IdleParams {
    /// Connections to hold.
    pub connections: u32,
    /// Accounts they log in to, round robin.
    pub accounts: u32,
    /// How long all of them are held once connected.
    pub hold: Duration,
    /// Connections sharing one client UDP socket.
    pub per_endpoint: u32,
    /// Logins (and registrations) in flight at once.
    pub connecting: usize,
    /// Register the accounts through the relay (real hashing) instead of
    /// creating them in its store beforehand.
    pub register: bool,
}

impl IdleParams {
    /// Refuses parameters no run can satisfy.
    pub fn check(&self) -> Result<()> {
        ensure!(self.connections > 0, "--connections must be at least 1");
        ensure!(
            (1..=self.connections).contains(&self.accounts),
            "--accounts must be between 1 and --connections"
        );
        ensure!(self.per_endpoint > 0, "--per-endpoint must be at least 1");
        ensure!(self.connecting > 0, "--connecting must be at least 1");
        Ok(())
    }

    /// UDP sockets the load generator opens.
    pub fn endpoints(&self) -> usize {
        self.connections.div_ceil(self.per_endpoint) as usize
    }

    /// `relay serve` flags that let the run in: every connection comes
    /// from 127.0.0.1, so the per-address pre-login cap must cover the
    /// logins in flight, and the total cap all connections (the relay's
    /// default is 10,000) with room for the registrations still closing.
    pub fn relay_args(&self) -> Vec<String> {
        let in_flight = 2 * self.connecting;
        vec![
            "--max-connections".into(),
            (self.connections as usize + self.accounts as usize + in_flight).to_string(),
            "--max-unauthenticated".into(),
            in_flight.max(256).to_string(),
            "--max-unauthenticated-per-addr".into(),
            in_flight.to_string(),
        ]
    }
}

/// The line an idle run prints. `loadgen idle --help` explains each field.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub broker: &'static str,
    pub workload: &'static str,
    pub connections: u32,
    pub accounts: u32,
    pub accounts_made: &'static str,
    pub endpoints: usize,
    pub hold_s: f64,
    pub connected: u64,
    pub failed: u64,
    pub retried: u64,
    pub dropped: u64,
    pub connect_s: f64,
    pub connects_per_s: f64,
    pub login_us: Latency,
    pub relay_rss_base_kib: Option<u64>,
    pub relay_rss_idle_kib: Option<u64>,
    pub relay_rss_per_conn_kib: Option<f64>,
    pub relay_rss_kib: Option<u64>,
    pub relay_cpu_connect_s: Option<f64>,
    pub relay_cpu_idle_s: Option<f64>,
    pub relay_cpu_idle_pct: Option<f64>,
    pub loadgen_rss_per_conn_kib: Option<f64>,
    pub timed_out: bool,
}

impl IdleReport {
    /// Whether every connection logged in and lasted, in time.
    pub fn ok(&self) -> bool {
        !self.timed_out
            && self.failed == 0
            && self.dropped == 0
            && self.connected == u64::from(self.connections)
    }
}

/// What an idle run has measured so far; it outlives a run cut short.
#[derive(Debug)]
pub struct IdleFigures {
    relay: Option<Proc>,
    me: Proc,
    connected: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    rss_peak_kib: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    login_us: Option<Histogram<u64>>,
    connect_started_ns: Option<u64>,
    connect_ended_ns: Option<u64>,
    rss_base_kib: Option<u64>,
    rss_idle_kib: Option<u64>,
    me_base_kib: Option<u64>,
    me_idle_kib: Option<u64>,
    cpu: [Option<f64>; 3],
    hold_s: f64,
}

impl IdleFigures {
    /// Nothing measured yet; `relay` is the relay process when known.
    pub fn new(relay: Option<Proc>) -> IdleFigures {
        IdleFigures {
            relay,
            me: Proc::new(std::process::id()),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rss_peak_kib: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The relay's memory now, noted as a peak if it is one.
    pub fn sample_rss(&self) -> Option<u64> {
        let kib = self.relay.and_then(|p| p.rss_kib())?;
        self.rss_peak_kib.fetch_max(kib, Ordering::Relaxed);
        Some(kib)
    }

    fn cpu(&self) -> Option<f64> {
        self.relay.and_then(|p| p.cpu_s())
    }

    /// The report of a run of `p`.
    pub fn report(&self, p: &IdleParams, timed_out: bool) -> IdleReport {
        let inner = self.inner();
        let connected = self.connected.load(Ordering::Relaxed);
        let connect_s = match (inner.connect_started_ns, inner.connect_ended_ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            (Some(a), None) => now_ns().saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        };
        let per_conn = |base: Option<u64>, idle: Option<u64>| match (base, idle) {
            (Some(base), Some(idle)) if connected > 0 => {
                Some(round((idle as f64 - base as f64) / connected as f64, 2))
            }
            _ => None,
        };
        let span = |from: usize, to: usize| match (inner.cpu[from], inner.cpu[to]) {
            (Some(a), Some(b)) => Some(round(b - a, 2)),
            _ => None,
        };
        let idle_cpu = span(1, 2);
        IdleReport {
            broker: "confab",
            workload: "idle",
            connections: p.connections,
            accounts: p.accounts,
            accounts_made: if p.register { "registered" } else { "store" },
            endpoints: p.endpoints(),
            hold_s: round(inner.hold_s, 3),
            connected,
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            connect_s: round(connect_s, 3),
            connects_per_s: if connect_s > 0.0 {
                round(connected as f64 / connect_s, 1)
            } else {
                0.0
            },
            login_us: inner.login_us.as_ref().map(Latency::of).unwrap_or_default(),
            relay_rss_base_kib: inner.rss_base_kib,
            relay_rss_idle_kib: inner.rss_idle_kib,
            relay_rss_per_conn_kib: per_conn(inner.rss_base_kib, inner.rss_idle_kib),
            relay_rss_kib: match self.rss_peak_kib.load(Ordering::Relaxed) {
                0 => None,
                kib => Some(kib),
            },
            relay_cpu_connect_s: span(0, 1),
            relay_cpu_idle_s: idle_cpu,
            relay_cpu_idle_pct: idle_cpu
                .filter(|_| inner.hold_s > 0.0)
                .map(|s| round(s / inner.hold_s * 100.0, 2)),
            loadgen_rss_per_conn_kib: per_conn(inner.me_base_kib, inner.me_idle_kib),
            timed_out,
        }
    }
}

/// The accounts of a run, `idle-0`, `idle-1`, …
pub fn accounts(p: &IdleParams, shared: bool) -> Vec<String> {
    account_names("idle", p.accounts, shared)
}

/// Creates `names` in a fresh store in `data`, each with the benchmark
/// password hashed at argon2id's smallest cost (see the module's notes).
/// Runs on a blocking thread of the runtime.
pub fn precreate(data: &Path, names: &[String]) -> Result<()> {
    let store = SqliteStore::open(data, None).context("cannot create the store")?;
    let cheap = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        argon2::Params::new(8, 1, 1, None).map_err(|e| anyhow!("argon2 parameters: {e}"))?,
    );
    let hashes = names
        .iter()
        .map(|_| {
            let salt = SaltString::generate(&mut OsRng);
            cheap
                .hash_password(PASSWORD.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow!("argon2: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    tokio::runtime::Handle::current().block_on(async {
        // All at once: the store commits them together.
        let created = names
            .iter()
            .zip(&hashes)
            .map(|(name, phc)| store.create_user(name, phc));
        let result = futures_util::future::try_join_all(created).await;
        store.close().await;
        result.context("cannot create the accounts")
    })?;
    Ok(())
}

/// Registers the accounts (with `--register`), connects and logs in every
/// connection, holds them for `p.hold`, and closes them, recording into `f`.
pub async fn run(p: &IdleParams, target: &Target, f: &Arc<IdleFigures>) -> Result<()> {
    let dialer = Arc::new(Dialer::new(target, p.endpoints()).await?);
    let names = Arc::new(accounts(p, target.shared));
    let result = match f.relay {
        Some(relay) => tokio::select! {
            result = drive(p, &dialer, &names, f) => result,
            () = watch_relay_rss(relay, || { f.sample_rss(); }) => {
                Err(anyhow::anyhow!("the relay (pid {}) exited during the run", relay.pid()))
            }
        },
        None => drive(p, &dialer, &names, f).await,
    };
    dialer.close().await;
    result
}

async fn drive(
    p: &IdleParams,
    dialer: &Arc<Dialer>,
    names: &Arc<Vec<String>>,
    f: &Arc<IdleFigures>,
) -> Result<()> {
    if p.register {
        tracing::info!("registering {} accounts", names.len());
        register(dialer, names, p.connecting).await?;
        tokio::time::sleep(SETTLE).await;
    }
    {
        let base = f.sample_rss();
        let mut inner = f.inner();
        inner.rss_base_kib = base;
        inner.me_base_kib = f.me.rss_kib();
        inner.cpu[0] = f.cpu();
        inner.connect_started_ns = Some(now_ns());
        inner.login_us = Some(Histogram::new(3).expect("3 significant digits"));
    }
    tracing::info!(
        "connecting {} clients as {} accounts over {} UDP sockets",
        p.connections,
        names.len(),
        p.endpoints()
    );
    // Holders own the connections; dropping the set closes them all.
    let mut holders = JoinSet::new();
    connect_all(p, dialer, names, f, &mut holders).await;
    {
        let mut inner = f.inner();
        inner.connect_ended_ns = Some(now_ns());
        inner.cpu[1] = f.cpu();
    }
    let connected = f.connected.load(Ordering::Relaxed);
    tracing::info!("{connected} connected; holding them for {:?}", p.hold);
    let held = Instant::now();
    tokio::time::sleep(p.hold).await;
    let rss = f.sample_rss();
    let mut inner = f.inner();
    inner.rss_idle_kib = rss;
    inner.me_idle_kib = f.me.rss_kib();
    inner.cpu[2] = f.cpu();
    inner.hold_s = held.elapsed().as_secs_f64();
    drop(inner);
    holders.abort_all();
    Ok(())
}

/// Creates the accounts, `connecting` at a time, and closes their
/// connections again.
async fn register(dialer: &Arc<Dialer>, names: &Arc<Vec<String>>, connecting: usize) -> Result<()> {
    let permits = Arc::new(Semaphore::new(connecting));
    let mut tasks = JoinSet::new();
    for i in 0..names.len() {
        let (dialer, names, permits) = (dialer.clone(), names.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire().await.expect("never closed");
            let link = dialer.open(i, &names[i], PASSWORD, true).await?;
            link.conn.close(0u32.into(), b"registered");
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Logs every connection in, `p.connecting` at a time, handing each to a
/// holder task in `holders` that reads (and drops) what the relay sends
/// until the run ends. Failures are counted, not fatal: the report says
/// how many connections the relay took.
async fn connect_all(
    p: &IdleParams,
    dialer: &Arc<Dialer>,
    names: &Arc<Vec<String>>,
    f: &Arc<IdleFigures>,
    holders: &mut JoinSet<()>,
) {
    let permits = Arc::new(Semaphore::new(p.connecting));
    let mut dialling = JoinSet::new();
    for i in 0..p.connections as usize {
        let (dialer, names, permits) = (dialer.clone(), names.clone(), permits.clone());
        let f = f.clone();
        dialling.spawn(async move {
            let _permit = permits.acquire().await.expect("never closed");
            let started = now_ns();
            let name = &names[i % names.len()];
            let mut link = dialer.open(i, name, PASSWORD, false).await;
            // As a real client would: a handshake whose packets the relay's
            // socket dropped in a burst is tried again.
            for _ in 1..ATTEMPTS {
                if link.is_ok() {
                    break;
                }
                f.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_DELAY).await;
                link = dialer.open(i, name, PASSWORD, false).await;
            }
            (link, now_ns().saturating_sub(started) / 1_000)
        });
    }
    let mut progress = tokio::time::interval(PROGRESS);
    progress.tick().await;
    let started = Instant::now();
    loop {
        let done = tokio::select! {
            done = dialling.join_next() => done,
            _ = progress.tick() => {
                let n = f.connected.load(Ordering::Relaxed);
                tracing::info!(
                    "{n} of {} logged in ({:.0}/s), {} failed",
                    p.connections,
                    n as f64 / started.elapsed().as_secs_f64(),
                    f.failed.load(Ordering::Relaxed)
                );
                continue;
            }
        };
        let Some(done) = done else { break };
        let (link, micros) = match done {
            Ok(result) => result,
            Err(e) => {
                tracing::error!("a login task failed: {e}");
                f.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match link {
            Ok(link) => {
                f.connected.fetch_add(1, Ordering::Relaxed);
                if let Some(h) = f.inner().login_us.as_mut() {
                    let _ = h.record(micros);
                }
                holders.spawn(hold(link, f.clone()));
            }
            Err(e) => {
                if f.failed.fetch_add(1, Ordering::Relaxed) < SHOWN_ERRORS {
                    tracing::warn!("login failed: {e:#}");
                }
            }
        }
    }
}

/// Keeps a connection open, reading (and dropping) what the relay sends
/// (presence notices) as a quiet client would, until the run ends or the
/// connection does.
async fn hold(link: Link, f: Arc<IdleFigures>) {
    // The whole link is owned here: dropping its send half would finish
    // the control stream, which the relay takes as a goodbye.
    let Link {
        conn: _conn,
        send: _send,
        mut recv,
        ..
    } = link;
    while let Ok(Some(_)) = common::wire::read_frame(&mut recv).await {}
    f.dropped.fetch_add(1, Ordering::Relaxed);
}
