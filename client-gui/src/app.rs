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
}

/// A key pressed anywhere in the window, for the shortcuts of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPress {
    pub key: Key,
    pub modifiers: Modifiers,
    /// A widget already acted on it (a text field took Enter or Escape).
    pub captured: bool,
}

/// The size `main` opens the window at, until the window says.
const WINDOW: Size = Size::new(1000.0, 680.0);

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
    /// The session being connected or in use; its subscription runs while set.
    session: Option<Params>,
    handle: Option<Handle>,
    attempts: u64,
    /// The window's size, for paging through the conversation.
    window: Size,
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
        App {
            screen: Screen::Login(Login::new(server, user)),
            settings,
            options,
            session: None,
            handle: None,
            attempts: 0,
            window: WINDOW,
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
                let Screen::Trust(t) = &self.screen else {
                    return Task::none();
                };
                match t.update(m) {
                    trust_screen::Event::Trusted {
                        server,
                        fingerprint,
                        file,
                    } => {
                        let Some(params) = self.session.take() else {
                            return Task::none();
                        };
                        let mut form = Login::new(params.server.clone(), params.user.clone());
                        if let Err(e) = trust::remember(&file, &server, &fingerprint) {
                            form.failed(format!(
                                "Cannot remember the relay in {}: {e}",
                                file.display()
                            ));
                            self.screen = Screen::Login(form);
                            return Task::none();
                        }
                        form.connecting = true;
                        self.screen = Screen::Login(form);
                        self.connect(params.server, params.user, params.password, params.register);
                    }
                    trust_screen::Event::Back => {
                        let (server, user) = self.last_identity();
                        self.session = None;
                        self.screen = Screen::Login(Login::new(server, user));
                    }
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
            return if modifiers.shift() {
                operation::focus_previous()
            } else {
                operation::focus_next()
            };
        }
        let message = match &self.screen {
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
                self.settings.server = server.clone();
                self.settings.user = user.clone();
                self.settings.save();
                // Registration happened; reconnects of this session log in.
                if let Some(p) = &mut self.session {
                    p.password.clear();
                }
                let chat = Chat::new(user, server, relay);
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
            connection::Event::LoggedOut => {
                self.logged_out();
                Task::none()
            }
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
        let pinned = self.options.ca.is_some();
        match e {
            ConnectError::Trust(
                failure @ (TrustFailure::Unknown { .. } | TrustFailure::Changed { .. }),
            ) if !pinned => {
                self.screen = Screen::Trust(Trust { failure });
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

    fn logged_out(&mut self) {
        let (server, user) = self.last_identity();
        self.session = None;
        self.handle = None;
        self.screen = Screen::Login(Login::new(server, user));
    }

    fn apply(&mut self, outcome: chat::Outcome) -> Task<Message> {
        if let Some(handle) = &self.handle {
            for command in outcome.commands {
                handle.send(command);
            }
        }
        if outcome.toggle_theme {
            self.settings.theme = match self.settings.theme {
                ThemeChoice::System => ThemeChoice::Dark,
                ThemeChoice::Dark => ThemeChoice::Light,
                ThemeChoice::Light => ThemeChoice::System,
            };
            self.settings.save();
        }
        if outcome.logout {
            // The session closes itself when its subscription is dropped.
            self.logged_out();
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
        _ => None,
    }
}
