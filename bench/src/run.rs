//! One run of a workload, bounded in time: start (or find) the server,
//! run, print the one JSON line, keep or show the relay's log. Each
//! function returns whether the run passed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use crate::history::{self, HistoryFigures, HistoryParams};
use crate::idle::{self, IdleFigures, IdleParams};
use crate::measure::Measurements;
use crate::nats::NatsTarget;
use crate::procfs::Proc;
use crate::report::Report;
use crate::slow::{self, SlowFigures, SlowReport};
use crate::target::{Launch, Prepare, Target};
use crate::workload::{self, Params, ROOM};

/// Lines of the relay's log shown on stderr after a failed run.
const LOG_TAIL: usize = 40;

/// Which relay a run uses, and its limits.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay binary to start; `None`: `relay` next to this program.
    pub relay_bin: Option<PathBuf>,
    /// A relay started by hand, and the certificate to pin for it.
    pub server: Option<(String, PathBuf)>,
    /// That relay's process id, for CPU and memory.
    pub relay_pid: Option<u32>,
    /// The whole run, relay start included.
    pub timeout: Duration,
    /// Where to copy the log of a relay the run started.
    pub relay_log: Option<PathBuf>,
}

/// How the bounded part of a run ended.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    failed: bool,
    timed_out: bool,
}

impl Outcome {
    fn and(self, other: Outcome) -> Outcome {
        Outcome {
            failed: self.failed || other.failed,
            timed_out: self.timed_out || other.timed_out,
        }
    }
}

/// Runs `work` until `deadline`; an error or the deadline is noted, not
/// returned, so the run still reports what it measured.
async fn within<T>(
    deadline: Instant,
    work: impl Future<Output = Result<T>>,
) -> (Option<T>, Outcome) {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(value)) => (Some(value), Outcome::default()),
        Ok(Err(e)) => {
            eprintln!("loadgen: {e:#}");
            let failed = Outcome {
                failed: true,
                timed_out: false,
            };
            (None, failed)
        }
        Err(_) => {
            let timed_out = Outcome {
                failed: false,
                timed_out: true,
            };
            (None, timed_out)
        }
    }
}

/// The relay of a run, opened within `deadline`.
async fn open(o: &RelayOptions, launch: Launch, deadline: Instant) -> (Option<Target>, Outcome) {
    // The stamps' clock starts before anything is timed.
    crate::stamp::now_ns();
    within(deadline, async {
        if let Some((server, ca)) = &o.server {
            return Ok(Target::external(server.clone(), ca.clone(), o.relay_pid));
        }
        let relay_bin = match &o.relay_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .context("cannot find loadgen's own path")?
                .with_file_name("relay"),
        };
        let target = Target::start_with(&relay_bin, launch).await?;
        tracing::info!(
            "started {} at {} (pid {})",
            relay_bin.display(),
            target.server,
            target.pid.unwrap_or_default()
        );
        Ok(target)
    })
    .await
}

/// Says the run timed out, when it did, and deals with the relay's log.
fn finish(o: &RelayOptions, target: Option<&Target>, outcome: Outcome, passed: bool) {
    if outcome.timed_out {
        eprintln!(
            "loadgen: the run did not finish within --timeout {:?}",
            o.timeout
        );
    }
    let Some(log) = target.and_then(Target::log_path) else {
        return;
    };
    if !passed {
        show_tail(&log);
    }
    if let Some(dest) = &o.relay_log {
        if let Err(e) = std::fs::copy(&log, dest) {
            eprintln!(
                "loadgen: cannot copy the relay log to {}: {e}",
                dest.display()
            );
        }
    }
}

fn show_tail(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of the relay log ---");
    for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
        eprintln!("{line}");
    }
}

/// fanout, rate and ack against the relay.
pub async fn stream(params: &Params, o: &RelayOptions) -> bool {
    let deadline = Instant::now() + o.timeout;
    let (target, opened) = open(o, Launch::default(), deadline).await;
    let m = Arc::new(Measurements::new(
        params.clients,
        params.messages(),
        target.as_ref().and_then(|t| t.pid).map(Proc::new),
    ));
    let ran = match &target {
        Some(target) => within(deadline, workload::run(params, target, &m)).await.1,
        None => Outcome::default(),
    };
    let outcome = opened.and(ran);
    let report = Report::new(params, &m, outcome.timed_out);
    println!("{}", report.to_json());
    let passed = report.ok() && !outcome.failed;
    finish(o, target.as_ref(), outcome, passed);
    passed
}

