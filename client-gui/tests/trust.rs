//! Trust decisions in the window: going back keeps what was typed, a
//! changed certificate's page fits a small window, a new fingerprint
//! confirmed with the operator replaces the remembered one, and a session
//! stopped while chatting can be looked into and started again.

mod window;

use client_gui::app::Screen;
use client_gui::connection::{Command, Event as NetEvent};
use client_gui::screen::chat::Status;
use client_gui::screen::trust::fingerprint_rows;
use common::client::{ConnectError, Event as SessionEvent};
use common::trust::TrustFailure;
use iced::Size;
use window::{fingerprint, message, scroll_down, Window, PASSWORD, SERVER};

fn unknown(w: &Window) -> ConnectError {
    ConnectError::Trust(TrustFailure::Unknown {
        server: SERVER.into(),
        fingerprint: fingerprint(1),
        file: w.known_relays.clone(),
    })
}

fn changed(w: &Window, from: u8, to: u8) -> ConnectError {
    ConnectError::Trust(TrustFailure::Changed {
        server: SERVER.into(),
        known: fingerprint(from),
        presented: fingerprint(to),
        file: w.known_relays.clone(),
    })
}

/// The form holds everything the attempt had, ready for Connect.
fn assert_form_kept(w: &Window) {
    match &w.app.screen {
        Screen::Login(form) => {
            assert_eq!(form.server, SERVER);
            assert_eq!(form.user, "alice");
            assert_eq!(form.password, PASSWORD, "the password is kept");
            assert!(form.register, "\"Create account\" is kept");
            assert!(!form.connecting);
        }
        _ => panic!("not on the login screen: {:?}", w.texts()),
    }
    // Shown masked, one dot a character.
    assert_eq!(w.input("password"), "•".repeat(PASSWORD.chars().count()));
    assert!(w.shows("Connect"));
}

#[test]
fn cancel_and_back_on_the_trust_screen_keep_the_whole_form() {
    let mut w = Window::new();
    w.click("Create account");
    w.log_in();
    w.net(NetEvent::Failed(unknown(&w)));
    assert!(w.shows("New relay"), "texts: {:?}", w.texts());
    w.click("Cancel");
    assert_form_kept(&w);

    // Connect is all it takes to try again; the refusal's Back does the same.
    w.click("Connect");
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    let attempt = w.app.session().expect("connecting").clone();
    assert_eq!(attempt.password, PASSWORD);
    assert!(attempt.register);
    w.net(NetEvent::Failed(changed(&w, 1, 2)));
    w.click("Back");
    assert_form_kept(&w);
}

#[test]
fn the_changed_certificate_page_wraps_fingerprints_and_scrolls_in_a_small_window() {
    let mut w = Window::new();
    w.log_in();
    w.net(NetEvent::Failed(changed(&w, 1, 2)));
    // Each fingerprint in rows of 16 bytes, as on the new-relay page.
    for fp in [fingerprint(1), fingerprint(2)] {
        let rows = fingerprint_rows(&fp);
        assert_eq!(rows.len(), 2);
        for row in rows {
            assert_eq!(w.count(&row), 1, "{row} in {:?}", w.texts());
        }
    }
    assert!(
        w.texts()
            .iter()
            .all(|t| t.chars().count() < 60 || t.contains(' ')),
        "a line that cannot wrap: {:?}",
        w.texts()
    );

    // At 640×480 the page starts at its title and scrolls to its buttons.
    let small = Size::new(640.0, 480.0);
    w.interact_at(small, |ui| {
        let title = ui
            .find("Connection refused: the relay's certificate changed")
            .expect("the title");
        assert!(title.visible_bounds().is_some(), "the title is off screen");
        scroll_down(ui, small, 100.0);
        ui.click("I confirmed the new fingerprint with the operator: trust it")
            .expect("the button, reached by scrolling");
    });
    assert!(
        w.shows("Replace the remembered fingerprint?"),
        "texts: {:?}",
        w.texts()
    );
    w.interact_at(small, |ui| {
        scroll_down(ui, small, 100.0);
        ui.click("Back").expect("Back, reached by scrolling");
    });
    assert!(w.shows("Connection refused: the relay's certificate changed"));
    w.interact_at(small, |ui| {
        scroll_down(ui, small, 100.0);
        ui.click("Back").expect("Back, reached by scrolling");
    });
    assert!(w.shows("Connect"), "texts: {:?}", w.texts());
}

