//! The application: which screen shows, the session subscription, the
//! theme and the window title. Screens decide; this module carries out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::client::ConnectError;
use common::trust::{self, TrustFailure, TrustMode};
use iced::keyboard::{self, key::Named, Key, Modifiers};
use iced::widget::operation::{self, AbsoluteOffset};
use iced::{event, window, Element, Size, Subscription, Task, Theme};

use crate::connection::{self, Handle, Params};
use crate::screen::chat::{self, Chat, Status};
use crate::screen::login::{self, Login};
use crate::screen::trust::{self as trust_screen, Trust};
use crate::settings::{Settings, ThemeChoice};

/// How the window decides to trust relays, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--ca FILE`: pin this certificate; otherwise trust on first use.
    pub ca: Option<PathBuf>,
    pub known_relays: PathBuf,
    /// Prefills from the command line (over the remembered ones).
    pub server: Option<String>,
    pub user: Option<String>,
}

/// A top-level message.
#[derive(Debug, Clone)]
pub enum Message {
    Login(login::Message),
    Trust(trust_screen::Message),
    Chat(chat::Message),
    Net(connection::Event),
    Tick(Instant),
    Key(KeyPress),
    /// The window opened or changed size.
    Resized(Size),
    /// The window's close button, or the desktop asking it to close.
    CloseRequested,
    /// Time is up for a goodbye to the relay: close anyway.
    Exit,
}

/// A key pressed anywhere in the window, for the shortcuts of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPress {
    pub key: Key,
    pub modifiers: Modifiers,
    /// A widget already acted on it (a text field took Enter or Escape).
    pub captured: bool,
}

/// How long a closing window waits for the relay to hear its goodbye:
/// with a relay that answers it takes 150-200 ms; with none, this and
/// the window's own teardown stay within the 2 s the README promises.
const GOODBYE: Duration = Duration::from_millis(1500);

/// Which screen shows.
pub enum Screen {
    Login(Login),
    Trust(Trust),
    // Boxed: the chat state is large and the enum is moved around.
    Chat(Box<Chat>),
}

/// The window's state.
pub struct App {
    pub screen: Screen,
    pub settings: Settings,
    options: Options,
    /// The session being connected or in use; its subscription runs while
    /// set. It holds the password until logout, in memory only: Reconnect
    /// after the session stopped logs in with it again.
    session: Option<Params>,
    handle: Option<Handle>,
    attempts: u64,
    /// The chat the trust screen was opened from, shown again after it.
    chat_behind: Option<Box<Chat>>,
    /// The window's size, for paging through the conversation and for
    /// opening at the same size next time.
    window: Size,
    /// Closing: waiting for the session to say goodbye.
    closing: bool,
    /// The chat's count of unconfirmed-line changes last saved.
    unsent_saved: u64,
}

impl App {
    /// The first screen: the login form, filled from the command line or
    /// from last time.
    pub fn new(options: Options, settings: Settings) -> Self {
        let server = options.server.clone().unwrap_or_else(|| {
            if settings.server.is_empty() {
                "127.0.0.1:4433".into()
            } else {
                settings.server.clone()
            }
        });
        let user = options
            .user
            .clone()
            .unwrap_or_else(|| settings.user.clone());
        let (width, height) = settings.window_size();
        App {
            screen: Screen::Login(Login::new(server, user)),
            settings,
            options,
            session: None,
            handle: None,
            attempts: 0,
            window: Size::new(width, height),
            chat_behind: None,
            closing: false,
            unsent_saved: 0,
        }
    }

    /// The first task: put the cursor where typing should start, the
    /// password when the name is already known.
    pub fn boot(&self) -> Task<Message> {
        match &self.screen {
            Screen::Login(form) if !form.user.is_empty() => operation::focus(login::PASSWORD),
            _ => operation::focus(login::USER),
        }
    }

    /// The session being connected or in use, if any.
    pub fn session(&self) -> Option<&Params> {
        self.session.as_ref()
    }

    pub fn title(&self) -> String {
        match &self.screen {
            Screen::Chat(chat) => match chat.unread_total() {
                0 => format!("confab — {}", chat.user),
                n => format!("({n}) confab — {}", chat.user),
            },
            _ => "confab".into(),
        }
    }

