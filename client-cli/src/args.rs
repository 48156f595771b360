//! Command-line options.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use common::client::{Config, RelayList};
use common::names::LOBBY;
use common::trust::{default_known_relays, TrustMode};

/// confab line-mode client. Interactive on a terminal; with piped input it
/// sends each line and exits once all are acknowledged.
///
/// Exit codes: 0 ok, 1 a message was refused, 2 usage, 3 connection or
/// trust failure, 4 authentication failure, 141 stdout closed (`| head`).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    /// Relay address, host:port (port 4433 if left out), or several
    /// separated by commas, e.g. hostA:4433,hostB:4433: relays that share
    /// one store. The first that answers is used; when it goes away the
    /// session moves to the next and resumes every room there.
    #[arg(
        long,
        env = "CONFAB_SERVER",
        default_value = "127.0.0.1:4433",
        value_name = "HOST:PORT[,HOST:PORT…]",
        value_parser = relay_list
    )]
    pub server: String,
    /// User name.
    #[arg(long, env = "CONFAB_USER")]
    pub user: String,
    /// Create the account first.
    #[arg(long)]
    pub register: bool,
    /// Trust exactly this certificate (or CA) file, e.g. certs/cert.pem.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Trust the platform's CA roots (for a relay with a public CA certificate).
    #[arg(long, conflicts_with = "ca")]
    pub system_roots: bool,
    /// Trust on first use without asking: remember an unknown relay's
    /// fingerprint (a changed one is still refused).
    #[arg(long)]
    pub accept_new: bool,
    /// Known-relays file for trust on first use.
    #[arg(long, env = "CONFAB_KNOWN_RELAYS", value_name = "FILE")]
    pub known_relays: Option<PathBuf>,
    /// Room to talk in.
    #[arg(long, default_value = LOBBY)]
    pub room: String,
    /// File whose first line is the password (else CONFAB_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Send this text, wait for the ack, exit.
    #[arg(long, value_name = "TEXT", conflicts_with = "tail")]
    pub send: Option<String>,
    /// Print the last N messages of the room and exit.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Read commands and lines from stdin even when it is not a terminal.
    #[arg(long)]
    pub interactive: bool,
    /// Print events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Checks the list as the session will read it, so a bad one is a usage
/// error; the text is kept as given.
fn relay_list(list: &str) -> Result<String, String> {
    RelayList::parse(list).map(|_| list.to_owned())
}

impl Args {
    /// The password from --password-file, CONFAB_PASSWORD or a prompt.
    pub fn password(&self) -> Result<String> {
        if let Some(path) = &self.password_file {
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
        Ok(rpassword::prompt_password(format!(
            "password for {}: ",
            self.user
        ))?)
    }

    /// The session configuration.
    pub fn config(&self, password: &str) -> Config {
        let trust = match (&self.ca, self.system_roots) {
            (Some(file), _) => TrustMode::Pinned(file.clone()),
            (None, true) => TrustMode::Roots,
            (None, false) => TrustMode::Tofu {
                file: self
                    .known_relays
                    .clone()
                    .unwrap_or_else(default_known_relays),
                accept_new: self.accept_new,
            },
        };
        let mut cfg = Config::new(&self.server, trust, &self.user, password);
        cfg.register = self.register;
        cfg.client_name = concat!("client-cli/", env!("CARGO_PKG_VERSION")).into();
        cfg
    }
}