#[test]
fn a_new_fingerprint_confirmed_with_the_operator_replaces_the_remembered_one() {
    let mut w = Window::new();
    let other = format!("other:4433 {}", fingerprint(9));
    let before = format!("# mine\n{SERVER} {}\n{other}\n", fingerprint(1));
    std::fs::write(&w.known_relays, &before).unwrap();
    w.click("Create account");
    w.log_in();
    w.net(NetEvent::Failed(changed(&w, 1, 2)));
    w.click("I confirmed the new fingerprint with the operator: trust it");

    // The second step names the server and the new fingerprint only.
    assert!(
        w.shows("Replace the remembered fingerprint?"),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows_part(&format!("the relay at {SERVER} presents now")));
    for row in fingerprint_rows(&fingerprint(2)) {
        assert!(w.shows(&row), "{row} in {:?}", w.texts());
    }
    for row in fingerprint_rows(&fingerprint(1)) {
        assert!(!w.shows(&row), "the old fingerprint: {:?}", w.texts());
    }
    assert_eq!(std::fs::read_to_string(&w.known_relays).unwrap(), before);

    // Back leads to the refusal, not past it.
    w.click("Back");
    assert!(w.shows("Connection refused: the relay's certificate changed"));
    w.click("I confirmed the new fingerprint with the operator: trust it");
    w.click("Replace the remembered fingerprint");

    assert_eq!(
        std::fs::read_to_string(&w.known_relays).unwrap(),
        format!("# mine\n{SERVER} {}\n{other}\n", fingerprint(2))
    );
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    let again = w.app.session().expect("connecting again");
    assert_eq!(
        (again.password.as_str(), again.register),
        (PASSWORD, true),
        "with the same credentials"
    );
    w.connected();
    assert!(w.shows("● connected"), "texts: {:?}", w.texts());
}

#[test]
fn a_known_relays_file_changed_meanwhile_is_not_overwritten() {
    let mut w = Window::new();
    std::fs::write(&w.known_relays, format!("{SERVER} {}\n", fingerprint(1))).unwrap();
    w.log_in();
    w.net(NetEvent::Failed(changed(&w, 1, 2)));
    w.click("I confirmed the new fingerprint with the operator: trust it");
    // Another client (or a person) trusted something else in between.
    let meanwhile = format!("{SERVER} {}\n", fingerprint(3));
    std::fs::write(&w.known_relays, &meanwhile).unwrap();
    w.click("Replace the remembered fingerprint");
    assert!(
        w.shows_part("changed since it was shown"),
        "texts: {:?}",
        w.texts()
    );
    assert_eq!(std::fs::read_to_string(&w.known_relays).unwrap(), meanwhile);
    assert!(w.app.session().is_some_and(|p| p.password == PASSWORD));
    w.click("Back");
    assert!(w.shows("Connection refused: the relay's certificate changed"));
}

