//! `client-gui`: the confab desktop client.

use client_gui::{app, fonts, settings};
use std::path::PathBuf;

use clap::Parser;

/// confab desktop client: log in to a relay, chat in rooms and DMs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Relay address, host:port, or several relays of one service separated
    /// by commas (default: the last one used, else 127.0.0.1:4433).
    #[arg(long, env = "CONFAB_SERVER")]
    server: Option<String>,
    /// User name to fill in (default: the last one used).
    #[arg(long, env = "CONFAB_USER")]
    user: Option<String>,
    /// Trust exactly this certificate (or CA) file instead of asking on first use.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Known-relays file for trust on first use (shared with client-cli).
    #[arg(long, env = "CONFAB_KNOWN_RELAYS", value_name = "FILE")]
    known_relays: Option<PathBuf>,
}

fn main() -> iced::Result {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for people; plain text when logs go to a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let options = app::Options {
        ca: args.ca,
        known_relays: args
            .known_relays
            .unwrap_or_else(common::trust::default_known_relays),
        server: args.server,
        user: args.user,
    };
    let settings = settings::Settings::load();
    let window = settings.window_size();
    fonts::install();
    iced::application(
        move || {
            let app = app::App::new(options.clone(), settings.clone());
            let focus = app.boot();
            (app, focus)
        },
        app::App::update,
        app::App::view,
    )
    .title(app::App::title)
    .theme(app::App::theme)
    .subscription(app::App::subscription)
    .window_size(window)
    // The window says goodbye to the relay before it goes, so others do
    // not see the user online until the connection times out.
    .exit_on_close_request(false)
    .run()
}