    pub fn theme(&self) -> Option<Theme> {
        match self.settings.theme {
            ThemeChoice::System => None,
            ThemeChoice::Light => Some(Theme::Light),
            ThemeChoice::Dark => Some(Theme::Dark),
        }
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let task = self.handle(message);
        self.save_unsent();
        task
    }

    fn handle(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Login(m) => {
                let Screen::Login(form) = &mut self.screen else {
                    return Task::none();
                };
                match form.update(m) {
                    Some(login::Event::Connect {
                        server,
                        user,
                        password,
                        register,
                    }) => {
                        self.connect(server, user, password, register);
                    }
                    // Dropping the subscription ends the attempt.
                    Some(login::Event::Cancel) => self.session = None,
                    None => {}
                }
                Task::none()
            }
            Message::Trust(m) => {
                let Screen::Trust(t) = &mut self.screen else {
                    return Task::none();
                };
                let written = match t.update(m) {
                    None => return Task::none(),
                    Some(trust_screen::Event::Back) => {
                        self.leave_trust();
                        return Task::none();
                    }
                    Some(trust_screen::Event::Trusted {
                        server,
                        fingerprint,
                        file,
                    }) => trust::remember(&file, &server, &fingerprint).map_err(|e| {
                        format!(
                            "Cannot remember the relay in {}: {e}. Check that its folder can be written.",
                            file.display()
                        )
                    }),
                    Some(trust_screen::Event::Replace {
                        server,
                        known,
                        presented,
                        file,
                    }) => trust::replace_changed(&file, &server, &known, &presented).map_err(|e| {
                        format!("Cannot replace the fingerprint in {}: {e}.", file.display())
                    }),
                };
                match written {
                    Ok(()) => self.connect_again(),
                    Err(e) => t.error = Some(e),
                }
                Task::none()
            }
            Message::Chat(m) => {
                let Screen::Chat(chat) = &mut self.screen else {
                    return Task::none();
                };
                let outcome = chat.update(m);
                self.apply(outcome)
            }
            Message::Net(event) => self.network(event),
            Message::Tick(now) => {
                match &mut self.screen {
                    Screen::Chat(chat) => chat.now = now,
                    Screen::Login(form) => form.spinner = form.spinner.wrapping_add(1),
                    Screen::Trust(_) => {}
                }
                Task::none()
            }
            Message::Key(press) => self.key(press),
            Message::Resized(size) => {
                self.window = size;
                Task::none()
            }
            Message::CloseRequested => self.close(),
            Message::Exit => {
                tracing::debug!("closing: the goodbye took too long");
                iced::exit()
            }
        }
    }

    /// The room the chat shows and the lines the relay never confirmed,
    /// for the next login of its account.
    fn remember_room(&mut self) {
        if let Screen::Chat(chat) = &self.screen {
            let key = Settings::room_key(&chat.user, &chat.server);
            let (room, unsent) = (chat.current.clone(), chat.unsent());
            self.unsent_saved = chat.unsent_changes;
            self.settings.change(|s| {
                s.rooms.insert(key.clone(), room.clone());
                if unsent.is_empty() {
                    s.unsent.remove(&key);
                } else {
                    s.unsent.insert(key.clone(), unsent.clone());
                }
            });
        }
    }

    /// Saves the unconfirmed lines whenever they change, not only at the
    /// end: a window that crashes or is killed loses none, and one the
    /// relay confirmed is not offered again.
    fn save_unsent(&mut self) {
        if let Screen::Chat(chat) = &self.screen {
            if chat.unsent_changes != self.unsent_saved {
                self.remember_room();
            }
        }
    }

    /// Remembers the window's size and room, then ends the session
    /// politely (the relay tells the others at once) and closes: when the
    /// session says it has ended, or after [`GOODBYE`] whatever happens.
    fn close(&mut self) -> Task<Message> {
        tracing::debug!(closing = self.closing, "the window was asked to close");
        if self.closing {
            // Asked twice: the user means it.
            return iced::exit();
        }
        let window = Some((self.window.width, self.window.height));
        self.settings.change(|s| s.window = window);
        self.remember_room();
        match &self.handle {
            Some(handle) => {
                tracing::debug!("closing: logging out first");
                self.closing = true;
                handle.send(connection::Command::Logout);
                Task::future(async {
                    tokio::time::sleep(GOODBYE).await;
                    Message::Exit
                })
            }
            None => iced::exit(),
        }
    }

    /// Back from the trust screen: to the chat it was opened from, or to
    /// the form as it was filled in, so Connect is all it takes to retry.
    fn leave_trust(&mut self) {
        if let Some(chat) = self.chat_behind.take() {
            // The session stays: Reconnect needs its password.
            self.screen = Screen::Chat(chat);
            return;
        }
        let form = match self.session.take() {
            Some(params) => filled_form(&params),
            None => {
                let (server, user) = self.last_identity();
                Login::new(server, user)
            }
        };
        self.screen = Screen::Login(form);
    }

    /// After a trust decision was written: connect again with the same
    /// credentials, from where the trust screen was opened.
    fn connect_again(&mut self) {
        let Some(params) = self.session.take() else {
            self.leave_trust();
            return;
        };
        match self.chat_behind.take() {
            Some(mut chat) => {
                chat.reconnecting();
                self.screen = Screen::Chat(chat);
                // Registered already, if that was asked: log in.
                self.connect(params.server, params.user, params.password, false);
            }
            None => {
                let mut form = filled_form(&params);
                form.connecting = true;
                self.screen = Screen::Login(form);
                self.connect(params.server, params.user, params.password, params.register);
            }
        }
    }

    /// The chat's Reconnect: a new session with the same credentials.
    fn reconnect(&mut self) {
        let Some(params) = &self.session else {
            return;
        };
        let (server, user, password) = (
            params.server.clone(),
            params.user.clone(),
            params.password.clone(),
        );
        if let Screen::Chat(chat) = &mut self.screen {
            chat.reconnecting();
        }
        self.handle = None;
        self.connect(server, user, password, false);
    }

    /// The chat's Details: the trust screen for why the session stopped.
    fn details(&mut self, failure: TrustFailure) {
        let trust = Screen::Trust(Trust::new(failure));
        if let Screen::Chat(chat) = std::mem::replace(&mut self.screen, trust) {
            self.chat_behind = Some(chat);
        }
    }

    /// Tab and Shift+Tab move between fields on every screen; other keys
    /// go to the screen that shows, as the messages its buttons send.
    fn key(&mut self, press: KeyPress) -> Task<Message> {
        let KeyPress {
            key,
            modifiers,
            captured,
        } = press;
        if key == Key::Named(Named::Tab) && !captured && !modifiers.control() && !modifiers.alt() {
            return crate::reachable::focus_step(!modifiers.shift());
        }
        let message = match &self.screen {
            // Enter anywhere on the form connects, not only in a text field
            // (after ticking "Create account", say).
            Screen::Login(form) if !captured && !form.connecting => match key {
                Key::Named(Named::Enter) => Message::Login(login::Message::Submit),
                _ => return Task::none(),
            },
            Screen::Trust(_) if !captured => match key {
                Key::Named(Named::Enter) => Message::Trust(trust_screen::Message::Trust),
                Key::Named(Named::Escape) => Message::Trust(trust_screen::Message::Cancel),
                _ => return Task::none(),
            },
            Screen::Chat(chat) => match chat.shortcut(&key, modifiers, captured) {
                Some(m) => Message::Chat(m),
                None => return Task::none(),
            },
            _ => return Task::none(),
        };
        self.update(message)
    }

    fn last_identity(&self) -> (String, String) {
        match &self.session {
            Some(p) => (p.server.clone(), p.user.clone()),
            None => (self.settings.server.clone(), self.settings.user.clone()),
        }
    }

    fn connect(&mut self, server: String, user: String, password: String, register: bool) {
        self.attempts += 1;
        let trust = match &self.options.ca {
            Some(file) => TrustMode::Pinned(file.clone()),
            None => TrustMode::Tofu {
                file: self.options.known_relays.clone(),
                accept_new: false,
            },
        };
        self.session = Some(Params {
            server,
            user,
            password,
            register,
            trust,
            attempt: self.attempts,
        });
    }

    fn network(&mut self, event: connection::Event) -> Task<Message> {
        match event {
            connection::Event::Connected {
                user,
                relay,
                handle,
            } => {
                let server = self
                    .session
                    .as_ref()
                    .map(|p| p.server.clone())
                    .unwrap_or_default();
                // Remembered once it worked, so a mistyped name is not.
                self.settings.change(|s| {
                    s.server = server.clone();
                    s.user = user.clone();
                });
                if let Screen::Chat(chat) = &mut self.screen {
                    // Reconnected from the offline state: the chat carries on.
                    tracing::debug!(%relay, "back online");
                    chat.relay = relay;
                    chat.status = Status::Connected;
                    for command in chat.opened() {
                        handle.send(command);
                    }
                    self.handle = Some(handle);
                    return Task::none();
                }
                let mut chat = Chat::new(user, server, relay);
                let key = Settings::room_key(&chat.user, &chat.server);
                chat.restore = self.settings.rooms.get(&key).cloned();
                // Kept in the file until this chat saves its own: a crash
                // meanwhile loses nothing.
                if let Some(unsent) = self.settings.unsent.get(&key) {
                    chat.carry(unsent.clone());
                }
                for command in chat.opened() {
                    handle.send(command);
                }
                self.handle = Some(handle);
                self.screen = Screen::Chat(Box::new(chat));
                operation::focus(chat::view::COMPOSER)
            }
            connection::Event::Failed(e) => {
                self.failed(e);
                Task::none()
            }
            connection::Event::LoggedOut if self.closing => {
                tracing::debug!("closing: logged out");
                iced::exit()
            }
            connection::Event::LoggedOut => self.logged_out(),
            other => {
                let Screen::Chat(chat) = &mut self.screen else {
                    return Task::none();
                };
                let outcome = chat.on_event(other);
                self.apply(outcome)
            }
        }
    }

    fn failed(&mut self, e: ConnectError) {
        if let Screen::Chat(chat) = &mut self.screen {
            // A Reconnect that did not get through: offline again, with
            // the session's credentials kept for the next try.
            chat.stopped(&e);
            return;
        }
        let pinned = self.options.ca.is_some();
        match e {
            ConnectError::Trust(
                failure @ (TrustFailure::Unknown { .. } | TrustFailure::Changed { .. }),
            ) if !pinned => {
                self.screen = Screen::Trust(Trust::new(failure));
            }
            other => {
                let (server, user) = self.last_identity();
                self.session = None;
                let mut form =
                    match std::mem::replace(&mut self.screen, Screen::Login(Login::default())) {
                        Screen::Login(form) => form,
                        _ => Login::new(server, user),
                    };
                form.failed(login::describe(&other));
                self.screen = Screen::Login(form);
            }
        }
    }

    /// Back to the form, with the cursor in the password field: the name
    /// is filled in.
    fn logged_out(&mut self) -> Task<Message> {
        self.remember_room();
        let (server, user) = self.last_identity();
        self.session = None;
        self.handle = None;
        self.chat_behind = None;
        self.screen = Screen::Login(Login::new(server, user));
        self.boot()
    }

    fn apply(&mut self, outcome: chat::Outcome) -> Task<Message> {
        if let Some(handle) = &self.handle {
            for command in outcome.commands {
                handle.send(command);
            }
        }
        if outcome.toggle_theme {
            let theme = match self.settings.theme {
                ThemeChoice::System => ThemeChoice::Dark,
                ThemeChoice::Dark => ThemeChoice::Light,
                ThemeChoice::Light => ThemeChoice::System,
            };
            self.settings.change(|s| s.theme = theme);
        }
        if outcome.logout {
            // The session closes itself when its subscription is dropped.
            return self.logged_out();
        }
        if outcome.reconnect {
            self.reconnect();
            return Task::none();
        }
        if let Some(failure) = outcome.details {
            self.details(failure);
            return Task::none();
        }
        let mut tasks = Vec::new();
        if outcome.follow {
            // Anchored at the bottom: the start of its offsets is the newest line.
            tasks.push(operation::snap_to(
                chat::view::CONVERSATION,
                iced::widget::scrollable::RelativeOffset::START,
            ));
        }
        if let Some(text) = outcome.copy {
            tasks.push(iced::clipboard::write(text));
        }
        if let Some(url) = outcome.open {
            if let Err(e) = open_link(&url) {
                if let Screen::Chat(chat) = &mut self.screen {
                    chat.notice = Some(format!(
                        "Could not open {url}: {e}. Copy it instead (double-click the message)."
                    ));
                }
            }
        }
        if let Some(page) = outcome.page {
            // Most of what shows (the window less the header and composer),
            // so a line or two stays in sight to read on from. Offsets
            // count up from the newest line.
            let page_height = (self.window.height - 160.0).max(80.0) * 0.9;
            let y = match page {
                chat::Page::Up => page_height,
                chat::Page::Down => -page_height,
            };
            tasks.push(operation::scroll_by(
                chat::view::CONVERSATION,
                AbsoluteOffset { x: 0.0, y },
            ));
        }
        if let Some(y) = outcome.reveal {
            tasks.push(operation::snap_to(
                chat::view::ROOM_LIST,
                iced::widget::scrollable::RelativeOffset { x: 0.0, y },
            ));
        }
        if let Some(y) = outcome.scroll_by {
            tasks.push(operation::scroll_by(
                chat::view::CONVERSATION,
                AbsoluteOffset { x: 0.0, y },
            ));
        }
        if let Some(id) = outcome.focus {
            tasks.push(operation::focus(id));
        }
        Task::batch(tasks)
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subs = Vec::new();
        if let Some(params) = &self.session {
            subs.push(Subscription::run_with(params.clone(), connection::run).map(Message::Net));
        }
        let ticking = match &self.screen {
            Screen::Chat(chat) => matches!(chat.status, Status::Reconnecting { .. }),
            Screen::Login(form) => form.connecting,
            Screen::Trust(_) => false,
        };
        if ticking {
            subs.push(iced::time::every(Duration::from_millis(100)).map(Message::Tick));
        }
        subs.push(event::listen_with(window_event));
        subs.push(Subscription::run(stop_signals));
        Subscription::batch(subs)
    }

    pub fn view(&self) -> Element<'_, Message> {
        match &self.screen {
            Screen::Login(form) => form.view().map(Message::Login),
            Screen::Trust(t) => t.view().map(Message::Trust),
            Screen::Chat(chat) => chat.view().map(Message::Chat),
        }
    }
}

