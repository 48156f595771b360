//! `relay`: the confab relay server and its administration commands.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use relay::backend::Backend;
use relay::config::Config;
use relay::defaults;
use relay::store::nats::NatsOptions;

/// confab relay: accepts QUIC/TLS connections from confab clients, keeps
/// accounts, rooms and history in an embedded SQLite store (or, with
/// --nats, in a NATS JetStream cluster shared by several relays), and
/// relays messages between them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a self-signed certificate and key for `relay serve`.
    GenCert {
        /// Folder for cert.pem and key.pem.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// A DNS name or IP address clients will use to reach the relay
        /// (repeatable; default: localhost, 127.0.0.1, ::1).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Days the certificate stays valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Serve clients.
    Serve(Serve),
    /// Administer accounts (also while the relay runs).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Parser)]
struct Serve {
    /// Certificate chain (PEM), leaf first.
    #[arg(long, default_value = "certs/cert.pem", env = "CONFAB_CERT")]
    cert: PathBuf,
    /// Private key (PEM) of the certificate.
    #[arg(long, default_value = "certs/key.pem", env = "CONFAB_KEY")]
    key: PathBuf,
    /// UDP address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = defaults::LISTEN, env = "CONFAB_LISTEN")]
    listen: SocketAddr,
    /// Folder of the embedded store (unused with --nats).
    #[arg(long, default_value = defaults::DATA_DIR, env = "CONFAB_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// Whether anyone may create an account.
    #[arg(long, value_enum, default_value_t = Registration::Open)]
    registration: Registration,
    /// Seconds from connecting to logging in before the relay hangs up.
    #[arg(long, default_value_t = common::limits::LOGIN_DEADLINE.as_secs_f64())]
    login_timeout: f64,
    /// Seconds from a connection's first packet to the end of its QUIC/TLS
    /// handshake (within the login timeout).
    #[arg(long, default_value_t = defaults::HANDSHAKE_TIMEOUT.as_secs_f64())]
    handshake_timeout: f64,
    /// Seconds from the end of the handshake to the client's Hello (within
    /// the login timeout).
    #[arg(long, default_value_t = defaults::HELLO_TIMEOUT.as_secs_f64())]
    hello_timeout: f64,
    /// Sustained messages per second per account, shared by its sessions
    /// (bursts reach twice this).
    #[arg(long, default_value_t = defaults::RATE_LIMIT)]
    rate_limit: u32,
    /// Room changes (create, join, leave, invite, DM) per second per
    /// account, shared by its sessions (bursts reach twice this).
    #[arg(long, default_value_t = defaults::REQUEST_RATE)]
    request_rate: u32,
    /// Sessions one account may have open on this relay at once.
    #[arg(long, default_value_t = defaults::MAX_SESSIONS_PER_USER)]
    max_sessions_per_user: usize,
    /// Rooms (channels and DMs) one account may create per hour, after a
    /// first 20.
    #[arg(long, default_value_t = defaults::ROOM_CREATIONS_PER_HOUR)]
    room_creations_per_hour: u32,
    /// Rooms (channels and DMs) one account may be a member of.
    #[arg(long, default_value_t = defaults::MAX_ROOMS_PER_USER)]
    max_rooms_per_user: usize,
    /// Pending invitations kept per account; past it the oldest is
    /// forgotten.
    #[arg(long, default_value_t = defaults::MAX_INVITATIONS)]
    max_invitations: usize,
    /// Bulk replies (history pages, room and member lists; up to 1 MiB
    /// each) the relay holds at once, all clients together.
    #[arg(long, default_value_t = defaults::BULK_REPLIES)]
    bulk_replies: usize,
    /// MiB of message bodies one account may store per day (a day's worth
    /// at once, refilled over the day).
    #[arg(long, default_value_t = defaults::DAILY_QUOTA_MIB)]
    daily_quota_mib: u32,
    /// Accounts one client network (IPv4 address, IPv6 /64) may register
    /// per hour; loopback is not counted.
    #[arg(long, default_value_t = defaults::REGISTRATIONS_PER_HOUR)]
    registrations_per_hour: u32,
    /// Serve Prometheus metrics over HTTP at this address (/metrics); off
    /// when not given.
    #[arg(long, env = "CONFAB_METRICS")]
    metrics: Option<SocketAddr>,
    /// Live frames queued per session before it counts as lagging and
    /// catches up from history instead.
    #[arg(long, default_value_t = defaults::QUEUE_DEPTH)]
    queue_depth: usize,
    /// Connections that have not logged in yet. When all are taken, a
    /// newcomer takes the place of the oldest silent one from the address
    /// holding the most.
    #[arg(long, default_value_t = defaults::MAX_UNAUTHENTICATED)]
    max_unauthenticated: usize,
    /// Connections not logged in yet from one IPv4 address or IPv6 /64.
    #[arg(long, default_value_t = defaults::MAX_UNAUTHENTICATED_PER_ADDR)]
    max_unauthenticated_per_addr: usize,
    /// Connections in all.
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS)]
    max_connections: usize,
}

