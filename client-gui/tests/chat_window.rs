//! The chat screen at the sizes people use (down to 640×480), and what
//! stays on it or goes away as the session changes. Headless, through the
//! real widgets (`iced_test`); the network is played by the test.

mod window;

use std::path::Path;
use std::time::Duration;

use client_gui::app;
use client_gui::connection::{Command, Event as NetEvent};
use client_gui::screen::{chat, login};
use common::client::Event as SessionEvent;
use common::frame::{Member, RoomInfo, RoomKind};
use iced::keyboard::{self, key::Named, Key, Modifiers};
use iced::{Point, Rectangle, Size};
use iced_test::selector::{self, Candidate, Target};
use window::{Ui, Window, SERVER};

const SMALL: Size = Size::new(640.0, 480.0);
const MEDIUM: Size = Size::new(800.0, 600.0);
const LARGE: Size = Size::new(1600.0, 1000.0);

/// A text on screen, where it was laid out and what of it can be seen.
#[derive(Debug, Clone)]
struct Placed {
    content: String,
    bounds: Rectangle,
    visible: Option<Rectangle>,
}

/// What only these tests ask of the window.
impl Window {
    /// Every text on screen with its place, in widget order.
    fn placed(&self) -> Vec<Placed> {
        placed_in(&mut self.ui())
    }

    fn find(&self, text: &str) -> Option<Placed> {
        self.placed().into_iter().find(|p| p.content == text)
    }

    /// Whether the picture changes while the pointer rests on `text`
    /// (a tooltip shows). Selectors cannot see into tooltips, so pictures
    /// are compared; both are kept in `dir` to look at.
    fn hover_shows_more(&self, text: &str, dir: &Path) -> bool {
        let resting = {
            let mut ui = self.ui();
            ui.snapshot(&iced::Theme::Light).expect("snapshot")
        };
        let shot = dir.join("resting.png");
        assert!(resting.matches_image(&shot).expect("write"));
        let mut ui = self.ui();
        let target = ui
            .find(text)
            .unwrap_or_else(|e| panic!("no {text:?} to point at: {e}"));
        let at = target.visible_bounds().expect("visible").center();
        ui.point_at(at);
        let _ = ui.simulate([iced::Event::Mouse(iced::mouse::Event::CursorMoved {
            position: at,
        })]);
        let hovering = ui.snapshot(&iced::Theme::Light).expect("snapshot");
        let _ = hovering.matches_image(dir.join("hovering.png"));
        !hovering.matches_image(&shot).expect("compare")
    }

    /// A key pressed in the window, as its event loop reports it.
    fn key(&mut self, key: Key, modifiers: Modifiers, captured: bool) {
        self.update(app::Message::Key(app::KeyPress {
            key,
            modifiers,
            captured,
        }));
    }

    fn conversation(&self) -> Rectangle {
        match self.ui().find(selector::id(chat::view::CONVERSATION)) {
            Ok(target @ Target::Scrollable { .. }) => target.bounds(),
            other => panic!("no conversation: {other:?}"),
        }
    }

    fn opened(&mut self, room: &str, kind: RoomKind) {
        self.net(NetEvent::Opened(RoomInfo {
            name: room.into(),
            kind,
            members: 2,
            latest: 0,
            topic: String::new(),
        }));
    }

    fn joined(&mut self, room: &str) {
        self.session(SessionEvent::Joined {
            room: room.into(),
            recent: vec![],
            more: false,
        });
    }

    fn reconnecting(&mut self) {
        self.session(SessionEvent::Reconnecting {
            attempt: 2,
            delay: Duration::from_secs(3),
            reason: "no answer from 127.0.0.1:4433 within 10 s; is the relay running and the \
                     address right?"
                .into(),
            lost: Some(SERVER.into()),
            next: SERVER.into(),
        });
    }
}

fn placed_in(ui: &mut Ui<'_>) -> Vec<Placed> {
    let mut seen = Vec::new();
    // The selector never matches, so the search walks the whole tree.
    let _ = ui.find(|candidate: Candidate<'_>| -> Option<()> {
        if let Candidate::Text {
            content,
            bounds,
            visible_bounds,
            ..
        } = candidate
        {
            seen.push(Placed {
                content: content.to_owned(),
                bounds,
                visible: visible_bounds,
            });
        }
        None
    });
    seen
}

