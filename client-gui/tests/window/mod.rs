//! The window driven headless, for the test files beside this folder:
//! clicks and keystrokes go through the real widgets (`iced_test`), and
//! the network is played by the test, which feeds `connection::Event`s
//! into the app and reads the commands it sends.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use client_gui::app::{self, App, Options, Screen};
use client_gui::connection::{Command, Event as NetEvent, Handle};
use client_gui::screen::{chat, login};
use client_gui::settings::{Settings, SETTINGS_ENV};
use common::client::Event as SessionEvent;
use common::frame::Message as ChatMessage;
use iced::mouse::ScrollDelta;
use iced::{mouse, Event, Point, Size};
use iced_test::selector::{self, Candidate, Target};
use iced_test::Simulator;
use tokio::sync::mpsc::UnboundedReceiver;

pub const SERVER: &str = "127.0.0.1:4433";
pub const PASSWORD: &str = "correct horse";

pub type Ui<'a> = Simulator<'a, app::Message>;

/// The settings file of this test process, set once before any test can
/// read it (env vars are process-wide), never the user's own.
pub fn settings_file() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_dir, file) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let file = dir.path().join("gui.json");
        std::env::set_var(SETTINGS_ENV, &file);
        (dir, file)
    });
    file
}

/// Saves of the shared settings file take turns.
static SETTINGS_LOCK: Mutex<()> = Mutex::new(());

/// A turn at the settings file, for a test that reads it.
pub fn settings_turn() -> std::sync::MutexGuard<'static, ()> {
    SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A window at its first screen, with its own known-relays file.
pub struct Window {
    pub app: App,
    /// The size the window is laid out at.
    pub size: Size,
    pub known_relays: PathBuf,
    _dir: tempfile::TempDir,
    commands: Option<UnboundedReceiver<Command>>,
}

impl Window {
    pub fn new() -> Self {
        Window::with_server(SERVER)
    }

    /// A window whose form is filled with `server` (one address or a list).
    pub fn with_server(server: &str) -> Self {
        settings_file();
        let dir = tempfile::tempdir().expect("temp dir");
        let known_relays = dir.path().join("known_relays");
        let options = Options {
            ca: None,
            known_relays: known_relays.clone(),
            server: Some(server.into()),
            user: Some("alice".into()),
        };
        Window {
            app: App::new(options, Settings::default()),
            // iced_test's own default.
            size: Size::new(1024.0, 768.0),
            known_relays,
            _dir: dir,
            commands: None,
        }
    }

    /// A window of `size` on the login form, its password typed in.
    pub fn at(size: Size) -> Self {
        let mut w = Window::new();
        w.size = size;
        w.update(app::Message::Login(login::Message::Password(
            PASSWORD.into(),
        )));
        w
    }

    /// A window of `size` on the chat screen, the opening commands read.
    pub fn chatting_at(size: Size) -> Self {
        let mut w = Window::at(size);
        w.update(app::Message::Login(login::Message::Submit));
        w.connected();
        w.take_commands();
        w
    }