/// The login form as the attempt had it: server, user, password and the
/// "Create account" choice.
fn filled_form(params: &Params) -> Login {
    Login {
        password: params.password.clone(),
        register: params.register,
        ..Login::new(params.server.clone(), params.user.clone())
    }
}

/// Hands an address to the desktop's browser, without waiting for it.
/// Only web addresses: a message cannot make the window run anything else.
fn open_link(url: &str) -> std::io::Result<()> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(std::io::Error::other("only web addresses are opened"));
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let mut child = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped in the background so no zombie is left behind.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// SIGTERM (a logout of the desktop, `kill`) and SIGINT (Ctrl+C in the
/// terminal it was started from) close the window as its close button
/// does: the relay hears goodbye, the others see the user leave at once.
fn stop_signals() -> impl iced::futures::Stream<Item = Message> {
    iced::stream::channel(
        1,
        async |mut output: iced::futures::channel::mpsc::Sender<Message>| {
            use iced::futures::SinkExt;
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!(
                    "cannot listen for SIGTERM and SIGINT; they end the window without a goodbye"
                );
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if output.send(Message::CloseRequested).await.is_err() {
                    return;
                }
            }
        },
    )
}

/// The window's events the app acts on: key presses that can be
/// shortcuts (captured ones too: a focused text field takes Escape, which
/// still closes a dialog) and the window's size.
fn window_event(event: iced::Event, status: event::Status, _: window::Id) -> Option<Message> {
    match event {
        // A plain character is typing, never a shortcut.
        iced::Event::Keyboard(keyboard::Event::KeyPressed {
            key,
            physical_key,
            modifiers,
            ..
        }) if matches!(key, Key::Named(_)) || modifiers.command() || modifiers.alt() => {
            // Ctrl+K is the K key on any layout.
            let key = match key.to_latin(physical_key) {
                Some(c) => Key::Character(c.to_string().into()),
                None => key,
            };
            Some(Message::Key(KeyPress {
                key,
                modifiers,
                captured: status == event::Status::Captured,
            }))
        }
        iced::Event::Window(window::Event::Opened { size, .. } | window::Event::Resized(size)) => {
            Some(Message::Resized(size))
        }
        // Closed without asking (destroyed by another program): the
        // process would stay behind with the user online; go as if asked.
        iced::Event::Window(window::Event::CloseRequested | window::Event::Closed) => {
            Some(Message::CloseRequested)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Command;
    use crate::settings::SETTINGS_ENV;
    use common::client::Event as SessionEvent;

    const SERVER: &str = "127.0.0.1:4433";

    /// The settings file for one test at a time: the tests here save and
    /// read it back, and no other unit test touches it.
    fn settings_turn() -> std::sync::MutexGuard<'static, ()> {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_file(settings_file());
        turn
    }

    /// This process's settings file.
    fn settings_file() -> PathBuf {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            std::env::set_var(SETTINGS_ENV, dir.path().join("gui.json"));
            dir
        });
        dir.path().join("gui.json")
    }

    /// A window logged in as alice, and the commands it sends.
    fn chatting(settings: Settings) -> (App, tokio::sync::mpsc::UnboundedReceiver<Command>) {
        let options = Options {
            ca: None,
            known_relays: settings_file().with_file_name("known_relays"),
            server: Some(SERVER.into()),
            user: Some("alice".into()),
        };
        let mut app = App::new(options, settings);
        let _ = app.update(Message::Login(login::Message::Password("pw".into())));
        let _ = app.update(Message::Login(login::Message::Submit));
        let (handle, commands) = Handle::pair();
        let _ = app.update(Message::Net(connection::Event::Connected {
            user: "alice".into(),
            relay: SERVER.into(),
            handle,
        }));
        (app, commands)
    }

    fn joined(app: &mut App, room: &str) {
        let _ = app.update(Message::Net(connection::Event::Session(
            SessionEvent::Joined {
                room: room.into(),
                recent: Vec::new(),
                more: false,
            },
        )));
    }

    fn current(app: &App) -> &str {
        match &app.screen {
            Screen::Chat(chat) => &chat.current,
            _ => panic!("not on the chat screen"),
        }
    }

    #[test]
    fn closing_says_goodbye_first_and_the_next_window_opens_as_this_one_was() {
        let _turn = settings_turn();
        let (mut app, mut commands) = chatting(Settings::default());
        joined(&mut app, "lobby");
        joined(&mut app, "dev");
        let _ = app.update(Message::Chat(chat::Message::SelectRoom("dev".into())));
        let _ = app.update(Message::Resized(Size::new(820.0, 610.0)));
        while commands.try_recv().is_ok() {}

        let _ = app.update(Message::CloseRequested);
        assert_eq!(commands.try_recv().ok(), Some(Command::Logout));
        // The session's end closes the window instead of showing the form.
        let _ = app.update(Message::Net(connection::Event::LoggedOut));
        assert!(matches!(app.screen, Screen::Chat(_)));

        let saved = Settings::load();
        assert_eq!(saved.window_size(), (820.0, 610.0));
        assert_eq!(
            saved.rooms.get("alice@127.0.0.1:4433").map(String::as_str),
            Some("dev")
        );

        let (mut next, _commands) = chatting(saved.clone());
        assert_eq!(next.window, Size::new(820.0, 610.0));
        joined(&mut next, "lobby");
        assert_eq!(current(&next), "lobby");
        joined(&mut next, "dev");
        assert_eq!(
            current(&next),
            "dev",
            "opened once the relay says alice is in it"
        );

        // Gone somewhere before the relay said: that stays.
        let (mut busy, _commands) = chatting(saved);
        joined(&mut busy, "lobby");
        joined(&mut busy, "ops");
        let _ = busy.update(Message::Chat(chat::Message::SelectRoom("ops".into())));
        joined(&mut busy, "dev");
        assert_eq!(current(&busy), "ops");
    }

    /// Types `text` in the composer and sends it.
    fn say(app: &mut App, text: &str) {
        use iced::widget::text_editor::{Action, Edit};
        let _ = app.update(Message::Chat(chat::Message::Composer(Action::Edit(
            Edit::Paste(std::sync::Arc::new(text.into())),
        ))));
        let _ = app.update(Message::Chat(chat::Message::Send));
    }

    fn pending(app: &App, room: &str) -> Vec<(String, bool)> {
        let Screen::Chat(chat) = &app.screen else {
            panic!("not on the chat screen");
        };
        chat.rooms[room]
            .lines
            .iter()
            .filter_map(|l| match l {
                chat::room::Line::Pending { body, failed, .. } => {
                    Some((body.clone(), failed.is_some()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lines_the_relay_never_confirmed_come_back_after_closing_or_logging_out() {
        let _turn = settings_turn();
        let (mut app, _commands) = chatting(Settings::default());
        joined(&mut app, "lobby");
        joined(&mut app, "dev");
        say(&mut app, "said in the lobby");
        let _ = app.update(Message::Chat(chat::Message::SelectRoom("dev".into())));
        say(&mut app, "said in dev");
        assert_eq!(pending(&app, "dev"), [("said in dev".to_owned(), false)]);

        // Logging out (after a password change, say) keeps them.
        let _ = app.update(Message::Chat(chat::Message::Logout));
        assert!(matches!(app.screen, Screen::Login(_)));
        let saved = Settings::load();
        assert_eq!(saved.unsent["alice@127.0.0.1:4433"].len(), 2);

        let (mut next, _commands) = chatting(saved);
        joined(&mut next, "lobby");
        assert_eq!(
            pending(&next, "lobby"),
            [("said in the lobby".to_owned(), true)],
            "shown, waiting for Retry"
        );
        // Not yet in dev: its line waits, and is still kept at close.
        let _ = next.update(Message::CloseRequested);
        let saved = Settings::load();
        assert_eq!(saved.unsent["alice@127.0.0.1:4433"].len(), 2);

        let (mut last, _commands) = chatting(saved);
        joined(&mut last, "dev");
        assert_eq!(pending(&last, "dev"), [("said in dev".to_owned(), true)]);
    }

    #[test]
    fn unconfirmed_lines_are_saved_as_they_change_and_two_windows_keep_each_others() {
        let _turn = settings_turn();
        let (mut alice, mut commands) = chatting(Settings::default());
        joined(&mut alice, "lobby");
        say(&mut alice, "typed, then the window was killed");
        // On disk at once: nothing waits for a clean close.
        let key = "alice@127.0.0.1:4433";
        assert_eq!(Settings::load().unsent[key].len(), 1);

        // Another window on the same file, for another account, closes.
        let options = Options {
            ca: None,
            known_relays: settings_file().with_file_name("known_relays"),
            server: Some(SERVER.into()),
            user: Some("bob".into()),
        };
        let mut bob = App::new(options, Settings::load());
        let _ = bob.update(Message::Login(login::Message::Password("pw".into())));
        let _ = bob.update(Message::Login(login::Message::Submit));
        let (handle, _bob_commands) = Handle::pair();
        let _ = bob.update(Message::Net(connection::Event::Connected {
            user: "bob".into(),
            relay: SERVER.into(),
            handle,
        }));
        let _ = bob.update(Message::CloseRequested);
        assert_eq!(
            Settings::load().unsent[key].len(),
            1,
            "bob's window kept alice's line"
        );

        // The relay confirms it: gone from the file, never offered again.
        let local = std::iter::from_fn(|| commands.try_recv().ok())
            .find_map(|c| match c {
                Command::Send { local, .. } => Some(local),
                _ => None,
            })
            .expect("a send");
        let _ = alice.update(Message::Net(connection::Event::Sent {
            local,
            room: "lobby".into(),
            result: Ok(common::client::Acked { seq: 7, ts: 0 }),
        }));
        assert!(!Settings::load().unsent.contains_key(key));
    }

    #[test]
    fn a_window_size_from_a_damaged_file_is_kept_within_reason() {
        let mut s = Settings {
            window: Some((10.0, f32::NAN)),
            ..Settings::default()
        };
        assert_eq!(s.window_size(), crate::settings::DEFAULT_WINDOW);
        s.window = Some((10.0, 1e9));
        assert_eq!(s.window_size(), (640.0, 16384.0));
    }
}
