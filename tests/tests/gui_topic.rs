//! A room's topic in the real window under Xvfb, against the real relay:
//! alice clicks "Topic…" in the header, types the topic and presses
//! Return; bob, in a client of his own, is told, and the window shows the
//! topic after the room's name and the change in the conversation. Then
//! bob changes it and the window follows. The button is found where the
//! window's own code lays it out (the same chat, built headless at the
//! window's size with the window's fonts). Screenshots land in
//! target/gui-e2e/.

use std::time::Duration;

use client_gui::connection::Event as NetEvent;
use client_gui::screen::chat::Chat;
use common::client::Event;
use common::frame::{RoomInfo, RoomKind};
use confab_tests::gui::{add_user, shots, Gui, Xvfb};
use confab_tests::{Relay, Session};
use iced_test::core::Settings;
use iced_test::Simulator;

const ALICE_PASSWORD: &str = "alicepassword1";

/// Clicks, in the real window, the first widget reading `label` in
/// `chat` laid out headless at `size`.
fn click(gui: &Gui, size: (f32, f32), chat: &Chat, label: &str) {
    let mut ui = Simulator::with_size(Settings::default(), size, chat.view());
    let found = ui.find(label).expect("the widget to click");
    let at = found
        .visible_bounds()
        .unwrap_or_else(|| panic!("off screen: {found:?}"))
        .center();
    let (x, y) = (at.x.round().to_string(), at.y.round().to_string());
    gui.xdotool(&["mousemove", "--window", &gui.window, &x, &y, "click", "1"]);
    std::thread::sleep(Duration::from_millis(400));
}

/// Who set `room`'s topic to `topic`, once `s` is told.
async fn told(s: &mut Session, room: &str, topic: &str) -> String {
    s.wait_for(&format!("the topic {topic:?} of {room}"), |e| match e {
        Event::Topic {
            room: r,
            topic: t,
            by,
        } if r == room && t == topic => Some(by.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_typed_in_the_window_reaches_another_client_and_shows_in_the_header() {
    client_gui::fonts::install();
    let relay = Relay::start();
    add_user(&relay, "alice", ALICE_PASSWORD);
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    bob.client
        .send("lobby", "what is this room for, anyway?")
        .await
        .unwrap();

    let x = Xvfb::start();
    let gui = Gui::pinned(&x, &relay, "alice");
    gui.log_in("alice", ALICE_PASSWORD);
    std::thread::sleep(Duration::from_millis(800));
    let size = gui.size();
    let dir = shots();

    // The same chat, headless: the lobby has no topic yet.
    let server = relay.server();
    let mut chat = Chat::new("alice".into(), server.clone(), server);
    let lobby = |topic: &str| RoomInfo {
        name: "lobby".into(),
        kind: RoomKind::Public,
        members: 2,
        latest: 1,
        topic: topic.into(),
    };
    chat.on_event(NetEvent::Session(Event::Rooms(vec![lobby("")])));
    click(&gui, size, &chat, "Topic…");
    // The cursor is in the dialog's field: type, and Return saves.
    let topic = "pages, deploys, on-call";
    gui.xdotool(&["type", "--delay", "15", topic]);
    std::thread::sleep(Duration::from_millis(400));
    gui.screenshot(&dir.join("topic-dialog.png"));
    gui.xdotool(&["key", "Return"]);
    assert_eq!(told(&mut bob, "lobby", topic).await, "alice");
    let (joined, _) = bob.client.rooms().await.unwrap();
    let listed = joined.iter().find(|r| r.name == "lobby").unwrap();
    assert_eq!(listed.topic, topic, "kept by the relay");
    std::thread::sleep(Duration::from_millis(600));
    gui.screenshot(&dir.join("topic-set.png"));
    let log = gui.log();
    assert!(!log.contains("panicked"), "{log}");

    // Changed by bob: the window follows, and says who did it.
    bob.client
        .set_topic("lobby", "incidents first, then chat")
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    gui.screenshot(&dir.join("topic-changed.png"));
    chat.on_event(NetEvent::Session(Event::Rooms(vec![lobby(
        "incidents first, then chat",
    )])));
    // Clicking the topic opens the dialog with it, as the window lays it out.
    click(&gui, size, &chat, "incidents first, then chat");
    gui.screenshot(&dir.join("topic-reopened.png"));
    gui.xdotool(&["key", "Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    gui.screenshot(&dir.join("topic-escaped.png"));
    let (joined, _) = bob.client.rooms().await.unwrap();
    let listed = joined.iter().find(|r| r.name == "lobby").unwrap();
    assert_eq!(
        listed.topic, "incidents first, then chat",
        "Escape saved nothing"
    );

    // A long one is cut in the header, on one line, and the buttons stay.
    let long = "incidents first: page the on-call, then post here; deploys after 14:00 only, \
                with a note of what changed and how to roll it back; everything else in #random";
    bob.client.set_topic("lobby", long).await.unwrap();
    std::thread::sleep(Duration::from_millis(800));
    gui.xdotool(&["mousemove", "--window", &gui.window, "500", "400"]);
    std::thread::sleep(Duration::from_millis(300));
    gui.screenshot(&dir.join("topic-long.png"));
}
