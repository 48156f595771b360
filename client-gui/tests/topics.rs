//! A channel's topic in the window: after the room's name in the header,
//! set in a dialog (Enter saves, Escape and Cancel close, refusals said
//! there), changed live by others with a line in the conversation, and
//! under each public room's name in the room browser.

mod window;

use client_gui::app;
use client_gui::connection::{Command, Event as NetEvent, RoomList};
use client_gui::screen::chat::view::TOPIC_INPUT;
use common::client::Event as SessionEvent;
use common::frame::{RoomInfo, RoomKind};
use iced::keyboard::{key::Named, Key, Modifiers};
use iced_test::selector;
use window::Window;

fn room(name: &str, kind: RoomKind, topic: &str) -> RoomInfo {
    RoomInfo {
        name: name.into(),
        kind,
        members: 3,
        latest: 0,
        topic: topic.into(),
    }
}

/// A chat whose rooms the relay listed at login: the lobby (with `topic`),
/// #ops without one and a DM.
fn chatting(topic: &str) -> Window {
    let mut w = Window::chatting();
    w.session(SessionEvent::Rooms(vec![
        room("@alice+bob", RoomKind::Direct, ""),
        room("lobby", RoomKind::Public, topic),
        room("ops", RoomKind::Public, ""),
    ]));
    for name in ["lobby", "ops", "@alice+bob"] {
        w.session(SessionEvent::Joined {
            room: name.into(),
            recent: vec![],
            more: false,
        });
    }
    w
}

