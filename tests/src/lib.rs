//! Harness for confab's integration tests: starts the real `relay` binary
//! on a free loopback port with a temporary data folder and certificate,
//! and connects real clients to it over QUIC/TLS.

pub mod gui;
pub mod nats;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::child::KillOnDrop;
use common::client::{Client, Config, Event};
use common::frame::{Message, ALPN};
use common::trust::TrustMode;
use common::wire::{self, Wire, WireError};
use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Whether the suite runs every relay on NATS JetStream instead of SQLite
/// (`CONFAB_TEST_NATS=1`, as `make test-nats` sets).
pub fn on_nats() -> bool {
    std::env::var("CONFAB_TEST_NATS").is_ok_and(|v| v == "1")
}

/// Skips a test whose tool (nats-server, Python with aioquic, root for a
/// mount, ...) this machine lacks: a note locally, where not everyone
/// installs everything, but a failure under `CI=true`, where a skipped
/// test would pass without having tested anything.
pub fn skip_without(tool: &str, how: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must provide {tool}: {how}"
    );
    eprintln!("skipped: no {tool}; {how}");
}

/// Path of a workspace binary, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (make test does) first",
        path.display()
    );
    path
}

/// A running relay with its own data folder and certificate.
pub struct Relay {
    pub dir: TempDir,
    pub addr: SocketAddr,
    /// The nats-server this relay keeps its store in, when the whole suite
    /// runs on NATS (`CONFAB_TEST_NATS=1`) and the test did not pick one.
    pub own_nats: Option<nats::NatsServer>,
    child: Option<KillOnDrop>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Relay {
    /// Starts a relay with default settings.
    pub fn start() -> Relay {
        Relay::start_with(&[], &[])
    }

    /// Starts a relay with extra `serve` flags and environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Relay {
        Relay::start_in(tempfile::tempdir().expect("temp dir"), args, env)
    }

    /// Starts a relay whose certificate and data live in `dir` (a test may
    /// have mounted something at `dir/data` first).
    pub fn start_in(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Relay {
        if !dir.path().join("certs/cert.pem").exists() {
            let status = Command::new(bin("relay"))
                .args(["gen-cert", "--out"])
                .arg(dir.path().join("certs"))
                .stdout(Stdio::null())
                .status()
                .expect("run relay gen-cert");
            assert!(status.success(), "gen-cert failed");
        }
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let own_nats = (on_nats() && !args.iter().any(|a| a == "--nats")).then(|| {
            let server = nats::NatsServer::start();
            args.extend(["--nats".to_owned(), server.url()]);
            server
        });
        let mut relay = Relay {
            dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            own_nats,
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        relay.spawn();
        relay
    }

    /// Starts `n` relays on one NATS server, all with the same certificate
    /// (as a team would put one name and certificate on all of them).
    pub fn cluster(nats: &nats::NatsServer, n: usize, args: &[&str]) -> Vec<Relay> {
        let url = nats.url();
        let mut all: Vec<&str> = vec!["--nats", &url];
        all.extend_from_slice(args);
        let first = Relay::start_with(&all, &[]);
        let mut relays = vec![];
        for _ in 1..n {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
            for file in ["cert.pem", "key.pem"] {
                let to = dir.path().join("certs").join(file);
                std::fs::copy(first.dir.path().join("certs").join(file), &to).expect("copy cert");
            }
            relays.push(Relay::start_in(dir, &all, &[]));
        }
        relays.insert(0, first);
        relays
    }

    /// The flags that point `relay user …` at this relay's store.
    pub fn store_args(&self) -> Vec<std::ffi::OsString> {
        match self.args.iter().position(|a| a == "--nats") {
            Some(i) => vec!["--nats".into(), self.args[i + 1].clone().into()],
            None => vec!["--data".into(), self.data().into()],
        }
    }

    /// Whether this relay keeps its store in NATS.
    pub fn on_nats(&self) -> bool {
        self.args.iter().any(|a| a == "--nats")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("certs/cert.pem")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `host:port` for clients.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("relay.log"))
            .expect("relay log");
        // Owned at once, so a relay that fails to start is not left behind.
        let mut child = KillOnDrop(
            Command::new(bin("relay"))
                .arg("serve")
                .arg("--cert")
                .arg(self.cert())
                .arg("--key")
                .arg(self.dir.path().join("certs/key.pem"))
                .arg("--data")
                .arg(self.data())
                .arg("--listen")
                .arg(self.addr.to_string())
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("RUST_LOG", "info,quinn=warn")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("start relay"),
        );
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("confab relay listening on ") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("relay did not start; log:\n{}", self.log()));
        self.addr = addr.parse().expect("listen address");
        self.child = Some(child);
    }

