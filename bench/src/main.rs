//! `loadgen`: load and latency benchmarks for the confab relay, speaking
//! the real protocol (QUIC, TLS, accounts). This file is the command line;
//! `bench::run` runs a workload and prints its line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::history::HistoryParams;
use bench::idle::IdleParams;
use bench::nats::NatsTarget;
use bench::run::{self, RelayOptions};
use bench::workload::{Params, Workload};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The fields every message workload prints, for `--help`.
macro_rules! stream_fields {
    () => {
        "Output: exactly one JSON line on stdout; progress and errors go to stderr.

  broker            \"confab\" (the relay), \"nats\" or \"nats-tls\" (--broker nats,
                    without or with --nats-ca).
  workload          \"fanout\", \"rate\", \"ack\" or \"slow\".
  clients           clients in the lobby, each sending and receiving.
  messages          messages each client sends (rate, ack: --rate x --seconds;
                    slow: --rate x (2 + 3 x --seconds)).
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
  ack_us            {p50, p99, p999, max} of the time from the send call to
                    the relay's ack, which comes once the message is
                    committed to disk (group commit), in microseconds; for
                    rate, ack and slow against the relay, else null.
  relay_cpu_s       CPU seconds (user + system, /proc/PID/stat) the relay used
                    while the clock ran; null when its pid is unknown. With
                    --broker nats, nats-server's (--nats-pid).
  relay_rss_kib     the relay's peak resident memory (VmRSS in
                    /proc/PID/status) sampled every 100 ms while the clock
                    ran, in KiB; null when its pid is unknown.
  timed_out         the run hit --timeout; the other figures are partial."
    };
}

/// Exit status and the relay a run uses, for `--help`.
macro_rules! relay_help {
    () => {
        "Exit status: 0 when the run passed (nothing lost or duplicated, no
failure, in time); 1 otherwise, also when the run could not start or the
relay died (the reason goes to stderr, the JSON line still comes); 2 for bad
usage.

Unless --server is given, every run starts its own relay (`relay serve` on a
free 127.0.0.1 port with a fresh certificate and data folder, per-session
rate limits lifted) and kills it at the end; clients pin its certificate and
register as bench-0, bench-1, ..."
    };
}

/// Comparison with nats-server, for `--help`.
macro_rules! nats_help {
    () => {
        "With --broker nats the same workload runs against the nats-server at
--nats-url instead, for comparison: one async-nats connection per client,
each subscribed to one fresh subject and publishing to it. Core NATS does
not acknowledge or store a publish, so fanout's --window bounds instead the
publishes that have not yet come back on the publisher's own subscription."
    };
}

