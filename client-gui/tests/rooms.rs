//! Rooms from the window: the browser of public rooms, private rooms at
//! creation, and inviting someone to the current room.

mod window;

use client_gui::connection::{words, Command, Event as NetEvent, RoomList};
use client_gui::screen::chat::view::{FILTER, INVITE_USER};
use common::client::{Event as SessionEvent, RequestError};
use common::frame::{ErrorCode, RoomInfo, RoomKind};
use window::Window;

fn info(name: &str, kind: RoomKind, members: u32) -> RoomInfo {
    RoomInfo {
        name: name.into(),
        kind,
        members,
        latest: 0,
        topic: String::new(),
    }
}

fn public(name: &str, members: u32) -> RoomInfo {
    info(name, RoomKind::Public, members)
}

/// A chat whose browser is open and has the relay's list.
fn browsing() -> Window {
    let mut w = Window::chatting();
    w.click("Browse rooms");
    assert_eq!(
        w.take_commands(),
        vec![Command::ListRooms],
        "refreshed when opened"
    );
    assert!(w.shows("Loading the room list…"), "texts: {:?}", w.texts());
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![public("lobby", 4)],
        public: vec![public("design", 1), public("dev", 5), public("lobby", 4)],
        invited: vec![],
    })));
    w
}

#[test]
fn the_browser_lists_public_rooms_filters_them_and_joins_with_a_click() {
    let mut w = browsing();
    assert!(!w.shows("Loading the room list…"));
    assert!(
        w.shows("#design") && w.shows("#dev"),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows("1 member") && w.shows("5 members") && w.shows("4 members"));
    // The lobby is in the sidebar, the header and, marked, the list.
    assert_eq!(w.count("#lobby"), 3, "texts: {:?}", w.texts());
    assert_eq!(w.count("✓ joined"), 1);

    w.type_into(FILTER, "#De");
    assert!(w.shows("#design") && w.shows("#dev"));
    assert_eq!(w.count("#lobby"), 2, "filtered out: {:?}", w.texts());
    w.type_into(FILTER, "zzz");
    assert!(
        w.shows("No public room's name contains \"#Dezzz\"."),
        "texts: {:?}",
        w.texts()
    );

    // Refresh asks again; a joined room opens without asking the relay.
    w.click("Refresh");
    assert_eq!(w.take_commands(), vec![Command::ListRooms]);
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![public("lobby", 4)],
        public: vec![public("dev", 6), public("lobby", 4)],
        invited: vec![],
    })));
    w.interact(|ui| {
        ui.click(iced_test::selector::id(FILTER))
            .expect("the filter");
        for _ in 0.."#Dezzz".len() {
            let _ = ui.tap_key(iced::keyboard::Key::Named(
                iced::keyboard::key::Named::Backspace,
            ));
        }
    });
    assert!(w.shows("6 members"), "texts: {:?}", w.texts());
    w.click("#dev");
    assert_eq!(w.take_commands(), vec![Command::Join("dev".into())]);
    assert!(w.shows("joining…"), "texts: {:?}", w.texts());
    w.net(NetEvent::Opened(public("dev", 7)));
    assert!(
        !w.shows("Public rooms"),
        "the browser closed: {:?}",
        w.texts()
    );
    assert_eq!(w.chat().current, "dev");
    assert_eq!(w.take_commands(), vec![Command::Members("dev".into())]);

    w.click("Browse rooms");
    w.take_commands();
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![public("dev", 7), public("lobby", 4)],
        public: vec![public("dev", 7), public("lobby", 4)],
        invited: vec![],
    })));
    assert_eq!(w.count("✓ joined"), 2, "texts: {:?}", w.texts());
    w.click("Close");
    assert!(!w.shows("Public rooms"));
}

#[test]
fn the_browser_says_what_went_wrong_in_words() {
    let mut w = Window::chatting();
    w.click("Browse rooms");
    w.take_commands();
    let busy = RequestError::Refused {
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
    };
    w.net(NetEvent::Rooms(Err(format!(
        "Could not load the room list: {}.",
        words(&busy)
    ))));
    assert!(
        w.shows(
            "Could not load the room list: the relay is limiting your requests just now; \
             wait a moment and try again."
        ),
        "texts: {:?}",
        w.texts()
    );
    w.click("Refresh");
    assert_eq!(w.take_commands(), vec![Command::ListRooms]);
    assert!(
        !w.shows_part("Could not load the room list"),
        "cleared on retry"
    );
    w.net(NetEvent::Rooms(Ok(RoomList {
        joined: vec![],
        public: vec![public("dev", 2)],
        invited: vec![],
    })));

    // A refused join is said in the browser, which stays open.
    w.click("#dev");
    w.take_commands();
    w.net(NetEvent::JoinRefused {
        room: "dev".into(),
        why: "Could not join #dev: the relay cannot answer right now.".into(),
    });
    assert!(
        w.shows("Could not join #dev: the relay cannot answer right now."),
        "texts: {:?}",
        w.texts()
    );
    assert!(w.shows("Public rooms") && !w.shows("joining…"));
    assert_eq!(w.chat().notice, None);

    // Joined by name from the sidebar, a refusal goes to the notice.
    w.click("Close");
    w.net(NetEvent::JoinRefused {
        room: "ops".into(),
        why: "Could not join #ops: there is no such room.".into(),
    });
    assert!(w.shows("Could not join #ops: there is no such room."));
}

