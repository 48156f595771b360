//! The conversation as a person sees it: a long room costs only what is in
//! view, lines can be selected and copied, links open, presence does not
//! bury what was said.

mod window;

use client_gui::app;
use client_gui::screen::chat;
use common::client::Event as SessionEvent;
use common::frame::{Presence, PresenceKind};
use iced::mouse::{self, ScrollDelta};
use iced::{Event, Point};
use iced_test::selector::Text;
use iced_test::simulator;
use window::{message, Window};

/// A chat whose lobby holds `n` lines, "line 1" to "line n".
fn long_room(n: u64) -> Window {
    let mut w = Window::chatting();
    w.session(SessionEvent::Joined {
        room: "lobby".into(),
        recent: (1..=n)
            .map(|i| message("lobby", i, "bob", &format!("line {i}")))
            .collect(),
        more: false,
    });
    w
}

fn lines_built(w: &Window) -> Vec<u64> {
    w.texts()
        .iter()
        .filter_map(|t| t.strip_prefix("line ")?.parse().ok())
        .collect()
}

#[test]
fn a_long_room_builds_only_the_lines_in_and_near_the_view() {
    let mut w = long_room(chat::KEEP as u64);
    let built = lines_built(&w);
    assert!(
        built.len() < 120,
        "{} of {} lines built",
        built.len(),
        chat::KEEP
    );
    assert!(
        built.contains(&(chat::KEEP as u64)),
        "the newest is in view"
    );
    assert!(!built.contains(&1), "the oldest is far above");

    // The wheel, turned up far enough, brings the oldest into view: the
    // space that stands in for them scrolls like lines would.
    w.interact(|ui| {
        ui.point_at(Point::new(600.0, 300.0));
        for _ in 0..40 {
            let _ = ui.simulate([Event::Mouse(mouse::Event::WheelScrolled {
                delta: ScrollDelta::Lines { x: 0.0, y: 40.0 },
            })]);
        }
    });
    let built = lines_built(&w);
    assert!(built.contains(&1), "scrolled to the top: {built:?}");
    assert!(!built.contains(&(chat::KEEP as u64)), "{built:?}");
    assert!(w.shows("This is the beginning of the room."));
}

#[test]
fn going_online_and_offline_is_a_dot_not_a_line() {
    let mut w = long_room(3);
    let before = w.texts().len();
    for kind in [PresenceKind::Online, PresenceKind::Offline] {
        w.session(SessionEvent::Presence(Presence {
            room: None,
            user: "carol".into(),
            kind,
        }));
    }
    assert_eq!(w.texts().len(), before, "{:?}", w.texts());
    for user in ["carol", "dave", "erin", "frank"] {
        w.session(SessionEvent::Presence(Presence {
            room: Some("lobby".into()),
            user: user.into(),
            kind: PresenceKind::Joined,
        }));
    }
    assert!(
        w.shows("→ carol, dave and 2 others joined"),
        "{:?}",
        w.texts()
    );
}

#[test]
fn a_double_clicked_line_can_be_selected_and_copied() {
    let mut w = long_room(3);
    w.interact(|ui| {
        ui.click("line 2").expect("the line");
        ui.click("line 2").expect("the line again");
    });
    assert!(w.shows("Copy"), "{:?}", w.texts());
    let selection = w.chat().selection.as_ref().expect("a selection");
    assert_eq!(selection.content.selection().as_deref(), Some("line 2"));
    // Read-only: typing does not change the line.
    w.interact(|ui| {
        let _ = ui.typewrite("xyz");
    });
    assert_eq!(
        w.chat()
            .selection
            .as_ref()
            .unwrap()
            .content
            .text()
            .trim_end(),
        "line 2"
    );
    w.click("Done");
    assert!(w.chat().selection.is_none());
    assert!(w.shows("line 2"));
}

#[test]
fn a_link_in_a_message_is_opened_when_clicked() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Message(message(
        "lobby",
        1,
        "bob",
        "https://example.org/plan is the plan",
    )));
    let mut ui = simulator(w.app.view());
    let Ok(Text::Raw { bounds, .. }) = ui.find("bob") else {
        panic!("the sender's name");
    };
    // The link starts the body, just under the name.
    ui.point_at(Point::new(bounds.x + 20.0, bounds.y + bounds.height + 10.0));
    let _ = ui.simulate(iced_test::simulator::click());
    let opened: Vec<String> = ui
        .into_messages()
        .filter_map(|m| match m {
            app::Message::Chat(chat::Message::OpenLink(url)) => Some(url),
            _ => None,
        })
        .collect();
    assert_eq!(opened, vec!["https://example.org/plan".to_string()]);
}

#[test]
fn leaving_a_room_asks_first() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Joined {
        room: "ops".into(),
        recent: vec![message("ops", 1, "bob", "private things")],
        more: false,
    });
    w.click("#ops");
    w.take_commands();
    assert_eq!(w.chat().current, "ops");
    w.click("Leave");
    assert!(w.take_commands().is_empty(), "one click does not leave");
    assert!(w.shows_part("coming back needs a new invitation"));
    w.click("Stay");
    assert!(w.take_commands().is_empty());
    assert!(!w.shows_part("coming back needs a new invitation"));
    w.click("Leave");
    w.click("Yes, leave");
    assert_eq!(
        w.take_commands(),
        vec![client_gui::connection::Command::Leave("ops".into())]
    );
}

#[test]
fn a_word_longer_than_the_line_is_wrapped_not_cut() {
    let mut w = Window::chatting();
    let long = "A".repeat(600);
    w.session(SessionEvent::Message(message("lobby", 1, "bob", &long)));
    let mut ui = w.ui();
    let found = ui.find(long.as_str()).expect("the long line");
    let bounds = found.bounds();
    assert!(
        bounds.height > 3.0 * 18.0,
        "one line of {} px high: cut off at the edge",
        bounds.height
    );
}

#[test]
fn text_that_would_reach_outside_its_line_is_tamed() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Message(message(
        "lobby",
        1,
        "bob",
        "see https://exa\u{202e}mple.com/gpj.exe",
    )));
    let zalgo = format!("Z{}", "\u{0301}\u{0317}\u{0338}".repeat(400));
    w.session(SessionEvent::Message(message("lobby", 2, "bob", &zalgo)));
    // A line with a link is rich text, which the selectors do not read:
    // what it is built from is the line kept.
    let bodies: Vec<String> = w.chat().rooms["lobby"]
        .lines
        .iter()
        .filter_map(|l| match l {
            chat::room::Line::Message(m) => Some(m.body.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bodies[0], "see https://exa<U+202E>mple.com/gpj.exe");
    let texts = w.texts().join("\n");
    let marks = texts
        .chars()
        .filter(|c| ('\u{0300}'..='\u{036f}').contains(c))
        .count();
    assert!(marks <= 4, "{marks} combining marks drawn on one letter");
}
