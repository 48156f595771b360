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
    /// Stdout was closed (`client-cli --tail 200 | head`) or could not be
    /// written: 128 + SIGPIPE, what a shell reports for a program that
    /// signal ended, as `cat` under `head` does.
    pub const STDOUT_GONE: u8 = 141;
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
    let code = runtime.block_on(run(args));
    // Follow mode can end while stdin is still open (its output went away):
    // dropping the runtime would wait for that blocked read for ever.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn run(args: Args) -> u8 {
    if args
        .send
        .as_deref()
        .is_some_and(|text| text.trim().is_empty())
    {
        eprintln!("client-cli: nothing to send: the --send text is empty or only spaces");
        return exit::USAGE;
    }
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

/// Sends lines in order, pipelined, with a bounded number awaiting their
/// ack: a huge or endless input never queues everything at once.
struct Pipeline<'a> {
    client: &'a Client,
    room: &'a str,
    in_flight: std::collections::VecDeque<
        tokio::task::JoinHandle<Result<common::client::Acked, RequestError>>,
    >,
    code: u8,
}

impl<'a> Pipeline<'a> {
    const WINDOW: usize = 128;

    fn new(client: &'a Client, room: &'a str) -> Self {
        Pipeline {
            client,
            room,
            in_flight: Default::default(),
            code: exit::OK,
        }
    }

    /// Queues one line (sent at once), waiting for the oldest ack when the
    /// window is full.
    async fn push(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.in_flight
            .push_back(tokio::spawn(self.client.send(self.room, line)));
        if self.in_flight.len() >= Self::WINDOW {
            let oldest = self.in_flight.pop_front().expect("non-empty");
            self.settle(oldest.await);
        }
    }

    fn settle(
        &mut self,
        r: Result<Result<common::client::Acked, RequestError>, tokio::task::JoinError>,
    ) {
        if let Ok(Err(e)) = r {
            eprintln!("client-cli: not sent: {e}");
            self.code = exit::REFUSED;
        }
    }

    /// Waits for every ack; the exit code says whether all were stored.
    async fn finish(mut self) -> u8 {
        while let Some(handle) = self.in_flight.pop_front() {
            self.settle(handle.await);
        }
        self.code
    }
}

/// Sends every line and waits for every ack.
async fn send_all(client: &Client, room: &str, lines: impl IntoIterator<Item = String>) -> u8 {
    let mut pipeline = Pipeline::new(client, room);
    for line in lines {
        pipeline.push(&line).await;
    }
    pipeline.finish().await
}

/// Sends each line of stdin as it arrives (so `tail -f log | client-cli`
/// works), then waits for every ack once stdin ends.
async fn piped(client: &Client, room: &str) -> u8 {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pipeline = Pipeline::new(client, room);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => pipeline.push(&line).await,
            Ok(None) => break,
            Err(e) => {
                eprintln!("client-cli: cannot read stdin: {e}");
                let _ = pipeline.finish().await;
                return exit::USAGE;
            }
        }
    }
    pipeline.finish().await
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
        if printer.gone() {
            return exit::STDOUT_GONE;
        }
    }
    exit::OK
}
