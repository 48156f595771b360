//! The window driven headless: clicks and keystrokes go through the real
//! widgets (`iced_test`), and the network is played by the test, which
//! feeds `connection::Event`s into the app and reads the commands it sends.
//! Every check is on what the screen shows, plus the commands and files
//! that result.

mod window;

use std::sync::Arc;
use std::time::Duration;

use client_gui::app::{self, Screen};
use client_gui::connection::{Command, Event as NetEvent};
use client_gui::screen::{chat, trust as trust_screen};
use common::client::{Acked, ConnectError, Event as SessionEvent, RequestError};
use common::frame::ErrorCode;
use common::trust::TrustFailure;
use iced::keyboard::{key::Named, Key};
use iced::widget::text_editor::{Action, Edit};
use iced_test::{selector, simulator};
use window::{fingerprint, message, settings_file, settings_turn, Window, PASSWORD, SERVER};

#[test]
fn logging_in_shows_connecting_then_the_lobby_and_remembers_all_but_the_password() {
    let mut w = Window::new();
    assert!(w.shows("Connect"));
    assert_eq!(w.input("server"), SERVER);
    assert_eq!(w.input("user"), "alice");

    w.log_in();
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    assert!(!w.shows("Connect"));

    w.connected();
    assert!(w.shows("#lobby"), "texts: {:?}", w.texts());
    assert!(w.status_says("● connected to 127.0.0.1:4433"));
    assert!(w.shows_part("alice @ 127.0.0.1:4433"));
    // A text editor reports neither its text nor its placeholder to
    // selectors, so "Message #lobby" cannot be looked for: the composer is
    // found by its id, and the name its placeholder is built from is checked.
    assert!(simulator(w.app.view())
        .find(selector::id(chat::view::COMPOSER))
        .is_ok());
    assert_eq!(w.chat().display_name(&w.chat().current), "#lobby");
    assert_eq!(w.chat().current, "lobby");
    assert_eq!(w.app.title(), "confab — alice");
    assert_eq!(w.take_commands(), vec![Command::Members("lobby".into())]);

    let saved = {
        let _turn = settings_turn();
        std::fs::read_to_string(settings_file()).expect("settings saved")
    };
    let json: serde_json::Value = serde_json::from_str(&saved).expect("settings are JSON");
    assert_eq!(json["server"], SERVER);
    assert_eq!(json["user"], "alice");
    assert!(
        !saved.contains(PASSWORD) && json.get("password").is_none(),
        "the password was saved: {saved}"
    );
}

#[test]
fn login_problems_are_said_in_words_and_the_form_comes_back() {
    let mut w = Window::new();
    w.click("Connect");
    assert!(w.shows("Enter your password."), "texts: {:?}", w.texts());
    assert!(w.shows("Connect"), "nothing to wait for yet");

    w.log_in();
    assert!(w.shows("Connecting…"));
    assert!(!w.shows("Enter your password."), "an old error stays up");
    w.net(NetEvent::Failed(ConnectError::Auth {
        code: ErrorCode::BadCredentials,
        message: "bad credentials".into(),
    }));
    assert!(
        w.shows_part("Wrong user name or password"),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows("Connect"), "the button is back");
    assert!(!w.shows("Connecting…"));
    assert_eq!(w.input("user"), "alice", "the form is kept");
    match &w.app.screen {
        Screen::Login(form) => assert_eq!(form.password, PASSWORD, "typed key by key"),
        _ => panic!("not on the login screen"),
    }

    w.click("Connect");
    assert!(w.shows("Connecting…"), "a retry needs no retyping");
    w.net(NetEvent::Failed(ConnectError::Unreachable(
        "no answer from 127.0.0.1:4433".into(),
    )));
    assert!(
        w.shows_part("Cannot reach the relay"),
        "texts: {:?}",
        w.texts()
    );
    assert!(!w.shows_part("Wrong user name or password"));
    assert!(w.shows("Connect"));
}

