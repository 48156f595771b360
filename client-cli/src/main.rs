//! `client-cli`: confab in a terminal, a script or a bot.

mod args;
mod interactive;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use common::client::{Client, ConnectError, Event, RequestError};
use common::frame::{ErrorCode, Page};
use common::limits::MAX_PAGE;
use common::trust::{self, TrustFailure};
use tokio::io::AsyncBufReadExt;

use args::Args;
use output::Printer;

/// Exit codes scripts can rely on.
mod exit {
    pub const OK: u8 = 0;
    /// Some messages were refused (piped input, --send).
    pub const REFUSED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONNECTION: u8 = 3;
    pub const AUTH: u8 = 4;
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for people; plain text when logs go to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    ExitCode::from(runtime.block_on(run(args)))
}

async fn run(args: Args) -> u8 {
    let password = match args.password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("client-cli: {e:#}");
            return exit::USAGE;
        }
    };
    let (client, events) = match connect(&args, &password).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let printer = Printer::new(args.json);
    let room = args.room.clone();
    let code = if let Some(text) = &args.send {
        send_all(&client, &room, std::iter::once(text.clone())).await
    } else if let Some(n) = args.tail {
        tail(&client, &room, n, &printer).await
    } else if std::io::stdin().is_terminal() || args.interactive {
        interactive::run(&client, events, &room, &printer).await
    } else {
        piped(&client, &room).await
    };
    client.close().await;
    code
}

/// Connects, asking once about an unknown relay when there is a terminal.
async fn connect(
    args: &Args,
    password: &str,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<Event>), u8> {
    let cfg = args.config(password);
    match Client::connect(cfg.clone()).await {
        Ok(c) => Ok(c),
        Err(ConnectError::Trust(TrustFailure::Unknown {
            server,
            fingerprint,
            file,
        })) if std::io::stdin().is_terminal() => {
            eprintln!("The relay at {server} is not known yet. Its certificate fingerprint is\n  {fingerprint}");
            eprintln!(
                "Compare it with the one `relay serve` printed. Trust it and remember it? [y/N] "
            );
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if !answer.trim().eq_ignore_ascii_case("y") {
                eprintln!("client-cli: not connected: relay not trusted");
                return Err(exit::CONNECTION);
            }
            if let Err(e) = trust::remember(&file, &server, &fingerprint) {
                eprintln!("client-cli: cannot write {}: {e}", file.display());
                return Err(exit::CONNECTION);
            }
            Client::connect(cfg).await.map_err(report)
        }
        Err(e) => Err(report(e)),
    }
}

fn report(e: ConnectError) -> u8 {
    eprintln!("client-cli: {e}");
    match e {
        ConnectError::Auth { .. } => exit::AUTH,
        ConnectError::Trust(TrustFailure::Unknown { .. }) => {
            eprintln!("client-cli: run in a terminal to be asked, pass --accept-new, or pin the certificate with --ca FILE");
            exit::CONNECTION
        }
        _ => exit::CONNECTION,
    }
}

/// Sends every line, pipelined, and waits for every ack.
async fn send_all(client: &Client, room: &str, lines: impl IntoIterator<Item = String>) -> u8 {
    // Bounded so a huge input does not queue everything at once.
    const WINDOW: usize = 128;
    let mut in_flight = std::collections::VecDeque::new();
    let mut code = exit::OK;
    let mut settle =
        |r: Result<Result<common::client::Acked, RequestError>, tokio::task::JoinError>| {
            if let Ok(Err(e)) = r {
                eprintln!("client-cli: not sent: {e}");
                code = exit::REFUSED;
            }
        };
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        in_flight.push_back(tokio::spawn(client.send(room, &line)));
        if in_flight.len() >= WINDOW {
            settle(in_flight.pop_front().expect("non-empty").await);
        }
    }
    for handle in in_flight {
        settle(handle.await);
    }
    code
}

async fn piped(client: &Client, room: &str) -> u8 {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut all = Vec::new();
    // Sent as they arrive; the stream is consumed fully before the final wait.
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => all.push(line),
            Ok(None) => break,
            Err(e) => {
                eprintln!("client-cli: cannot read stdin: {e}");
                return exit::USAGE;
            }
        }
    }
    send_all(client, room, all).await
}

/// Prints the last `n` messages of a room, oldest first.
async fn tail(client: &Client, room: &str, n: usize, printer: &Printer) -> u8 {
    let mut collected = Vec::new();
    let mut page = Page::Latest;
    while collected.len() < n {
        let want = (n - collected.len()).min(MAX_PAGE as usize) as u16;
        match client.history(room, page, want).await {
            Ok((mut messages, more)) => {
                let first = messages.first().map(|m| m.seq);
                messages.append(&mut collected);
                collected = messages;
                match (more, first) {
                    (true, Some(seq)) => page = Page::Before(seq),
                    _ => break,
                }
            }
            Err(e) => {
                eprintln!("client-cli: {e}");
                return match e {
                    RequestError::Refused {
                        code: ErrorCode::NotMember | ErrorCode::NoSuchRoom,
                        ..
                    } => exit::REFUSED,
                    _ => exit::CONNECTION,
                };
            }
        }
    }
    for m in &collected {
        printer.message(m);
    }
    exit::OK
}