/// Load and latency benchmarks for the confab relay.
#[derive(Parser)]
#[command(
    version,
    long_about = "Load and latency benchmarks for the confab relay, \
    through the real protocol: QUIC, TLS, accounts, durable acks. Each workload \
    prints one JSON line; `loadgen WORKLOAD --help` explains every figure."
)]
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
        stream_fields!(), "\n\n", relay_help!(), "\n\n", nats_help!()
    ))]
    Fanout(FanoutArgs),
    /// Every client sends at a steady rate for a fixed time.
    #[command(long_about = concat!(
        "Every client sends one message every 1/--rate seconds for --seconds \
         (the clients spread over each period), then the run waits for the \
         deliveries to drain. Measures latency and relay CPU at a known \
         load: the defaults put 1,000 messages a second into the relay and \
         take 50,000 deliveries a second out.\n\n",
        stream_fields!(), "\n\n", relay_help!(), "\n\n", nats_help!()
    ))]
    Rate(RateArgs),
    /// The rate load, for the time from send to durable ack.
    #[command(long_about = concat!(
        "The rate load (same flags and defaults), reported for ack_us: the \
         time from a send to its ack, which the relay sends once the \
         transaction holding the message is on disk. The store commits \
         whatever is queued in one transaction (group commit), so under load \
         a message waits for the commit under way and then its own.\n\n",
        stream_fields!(), "\n\n", relay_help!()
    ))]
    Ack(RateArgs),
    /// The rate load with one more member that stops reading for a while.
    #[command(long_about = concat!(
        "The rate load for 2 s of warm-up and three phases of --seconds \
         each, with one more member of the room that does not send: in the \
         first phase it reads, in \
         the second it reads nothing (its control stream's receive window \
         is 64 KiB, so the relay's queue for it fills and it is told it \
         lagged), in the third it reads again and catches up from history \
         with the real client's sync logic. The others' latency is split by \
         the phase their message was sent in (the warm-up counts only in \
         latency_us).\n\n",
        stream_fields!(), "\n
  (slow) deliveries, lost, duplicated and latency_us count the senders
  only; the stalled member has its own below.
  phase_s           seconds of each phase (--seconds).
  stall             whether the member stopped reading (false: --no-stall).
  before_us         the others' latency for messages sent in phase 1.
  stalled_us        ... sent in phase 2, while the member read nothing.
  catching_up_us    ... sent in phase 3, while it caught up.
  p99_change_pct    how much the worse of the two later p99s is above (or,
                    negative, below) phase 1's, in percent.
  slow              the stalled member: paused_s (seconds it read nothing;
                    null with --no-stall),
                    lagged (Lagged notices it got), caught_up_s (seconds from
                    reading again to its first message sent after that; in
                    sequence order, so by then it had every earlier one),
                    deliveries, lost and duplicated (both must be 0).\n\n",
        relay_help!()
    ))]
    Slow(SlowArgs),
    /// Many logged-in connections that do nothing.
    #[command(long_about = concat!(
        "Logs in --connections connections and holds them, idle, for --hold \
         seconds: what an online but quiet user costs the relay. They log \
         in to --accounts accounts round robin (users with many devices), \
         --connecting at a time; --per-endpoint connections share a client \
         UDP socket.

The accounts are created in the relay's store before it starts (its own \
Store::create_user) with argon2id hashes of the smallest cost (m=8 KiB, \
t=1): the relay checks a password with the parameters in its stored hash, \
so a login costs microseconds instead of ~20 ms of CPU and 19 MiB, and the \
figures show the connections, not password hashing. With --register they \
are registered through the relay instead and every login costs a hash at \
the relay's own parameters (the only way with --server).

The relay it starts gets caps that let the run in (--max-connections, \
--max-unauthenticated, --max-unauthenticated-per-addr); a relay given with \
--server needs them by hand. loadgen raises its own open-file limit to \
the hard limit.

Output: exactly one JSON line on stdout; progress and errors go to stderr.

  broker, workload        \"confab\", \"idle\".
  connections, accounts   as asked.
  accounts_made           \"store\" (created before the relay started) or
                          \"registered\" (--register).
  endpoints               client UDP sockets used.
  hold_s                  seconds all were held once connected.
  connected               connections logged in.
  failed                  connections that could not log in (3 tries each).
  retried                 tries that failed and were made again (a
                          handshake whose packets were dropped: loopback
                          drops datagrams when the relay's socket buffer is
                          full).
  dropped                 connections that ended before the run did.
  connect_s               from the first dial to the last login.
  connects_per_s          connected / connect_s.
  login_us                {p50, p99, p999, max} from dialling to LoggedIn, in
                          microseconds, with --connecting in flight (with
                          --register mostly the wait for the relay's hashing
                          threads).
  relay_rss_base_kib      the relay's VmRSS with the accounts made and no
                          connection open.
  relay_rss_idle_kib      its VmRSS at the end of the hold.
  relay_rss_per_conn_kib  (idle - base) / connected.
  relay_rss_kib           its peak VmRSS, sampled every 100 ms.
  relay_cpu_connect_s     relay CPU seconds while connecting.
  relay_cpu_idle_s        relay CPU seconds during the hold (keep-alives).
  relay_cpu_idle_pct      that per second of hold, in percent of one core.
  loadgen_rss_per_conn_kib  loadgen's own VmRSS growth per connection.
  timed_out               the run hit --timeout.