#[test]
fn a_new_relay_asks_for_trust_and_cancel_goes_back_to_the_form() {
    let mut w = Window::new();
    w.log_in();
    let unknown = TrustFailure::Unknown {
        server: SERVER.into(),
        fingerprint: fingerprint(1),
        file: w.known_relays.clone(),
    };
    w.net(NetEvent::Failed(ConnectError::Trust(unknown.clone())));
    assert!(w.shows("New relay"), "texts: {:?}", w.texts());
    assert!(w.shows("Trust"));
    assert!(w.shows("Cancel"));
    assert!(w.shows_part("first time you connect to 127.0.0.1:4433"));

    w.click("Cancel");
    assert!(w.shows("Connect"), "texts: {:?}", w.texts());
    assert!(!w.shows("New relay"));
    assert_eq!(w.input("user"), "alice");
    assert!(!w.known_relays.exists(), "nothing was remembered");

    // Trusting remembers the fingerprint and connects again by itself.
    w.click("Connect");
    w.net(NetEvent::Failed(ConnectError::Trust(unknown)));
    w.click("Trust");
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    let known = std::fs::read_to_string(&w.known_relays).expect("remembered");
    assert!(
        known.contains(&format!("{SERVER} {}", fingerprint(1))),
        "{known}"
    );
}

#[test]
fn a_changed_certificate_is_refused_without_a_trust_button() {
    let mut w = Window::new();
    w.log_in();
    w.net(NetEvent::Failed(ConnectError::Trust(
        TrustFailure::Changed {
            server: SERVER.into(),
            known: fingerprint(1),
            presented: fingerprint(2),
            file: w.known_relays.clone(),
        },
    )));
    assert!(
        w.shows("Connection refused: the relay's certificate changed"),
        "texts: {:?}",
        w.texts()
    );
    assert!(!w.shows("Trust"));
    for row in trust_screen::fingerprint_rows(&fingerprint(1))
        .into_iter()
        .chain(trust_screen::fingerprint_rows(&fingerprint(2)))
    {
        assert!(w.shows(&row), "{row} in {:?}", w.texts());
    }
    assert!(w.shows_part(&w.known_relays.display().to_string()));

    w.click("Back");
    assert!(w.shows("Connect"));
}

#[test]
fn a_sent_line_shows_as_sending_then_once_when_stored() {
    let mut w = Window::chatting();
    w.interact(|ui| {
        ui.click(selector::id(chat::view::COMPOSER))
            .expect("the composer");
        let _ = ui.typewrite("hello");
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
    assert_eq!(
        w.take_commands(),
        vec![Command::Send {
            local: 1,
            room: "lobby".into(),
            body: "hello".into()
        }]
    );
    assert!(w.shows("sending…"), "texts: {:?}", w.texts());
    assert_eq!(w.count("hello"), 1);
    assert_eq!(
        w.chat().composer.text().trim(),
        "",
        "the composer is cleared"
    );

    w.net(NetEvent::Sent {
        local: 1,
        room: "lobby".into(),
        result: Ok(Acked {
            seq: 7,
            ts: chrono::Utc::now().timestamp_millis(),
        }),
    });
    w.session(SessionEvent::Message(message("lobby", 7, "alice", "hello")));
    assert_eq!(w.count("hello"), 1, "texts: {:?}", w.texts());
    assert!(!w.shows("sending…"));

    // The Send button does the same as Enter.
    w.interact(|ui| {
        ui.click(selector::id(chat::view::COMPOSER))
            .expect("the composer");
        let _ = ui.typewrite("again");
        ui.click("Send").expect("the Send button");
    });
    assert_eq!(
        w.take_commands(),
        vec![Command::Send {
            local: 2,
            room: "lobby".into(),
            body: "again".into()
        }]
    );
    assert!(w.shows("again"));
}

#[test]
fn unread_messages_are_counted_until_the_room_is_opened() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Joined {
        room: "dev".into(),
        recent: vec![],
        more: false,
    });
    w.session(SessionEvent::Message(message(
        "dev",
        1,
        "bob",
        "first from bob",
    )));
    w.session(SessionEvent::Message(message(
        "dev",
        2,
        "bob",
        "second from bob",
    )));
    assert!(w.shows("#dev"), "texts: {:?}", w.texts());
    assert!(w.shows("2"), "the badge: {:?}", w.texts());
    assert!(w.app.title().starts_with("(2)"), "title: {}", w.app.title());
    assert!(!w.shows("first from bob"), "another room's lines show");

    w.click("#dev");
    assert_eq!(w.chat().current, "dev");
    assert!(w.shows("first from bob"), "texts: {:?}", w.texts());
    assert!(w.shows("second from bob"));
    assert!(w.shows("bob"));
    assert!(!w.shows("2"), "the badge stays: {:?}", w.texts());
    assert!(!w.app.title().contains("(2)"), "title: {}", w.app.title());
    assert_eq!(w.take_commands(), vec![Command::Members("dev".into())]);
}