/// Where the store lives when several relays share it.
#[derive(clap::Args)]
struct NatsArgs {
    /// Keep everything in NATS JetStream at these server URLs
    /// (comma-separated, e.g. nats://10.0.0.5:4222) instead of --data, so
    /// several relays can serve the same users.
    #[arg(long, env = "CONFAB_NATS")]
    nats: Option<String>,
    /// NATS credentials file (.creds: JWT and NKey seed).
    #[arg(long, env = "CONFAB_NATS_CREDS", requires = "nats")]
    nats_creds: Option<PathBuf>,
    /// NATS user name (the password comes from CONFAB_NATS_PASSWORD).
    #[arg(long, env = "CONFAB_NATS_USER", requires = "nats")]
    nats_user: Option<String>,
    /// CA certificate (PEM) that signed the NATS servers' certificates;
    /// makes TLS to NATS required.
    #[arg(long, env = "CONFAB_NATS_CA", requires = "nats")]
    nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients.
    #[arg(long, requires_all = ["nats", "nats_key"])]
    nats_cert: Option<PathBuf>,
    /// Key of --nats-cert.
    #[arg(long, requires = "nats_cert")]
    nats_key: Option<PathBuf>,
    /// Copies JetStream keeps of the stream and bucket (3 in a cluster).
    #[arg(long, default_value_t = 1, requires = "nats")]
    nats_replicas: usize,
}

impl NatsArgs {
    fn options(&self) -> Result<Option<NatsOptions>> {
        let Some(urls) = &self.nats else {
            return Ok(None);
        };
        let password = std::env::var("CONFAB_NATS_PASSWORD").ok();
        if self.nats_user.is_some() && password.is_none() {
            bail!("--nats-user needs the password in CONFAB_NATS_PASSWORD");
        }
        if !(1..=5).contains(&self.nats_replicas) {
            bail!("--nats-replicas must be between 1 and 5");
        }
        let mut opts = NatsOptions::new(urls.clone());
        opts.creds = self.nats_creds.clone();
        opts.user = self.nats_user.clone();
        opts.password = password;
        opts.ca = self.nats_ca.clone();
        opts.tls_cert = self.nats_cert.clone();
        opts.tls_key = self.nats_key.clone();
        opts.replicas = self.nats_replicas;
        Ok(Some(opts))
    }