    /// The relay process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("relay running").id()
    }

    /// The relay's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// The relay's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
    }

    /// Kills the relay with SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Waits for the relay to exit by itself (e.g. after a fault), returning
    /// whether it did in time.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return true;
                }
            }
            // Async, so the clients under test keep running meanwhile.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends SIGTERM and returns the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("relay running");
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .expect("relay exit status")
    }

    /// Starts the relay again on the same port and data folder, with the
    /// given environment instead of the original one.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn();
    }

    /// Kills the relay and starts it again on the same port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A client configuration that pins this relay's certificate.
    pub fn config(&self, user: &str) -> Config {
        let mut cfg = Config::new(
            &self.server(),
            TrustMode::Pinned(self.cert()),
            user,
            PASSWORD,
        );
        cfg.reconnect_initial = Duration::from_millis(100);
        cfg.reconnect_max = Duration::from_millis(500);
        cfg
    }

    /// Registers `user` and returns the connected session.
    pub async fn register(&self, user: &str) -> Session {
        let mut cfg = self.config(user);
        cfg.register = true;
        Session::connect(cfg).await
    }

    /// Logs `user` in.
    pub async fn login(&self, user: &str) -> Session {
        Session::connect(self.config(user)).await
    }

    /// A raw QUIC connection offering `alpn`, trusting this relay's cert.
    pub async fn raw_connection(
        &self,
        alpn: &[u8],
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        self.raw_connection_with(alpn, quinn::TransportConfig::default())
            .await
    }

    /// A raw QUIC connection with a transport configuration of the test's
    /// choosing (tiny windows, no streams accepted, ...).
    pub async fn raw_connection_with(
        &self,
        alpn: &[u8],
        transport: quinn::TransportConfig,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let endpoint = wire::endpoint_for(self.addr).expect("endpoint");
        self.raw_connection_on(endpoint, alpn, transport).await
    }

    /// A raw connection with the standard ALPN and its control stream
    /// open, from the loopback address `from` (any of 127.0.0.0/8), so
    /// that the relay sees a client of that address.
    pub async fn wire_from(&self, from: std::net::Ipv4Addr) -> Wire {
        let endpoint = quinn::Endpoint::client((from, 0).into()).expect("bind the endpoint");
        let conn = self
            .raw_connection_on(endpoint, GOOD_ALPN, quinn::TransportConfig::default())
            .await
            .expect("handshake with the right ALPN");
        Wire::open(conn).await.expect("open the control stream")
    }

    async fn raw_connection_on(
        &self,
        endpoint: quinn::Endpoint,
        alpn: &[u8],
        transport: quinn::TransportConfig,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let config = self.client_config(alpn, transport);
        let conn = wire::dial(&endpoint, config, self.addr, "localhost").await;
        // The endpoint must outlive the connection; tests are short.
        std::mem::forget(endpoint);
        match conn {
            Ok(conn) => Ok(conn),
            Err(WireError::Connection(e)) => Err(e),
            Err(e) => panic!("connect: {e}"),
        }
    }

    /// A QUIC client configuration that trusts this relay's certificate and
    /// offers `alpn`, for tests that dial from endpoints of their own.
    pub fn client_config(
        &self,
        alpn: &[u8],
        transport: quinn::TransportConfig,
    ) -> quinn::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(self.cert()).expect("cert");
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("pem")).expect("root");
        }
        wire::raw_config(roots, alpn, transport).expect("client config")
    }

    /// A raw connection with the standard ALPN and its control stream open,
    /// for tests that write frames (or anything else) by hand.
    pub async fn wire(&self) -> Wire {
        let conn = self
            .raw_connection(GOOD_ALPN)
            .await
            .expect("handshake with the right ALPN");
        Wire::open(conn).await.expect("open the control stream")
    }

    /// [`Relay::wire`], logged in as `user` (registered first when
    /// `register`) with [`PASSWORD`].
    pub async fn wire_logged_in(&self, user: &str, register: bool) -> Wire {
        let mut wire = self.wire().await;
        let login = wire.login("confab-tests", user, PASSWORD, register);
        match tokio::time::timeout(PATIENCE, login).await {
            Ok(Ok(_)) => wire,
            Ok(Err(e)) => panic!("{user} cannot log in: {e}"),
            Err(_) => panic!("{user}: no login within {PATIENCE:?}"),
        }
    }
}

use rustls::pki_types::pem::PemObject;

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
        // For diagnosing a failure: the relay's log goes to stderr, which
        // the test runner shows only for failing tests.
        if std::thread::panicking() || std::env::var_os("CONFAB_TEST_LOG").is_some() {
            eprintln!("--- relay log ---\n{}", self.log());
        }
    }
}

/// The standard ALPN, for raw connections that should get through.
pub const GOOD_ALPN: &[u8] = ALPN;

/// A connected client and its events.
pub struct Session {
    pub client: Client,
    pub events: UnboundedReceiver<Event>,
}

impl Session {
    pub async fn connect(cfg: Config) -> Session {
        let user = cfg.user.clone();
        let (client, events) = Client::connect(cfg)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        Session { client, events }
    }

    /// The next event that `pick` maps to something, failing the test
    /// after [`PATIENCE`].
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Ok(None) => panic!(
                    "{}: session ended while waiting for {what}",
                    self.client.user()
                ),
                Err(_) => panic!("{}: timed out waiting for {what}", self.client.user()),
            }
        }
    }

    /// Waits until the initial sync of `room` is done (its `Joined` event).
    pub async fn joined(&mut self, room: &str) -> Vec<Message> {
        self.wait_for(&format!("joined {room}"), |e| match e {
            Event::Joined {
                room: r, recent, ..
            } if r == room => Some(recent.clone()),
            _ => None,
        })
        .await
    }

    /// The next message in `room`.
    pub async fn message_in(&mut self, room: &str) -> Message {
        self.wait_for(&format!("a message in {room}"), |e| match e {
            Event::Message(m) if m.room == room => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Collects every event that arrives within `quiet` of the previous one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(quiet, self.events.recv()).await {
            out.push(e);
        }
        out
    }
}

/// The messages among events.
pub fn messages(events: &[Event]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Message(m) = e {
                Some(m.clone())
            } else {
                None
            }
        })
        .collect()
}