#[test]
fn composer_and_request_problems_are_shown_in_the_chat() {
    let mut w = Window::chatting();
    w.click("Send");
    assert!(w.shows("Type a message first."), "texts: {:?}", w.texts());
    assert!(w.take_commands().is_empty());

    // Typing clears the hint.
    w.interact(|ui| {
        ui.click(selector::id(chat::view::COMPOSER))
            .expect("the composer");
        let _ = ui.typewrite("x");
    });
    assert!(!w.shows("Type a message first."));

    // Pasted rather than typed: 5000 keystrokes add nothing to the check.
    w.update(app::Message::Chat(chat::Message::Composer(Action::Edit(
        Edit::Paste(Arc::new("y".repeat(5000))),
    ))));
    w.click("Send");
    assert!(w.shows_part("4096"), "texts: {:?}", w.texts());
    assert!(w.shows_part("Too long to send"));
    assert!(w.take_commands().is_empty());

    // A send the relay refuses stays on screen with the reason.
    w.update(app::Message::Chat(chat::Message::Composer(
        Action::SelectAll,
    )));
    w.update(app::Message::Chat(chat::Message::Composer(Action::Edit(
        Edit::Paste(Arc::new("spam".into())),
    ))));
    w.click("Send");
    let [Command::Send { local, room, .. }] = &w.take_commands()[..] else {
        panic!("one send expected");
    };
    w.net(NetEvent::Sent {
        local: *local,
        room: room.clone(),
        result: Err(RequestError::Refused {
            code: ErrorCode::RateLimited,
            message: "sending too fast; wait a moment".into(),
        }),
    });
    assert!(
        w.shows("not sent") && w.shows("sending too fast; wait a moment"),
        "texts: {:?}",
        w.texts()
    );
    // Retry has the room to say its name, and where it is.
    let retry = w.ui().find("Retry").expect("Retry").bounds();
    assert!(retry.width > 24.0, "Retry squeezed to {} px", retry.width);
    assert!(w.shows("spam"));

    w.net(NetEvent::Refused("no such room".into()));
    assert!(w.shows("no such room"), "texts: {:?}", w.texts());
    assert!(w.shows("Dismiss"));
    w.click("Dismiss");
    assert!(!w.shows("no such room"));
    assert!(!w.shows("Dismiss"));
}