Exit status: 0 when every connection logged in and lasted the hold; 1
otherwise; 2 for bad usage."
    ))]
    Idle(IdleArgs),
    /// A room with a million stored messages: logins and paging.
    #[command(long_about = "Fills the lobby of a fresh relay's store with \
         --messages messages before starting it (through SQLite, one \
         transaction per 100,000 rows, the schema made by the relay's own \
         code), then times --logins logins one after another through the \
         real client, each followed by --pages pages of --page messages \
         back, and --requests newest-page requests on one session.

Output: exactly one JSON line on stdout; progress and errors go to stderr.
Latencies are {p50, p99, p999, max} in microseconds.

  broker, workload      \"confab\", \"history\".
  messages, bytes       the messages stored and their body size.
  fill_s, db_mib        time the fill took; size of the database file.
  logins                logins done.
  login_us              from connecting to LoggedIn (TLS handshake, argon2id
                        check of the password).
  shown_us              from connecting to the lobby's newest 50 messages
                        handed to the application (Event::Joined): login,
                        room list, newest page.
  shown_after_login_us  the same from LoggedIn: what the history costs.
  pages, page           pages paged back per login, messages per page.
  page_back_us          one page back (History Before, on a logged-in
                        session).
  pages_back_us         all --pages of one login together.
  requests              newest-page requests done.
  latest_us             one request for the newest 50 (History Latest) on a
                        logged-in session, round trip.
  wrong                 pages that were not the run of sequences asked for.
                        Must be 0.
  relay_rss_kib         the relay's peak VmRSS while it ran.
  timed_out             the run hit --timeout.

Exit status: 0 when every login and request was done and right; 1
otherwise; 2 for bad usage.")]
    History(HistoryArgs),
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
    broker: BrokerArgs,
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
    broker: BrokerArgs,
}

#[derive(Args)]
struct SlowArgs {
    /// Clients in the room, each sending; the stalled member comes on top.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Messages per second each client sends.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of each of the three phases.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    bytes: usize,
    /// A control run: the extra member reads throughout, so the phases
    /// differ only by chance (how much, the run tells).
    #[arg(long)]
    no_stall: bool,
    #[command(flatten)]
    relay: RelayArgs,
}

#[derive(Args)]
struct IdleArgs {
    /// Connections to log in and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: u32,
    /// Accounts they share, round robin (each a user with many devices).
    #[arg(long, default_value_t = 100)]
    accounts: u32,
    /// Seconds to hold them once all are connected.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Connections per client UDP socket.
    #[arg(long, default_value_t = 100)]
    per_endpoint: u32,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 16)]
    connecting: usize,
    /// Register the accounts through the relay, paying its real password
    /// hashing on every login, instead of creating them in its store.
    #[arg(long)]
    register: bool,
    #[command(flatten)]
    relay: RelayArgs,
}

