//! The desktop client end to end, as a person uses it: a real window under
//! Xvfb, typed into with xdotool, checked through the relay and
//! `client-cli`. Screenshots land in target/gui-e2e/ to look at.

use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::Event;
use common::frame::PresenceKind;
use confab_tests::gui::{add_user, shots, Gui, Xvfb};
use confab_tests::{bin, Relay};

const ALICE_PASSWORD: &str = "alicepassword1";

fn cli(relay: &Relay, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new(bin("client-cli"))
        .args(["--server", &relay.server(), "--user", user, "--ca"])
        .arg(relay.cert())
        .args(args)
        .env("CONFAB_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run client-cli");
    assert!(
        out.status.success(),
        "client-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_logs_in_in_the_window_and_chats_with_a_terminal_user() {
    let relay = Relay::start();
    add_user(&relay, "alice", ALICE_PASSWORD);
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    bob.client
        .set_topic("lobby", "everyone's room: say hello, ask anything")
        .await
        .unwrap();
    bob.client
        .send("lobby", "morning! anyone around?")
        .await
        .unwrap();

    let x = Xvfb::start();
    let gui = Gui::pinned(&x, &relay, "alice");
    let dir = shots();
    gui.screenshot(&dir.join("login.png"));

    // The name is filled in and the cursor waits in the password field.
    gui.log_in("alice", ALICE_PASSWORD);
    std::thread::sleep(Duration::from_millis(500));

    // The composer has the focus after login: type and press Enter.
    gui.xdotool(&["type", "--delay", "15", "hello bob, typed in the window"]);
    gui.xdotool(&["key", "Return"]);
    let got = bob
        .wait_for("alice's line", |e| match e {
            common::client::Event::Message(m) if m.from == "alice" => Some(m.body.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got, "hello bob, typed in the window");
    let tail = cli(&relay, "bob", confab_tests::PASSWORD, &["--tail", "5"]);
    assert!(
        tail.contains("alice: hello bob, typed in the window"),
        "client-cli --tail:\n{tail}"
    );

    // The other way: a line from the terminal shows in the window. One to a
    // DM too, which the window title counts as unread.
    cli(
        &relay,
        "bob",
        confab_tests::PASSWORD,
        &["--send", "great, the terminal hears you"],
    );
    let dm = bob.client.open_dm("alice").await.unwrap();
    cli(
        &relay,
        "bob",
        confab_tests::PASSWORD,
        &["--room", &dm.name, "--send", "lunch at one?"],
    );
    gui.wait_title(|t| t == "(1) confab — alice");

    // A conversation as a team has it, for the pictures: people joining
    // (one folded notice), lines grouped by sender, a link, emoji, a
    // mention of alice.
    let mut carol = relay.register("carol").await;
    carol.joined("lobby").await;
    let _dave = relay.register("dave").await;
    for line in [
        "the build is green again 🎉",
        "notes from the planning call: https://example.org/notes/42",
    ] {
        carol.client.send("lobby", line).await.unwrap();
    }
    bob.client
        .send(
            "lobby",
            "@alice could you look at the relay logs after lunch?",
        )
        .await
        .unwrap();
    bob.client
        .send("lobby", "안녕하세요 to the new team in Seoul 👋")
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let chat = dir.join("chat.png");
    gui.screenshot(&chat);
    if let Some(out) = std::env::var_os("CONFAB_SCREENSHOT") {
        std::fs::copy(&chat, out).expect("copy the screenshot");
    }
    drop(gui);

    // The same conversation in the dark theme, as remembered in settings.
    let (server, cert) = (relay.server(), relay.cert());
    let settings = format!(r#"{{"server":"{server}","user":"alice","theme":"Dark"}}"#);
    let dark = Gui::start_with(
        &x,
        &["--ca".as_ref(), cert.as_os_str()],
        Some(settings.as_str()),
    );
    dark.log_in("alice", ALICE_PASSWORD);
    std::thread::sleep(Duration::from_millis(1200));
    let shot = dir.join("chat-dark.png");
    dark.screenshot(&shot);
    if let Some(out) = std::env::var_os("CONFAB_SCREENSHOT_DARK") {
        std::fs::copy(&shot, out).expect("copy the dark screenshot");
    }
}

/// alice's window logged in, with bob in the lobby seeing her online.
async fn alice_watched_by_bob(relay: &Relay, x: &Xvfb) -> (Gui, confab_tests::Session) {
    add_user(relay, "alice", ALICE_PASSWORD);
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    let gui = Gui::pinned(x, relay, "alice");
    gui.log_in("alice", ALICE_PASSWORD);
    bob.wait_for("alice online", alice(PresenceKind::Online))
        .await;
    (gui, bob)
}

/// A presence change of alice's, for `Session::wait_for`.
fn alice(kind: PresenceKind) -> impl FnMut(&Event) -> Option<()> {
    move |e| match e {
        Event::Presence(p) if p.user == "alice" && p.kind == kind => Some(()),
        _ => None,
    }
}

/// Ends the window with `end` and checks it goes cleanly and that bob
/// sees alice leave at once: a window gone without a word costs the
/// relay's idle timeout.
async fn ends_with_a_goodbye(
    gui: &mut Gui,
    bob: &mut confab_tests::Session,
    how: &str,
    end: impl FnOnce(&Gui),
) {
    let asked = std::time::Instant::now();
    end(gui);
    let Some(status) = gui.wait_exit(Duration::from_secs(5)) else {
        panic!("the window still open 5 s after {how}\n{}", gui.log());
    };
    assert!(status.success(), "{status:?}\n{}", gui.log());
    bob.wait_for("alice offline", alice(PresenceKind::Offline))
        .await;
    let seen = asked.elapsed();
    eprintln!("bob saw alice leave {seen:?} after {how}");
    assert!(
        seen < Duration::from_secs(3),
        "bob saw alice leave {seen:?} after {how}"
    );
}

/// Closing the window says goodbye to the relay first: the others see the
/// user go offline at once, not when the connection times out; the window
/// remembers its size and room for next time.
#[tokio::test(flavor = "multi_thread")]
async fn closing_the_window_says_goodbye_and_it_opens_next_time_as_it_was() {
    let relay = Relay::start();
    let x = Xvfb::start();
    let (mut gui, mut bob) = alice_watched_by_bob(&relay, &x).await;
    gui.xdotool(&["windowsize", "--sync", &gui.window, "900", "650"]);
    std::thread::sleep(Duration::from_millis(500));

    ends_with_a_goodbye(&mut gui, &mut bob, "the close request", Gui::request_close).await;

    let settings: serde_json::Value =
        serde_json::from_str(&gui.settings()).expect("settings are JSON");
    assert_eq!(
        settings["window"],
        serde_json::json!([900.0, 650.0]),
        "{settings}"
    );
    assert_eq!(
        settings["rooms"][format!("alice@{}", relay.server())],
        "lobby",
        "{settings}"
    );
}

/// SIGTERM (the desktop session ending, `kill`) closes the window as its
/// close button does: the others see the user leave at once.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_the_window_with_a_goodbye() {
    let relay = Relay::start();
    let x = Xvfb::start();
    let (mut gui, mut bob) = alice_watched_by_bob(&relay, &x).await;
    ends_with_a_goodbye(&mut gui, &mut bob, "SIGTERM", |gui| gui.signal("TERM")).await;
}
