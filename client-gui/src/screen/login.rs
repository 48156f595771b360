//! The login screen: server, user, password, "create account", connect.

use common::client::{ConnectError, RelayList};
use common::frame::ErrorCode;
use iced::widget::{button, center, checkbox, column, container, row, text, text_input};
use iced::{Center, Element, Fill};

use crate::reachable::reachable;

/// Ids of the fields, to put the cursor in.
pub const SERVER: &str = "server";
pub const USER: &str = "user";
pub const PASSWORD: &str = "password";

/// What the user did.
#[derive(Debug, Clone)]
pub enum Message {
    Server(String),
    User(String),
    Password(String),
    Register(bool),
    Submit,
    Cancel,
}

/// What the app must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Stop the attempt under way.
    Cancel,
    Connect {
        server: String,
        user: String,
        password: String,
        register: bool,
    },
}

/// The login form.
#[derive(Debug, Default)]
pub struct Login {
    pub server: String,
    pub user: String,
    pub password: String,
    pub register: bool,
    pub connecting: bool,
    pub error: Option<String>,
    /// Frame of the connecting spinner, advanced by ticks.
    pub spinner: usize,
}

impl Login {
    /// A form filled with what was used last time.
    pub fn new(server: String, user: String) -> Self {
        Login {
            server,
            user,
            ..Login::default()
        }
    }

    pub fn update(&mut self, message: Message) -> Option<Event> {
        match message {
            Message::Server(s) => self.server = s,
            Message::User(u) => self.user = u,
            Message::Password(p) => self.password = p,
            Message::Register(r) => self.register = r,
            Message::Cancel => {
                self.connecting = false;
                return Some(Event::Cancel);
            }
            Message::Submit => {
                if self.connecting {
                    return None;
                }
                // Tidied as it will be shown and remembered: no empty
                // entries between commas.
                let server = self
                    .server
                    .split(',')
                    .filter(|e| !e.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
                    .trim()
                    .to_owned();
                let user = self.user.trim().to_owned();
                self.error = if server.is_empty() {
                    Some("Enter the relay's address, e.g. 127.0.0.1:4433.".into())
                } else if let Err(e) = RelayList::parse(&server) {
                    Some(format!("Relay: {e}."))
                } else if let Err(e) = common::names::check_user(&user) {
                    Some(format!("User name: {e}."))
                } else if self.password.is_empty() {
                    Some("Enter your password.".into())
                } else if self.register && self.password.len() < common::limits::MIN_PASSWORD {
                    Some(format!(
                        "Choose a password of at least {} characters.",
                        common::limits::MIN_PASSWORD
                    ))
                } else {
                    None
                };
                if self.error.is_some() {
                    return None;
                }
                self.connecting = true;
                return Some(Event::Connect {
                    server,
                    user,
                    password: self.password.clone(),
                    register: self.register,
                });
            }
        }
        None
    }

    /// The attempt ended without a session.
    pub fn failed(&mut self, error: String) {
        self.connecting = false;
        self.error = Some(error);
    }

    pub fn view(&self) -> Element<'_, Message> {
        let field = |label: &'static str, input: iced::widget::TextInput<'static, Message>| {
            column![text(label).size(14), input.padding(8)].spacing(4)
        };
        let mut server = text_input("127.0.0.1:4433", &self.server).id(SERVER);
        let mut user = text_input("your name", &self.user).id(USER);
        let mut password = text_input("password", &self.password)
            .secure(true)
            .id(PASSWORD);
        let mut register = checkbox(self.register).label("Create account");
        let mut connect = button(text(if self.connecting {
            "Connecting…"
        } else {
            "Connect"
        }))
        .padding([8, 24]);
        let idle = !self.connecting;
        if idle {
            server = server.on_input(Message::Server).on_submit(Message::Submit);
            user = user.on_input(Message::User).on_submit(Message::Submit);
            password = password
                .on_input(Message::Password)
                .on_submit(Message::Submit);
            register = register.on_toggle(Message::Register);
            connect = connect.on_press(Message::Submit);
        }
        let error = self
            .error
            .as_deref()
            .map(|e| text(e.to_owned()).style(text::danger));
        const FRAMES: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];
        let spinner = self
            .connecting
            .then(|| text(FRAMES[self.spinner % FRAMES.len()]).size(20));
        let form = column![
            text("confab").size(32),
            field("Relay", server).push(
                text("Several relays of one service: separate them with commas.")
                    .size(12)
                    .style(text::secondary)
            ),
            field("User", user),
            field("Password", password),
            reachable(register, idle.then_some(Message::Register(!self.register))),
            row![reachable(connect, idle.then_some(Message::Submit))]
                .push(spinner)
                .push(self.connecting.then(|| {
                    reachable(
                        button(text("Cancel"))
                            .on_press(Message::Cancel)
                            .padding([8, 16])
                            .style(button::secondary),
                        Some(Message::Cancel),
                    )
                }))
                .spacing(12)
                .align_y(Center),
        ]
        .push(error)
        .spacing(14)
        .max_width(380);
        center(
            container(form)
                .padding(24)
                .max_width(430)
                .style(container::rounded_box),
        )
        .width(Fill)
        .height(Fill)
        .into()
    }
}