/// Types `text` into the focused dialog's input in place of what it holds,
/// then presses Enter.
fn retype_and_enter(w: &mut Window, text: &str) {
    let held = w.input(TOPIC_INPUT).chars().count();
    w.interact(|ui| {
        ui.click(selector::id(TOPIC_INPUT))
            .expect("the topic input");
        let _ = ui.tap_key(Key::Named(Named::End));
        for _ in 0..held {
            let _ = ui.tap_key(Key::Named(Named::Backspace));
        }
        let _ = ui.typewrite(text);
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
}

#[test]
fn the_header_shows_a_channels_topic_after_its_name_and_a_dm_none() {
    let mut w = chatting("say hello, then ask");
    assert!(w.shows("#lobby"));
    assert!(w.shows("say hello, then ask"), "texts: {:?}", w.texts());
    w.click("#ops");
    assert!(
        w.shows("Topic…") && !w.shows("say hello, then ask"),
        "a channel without one offers to set it: {:?}",
        w.texts()
    );
    w.click("@bob");
    assert!(!w.shows("Topic…"), "a DM has none: {:?}", w.texts());
    // A room joined (here or on another device) brings its topic along.
    w.net(NetEvent::Opened(room("dev", RoomKind::Public, "builds")));
    assert!(w.shows("builds"), "texts: {:?}", w.texts());
}

#[test]
fn the_dialog_sets_the_topic_with_enter_and_says_a_refusal() {
    let mut w = chatting("say hello");
    w.click("say hello");
    assert!(w.shows("Topic of #lobby"), "texts: {:?}", w.texts());
    assert_eq!(w.input(TOPIC_INPUT), "say hello", "prefilled");

    retype_and_enter(&mut w, "pages, deploys, on-call");
    assert_eq!(
        w.take_commands(),
        vec![Command::SetTopic {
            room: "lobby".into(),
            topic: "pages, deploys, on-call".into()
        }]
    );
    assert!(w.shows("Saving…"));
    let why = "Could not set the topic of #lobby: the relay is limiting your requests just now; wait a moment and try again.";
    w.net(NetEvent::TopicSet {
        room: "lobby".into(),
        result: Err(why.into()),
    });
    assert!(w.shows(why), "said in the dialog: {:?}", w.texts());
    assert!(w.shows("Save"));

    // Enter again: asked again, then closed once the relay says yes.
    w.interact(|ui| {
        ui.click(selector::id(TOPIC_INPUT))
            .expect("the topic input");
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
    assert_eq!(w.take_commands().len(), 1);
    w.net(NetEvent::TopicSet {
        room: "lobby".into(),
        result: Ok(()),
    });
    assert!(!w.shows("Topic of #lobby"), "texts: {:?}", w.texts());

    // Two lines cannot be a topic: said before asking the relay.
    w.click("say hello");
    w.update(app::Message::Chat(
        client_gui::screen::chat::Message::TopicInput("one\ntwo".into()),
    ));
    w.interact(|ui| {
        ui.click(selector::id(TOPIC_INPUT))
            .expect("the topic input");
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
    assert!(w.take_commands().is_empty());
    assert!(
        w.shows_part("control character U+000A"),
        "texts: {:?}",
        w.texts()
    );
}

#[test]
fn escape_or_cancel_closes_the_dialog_and_sends_nothing() {
    let mut w = chatting("");
    w.click("Topic…");
    assert_eq!(w.input(TOPIC_INPUT), "what this room is for", "empty");
    // The focused input takes Escape for itself; it closes all the same.
    w.update(app::Message::Key(app::KeyPress {
        key: Key::Named(Named::Escape),
        modifiers: Modifiers::empty(),
        captured: true,
    }));
    assert!(!w.shows("Topic of #lobby"), "texts: {:?}", w.texts());
    w.click("Topic…");
    w.type_into(TOPIC_INPUT, "never mind");
    w.click("Cancel");
    assert!(!w.shows("Topic of #lobby"));
    assert!(w.take_commands().is_empty());
    assert!(w.shows("Topic…"), "unchanged");
}

#[test]
fn a_topic_changed_by_someone_updates_the_header_and_says_so_in_the_room() {
    let mut w = chatting("say hello");
    w.session(SessionEvent::Message(window::message(
        "lobby", 4, "bob", "morning",
    )));
    w.session(SessionEvent::Topic {
        room: "lobby".into(),
        topic: "pages, deploys".into(),
        by: "bob".into(),
    });
    assert!(w.shows("pages, deploys"), "texts: {:?}", w.texts());
    assert!(!w.shows("say hello"));
    assert!(
        w.shows("→ bob set the topic: pages, deploys"),
        "texts: {:?}",
        w.texts()
    );
    let texts = w.texts();
    let line = |t: &str| texts.iter().position(|x| x == t).unwrap();
    assert!(
        line("morning") < line("→ bob set the topic: pages, deploys"),
        "after what was said before: {texts:?}"
    );

    // Cleared: the header offers to set one, and the room says who cleared it.
    w.session(SessionEvent::Topic {
        room: "lobby".into(),
        topic: String::new(),
        by: "carol".into(),
    });
    assert!(w.shows("Topic…") && w.shows("→ carol cleared the topic"));
    // Another room's topic changes that room, not this header.
    w.session(SessionEvent::Topic {
        room: "ops".into(),
        topic: "incidents".into(),
        by: "bob".into(),
    });
    assert!(!w.shows("incidents"));
    w.click("#ops");
    assert!(w.shows("incidents") && w.shows("→ bob set the topic: incidents"));
}

#[test]
fn a_room_joined_on_another_device_gets_its_topic_from_the_room_list() {
    let mut w = chatting("say hello");
    w.take_commands();
    w.session(SessionEvent::Joined {
        room: "dev".into(),
        recent: vec![],
        more: false,
    });
    assert_eq!(w.take_commands(), vec![Command::ListRooms]);
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![
            room("dev", RoomKind::Public, "builds"),
            room("lobby", RoomKind::Public, "an older list"),
        ],
        public: vec![],
        invited: vec![],
    })));
    w.click("#dev");
    assert!(w.shows("builds"), "texts: {:?}", w.texts());
    w.click("#lobby");
    assert!(w.shows("say hello"), "a known topic stays: {:?}", w.texts());
    // Known already (listed at login, or told): nothing to ask.
    w.session(SessionEvent::Joined {
        room: "ops".into(),
        recent: vec![],
        more: false,
    });
    assert!(!w.take_commands().contains(&Command::ListRooms));
}

#[test]
fn the_room_browser_shows_each_public_rooms_topic_under_its_name() {
    let mut w = Window::chatting();
    w.click("Browse rooms");
    w.take_commands();
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![room("lobby", RoomKind::Public, "")],
        public: vec![
            room("design", RoomKind::Public, "mockups and reviews"),
            room("dev", RoomKind::Public, ""),
            room("lobby", RoomKind::Public, ""),
        ],
        invited: vec![],
    })));
    assert!(
        w.shows("#design") && w.shows("mockups and reviews"),
        "texts: {:?}",
        w.texts()
    );
    let texts = w.texts();
    let at = |t: &str| texts.iter().position(|x| x == t).unwrap();
    assert_eq!(
        at("mockups and reviews"),
        at("#design") + 1,
        "under its name"
    );
    assert_eq!(at("#dev"), at("mockups and reviews") + 3, "#dev says none");
}