    /// The current view, laid out at the window's size.
    pub fn ui(&self) -> Ui<'_> {
        Simulator::with_size(Default::default(), self.size, self.app.view())
    }

    /// A window already on the chat screen, with the opening commands read.
    pub fn chatting() -> Self {
        let mut w = Window::new();
        w.log_in();
        w.connected();
        w.take_commands();
        w
    }

    pub fn update(&mut self, message: app::Message) {
        let _turn = settings_turn();
        // The returned tasks only move focus or scroll, which a headless
        // simulator rebuilt from each view has no use for.
        let _ = self.app.update(message);
    }

    pub fn net(&mut self, event: NetEvent) {
        self.update(app::Message::Net(event));
    }

    pub fn session(&mut self, event: SessionEvent) {
        self.net(NetEvent::Session(event));
    }

    /// Acts on the current view, then hands what the widgets produced to
    /// the app, as the runtime would.
    pub fn interact(&mut self, act: impl FnOnce(&mut Ui<'_>)) {
        let messages: Vec<app::Message> = {
            let mut ui = self.ui();
            act(&mut ui);
            ui.into_messages().collect()
        };
        for m in messages {
            self.update(m);
        }
    }

    /// [`Window::interact`] in a window of `size`.
    pub fn interact_at(&mut self, size: Size, act: impl FnOnce(&mut Ui<'_>)) {
        let messages: Vec<app::Message> = {
            let mut ui = Simulator::with_size(Default::default(), size, self.app.view());
            act(&mut ui);
            ui.into_messages().collect()
        };
        for m in messages {
            self.update(m);
        }
    }

    pub fn click(&mut self, label: &str) {
        self.interact(|ui| {
            ui.click(label)
                .unwrap_or_else(|e| panic!("cannot click {label:?}: {e}"));
        });
    }

    /// Types into the text input with this id, after clicking it.
    pub fn type_into(&mut self, id: &'static str, text: &str) {
        self.interact(|ui| {
            ui.click(selector::id(id))
                .unwrap_or_else(|e| panic!("no input {id:?}: {e}"));
            let _ = ui.typewrite(text);
        });
    }

    /// Types the password into the form and presses the Connect button.
    pub fn log_in(&mut self) {
        self.interact(|ui| {
            ui.click("password").expect("the password field");
            let _ = ui.typewrite(PASSWORD);
            ui.click("Connect").expect("the Connect button");
        });
    }

    /// The relay accepted the login.
    pub fn connected(&mut self) {
        let (handle, commands) = Handle::pair();
        self.commands = Some(commands);
        self.net(NetEvent::Connected {
            user: "alice".into(),
            relay: SERVER.into(),
            handle,
        });
    }

    /// Commands sent since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        let rx = self.commands.as_mut().expect("connected");
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    pub fn shows(&self, text: &str) -> bool {
        self.ui().find(text).is_ok()
    }

    /// Whether some text on screen contains `part`.
    pub fn shows_part(&self, part: &str) -> bool {
        self.texts().iter().any(|t| t.contains(part))
    }

    /// How many text widgets read exactly `text`.
    pub fn count(&self, text: &str) -> usize {
        self.texts().iter().filter(|t| *t == text).count()
    }

    /// Every text on screen, in widget order.
    pub fn texts(&self) -> Vec<String> {
        let mut seen = Vec::new();
        let mut ui = self.ui();
        // The selector never matches, so the search walks the whole tree.
        let _ = ui.find(|candidate: Candidate<'_>| -> Option<()> {
            if let Candidate::Text { content, .. } = candidate {
                seen.push(content.to_owned());
            }
            None
        });
        seen
    }

    /// What an input holds (or its placeholder, when empty).
    pub fn input(&self, id: &'static str) -> String {
        match self.ui().find(selector::id(id)) {
            Ok(Target::TextInput { content, .. }) => content,
            other => panic!("no text input {id:?}: {other:?}"),
        }
    }

    /// Whether the header's connection state says `full`: in a few words
    /// on screen, all of it in the tooltip over them (which selectors
    /// cannot see into).
    pub fn status_says(&self, full: &str) -> bool {
        let (short, all) = self.chat().status_words();
        self.shows(&short) && all == full
    }

    pub fn chat(&self) -> &chat::Chat {
        match &self.app.screen {
            Screen::Chat(c) => c,
            _ => panic!("not on the chat screen"),
        }
    }
}

/// Turns the mouse wheel over the middle of the window, by `lines`
/// downwards.
pub fn scroll_down(ui: &mut Ui<'_>, size: Size, lines: f32) {
    ui.point_at(Point::new(size.width / 2.0, size.height / 2.0));
    let _ = ui.simulate([Event::Mouse(mouse::Event::WheelScrolled {
        delta: ScrollDelta::Lines { x: 0.0, y: -lines },
    })]);
}

pub fn message(room: &str, seq: u64, from: &str, body: &str) -> ChatMessage {
    ChatMessage {
        room: room.into(),
        seq,
        id: [seq as u8; 16],
        ts: chrono::Utc::now().timestamp_millis(),
        from: from.into(),
        body: body.into(),
    }
}

pub fn fingerprint(seed: u8) -> String {
    let bytes: Vec<String> = (0..32u8)
        .map(|i| format!("{:02X}", i.wrapping_mul(7).wrapping_add(seed)))
        .collect();
    format!("SHA256:{}", bytes.join(":"))
}