#[derive(Args)]
struct HistoryArgs {
    /// Messages stored in the room before the relay starts.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Body size of each message in bytes.
    #[arg(long, default_value_t = 100)]
    bytes: usize,
    /// Logins to time, one after another.
    #[arg(long, default_value_t = 200)]
    logins: u32,
    /// Pages to page back after each login.
    #[arg(long, default_value_t = 10)]
    pages: u32,
    /// Messages per page paged back (the GUI's page).
    #[arg(long, default_value_t = 50)]
    page: u16,
    /// Newest-page requests to time on one session.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    #[command(flatten)]
    relay: RelayArgs,
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
struct BrokerArgs {
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
    #[command(flatten)]
    relay: RelayArgs,
}

#[derive(Args)]
struct RelayArgs {
    /// The relay binary to start [default: `relay` next to loadgen].
    #[arg(long, value_name = "PATH", conflicts_with = "server")]
    relay_bin: Option<PathBuf>,
    /// Benchmark a relay started by hand at this address instead of
    /// starting one (several, comma-separated, for relays sharing one NATS
    /// store: clients are spread over them). Accounts get a random name
    /// part, so runs can repeat.
    #[arg(long, value_name = "ADDR", requires = "ca")]
    server: Option<String>,
    /// The certificate (or CA) of --server's relay, pinned.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca: Option<PathBuf>,
    /// Process id of --server's relay, for relay_cpu_s and relay_rss_kib.
    #[arg(long, value_name = "PID", requires = "server")]
    relay_pid: Option<u32>,
    /// Seconds the whole run may take, relay start included [default: 120;
    /// slow 180, history 300, idle 900].
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Copy the log of the relay this run started to FILE at the end.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    relay_log: Option<PathBuf>,
}

impl RelayArgs {
    fn options(&self, default_timeout: u64) -> RelayOptions {
        RelayOptions {
            relay_bin: self.relay_bin.clone(),
            server: self.server.clone().zip(self.ca.clone()),
            relay_pid: self.relay_pid,
            timeout: Duration::from_secs(self.timeout.unwrap_or(default_timeout)),
            relay_log: self.relay_log.clone(),
        }
    }
}

/// What `main` runs once the flags are read.
enum Job {
    Stream(Params, BrokerArgs),
    Slow(Params, RelayArgs),
    Idle(IdleParams, RelayArgs),
    History(HistoryParams, RelayArgs),
}

fn job(command: Command) -> anyhow::Result<Job> {
    let rate = |a: &RateArgs, ack: bool| Params {
        clients: a.clients,
        bytes: a.bytes,
        workload: if ack {
            Workload::Ack {
                rate: a.rate,
                seconds: a.seconds,
            }
        } else {
            Workload::Rate {
                rate: a.rate,
                seconds: a.seconds,
            }
        },
    };
    let job = match command {
        Command::Fanout(a) => Job::Stream(
            Params {
                clients: a.clients,
                bytes: a.bytes,
                workload: Workload::Fanout {
                    messages: a.messages,
                    window: a.window,
                },
            },
            a.broker,
        ),
        Command::Rate(a) => Job::Stream(rate(&a, false), a.broker),
        Command::Ack(a) => {
            anyhow::ensure!(
                a.broker.broker == Broker::Confab,
                "ack runs against the relay only: core NATS has no acks"
            );
            Job::Stream(rate(&a, true), a.broker)
        }
        Command::Slow(a) => Job::Slow(
            Params {
                clients: a.clients,
                bytes: a.bytes,
                workload: Workload::Slow {
                    rate: a.rate,
                    phase: a.seconds,
                    stall: !a.no_stall,
                },
            },
            a.relay,
        ),
        Command::Idle(a) => {
            let p = IdleParams {
                connections: a.connections,
                accounts: a.accounts,
                hold: Duration::from_secs(a.hold),
                per_endpoint: a.per_endpoint,
                connecting: a.connecting,
                register: a.register,
            };
            p.check()?;
            Job::Idle(p, a.relay)
        }
        Command::History(a) => {
            let p = HistoryParams {
                messages: a.messages,
                bytes: a.bytes,
                logins: a.logins,
                pages: a.pages,
                page: a.page,
                requests: a.requests,
            };
            p.check()?;
            Job::History(p, a.relay)
        }
    };
    if let Job::Stream(p, _) | Job::Slow(p, _) = &job {
        p.check()?;
    }
    Ok(job)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let job = match job(Cli::parse().workload) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if run::raise_fd_limit().is_none() {
        tracing::warn!("cannot raise the open-file limit; large runs may fail");
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let passed = runtime.block_on(async {
        match &job {
            Job::Stream(params, b) => match (b.broker, &b.nats_url) {
                (Broker::Nats, Some(url)) => {
                    let target = NatsTarget {
                        url: url.clone(),
                        ca: b.nats_ca.clone(),
                        pid: b.nats_pid,
                    };
                    let timeout = Duration::from_secs(b.relay.timeout.unwrap_or(120));
                    run::nats(params, &target, timeout).await
                }
                _ => run::stream(params, &b.relay.options(120)).await,
            },
            Job::Slow(params, r) => run::slow(params, &r.options(180)).await,
            Job::Idle(p, r) => run::idle(p, &r.options(900)).await,
            Job::History(p, r) => run::history(p, &r.options(300)).await,
        }
    });
    // A task stuck on a dead connection must not hold up the exit.
    runtime.shutdown_background();
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