    fn backend(&self, data: &Path) -> Result<Backend> {
        Ok(match self.options()? {
            Some(opts) => Backend::Nats(opts),
            None => Backend::Sqlite(data.to_owned()),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Registration {
    Open,
    Closed,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Password from CONFAB_PASSWORD, --password-file or a prompt.
    Add(UserArgs),
    /// Change an account's password (its open sessions end).
    Passwd(UserArgs),
    /// Delete an account (its messages stay in history; its open sessions
    /// end; the name can never be registered again).
    Del {
        /// The account's name (any case).
        name: String,
        /// Folder of the embedded store.
        #[arg(long, default_value = defaults::DATA_DIR, env = "CONFAB_DATA")]
        data: PathBuf,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// List accounts: one per line, the name, a tab, and when it was
    /// created (Unix seconds).
    List {
        /// Folder of the embedded store.
        #[arg(long, default_value = defaults::DATA_DIR, env = "CONFAB_DATA")]
        data: PathBuf,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Parser)]
struct UserArgs {
    /// The account's name: 1-32 of A-Z a-z 0-9 _ -, unique ignoring case.
    name: String,
    /// Folder of the embedded store.
    #[arg(long, default_value = defaults::DATA_DIR, env = "CONFAB_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// File whose first line is the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    keep_hash_memory_from_piling_up();
    let cli = Cli::parse();
    // A server narrates; an administration command only speaks up when
    // something is wrong.
    let default_filter = match cli.command {
        Command::Serve(_) => "info,quinn=warn,async_nats=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colour for people; plain text when logs go to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::GenCert {
            out,
            sans,
            days,
            force,
        } => {
            let made = relay::cert::generate(&relay::cert::GenCert {
                out,
                sans,
                days,
                force,
            })?;
            println!(
                "wrote {} and {}",
                made.cert_path.display(),
                made.key_path.display()
            );
            println!("fingerprint {}", made.fingerprint);
            Ok(())
        }
        Command::Serve(args) => serve(args).await,
        Command::User(cmd) => user(cmd).await,
    }
}

async fn serve(args: Serve) -> Result<()> {
    let (server_config, fingerprint) = relay::cert::load_server_config(&args.cert, &args.key)?;
    for (flag, secs) in [
        ("--login-timeout", args.login_timeout),
        ("--handshake-timeout", args.handshake_timeout),
        ("--hello-timeout", args.hello_timeout),
    ] {
        if !(secs > 0.0 && secs < 3600.0) {
            bail!("{flag} must be between 0 and 3600 seconds");
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = args.nats.backend(&args.data)?;
    let store = relay::backend::open(&backend, Some(tx)).await?;
    let endpoint = listen(server_config, args.listen)
        .with_context(|| format!("cannot listen on {} (udp)", args.listen))?;
    let addr = endpoint.local_addr()?;
    // Bound before the relay says it is listening: whoever waits for that
    // line can scrape at once, and a metrics address in use is an error
    // before anything is announced.
    let metrics = match args.metrics {
        Some(addr) => {
            let listener = relay::metrics::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr} (tcp)"))?;
            Some(listener)
        }
        None => None,
    };
    println!("confab relay listening on {addr} (udp), {backend}");
    println!("certificate fingerprint {fingerprint}");
    if let Some(listener) = &metrics {
        println!("metrics at http://{}/metrics", listener.local_addr()?);
    }
    let cfg = Config {
        login_timeout: std::time::Duration::from_secs_f64(args.login_timeout),
        handshake_timeout: std::time::Duration::from_secs_f64(args.handshake_timeout),
        hello_timeout: std::time::Duration::from_secs_f64(args.hello_timeout),
        registration_open: matches!(args.registration, Registration::Open),
        rate_limit: args.rate_limit,
        request_rate: args.request_rate,
        max_sessions_per_user: args.max_sessions_per_user.max(1),
        room_creations_per_hour: args.room_creations_per_hour,
        max_rooms_per_user: args.max_rooms_per_user.max(1),
        max_invitations: args.max_invitations.max(1),
        bulk_replies: args.bulk_replies.max(1),
        daily_quota_mib: args.daily_quota_mib.max(1),
        registrations_per_hour: args.registrations_per_hour.max(1),
        queue_depth: args.queue_depth.max(1),
        max_unauthenticated: args.max_unauthenticated,
        max_unauthenticated_per_addr: args.max_unauthenticated_per_addr,
        max_connections: args.max_connections,
    };
    let cluster = store.nats();
    relay::server::serve(endpoint, store, rx, cfg, metrics, cluster, stop_signal()).await;
    println!("confab relay stopped");
    Ok(())
}

/// Every argon2 check takes a 19 MiB block. glibc's malloc raises its mmap
/// threshold after the first such block is freed, so later blocks come
/// from the heap and stay with the process: a relay that checked a few
/// passwords at once kept 200-400 MiB it no longer used (bench/findings.md).
/// A fixed threshold keeps big blocks in mmap, returned on free.
fn keep_hash_memory_from_piling_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once, before
    // any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The relay's UDP socket, with a receive buffer that holds a burst of
/// handshakes: at the kernel's default (~200 KiB) dozens of clients
/// connecting at once lost Initial packets and waited a second to resend.
fn listen(config: quinn::ServerConfig, addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4 too when listening on [::].
        let _ = socket.set_only_v6(false);
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(defaults::UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the endpoint"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket.into(),
        runtime,
    )
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add(a) => {
            let backend = a.nats.backend(&a.data)?;
            let new = !store_exists(&backend);
            let password = password(a.password_file.as_deref(), true)?;
            relay::admin::add(&backend, &a.name, &password).await?;
            if new {
                eprintln!("note: there was no store yet; made a new one ({backend})");
            }
            println!("created {}", a.name);
        }
        UserCommand::Passwd(a) => {
            let backend = existing_store(a.nats.backend(&a.data)?)?;
            let password = password(a.password_file.as_deref(), true)?;
            relay::admin::passwd(&backend, &a.name, &password).await?;
            println!("password changed for {}", a.name);
        }
        UserCommand::Del { name, data, nats } => {
            relay::admin::del(&existing_store(nats.backend(&data)?)?, &name).await?;
            println!("deleted {name}");
        }
        UserCommand::List { data, nats } => {
            for (name, created) in
                relay::admin::list(&existing_store(nats.backend(&data)?)?).await?
            {
                println!("{name}\t{created}");
            }
        }
    }
    Ok(())
}

/// Whether the store is there already (always assumed on NATS, where the
/// relay makes its stream and bucket itself).
fn store_exists(backend: &Backend) -> bool {
    match backend {
        Backend::Sqlite(data) => data.join(relay::store::sqlite::DB_FILE).exists(),
        Backend::Nats(_) => true,
    }
}

/// The backend, unless it names an embedded store that does not exist:
/// changing or listing accounts there would make an empty store the relay
/// never reads.
fn existing_store(backend: Backend) -> Result<Backend> {
    if let Backend::Sqlite(data) = &backend {
        if !store_exists(&backend) {
            bail!(
                "there is no store in {}: pass the --data folder `relay serve` uses (default ./data, relative to where it runs)",
                data.display()
            );
        }
    }
    Ok(backend)
}

/// The password from CONFAB_PASSWORD, a file, or a prompt on the terminal.
fn password(file: Option<&Path>, confirm: bool) -> Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if let Ok(p) = std::env::var("CONFAB_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: set CONFAB_PASSWORD or use --password-file");
    }
    let first = rpassword::prompt_password("password: ")?;
    if confirm && rpassword::prompt_password("again: ")? != first {
        bail!("the passwords differ");
    }
    Ok(first)
}