/// Says in words what went wrong and what to do about it.
pub fn describe(e: &ConnectError) -> String {
    match e {
        ConnectError::Unreachable(why) => format!("Cannot reach the relay: {why}"),
        ConnectError::Auth { code: ErrorCode::BadCredentials, .. } => {
            "Wrong user name or password. Check both, or tick \"Create account\" if you are new here.".into()
        }
        // Taken by someone else whose name it looks like: logging in with
        // it is no way out.
        ConnectError::Auth { code: ErrorCode::NameTaken, message } if message.contains("looks like") => {
            let mut chars = message.trim_end_matches('.').chars();
            let first: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
            format!("{first}{}.", chars.as_str())
        }
        ConnectError::Auth { code: ErrorCode::NameTaken, .. } => {
            "That name is taken. Choose another, or untick \"Create account\" to log in.".into()
        }
        ConnectError::Auth { code: ErrorCode::RegistrationClosed, .. } => {
            "This relay does not take new accounts. Ask its operator for one.".into()
        }
        ConnectError::Auth { message, .. } => format!("{message}."),
        ConnectError::Version(_) => {
            "This relay speaks another protocol version. Update confab (or ask the operator to).".into()
        }
        ConnectError::Trust(f) => f.to_string(),
        ConnectError::Tls(why) => format!("Secure connection failed: {why}"),
        ConnectError::Closed(why) => format!("The relay closed the connection: {why}. Try again in a moment."),
        ConnectError::Protocol(why) => format!("The relay answered something unexpected ({why}). Update confab."),
        ConnectError::Config(why) => why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_attempt_can_be_cancelled() {
        let mut form = Login::new("127.0.0.1:4433".into(), "alice".into());
        form.update(Message::Password("secret-pass".into()));
        assert!(matches!(
            form.update(Message::Submit),
            Some(Event::Connect { .. })
        ));
        assert!(
            form.update(Message::Submit).is_none(),
            "one attempt at a time"
        );
        assert_eq!(form.update(Message::Cancel), Some(Event::Cancel));
        assert!(!form.connecting);
        assert_eq!(form.password, "secret-pass", "kept for the next try");
    }

    #[test]
    fn several_relays_are_passed_on_as_typed() {
        let mut form = Login::new(" hostA:4433, hostB:4433 ".into(), "alice".into());
        form.update(Message::Password("secret-pass".into()));
        match form.update(Message::Submit) {
            Some(Event::Connect { server, .. }) => assert_eq!(server, "hostA:4433, hostB:4433"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_entries_of_a_list_are_dropped_before_it_is_used_or_shown() {
        let mut form = Login::new(" , ,127.0.0.1:47433,, ".into(), "alice".into());
        form.update(Message::Password("secret-pass".into()));
        match form.update(Message::Submit) {
            Some(Event::Connect { server, .. }) => assert_eq!(server, "127.0.0.1:47433"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_name_that_looks_like_anothers_says_so() {
        let said = describe(&ConnectError::Auth {
            code: ErrorCode::NameTaken,
            message: "the name \"aIice\" looks like an existing user's (\"alice\"); choose another"
                .into(),
        });
        assert_eq!(
            said,
            "The name \"aIice\" looks like an existing user's (\"alice\"); choose another."
        );
    }

    #[test]
    fn a_list_without_commas_is_refused() {
        let mut form = Login::new("hostA:4433 hostB:4433".into(), "alice".into());
        form.update(Message::Password("secret-pass".into()));
        assert!(form.update(Message::Submit).is_none());
        let error = form.error.as_deref().unwrap();
        assert!(
            error.starts_with("Relay: ") && error.contains("commas"),
            "{error}"
        );
    }

    #[test]
    fn the_form_says_what_is_missing() {
        let mut form = Login::new(String::new(), "alice".into());
        form.update(Message::Password("x".into()));
        assert!(form.update(Message::Submit).is_none());
        assert!(form.error.as_deref().unwrap().contains("relay's address"));
        form.update(Message::Server("127.0.0.1:4433".into()));
        form.update(Message::Register(true));
        assert!(form.update(Message::Submit).is_none());
        assert!(form.error.as_deref().unwrap().contains("at least 8"));
    }
}