#[test]
fn a_certificate_change_while_chatting_has_details_and_reconnects_into_the_same_chat() {
    let mut w = Window::chatting();
    std::fs::write(&w.known_relays, format!("{SERVER} {}\n", fingerprint(1))).unwrap();
    w.session(SessionEvent::Message(message(
        "lobby",
        1,
        "bob",
        "before the change",
    )));
    w.session(SessionEvent::Failed(changed(&w, 1, 2)));
    assert!(w.shows("○ offline"), "texts: {:?}", w.texts());
    assert!(w.shows("Reconnect") && w.shows("Details"));
    assert!(
        w.shows_part("You are offline: the certificate of the relay at 127.0.0.1:4433 changed"),
        "texts: {:?}",
        w.texts()
    );

    // Details shows the refusal; Back returns to the chat as it was.
    w.click("Details");
    assert!(
        w.shows("Connection refused: the relay's certificate changed"),
        "texts: {:?}",
        w.texts()
    );
    for row in fingerprint_rows(&fingerprint(2)) {
        assert!(w.shows(&row), "{row}");
    }
    w.click("Back");
    assert!(
        w.shows("○ offline") && w.shows("Details"),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows("before the change"));

    w.click("Details");
    w.click("I confirmed the new fingerprint with the operator: trust it");
    w.click("Replace the remembered fingerprint");
    assert_eq!(
        std::fs::read_to_string(&w.known_relays).unwrap(),
        format!("{SERVER} {}\n", fingerprint(2))
    );
    // Back in the chat, connecting again as the same user, with the
    // password kept in memory; registered already, so logging in.
    assert!(w.shows("before the change"), "texts: {:?}", w.texts());
    assert!(w.shows_part("reconnecting"), "texts: {:?}", w.texts());
    assert!(!w.shows("Details"));
    let again = w.app.session().expect("connecting again");
    assert_eq!((again.password.as_str(), again.register), (PASSWORD, false));

    w.connected();
    assert!(w.shows("● connected"), "texts: {:?}", w.texts());
    assert!(w.shows("before the change"));
    assert_eq!(w.app.title(), "confab — alice");
    assert_eq!(w.take_commands(), vec![Command::Members("lobby".into())]);
}

#[test]
fn reconnect_starts_the_session_again_and_a_failure_leaves_the_chat_offline() {
    let mut w = Window::chatting();
    let first = w.app.session().expect("a session").attempt;
    w.session(SessionEvent::Failed(ConnectError::Closed(
        "the relay closed the connection".into(),
    )));
    assert!(
        w.shows("○ offline") && w.shows("Reconnect"),
        "texts: {:?}",
        w.texts()
    );
    assert!(
        !w.shows("Details"),
        "nothing more to see for a closed connection"
    );

    w.click("Reconnect");
    let again = w.app.session().expect("connecting again");
    assert!(again.attempt > first, "a new session, not the stopped one");
    assert_eq!((again.password.as_str(), again.register), (PASSWORD, false));
    assert!(matches!(w.chat().status, Status::Reconnecting { .. }));
    assert!(!w.shows("Reconnect"));

    // Not through: offline again, in the same chat, and Reconnect is back.
    w.net(NetEvent::Failed(ConnectError::Unreachable(
        "no answer from 127.0.0.1:4433".into(),
    )));
    assert!(
        w.shows("○ offline") && w.shows("Reconnect"),
        "texts: {:?}",
        w.texts()
    );
    assert!(
        w.shows_part("Cannot reach the relay"),
        "texts: {:?}",
        w.texts()
    );

    // A relay of the list that was never trusted: Details asks about it.
    w.click("Reconnect");
    w.net(NetEvent::Failed(unknown(&w)));
    w.click("Details");
    assert!(w.shows("New relay"), "texts: {:?}", w.texts());
    w.click("Trust");
    assert!(std::fs::read_to_string(&w.known_relays)
        .unwrap()
        .contains(&format!("{SERVER} {}", fingerprint(1))));
    assert!(w.shows_part("reconnecting"), "texts: {:?}", w.texts());
    w.connected();
    assert!(w.shows("● connected"));

    // Logging out still forgets the password.
    w.click("Log out");
    assert!(w.app.session().is_none());
}

#[test]
fn enter_on_the_form_connects_even_from_the_create_account_box() {
    use client_gui::app::{KeyPress, Message};
    use iced::keyboard::{key::Named, Key, Modifiers};
    let mut w = Window::new();
    w.type_into("password", PASSWORD);
    w.click("Create account");
    assert!(w.app.session().is_none());
    // The checkbox does not take Enter: the window's key routing does.
    w.update(Message::Key(KeyPress {
        key: Key::Named(Named::Enter),
        modifiers: Modifiers::default(),
        captured: false,
    }));
    let session = w.app.session().expect("connecting");
    assert!(session.register, "with the account to create");
}
