//! `loadgen`: load and latency benchmarks for the confab relay, speaking
//! the real protocol (QUIC, TLS, accounts) through `common::client`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bench::measure::Measurements;
use bench::nats::NatsTarget;
use bench::procfs::Proc;
use bench::report::Report;
use bench::target::Target;
use bench::workload::{self, Params, Workload};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::time::Instant;

/// What every run prints, for `--help`.
macro_rules! output_help {
    () => {
        "Output: exactly one JSON line on stdout; progress and errors go to stderr.

  broker            \"confab\" (the relay), \"nats\" or \"nats-tls\" (--broker nats,
                    without or with --nats-ca).
  workload          \"fanout\" or \"rate\".
  clients           clients in the lobby, each sending and receiving.
  messages          messages each client sends (rate: --rate x --seconds).
  bytes             body size in bytes (--bytes; a body is never shorter than
                    its stamp, \"s=SENDER i=INDEX t=NANOS \").
  rate              messages per second each client sends; null for fanout.
  seconds           from the start of the clock (every client registered and
                    in the lobby) to the last delivery; to the time limit for
                    a run that timed out.
  deliveries        messages received by all clients together, duplicates
                    included. Everyone receives every message, their own
                    too: a complete run has clients x clients x messages.
  deliveries_per_s  deliveries / seconds.
  lost              expected deliveries that never came. Must be 0.
  duplicated        deliveries of a message its receiver already had. Must
                    be 0.
  latency_us        {p50, p99, p999, max}: median, 99th, 99.9th percentile
                    and maximum, over every delivery, of the time from the
                    sender's send call (stamped in the body) to the
                    receiver's message event, in microseconds. All clients
                    live in this process and share one monotonic clock.
  relay_cpu_s       CPU seconds (user + system, /proc/PID/stat) the relay used
                    while the clock ran; null when its pid is unknown. With
                    --broker nats, nats-server's (--nats-pid).
  relay_rss_kib     the relay's peak resident memory (VmRSS in
                    /proc/PID/status) sampled every 100 ms while the clock
                    ran, in KiB; null when its pid is unknown.
  timed_out         the run hit --timeout; the other figures are partial.

Exit status: 0 when lost and duplicated are 0 and the run did not time out;
1 otherwise, also when the run could not start or the relay died (the reason
goes to stderr, the JSON line still comes); 2 for bad usage.

Unless --server is given, every run starts its own relay (`relay serve` on a
free 127.0.0.1 port with a fresh certificate and data folder, per-session
rate limits lifted) and kills it at the end; clients pin its certificate and
register as bench-0, bench-1, ...

With --broker nats the same workload runs against the nats-server at
--nats-url instead, for comparison: one async-nats connection per client,
each subscribed to one fresh subject and publishing to it. Core NATS does
not acknowledge or store a publish, so fanout's --window bounds instead the
publishes that have not yet come back on the publisher's own subscription."
    };
}

/// Load and latency benchmarks for the confab relay.
#[derive(Parser)]
#[command(version, long_about = concat!(
    "Load and latency benchmarks for the confab relay, through the real \
     protocol: QUIC, TLS, accounts, durable acks.\n\n",
    output_help!()
))]
struct Cli {
    #[command(subcommand)]
    workload: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every client sends its messages as fast as the protocol allows.
    #[command(long_about = concat!(
        "Every client sends its messages as fast as the protocol allows, \
         keeping at most --window sends awaiting their ack, while every \
         client counts every message it receives. Measures throughput \
         (deliveries_per_s) and latency under load.\n\n",
        output_help!()
    ))]
    Fanout(FanoutArgs),
    /// Every client sends at a steady rate for a fixed time.
    #[command(long_about = concat!(
        "Every client sends one message every 1/--rate seconds for --seconds \
         (the clients spread over each period), then the run waits for the \
         deliveries to drain. Measures latency and relay CPU at a known \
         load: the defaults put 1,000 messages a second into the relay and \
         take 50,000 deliveries a second out.\n\n",
        output_help!()
    ))]
    Rate(RateArgs),
}

#[derive(Args)]
struct FanoutArgs {
    /// Clients in the room.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Messages each client sends.
    #[arg(long, default_value_t = 200)]
    messages: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    bytes: usize,
    /// Sends per client awaiting their ack at most (--broker nats: not yet
    /// received back by their sender).
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct RateArgs {
    /// Clients in the room.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Messages per second each client sends.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    bytes: usize,
    #[command(flatten)]
    common: Common,
}

/// What carries the messages.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// confab's relay.
    Confab,
    /// A nats-server at --nats-url.
    Nats,
}