#[test]
fn request_errors_are_said_in_words() {
    let refused = |code| RequestError::Refused {
        code,
        message: "relay text".into(),
    };
    let said = words(&refused(ErrorCode::RateLimited));
    assert!(said.contains("limiting your requests"), "{said}");
    let said = words(&refused(ErrorCode::Unavailable));
    assert!(said.contains("cannot answer right now"), "{said}");
    let said = words(&refused(ErrorCode::NoSuchUser));
    assert_eq!(said, "there is no user of that name");
    assert!(words(&RequestError::NotConnected).contains("once it is reconnected"));
    // Codes with rules of their own keep the relay's explanation.
    assert_eq!(words(&refused(ErrorCode::Forbidden)), "relay text");
}

#[test]
fn create_offers_a_private_room() {
    let mut w = Window::chatting();
    w.interact(|ui| {
        ui.click("room name").expect("the room input");
        let _ = ui.typewrite("secret");
        ui.click("private (invite only)").expect("the checkbox");
        ui.click("Create").expect("Create");
    });
    assert_eq!(
        w.take_commands(),
        vec![Command::Create {
            room: "secret".into(),
            private: true
        }]
    );
    assert!(!w.chat().create_private, "chosen again for each room");
    w.interact(|ui| {
        ui.click("room name").expect("the room input");
        let _ = ui.typewrite("open");
        ui.click("Create").expect("Create");
    });
    assert_eq!(
        w.take_commands(),
        vec![Command::Create {
            room: "open".into(),
            private: false
        }]
    );
}

#[test]
fn someone_can_be_invited_to_the_current_room() {
    let mut w = Window::chatting();
    assert!(!w.shows("Invite…"), "everyone is in the lobby already");
    w.net(NetEvent::Opened(info("secret", RoomKind::Private, 1)));
    w.take_commands();
    w.click("Invite…");
    assert!(w.shows("Invite to #secret"), "texts: {:?}", w.texts());

    w.type_into(INVITE_USER, "no body");
    w.click("Invite");
    assert!(w.shows_part("User names: "), "texts: {:?}", w.texts());
    assert!(w.take_commands().is_empty());

    w.update(client_gui::app::Message::Chat(
        client_gui::screen::chat::Message::InviteUser(String::new()),
    ));
    w.type_into(INVITE_USER, "bob");
    w.click("Invite");
    assert_eq!(
        w.take_commands(),
        vec![Command::Invite {
            room: "secret".into(),
            user: "bob".into()
        }]
    );
    assert!(w.shows("Inviting…"));
    w.net(NetEvent::Invited {
        room: "secret".into(),
        user: "bob".into(),
        result: Ok(()),
    });
    assert!(
        w.shows_part("Invited bob to #secret. They are told at once, or when they next log in"),
        "texts: {:?}",
        w.texts()
    );
    assert_eq!(
        w.input(INVITE_USER),
        "user name",
        "cleared for the next one"
    );

    w.type_into(INVITE_USER, "zed");
    w.click("Invite");
    w.take_commands();
    w.net(NetEvent::Invited {
        room: "secret".into(),
        user: "zed".into(),
        result: Err("Could not invite zed to #secret: there is no user of that name.".into()),
    });
    assert!(w.shows("Could not invite zed to #secret: there is no user of that name."));
    w.click("Close");
    assert!(!w.shows("Invite to #secret"));

    // A DM takes no invitations.
    w.net(NetEvent::Opened(info("@alice+bob", RoomKind::Direct, 2)));
    assert!(!w.shows("Invite…"), "texts: {:?}", w.texts());
}

#[test]
fn a_name_that_cannot_be_a_room_is_said_by_the_box_until_it_is_edited() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Joined {
        room: "dev".into(),
        recent: Vec::new(),
        more: false,
    });
    w.interact(|ui| {
        ui.click("room name").expect("the room input");
        let _ = ui.typewrite("no spaces");
        ui.click("Join").expect("Join");
    });
    assert!(w.take_commands().is_empty());
    assert!(w.shows_part("Room names: "), "texts: {:?}", w.texts());
    // About the box, not a room: opening one does not make it wrong or right.
    w.click("#dev");
    assert!(w.shows_part("Room names: "), "texts: {:?}", w.texts());
    w.interact(|ui| {
        ui.click("no spaces").expect("the room input, as typed");
        let _ = ui.typewrite("x");
    });
    assert!(!w.shows_part("Room names: "), "texts: {:?}", w.texts());
}

#[test]
fn enter_in_the_browsers_filter_joins_the_one_room_it_leaves() {
    let mut w = browsing();
    let enter = |w: &mut Window, filter: &str| {
        w.interact(|ui| {
            ui.click(iced_test::selector::id(FILTER))
                .expect("the filter");
            let _ = ui.typewrite(filter);
            let _ = ui.tap_key(iced::keyboard::Key::Named(
                iced::keyboard::key::Named::Enter,
            ));
        });
    };
    enter(&mut w, "de");
    assert!(
        w.take_commands().is_empty(),
        "two rooms left: no choice made"
    );
    enter(&mut w, "s");
    assert_eq!(w.take_commands(), vec![Command::Join("design".into())]);
}