/// A text is whole on screen: inside the window, not cut by its container,
/// and as wide as it is with room to spare.
fn assert_whole(w: &Window, label: &str, natural: &Placed) {
    let placed = w
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} is not on screen: {:?}", w.texts()));
    let window = Rectangle::new(Point::ORIGIN, w.size);
    let visible = placed
        .visible
        .unwrap_or_else(|| panic!("{label:?} is out of sight at {:?}", w.size));
    assert!(
        (visible.width - natural.bounds.width).abs() < 0.5
            && (visible.height - natural.bounds.height).abs() < 0.5
            && visible.x >= window.x
            && visible.x + visible.width <= window.width + 0.5,
        "{label:?} is squeezed or cut at {:?}: {visible:?}, needs {:?}",
        w.size,
        natural.bounds
    );
}

#[test]
fn enter_in_the_room_box_joins_without_sending_the_draft() {
    let mut w = Window::chatting_at(LARGE);
    w.interact(|ui| {
        ui.click(selector::id(chat::view::COMPOSER))
            .expect("the composer");
        let _ = ui.typewrite("x");
        ui.click("room name").expect("the room box");
        let _ = ui.typewrite("design");
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
    assert_eq!(w.take_commands(), vec![Command::Join("design".into())]);
    assert_eq!(w.chat().composer.text().trim(), "x", "the draft is kept");
}

#[test]
fn the_header_keeps_its_buttons_whole_from_640_by_480_up() {
    for size in [SMALL, MEDIUM, LARGE] {
        for reconnecting in [false, true] {
            let mut w = Window::chatting_at(LARGE);
            w.joined("dev");
            w.click("#dev");
            if reconnecting {
                w.reconnecting();
            }
            let natural = w.find("Leave").expect("Leave at a large size");
            w.size = size;
            assert_whole(&w, "Leave", &natural);
            // The member list's toggle, whatever it says at this width.
            let toggle = ["Hide members", "Members"]
                .into_iter()
                .find_map(|l| w.find(l))
                .unwrap_or_else(|| panic!("no members button at {size:?}: {:?}", w.texts()));
            assert_whole(&w, &toggle.content, &toggle);
            let conversation = w.conversation();
            assert!(
                conversation.width >= 0.65 * size.width,
                "the conversation is {} px wide in a {size:?} window",
                conversation.width
            );
        }
    }
}

#[test]
fn the_header_shows_the_state_in_short_and_all_of_it_on_hover() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut w = Window::chatting_at(MEDIUM);
    assert!(w.shows("● connected"), "texts: {:?}", w.texts());
    assert_eq!(w.chat().status_words().1, "● connected to 127.0.0.1:4433");
    assert!(w.hover_shows_more("● connected", &dir.path().join("connected")));

    w.reconnecting();
    assert!(w.shows("◌ reconnecting in 3 s"), "texts: {:?}", w.texts());
    assert!(!w.shows_part("within 10 s"), "the reason is in the header");
    assert_eq!(
        w.chat().status_words().1,
        "◌ reconnecting in 3 s (attempt 2): no answer from 127.0.0.1:4433 within 10 s; is the \
         relay running and the address right?"
    );
    assert!(w.hover_shows_more("◌ reconnecting in 3 s", &dir.path().join("reconnecting")));
    if std::env::var_os("CONFAB_KEEP_SNAPSHOTS").is_some() {
        let _ = dir.keep();
    }
}

#[test]
fn a_narrow_window_folds_rooms_and_members_into_header_buttons() {
    let mut w = Window::chatting_at(SMALL);
    w.joined("dev");
    w.net(NetEvent::Members {
        room: "lobby".into(),
        members: vec![Member {
            user: "bob".into(),
            online: true,
        }],
    });
    assert!(!w.shows("#dev"), "the sidebar takes room: {:?}", w.texts());
    assert!(!w.shows("bob"), "the member list takes room");
    assert!(w.conversation().width >= 0.9 * SMALL.width);

    w.click("Rooms");
    assert!(w.shows("#dev"), "texts: {:?}", w.texts());
    assert!(w.shows("Log out"));
    w.click("#dev");
    assert_eq!(w.chat().current, "dev");
    assert!(!w.shows("Log out"), "the rooms close once one is picked");

    w.take_commands();
    w.click("Members");
    assert_eq!(w.take_commands(), vec![Command::Members("dev".into())]);
    w.net(NetEvent::Members {
        room: "dev".into(),
        members: vec![Member {
            user: "bob".into(),
            online: true,
        }],
    });
    assert!(w.shows("bob"), "texts: {:?}", w.texts());
    w.click("bob");
    assert_eq!(w.take_commands(), vec![Command::OpenDm("bob".into())]);
    assert!(!w.shows("bob"), "the members close once one is picked");

    // Wide again, both come back without asking.
    w.size = LARGE;
    assert!(w.shows("Log out"));
    assert!(w.shows("Hide members"));
}

#[test]
fn a_notice_about_a_room_goes_once_that_room_opens() {
    let mut w = Window::chatting_at(LARGE);
    w.net(NetEvent::Refused(
        "Could not create #design: a room of that name exists.".into(),
    ));
    assert!(w.shows_part("Could not create #design"));
    w.opened("designers", RoomKind::Public);
    assert!(
        w.shows_part("Could not create #design"),
        "another room's opening says nothing about #design"
    );
    w.opened("design", RoomKind::Public);
    assert!(!w.shows_part("Could not create #design"), "{:?}", w.texts());
    assert!(!w.shows("Dismiss"));

    w.net(NetEvent::Refused(
        "Could not open a conversation with bob: bob is busy.".into(),
    ));
    w.opened("@alice+bob", RoomKind::Direct);
    assert!(!w.shows_part("conversation with bob:"), "{:?}", w.texts());

    // A notice about something else stays until dismissed.
    w.net(NetEvent::Refused(
        "Could not load the member list: slow down.".into(),
    ));
    w.opened("ops", RoomKind::Public);
    assert!(w.shows_part("Could not load the member list"));
}

#[test]
fn members_are_grey_while_offline_until_a_fresh_list_arrives() {
    let mut w = Window::chatting_at(LARGE);
    let members = || NetEvent::Members {
        room: "lobby".into(),
        members: vec![
            Member {
                user: "alice".into(),
                online: true,
            },
            Member {
                user: "bob".into(),
                online: true,
            },
        ],
    };
    w.net(members());
    assert_eq!(dots(&w), ["●", "●"], "texts: {:?}", w.texts());
    assert!(w.shows("MEMBERS · 2, 2 ONLINE"), "texts: {:?}", w.texts());

    w.reconnecting();
    assert!(
        dots(&w).iter().all(|d| d != "●"),
        "green while offline: {:?}",
        w.texts()
    );
    assert!(w.shows_part("OFFLINE"), "texts: {:?}", w.texts());

    // Back, but the list is from before: still unknown until it is asked again.
    w.session(SessionEvent::Connected {
        user: "alice".into(),
        server: SERVER.into(),
    });
    assert_eq!(w.take_commands(), vec![Command::Members("lobby".into())]);
    assert!(dots(&w).iter().all(|d| d != "●"), "{:?}", w.texts());
    assert!(!w.shows_part("OFFLINE"));
    w.net(members());
    assert_eq!(dots(&w), ["●", "●"]);
}

/// The presence marks of the member list, top to bottom.
fn dots(w: &Window) -> Vec<String> {
    let texts = w.texts();
    let start = texts
        .iter()
        .position(|t| t.starts_with("MEMBERS"))
        .expect("a member list");
    texts[start..]
        .iter()
        .filter(|t| ["●", "○", "◌"].contains(&t.as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_join_box_stays_put_as_rooms_are_added() {
    for size in [MEDIUM, LARGE] {
        let mut w = Window::chatting_at(size);
        let place = |w: &Window| match w.ui().find("room name") {
            Ok(target) => target.bounds(),
            Err(e) => panic!("no room box: {e}"),
        };
        let before = place(&w);
        for i in 0..12 {
            w.joined(&format!("room{i:02}"));
        }
        w.opened("@alice+bob", RoomKind::Direct);
        assert_eq!(place(&w), before, "at {size:?}");
    }
}

#[test]
fn an_empty_conversation_says_whose_it_is() {
    let mut w = Window::chatting_at(LARGE);
    w.opened("@alice+bob", RoomKind::Direct);
    assert_eq!(w.chat().current, "@alice+bob");
    assert!(
        w.shows("This is the start of your conversation with @bob."),
        "texts: {:?}",
        w.texts()
    );
    w.opened("design", RoomKind::Public);
    assert!(
        w.shows("This is the start of #design."),
        "texts: {:?}",
        w.texts()
    );
    assert!(
        !w.shows("This is the beginning of the room."),
        "said once, not twice: {:?}",
        w.texts()
    );
    w.session(SessionEvent::Message(common::frame::Message {
        room: "design".into(),
        seq: 1,
        id: [1; 16],
        ts: chrono::Utc::now().timestamp_millis(),
        from: "bob".into(),
        body: "first!".into(),
    }));
    assert!(!w.shows_part("This is the start of"), "{:?}", w.texts());
}

/// A key press with modifiers, as the window gets it.
fn pressed(key: Key, modifiers: Modifiers) -> iced::Event {
    iced::Event::Keyboard(keyboard::Event::KeyPressed {
        key: key.clone(),
        modified_key: key,
        physical_key: keyboard::key::Physical::Unidentified(
            keyboard::key::NativeCode::Unidentified,
        ),
        location: keyboard::Location::Standard,
        modifiers,
        text: None,
        repeat: false,
    })
}

#[test]
fn the_composer_leaves_the_windows_keys_to_the_window() {
    let mut w = Window::chatting_at(LARGE);
    let mut statuses = Vec::new();
    w.interact(|ui| {
        ui.click(selector::id(chat::view::COMPOSER))
            .expect("the composer");
        for (key, modifiers) in [
            (Key::Named(Named::PageUp), Modifiers::empty()),
            (Key::Named(Named::PageDown), Modifiers::empty()),
            (Key::Named(Named::ArrowUp), Modifiers::ALT),
            (Key::Named(Named::ArrowDown), Modifiers::ALT),
            (Key::Character("k".into()), Modifiers::CTRL),
        ] {
            statuses.push((key.clone(), ui.simulate([pressed(key, modifiers)])[0]));
        }
        // Its own keys it keeps.
        statuses.push((
            Key::Named(Named::Enter),
            ui.simulate([pressed(Key::Named(Named::Enter), Modifiers::empty())])[0],
        ));
    });
    let captured: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| *s == iced::event::Status::Captured)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(captured, [Key::Named(Named::Enter)]);
}

#[test]
fn enter_trusts_a_new_relay_and_escape_goes_back() {
    let mut w = Window::at(MEDIUM);
    let known = tempfile::tempdir().expect("temp dir");
    let file = known.path().join("known_relays");
    let unknown = || {
        NetEvent::Failed(common::client::ConnectError::Trust(
            common::trust::TrustFailure::Unknown {
                server: SERVER.into(),
                fingerprint: format!("SHA256:{}", ["AB"; 32].join(":")),
                file: file.clone(),
            },
        ))
    };
    w.update(app::Message::Login(login::Message::Submit));
    w.net(unknown());
    assert!(w.shows("New relay"), "texts: {:?}", w.texts());
    // A key some widget took is that widget's.
    w.key(Key::Named(Named::Escape), Modifiers::empty(), true);
    assert!(w.shows("New relay"));
    w.key(Key::Named(Named::Escape), Modifiers::empty(), false);
    assert!(w.shows("Connect"), "texts: {:?}", w.texts());

    w.update(app::Message::Login(login::Message::Password(
        "correct horse".into(),
    )));
    w.update(app::Message::Login(login::Message::Submit));
    w.net(unknown());
    w.key(Key::Named(Named::Enter), Modifiers::empty(), false);
    assert!(w.shows("Connecting…"), "texts: {:?}", w.texts());
    assert!(file.exists(), "the relay is remembered");
}

#[test]
fn shortcuts_switch_rooms_and_close_what_is_open() {
    let mut w = Window::chatting_at(LARGE);
    for room in ["dev", "design"] {
        w.joined(room);
    }
    w.opened("@alice+bob", RoomKind::Direct);
    let none = Modifiers::empty();

    // Alt+Up / Alt+Down: the sidebar's order, round the ends.
    assert_eq!(
        w.chat().room_order(),
        ["design", "dev", "lobby", "@alice+bob"]
    );
    w.key(Key::Named(Named::ArrowDown), Modifiers::ALT, false);
    assert_eq!(w.chat().current, "design");
    w.key(Key::Named(Named::ArrowUp), Modifiers::ALT, false);
    w.key(Key::Named(Named::ArrowUp), Modifiers::ALT, false);
    assert_eq!(w.chat().current, "lobby");
    w.key(Key::Named(Named::ArrowUp), none, false);
    assert_eq!(w.chat().current, "lobby", "a plain arrow is the widgets'");

    // Ctrl+K: type, pick, open.
    w.key(Key::Character("k".into()), Modifiers::CTRL, false);
    assert!(w.shows("#dev"), "texts: {:?}", w.texts());
    w.interact(|ui| {
        ui.click("Go to a room or DM")
            .expect("the switcher's field");
        let _ = ui.typewrite("de");
    });
    assert_eq!(w.chat().switcher_matches(), ["design", "dev"]);
    w.key(Key::Named(Named::ArrowDown), none, false);
    // The field takes Enter (and says so): the switcher opens its pick.
    w.interact(|ui| {
        ui.click("de").expect("the switcher's field");
        let _ = ui.tap_key(Key::Named(Named::Enter));
    });
    assert_eq!(w.chat().current, "dev");
    assert!(w.chat().switcher.is_none());

    // Escape closes the switcher, even from its field (which takes Escape).
    w.key(Key::Character("k".into()), Modifiers::CTRL, false);
    let switcher = |w: &Window| w.ui().find("Go to a room or DM").is_ok();
    assert!(switcher(&w));
    w.key(Key::Named(Named::Escape), none, true);
    assert!(!switcher(&w));
    assert_eq!(w.chat().current, "dev");

    // And the rooms of a narrow window.
    w.size = SMALL;
    w.click("Rooms");
    assert!(w.shows("Log out"));
    w.key(Key::Named(Named::Escape), none, false);
    assert!(!w.shows("Log out"));
}

#[test]
fn every_way_into_a_room_puts_the_cursor_in_the_composer() {
    let composer = Some(chat::view::COMPOSER);
    let mut c = chat::Chat::new("alice".into(), SERVER.into(), SERVER.into());
    for room in ["dev", "design"] {
        c.on_event(NetEvent::Session(SessionEvent::Joined {
            room: room.into(),
            recent: vec![],
            more: false,
        }));
    }
    assert_eq!(
        c.update(chat::Message::SelectRoom("dev".into())).focus,
        composer
    );
    assert_eq!(c.update(chat::Message::StepRoom(1)).focus, composer);
    // Joined, created or a DM opened: the relay's answer opens the room.
    let opened = c.on_event(NetEvent::Opened(RoomInfo {
        name: "@alice+bob".into(),
        kind: RoomKind::Direct,
        members: 2,
        latest: 0,
        topic: String::new(),
    }));
    assert_eq!(opened.focus, composer);
    assert_eq!(c.current, "@alice+bob");
    // Leaving the room shown goes to the lobby.
    let left = c.on_event(NetEvent::Session(SessionEvent::Left {
        room: "@alice+bob".into(),
    }));
    assert_eq!((c.current.as_str(), left.focus), ("lobby", composer));
}

#[test]
fn page_keys_scroll_the_conversation_unless_a_widget_took_them() {
    let mut c = chat::Chat::new("alice".into(), SERVER.into(), SERVER.into());
    let page = |c: &chat::Chat, key: Named, captured: bool| {
        c.shortcut(&Key::Named(key), Modifiers::empty(), captured)
    };
    assert!(matches!(
        page(&c, Named::PageUp, false),
        Some(chat::Message::Page(chat::Page::Up))
    ));
    assert!(matches!(
        page(&c, Named::PageDown, false),
        Some(chat::Message::Page(chat::Page::Down))
    ));
    assert!(page(&c, Named::PageUp, true).is_none());
    assert_eq!(
        c.update(chat::Message::Page(chat::Page::Up)).page,
        Some(chat::Page::Up)
    );
}

#[test]
fn a_login_the_relay_no_longer_accepts_offers_to_log_in_again_not_to_reconnect() {
    let mut w = Window::chatting();
    w.session(SessionEvent::Failed(common::client::ConnectError::Auth {
        code: common::frame::ErrorCode::BadCredentials,
        message: "bad credentials".into(),
    }));
    assert!(w.shows("Log in again"), "texts: {:?}", w.texts());
    assert!(!w.shows("Reconnect"), "it would be refused again");
    w.click("Log in again");
    assert!(
        matches!(w.app.screen, app::Screen::Login(_)),
        "back on the form"
    );
}