#[test]
fn the_connection_state_is_always_on_screen() {
    let mut w = Window::chatting();
    assert!(w.status_says("● connected to 127.0.0.1:4433"));
    w.session(SessionEvent::Reconnecting {
        attempt: 1,
        delay: Duration::from_secs(5),
        reason: "relay shutting down".into(),
        lost: Some(SERVER.into()),
        next: SERVER.into(),
    });
    assert!(w.shows_part("reconnecting in"), "texts: {:?}", w.texts());
    assert!(w.status_says("◌ reconnecting in 5 s (attempt 1): relay shutting down"));
    assert!(!w.shows_part("● connected"));

    w.session(SessionEvent::Connected {
        user: "alice".into(),
        server: SERVER.into(),
    });
    assert!(
        w.status_says("● connected to 127.0.0.1:4433"),
        "texts: {:?}",
        w.texts()
    );
    assert!(!w.shows_part("reconnecting in"));
    assert_eq!(w.take_commands(), vec![Command::Members("lobby".into())]);

    w.session(SessionEvent::Failed(ConnectError::Auth {
        code: ErrorCode::BadCredentials,
        message: "bad credentials".into(),
    }));
    assert!(
        w.shows_part("offline: the relay no longer accepts your login")
            && w.shows_part("Log out and log in again"),
        "texts: {:?}",
        w.texts()
    );
}

#[test]
fn several_relays_are_typed_as_one_list_and_each_is_trusted_on_its_own() {
    const LIST: &str = "127.0.0.1:4433,127.0.0.2:4433";
    let mut w = Window::with_server(LIST);
    assert!(w.shows("Several relays of one service: separate them with commas."));
    assert_eq!(w.input("server"), LIST);
    w.log_in();
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());

    // The first relay did not answer; the second is new to this client.
    w.net(NetEvent::Failed(ConnectError::Trust(
        TrustFailure::Unknown {
            server: "127.0.0.2:4433".into(),
            fingerprint: fingerprint(2),
            file: w.known_relays.clone(),
        },
    )));
    assert!(w.shows_part("first time you connect to 127.0.0.2:4433"));
    w.click("Trust");
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    let known = std::fs::read_to_string(&w.known_relays).expect("remembered");
    let relays: Vec<&str> = known.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        relays,
        [format!("127.0.0.2:4433 {}", fingerprint(2))],
        "{known}"
    );
    match &w.app.screen {
        Screen::Login(form) => assert_eq!(form.server, LIST, "the whole list again"),
        _ => panic!("not on the login screen"),
    }
}

#[test]
fn a_move_to_another_relay_is_shown_in_the_status_line() {
    const OTHER: &str = "127.0.0.2:4433";
    let mut w = Window::chatting();
    w.session(SessionEvent::Reconnecting {
        attempt: 1,
        delay: Duration::from_secs(1),
        reason: "relay shutting down".into(),
        lost: Some(SERVER.into()),
        next: OTHER.into(),
    });
    assert!(
        w.status_says(
            "◌ relay 127.0.0.1:4433 went away; trying 127.0.0.2:4433 in 1 s (attempt 1): \
             relay shutting down"
        ),
        "texts: {:?}",
        w.texts()
    );
    w.session(SessionEvent::Connected {
        user: "alice".into(),
        server: OTHER.into(),
    });
    assert!(
        w.status_says("● connected to 127.0.0.2:4433"),
        "texts: {:?}",
        w.texts()
    );
    assert_eq!(w.take_commands(), vec![Command::Members("lobby".into())]);
}

#[test]
fn logging_out_returns_to_a_filled_in_form() {
    let mut w = Window::chatting();
    w.click("Log out");
    assert!(w.shows("Connect"), "texts: {:?}", w.texts());
    assert!(!w.shows("#lobby"));
    assert_eq!(w.take_commands(), vec![Command::Logout]);
    match &w.app.screen {
        Screen::Login(form) => {
            assert_eq!(form.server, SERVER);
            assert_eq!(form.user, "alice");
            assert!(form.password.is_empty(), "the password is forgotten");
        }
        _ => panic!("not on the login screen"),
    }
    assert_eq!(w.input("user"), "alice");
    assert_eq!(w.input("password"), "password", "only the placeholder");
    assert_eq!(w.app.title(), "confab");
}
