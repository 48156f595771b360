//! A real `nats-server` with JetStream for cluster tests: started on a
//! free loopback port with a temporary store, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::child::KillOnDrop;
use tempfile::TempDir;

use crate::PATIENCE;

/// Where the server binary is: `CONFAB_NATS_SERVER`, the workspace's
/// `.venv-nats` (which scripts/test-deps.sh makes), or the `PATH`.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CONFAB_NATS_SERVER") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-nats/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    "nats-server".into()
}

/// Whether the server knows `sync_interval` (2.10 and later; Debian's
/// 2.9 does not, and syncs on its own schedule).
fn knows_sync_interval() -> bool {
    static KNOWS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KNOWS.get_or_init(|| {
        let out = Command::new(server_binary()).arg("--version").output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        // "nats-server: v2.15.1"
        let minor = text.ok().and_then(|t| {
            let v = t.trim().rsplit('v').next()?.to_owned();
            let mut parts = v.split('.');
            let major: u32 = parts.next()?.parse().ok()?;
            let minor: u32 = parts.next()?.parse().ok()?;
            Some((major, minor))
        });
        minor.is_some_and(|v| v >= (2, 10))
    })
}

/// A running nats-server.
pub struct NatsServer {
    // First: fields drop in order, and the server goes before its folder.
    child: Option<KillOnDrop>,
    pub dir: TempDir,
    pub port: u16,
    /// More configuration (authorization, tls, ...).
    extra: String,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// Starts with more lines of configuration; `{dir}` in them stands for
    /// the server's temporary folder.
    pub fn start_with(extra: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let mut server = NatsServer {
            child: None,
            dir,
            port: 0,
            extra,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:PORT` for `relay serve --nats`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("nats.conf");
        // `sync_interval: always`: a test may SIGKILL the server, and what it
        // acknowledged must be on disk, as with the relay's own store.
        let sync = if knows_sync_interval() {
            ", sync_interval: always"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "jetstream {{ store_dir: {:?}{sync} }}\n{}\n",
                self.dir.path().join("store"),
                self.extra
            ),
        )
        .expect("nats config");
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let binary = server_binary();
        // Owned at once, so a server that fails to start is not left behind.
        let mut child = KillOnDrop(
            Command::new(&binary)
                .arg("-c")
                .arg(&conf)
                .args(["-a", "127.0.0.1", "-p", &port])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e}; make test installs it (scripts/test-deps.sh)",
                        binary.display()
                    )
                }),
        );
        let stderr = child.stderr.take().expect("stderr");
        let log = self.dir.path().join("nats.log");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(out) = out.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(out, "{line}");
                }
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    let port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                    let _ = tx.send(port);
                }
                if line.contains("Server is ready") {
                    let _ = tx.send(None);
                }
            }
        });
        let mut port = None;
        loop {
            match rx.recv_timeout(PATIENCE) {
                Ok(Some(p)) => port = Some(p),
                Ok(None) => break,
                Err(_) => panic!("nats-server did not start; log:\n{}", self.log()),
            }
        }
        self.port = port.expect("nats-server printed its port");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server abruptly (SIGKILL).
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}