#[derive(Args)]
struct Common {
    /// What to benchmark: confab's relay, or for comparison the
    /// nats-server at --nats-url.
    #[arg(long, value_enum, default_value_t = Broker::Confab)]
    broker: Broker,
    /// With --broker nats: the server, nats://HOST:PORT (or tls://).
    #[arg(long, value_name = "URL", required_if_eq("broker", "nats"))]
    nats_url: Option<String>,
    /// With --broker nats: the certificate (or CA) the server's TLS
    /// certificate must chain to; clients then require TLS and the report
    /// says "nats-tls".
    #[arg(long, value_name = "FILE", requires = "nats_url")]
    nats_ca: Option<PathBuf>,
    /// With --broker nats: nats-server's process id, for relay_cpu_s and
    /// relay_rss_kib.
    #[arg(long, value_name = "PID", requires = "nats_url")]
    nats_pid: Option<u32>,
    /// The relay binary to start [default: `relay` next to loadgen].
    #[arg(long, value_name = "PATH", conflicts_with = "server")]
    relay_bin: Option<PathBuf>,
    /// Benchmark a relay started by hand at this address instead of
    /// starting one. Accounts get a random name part, so runs can repeat.
    #[arg(long, value_name = "ADDR", requires = "ca")]
    server: Option<String>,
    /// The certificate (or CA) of --server's relay, pinned.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca: Option<PathBuf>,
    /// Process id of --server's relay, for relay_cpu_s and relay_rss_kib.
    #[arg(long, value_name = "PID", requires = "server")]
    relay_pid: Option<u32>,
    /// Seconds the whole run may take, relay start included.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// Copy the log of the relay this run started to FILE at the end.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    relay_log: Option<PathBuf>,
}

/// Lines of the relay's log shown on stderr after a failed run.
const LOG_TAIL: usize = 40;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (params, common) = match Cli::parse().workload {
        Command::Fanout(a) => (
            Params {
                clients: a.clients,
                bytes: a.bytes,
                workload: Workload::Fanout {
                    messages: a.messages,
                    window: a.window,
                },
            },
            a.common,
        ),
        Command::Rate(a) => (
            Params {
                clients: a.clients,
                bytes: a.bytes,
                workload: Workload::Rate {
                    rate: a.rate,
                    seconds: a.seconds,
                },
            },
            a.common,
        ),
    };
    if let Err(e) = params.check() {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let passed = match (common.broker, &common.nats_url) {
        (Broker::Nats, Some(url)) => {
            let target = NatsTarget {
                url: url.clone(),
                ca: common.nats_ca.clone(),
                pid: common.nats_pid,
            };
            runtime.block_on(run_nats(&params, &target, common.timeout))
        }
        _ => runtime.block_on(run(&params, &common)),
    };
    // A task stuck on a dead connection must not hold up the exit.
    runtime.shutdown_background();
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One run, bounded by `--timeout`; prints the report and says whether
/// it passed.
async fn run(params: &Params, common: &Common) -> bool {
    // The stamps' clock starts before anything is timed.
    bench::stamp::now_ns();
    let limit = Duration::from_secs(common.timeout);
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let mut failed = false;
    let target = match tokio::time::timeout_at(deadline, open(common)).await {
        Ok(Ok(target)) => Some(target),
        Ok(Err(e)) => {
            eprintln!("loadgen: {e:#}");
            failed = true;
            None
        }
        Err(_) => {
            timed_out = true;
            None
        }
    };
    let m = Arc::new(Measurements::new(
        params.clients,
        params.messages(),
        target.as_ref().and_then(|t| t.pid).map(Proc::new),
    ));
    if let Some(target) = &target {
        match tokio::time::timeout_at(deadline, workload::run(params, target, &m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("loadgen: {e:#}");
                failed = true;
            }
            Err(_) => timed_out = true,
        }
    }
    if timed_out {
        eprintln!("loadgen: the run did not finish within --timeout {limit:?}");
    }
    let report = Report::new(params, &m, timed_out);
    println!("{}", report.to_json());
    let passed = report.ok() && !failed;
    if let Some(log) = target.as_ref().and_then(Target::log_path) {
        if !passed {
            show_tail(&log);
        }
        if let Some(dest) = &common.relay_log {
            if let Err(e) = std::fs::copy(&log, dest) {
                eprintln!(
                    "loadgen: cannot copy the relay log to {}: {e}",
                    dest.display()
                );
            }
        }
    }
    passed
}

/// One run against nats-server, bounded by `timeout` seconds; prints the
/// report and says whether it passed.
async fn run_nats(params: &Params, target: &NatsTarget, timeout: u64) -> bool {
    bench::stamp::now_ns();
    let limit = Duration::from_secs(timeout);
    let m = Arc::new(Measurements::new(
        params.clients,
        params.messages(),
        target.pid.map(Proc::new),
    ));
    let mut failed = false;
    let timed_out = match tokio::time::timeout(limit, bench::nats::run(params, target, &m)).await {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            eprintln!("loadgen: {e:#}");
            failed = true;
            false
        }
        Err(_) => {
            eprintln!("loadgen: the run did not finish within --timeout {limit:?}");
            true
        }
    };
    let mut report = Report::new(params, &m, timed_out);
    report.broker = target.broker();
    println!("{}", report.to_json());
    report.ok() && !failed
}

/// The relay to benchmark: the one given, or a fresh one.
async fn open(common: &Common) -> Result<Target> {
    if let (Some(server), Some(ca)) = (&common.server, &common.ca) {
        return Ok(Target::external(
            server.clone(),
            ca.clone(),
            common.relay_pid,
        ));
    }
    let relay_bin = match &common.relay_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find loadgen's own path")?
            .with_file_name("relay"),
    };
    let target = Target::start(&relay_bin).await?;
    tracing::info!(
        "started {} at {} (pid {})",
        relay_bin.display(),
        target.server,
        target.pid.unwrap_or_default()
    );
    Ok(target)
}

fn show_tail(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of the relay log ---");
    for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
        eprintln!("{line}");
    }
}
