//! The relay under test: one this run starts (and kills) on a free loopback
//! port with a fresh data folder, or one started by hand.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::child::KillOnDrop;
use tempfile::TempDir;

/// How long a fresh relay may take to print its address.
const STARTUP: Duration = Duration::from_secs(15);

/// What the relay prints once it listens, followed by the address.
const LISTENING: &str = "confab relay listening on ";

/// Flags that lift the per-session limits: the benchmark measures how fast
/// the relay moves messages, not its abuse protection, which would refuse
/// and delay a fan-out burst by design.
const UNLIMITED: [&str; 4] = ["--rate-limit", "1000000", "--request-rate", "1000000"];

/// Work on a relay's data folder before it starts.
pub type Prepare = Box<dyn FnOnce(&Path) -> Result<()> + Send>;

/// How to start a relay beyond the defaults.
#[derive(Default)]
pub struct Launch {
    /// More `relay serve` flags, such as caps raised for a run that needs
    /// more connections than the defaults allow.
    pub args: Vec<String>,
    /// Work on the data folder before the relay opens it (filling the
    /// store), run on a blocking thread.
    pub prepare: Option<Prepare>,
}

/// Where clients connect and what they trust.
#[derive(Debug)]
pub struct Target {
    /// `host:port` of the relay.
    pub server: String,
    /// The certificate (or CA) clients pin.
    pub ca: PathBuf,
    /// The relay's process id, for CPU and memory; unknown for a relay
    /// started by hand without `--relay-pid`.
    pub pid: Option<u32>,
    /// Whether accounts need a random suffix: a relay started by hand may
    /// already have `bench-0` from an earlier run.
    pub shared: bool,
    own: Option<OwnRelay>,
}

impl Target {
    /// A relay started by hand.
    pub fn external(server: String, ca: PathBuf, pid: Option<u32>) -> Target {
        Target {
            server,
            ca,
            pid,
            shared: true,
            own: None,
        }
    }

    /// Starts `relay_bin` on a free loopback port with a fresh certificate
    /// and data folder; it is killed when the target is dropped.
    pub async fn start(relay_bin: &Path) -> Result<Target> {
        Target::start_with(relay_bin, Launch::default()).await
    }

    /// [`Target::start`] with more flags and a prepared data folder.
    pub async fn start_with(relay_bin: &Path, launch: Launch) -> Result<Target> {
        let own = OwnRelay::start(relay_bin, launch).await?;
        Ok(Target {
            server: own.addr.clone(),
            ca: own.dir.path().join("certs/cert.pem"),
            pid: Some(own.child.id()),
            shared: false,
            own: Some(own),
        })
    }

    /// The data folder of a relay this run started.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.own.as_ref().map(|own| own.dir.path().join("data"))
    }

    /// The log (stderr) of a relay this run started.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.own.as_ref().map(OwnRelay::log_path)
    }
}

/// A relay process owned by this run, with its temporary folder. Dropping
/// it kills the relay, so no error path leaves one behind.
#[derive(Debug)]
struct OwnRelay {
    // Before `dir`: fields drop in order, and the relay goes before its folder.
    child: KillOnDrop,
    dir: TempDir,
    addr: String,
}

impl OwnRelay {
    async fn start(relay_bin: &Path, launch: Launch) -> Result<OwnRelay> {
        let dir = tempfile::Builder::new()
            .prefix("confab-loadgen-")
            .tempdir()
            .context("cannot make a temporary folder")?;
        let certs = dir.path().join("certs");
        let status = tokio::process::Command::new(relay_bin)
            .arg("gen-cert")
            .arg("--out")
            .arg(&certs)
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("cannot run {}", relay_bin.display()))?;
        if !status.success() {
            bail!("{} gen-cert failed ({status})", relay_bin.display());
        }
        let data = dir.path().join("data");
        if let Some(prepare) = launch.prepare {
            let data = data.clone();
            tokio::task::spawn_blocking(move || prepare(&data))
                .await
                .context("preparing the data folder panicked")??;
        }
        let log = File::create(dir.path().join("relay.log")).context("relay log")?;
        let mut child = Command::new(relay_bin)
            .arg("serve")
            .arg("--cert")
            .arg(certs.join("cert.pem"))
            .arg("--key")
            .arg(certs.join("key.pem"))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .args(UNLIMITED)
            .args(&launch.args)
            // The relay's own default; a RUST_LOG meant for loadgen (say
            // debug) would bury the relay log and slow the relay down.
            .env("RUST_LOG", "info,quinn=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", relay_bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut relay = OwnRelay {
            child: KillOnDrop(child),
            dir,
            addr: String::new(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A thread, because the pipe is read to its end: a relay blocked
        // on a full stdout pipe would stall.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(LISTENING) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
        });
        match tokio::time::timeout(STARTUP, rx).await {
            Ok(Ok(addr)) => relay.addr = addr,
            _ => bail!(
                "the relay did not start within {STARTUP:?}; its log:\n{}",
                std::fs::read_to_string(relay.log_path()).unwrap_or_default()
            ),
        }
        Ok(relay)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("relay.log")
    }
}