/// fanout and rate against nats-server.
pub async fn nats(params: &Params, target: &NatsTarget, timeout: Duration) -> bool {
    crate::stamp::now_ns();
    let m = Arc::new(Measurements::new(
        params.clients,
        params.messages(),
        target.pid.map(Proc::new),
    ));
    let deadline = Instant::now() + timeout;
    let (_, outcome) = within(deadline, crate::nats::run(params, target, &m)).await;
    if outcome.timed_out {
        eprintln!("loadgen: the run did not finish within --timeout {timeout:?}");
    }
    let mut report = Report::new(params, &m, outcome.timed_out);
    report.broker = target.broker();
    println!("{}", report.to_json());
    report.ok() && !outcome.failed
}

/// The rate load with a member that stops reading.
pub async fn slow(params: &Params, o: &RelayOptions) -> bool {
    let deadline = Instant::now() + o.timeout;
    let (target, opened) = open(o, Launch::default(), deadline).await;
    let m = Arc::new(Measurements::with_receivers(
        params.clients,
        params.clients + 1,
        params.messages(),
        target.as_ref().and_then(|t| t.pid).map(Proc::new),
    ));
    let f = Arc::new(SlowFigures::default());
    let ran = match &target {
        Some(target) => within(deadline, slow::run(params, target, &m, &f)).await.1,
        None => Outcome::default(),
    };
    let outcome = opened.and(ran);
    let report = SlowReport::new(params, &m, &f, outcome.timed_out);
    println!("{}", report.to_json());
    let passed = report.ok() && !outcome.failed;
    finish(o, target.as_ref(), outcome, passed);
    passed
}

/// Many idle logged-in connections.
pub async fn idle(p: &IdleParams, o: &RelayOptions) -> bool {
    let deadline = Instant::now() + o.timeout;
    let prepare: Option<Prepare> = (!p.register).then(|| {
        let names = idle::accounts(p, false);
        Box::new(move |data: &Path| idle::precreate(data, &names)) as Prepare
    });
    let launch = Launch {
        args: p.relay_args(),
        prepare,
    };
    let (target, opened) = if o.server.is_some() && !p.register {
        eprintln!("loadgen: a relay given with --server needs --register");
        let failed = Outcome {
            failed: true,
            timed_out: false,
        };
        (None, failed)
    } else {
        open(o, launch, deadline).await
    };
    let f = Arc::new(IdleFigures::new(
        target.as_ref().and_then(|t| t.pid).map(Proc::new),
    ));
    let ran = match &target {
        Some(target) => within(deadline, idle::run(p, target, &f)).await.1,
        None => Outcome::default(),
    };
    let outcome = opened.and(ran);
    let report = f.report(p, outcome.timed_out);
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report always serialises")
    );
    let passed = report.ok() && !outcome.failed;
    finish(o, target.as_ref(), outcome, passed);
    passed
}

/// A room with many stored messages: logins, pages back, newest pages.
pub async fn history(p: &HistoryParams, o: &RelayOptions) -> bool {
    let deadline = Instant::now() + o.timeout;
    // The fill needs the store before the relay opens it, so only a relay
    // this run starts will do.
    let user = history::account(false);
    let fill_s = Arc::new(OnceLock::new());
    let launch = Launch {
        args: Vec::new(),
        prepare: Some(Box::new({
            let (p, user, fill_s) = (p.clone(), user.clone(), fill_s.clone());
            move |data: &Path| {
                tracing::info!("filling {ROOM} with {} messages", p.messages);
                let started = std::time::Instant::now();
                history::fill(data, ROOM, p.messages, p.bytes, &user)?;
                let _ = fill_s.set(started.elapsed().as_secs_f64());
                tracing::info!("filled in {:.1} s", started.elapsed().as_secs_f64());
                Ok(())
            }
        })),
    };
    let (target, opened) = match &o.server {
        Some(_) => {
            eprintln!("loadgen: history fills the store of a relay it starts; drop --server");
            let failed = Outcome {
                failed: true,
                timed_out: false,
            };
            (None, failed)
        }
        None => open(o, launch, deadline).await,
    };
    let f = Arc::new(HistoryFigures::new(
        target.as_ref().and_then(|t| t.pid).map(Proc::new),
    ));
    if let (Some(seconds), Some(data)) = (fill_s.get(), target.as_ref().and_then(Target::data_dir))
    {
        f.filled(*seconds, &data);
    }
    let ran = match &target {
        Some(target) => within(deadline, history::run(p, target, &user, &f)).await.1,
        None => Outcome::default(),
    };
    let outcome = opened.and(ran);
    let report = f.report(p, outcome.timed_out);
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report always serialises")
    );
    let passed = report.ok(p) && !outcome.failed;
    finish(o, target.as_ref(), outcome, passed);
    passed
}

/// Raises this process's open-file limit to its hard limit: a run of
/// thousands of connections needs a descriptor or more for each (sockets,
/// and the relay it starts inherits the limit). Returns the new limit.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct
    // passed, which lives on this stack frame for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return None;
            }
        }
    }
    Some(limit.rlim_cur)
}
