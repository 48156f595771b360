//! Invitations in the real window under Xvfb, against the real relay: one
//! made while the person was away and one made while they look are both in
//! the sidebar with who sent them; Decline and Accept, clicked with
//! xdotool, reach the relay. The buttons are found where the window's own
//! code lays them out (the same chat, built headless at the window's size
//! with the window's fonts). Screenshots land in target/gui-e2e/.

use std::time::{Duration, Instant};

use client_gui::connection::Event as NetEvent;
use client_gui::screen::chat::Chat;
use common::client::Event;
use common::frame::PresenceKind;
use confab_tests::gui::{shots, Gui, Xvfb};
use confab_tests::{Relay, Session, PASSWORD};
use iced_test::core::Settings;
use iced_test::Simulator;

/// Clicks, in the real window, the first widget reading `label` in
/// `chat` laid out headless at `size`.
fn click(gui: &Gui, size: (f32, f32), chat: &Chat, label: &str) {
    let mut ui = Simulator::with_size(Settings::default(), size, chat.view());
    let found = ui.find(label).expect("the button to click");
    let at = found
        .visible_bounds()
        .unwrap_or_else(|| panic!("off screen: {found:?}"))
        .center();
    let (x, y) = (at.x.round().to_string(), at.y.round().to_string());
    gui.xdotool(&["mousemove", "--window", &gui.window, &x, &y, "click", "1"]);
    std::thread::sleep(Duration::from_millis(400));
}

/// bob's pending invitations, as the relay lists them.
async fn pending(s: &Session) -> Vec<String> {
    let list = s.client.room_list().await.expect("room list");
    list.invited.into_iter().map(|i| i.room.name).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_show_in_the_sidebar_and_are_declined_and_accepted_with_a_click() {
    client_gui::fonts::install();
    let relay = Relay::start();
    let mut alice = relay.register("alice").await;
    alice.joined("lobby").await;
    let bob = relay.register("bob").await;
    alice.client.create_room("design", false).await.unwrap();
    alice.client.create_room("ops", true).await.unwrap();
    alice.client.invite("design", "bob").await.unwrap();
    alice
        .client
        .send("ops", "the release plan is pinned here")
        .await
        .unwrap();

    let x = Xvfb::start();
    let gui = Gui::pinned(&x, &relay, "bob");
    gui.log_in("bob", PASSWORD);
    // Made while the window looks: on top of the one listed at login.
    alice.client.invite("ops", "bob").await.unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let size = gui.size();
    let dir = shots();
    gui.screenshot(&dir.join("invitations.png"));

    // The same chat, headless: where the window put its buttons.
    let server = relay.server();
    let mut chat = Chat::new("bob".into(), server.clone(), server);
    let invited = pending(&bob).await;
    assert_eq!(invited, ["ops", "design"]);
    let list = bob.client.room_list().await.unwrap().invited;
    chat.on_event(NetEvent::Session(Event::Invitations(list)));

    // The first Decline is ops's, the newest.
    click(&gui, size, &chat, "Decline");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pending(&bob).await != ["design"] {
        assert!(Instant::now() < deadline, "ops was not declined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    chat.on_event(NetEvent::Declined {
        room: "ops".into(),
        result: Ok(()),
    });
    gui.screenshot(&dir.join("invitations-declined.png"));

    click(&gui, size, &chat, "Accept");
    alice
        .wait_for("bob joins design", |e| match e {
            Event::Presence(p)
                if p.user == "bob"
                    && p.kind == PresenceKind::Joined
                    && p.room.as_deref() == Some("design") =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    assert_eq!(pending(&bob).await, Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(600));
    gui.screenshot(&dir.join("invitations-accepted.png"));
}
