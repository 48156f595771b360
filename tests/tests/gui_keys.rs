//! The desktop window driven from the keyboard alone: a real window under
//! Xvfb (the window's key handling lives in its event loop and
//! subscriptions, which only a real window runs), typed into with xdotool,
//! checked through the relay. Screenshots land in target/gui-e2e/.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::client::Event;
use confab_tests::gui::{require, shots, Gui, Xvfb};
use confab_tests::{Relay, Session};

const PASSWORD: &str = "keyboardonly1";

fn add_user(relay: &Relay, user: &str) {
    confab_tests::gui::add_user(relay, user, PASSWORD);
}

fn start(x: &Xvfb, relay: &Relay, user: Option<&str>, pinned: bool) -> Gui {
    let server = relay.server();
    let cert = relay.cert();
    let mut args: Vec<&OsStr> = vec![OsStr::new("--server"), OsStr::new(&server)];
    if let Some(user) = user {
        args.extend([OsStr::new("--user"), OsStr::new(user)]);
    }
    if pinned {
        args.extend([OsStr::new("--ca"), cert.as_os_str()]);
    }
    Gui::start(x, &args)
}

fn typed(gui: &Gui, text: &str) {
    gui.xdotool(&["type", "--delay", "15", text]);
}

fn key(gui: &Gui, keys: &str) {
    gui.xdotool(&["key", keys]);
    // The next keystroke must not overtake what this one set off (a
    // focus change, a room switch).
    std::thread::sleep(Duration::from_millis(300));
}

/// How many pixels of two screenshots differ clearly.
fn difference(a: &Path, b: &Path) -> f64 {
    let out = Command::new("compare")
        .args(["-metric", "AE", "-fuzz", "10%"])
        .arg(a)
        .arg(b)
        .arg("null:")
        .output()
        .expect("run compare");
    let said = String::from_utf8_lossy(&out.stderr);
    said.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("compare said {said:?}"))
}

/// [`difference`] within one region (`WxH+X+Y`) of both shots.
fn difference_in(a: &Path, b: &Path, region: &str) -> f64 {
    let crop = |from: &Path| {
        let to = from.with_extension("crop.png");
        let status = Command::new("convert")
            .arg(from)
            .args(["-crop", region, "+repage"])
            .arg(&to)
            .status()
            .expect("run convert");
        assert!(status.success(), "convert {}", from.display());
        to
    };
    difference(&crop(a), &crop(b))
}

/// Takes screenshots into `path` until `done` holds for one, failing after 20 s.
fn wait_picture(gui: &Gui, path: &Path, what: &str, done: impl Fn(&Path) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        gui.screenshot(path);
        if done(path) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: see {}\n{}",
            path.display(),
            gui.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A shot differs from another in more than a caret and a focus ring.
const CHANGED: f64 = 5_000.0;

/// Types a line into the window and sends it with Enter; the room it
/// reached, as `watcher` sees it.
async fn say(gui: &Gui, watcher: &mut Session, line: &str) -> String {
    typed(gui, line);
    key(gui, "Return");
    let (room, body) = watcher
        .wait_for(&format!("{line:?} from the window"), |e| match e {
            Event::Message(m) if m.from == "alice" => Some((m.room.clone(), m.body.clone())),
            _ => None,
        })
        .await;
    assert_eq!(body, line);
    room
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_and_shift_tab_move_between_the_login_fields() {
    require("compare");
    let relay = Relay::start();
    add_user(&relay, "erin");
    let x = Xvfb::start();
    // No name to fill in: the cursor starts in the name field.
    let gui = start(&x, &relay, None, true);
    typed(&gui, "eri");
    key(&gui, "Tab");
    typed(&gui, PASSWORD);
    key(&gui, "shift+Tab");
    typed(&gui, "n");
    gui.screenshot(&shots().join("keys-login.png"));
    key(&gui, "Return");
    gui.wait_title(|t| t == "confab — erin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_account_is_made_from_the_keyboard_alone() {
    let relay = Relay::start();
    let x = Xvfb::start();
    // The name is filled in: the cursor starts in the password field.
    let gui = start(&x, &relay, Some("newbie"), true);
    typed(&gui, PASSWORD);
    // On to "Create account", ticked with Space, then on to Connect.
    key(&gui, "Tab");
    key(&gui, "space");
    key(&gui, "Tab");
    gui.screenshot(&shots().join("keys-register.png"));
    key(&gui, "Return");
    gui.wait_title(|t| t == "confab — newbie");
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_stays_in_the_room_switcher_and_enter_there_presses_nothing_behind_it() {
    let relay = Relay::start();
    add_user(&relay, "alice");
    let x = Xvfb::start();
    let gui = start(&x, &relay, Some("alice"), true);
    typed(&gui, PASSWORD);
    key(&gui, "Return");
    gui.wait_title(|t| t == "confab — alice");
    std::thread::sleep(Duration::from_millis(500));
    key(&gui, "ctrl+k");
    // Behind the switcher are Theme, Log out, Join, Send and the rest: Tab
    // must reach none of them, and Enter must press none. (Two Tabs from
    // the switcher's field once reached Theme, and Enter switched it.)
    for _ in 0..2 {
        key(&gui, "Tab");
    }
    gui.screenshot(&shots().join("keys-switcher-tab.png"));
    key(&gui, "Return");
    std::thread::sleep(Duration::from_millis(500));
    let title = gui.wait_title(|_| true);
    assert_eq!(
        title, "confab — alice",
        "something behind the switcher was pressed"
    );
    let settings = gui.settings();
    assert!(
        !settings.contains("\"Dark\"") && !settings.contains("\"Light\""),
        "the theme was switched from behind the switcher: {settings}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enter_trusts_a_new_relay_and_escape_goes_back() {
    require("compare");
    let relay = Relay::start();
    add_user(&relay, "alice");
    let x = Xvfb::start();
    let gui = start(&x, &relay, Some("alice"), false);
    let known = gui.home.path().join("known_relays");
    let dir = shots();
    let form = dir.join("keys-trust-form.png");
    gui.screenshot(&form);

    typed(&gui, PASSWORD);
    key(&gui, "Return");
    let asking = dir.join("keys-trust-asking.png");
    wait_picture(&gui, &asking, "the trust question", |shot| {
        difference(&form, shot) > CHANGED
    });
    key(&gui, "Escape");
    let back = dir.join("keys-trust-back.png");
    wait_picture(&gui, &back, "the form again after Escape", |shot| {
        difference(&form, shot) < CHANGED
    });
    assert!(!known.exists(), "Escape trusted the relay");

    // The form keeps what was typed, the password too, with nothing
    // focused: Tab to the password field and press Return.
    for _ in 0..3 {
        key(&gui, "Tab");
    }
    key(&gui, "Return");
    wait_picture(&gui, &asking, "the trust question again", |shot| {
        difference(&form, shot) > CHANGED
    });
    key(&gui, "Return");
    gui.wait_title(|t| t == "confab — alice");
    let remembered = std::fs::read_to_string(&known).expect("known relays written");
    assert!(remembered.contains(&relay.server()), "{remembered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_are_joined_switched_and_scrolled_from_the_keyboard() {
    require("compare");
    let relay = Relay::start();
    add_user(&relay, "alice");
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    bob.client.create_room("dev", false).await.unwrap();
    // More than a window of history, to page through.
    for i in 1..=40 {
        bob.client
            .send("lobby", &format!("history line {i}"))
            .await
            .unwrap();
    }

    let x = Xvfb::start();
    let gui = start(&x, &relay, Some("alice"), true);
    typed(&gui, PASSWORD);
    key(&gui, "Return");
    gui.wait_title(|t| t == "confab — alice");
    std::thread::sleep(Duration::from_millis(800));
    let dir = shots();

    // Page Up scrolls the conversation though the composer has the focus;
    // Page Down comes back to the newest line.
    let bottom = dir.join("keys-bottom.png");
    gui.screenshot(&bottom);
    key(&gui, "Page_Up");
    let up = dir.join("keys-page-up.png");
    wait_picture(&gui, &up, "Page Up scrolls", |shot| {
        difference(&bottom, shot) > CHANGED
    });
    // Lines arriving while alice reads back do not move what she reads:
    // the top half of the conversation stays as it was (the "New messages
    // below" button appears lower down).
    std::thread::sleep(Duration::from_millis(500));
    gui.screenshot(&up);
    for i in 1..=6 {
        bob.client
            .send("lobby", &format!("arrived while alice read back {i}"))
            .await
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let still = dir.join("keys-page-up-still.png");
    gui.screenshot(&still);
    let top_half = "500x260+240+60";
    let moved = difference_in(&up, &still, top_half);
    assert!(
        moved < CHANGED,
        "what alice read moved ({moved} pixels): see {} and {}",
        up.display(),
        still.display()
    );
    key(&gui, "Page_Down");
    let down = dir.join("keys-page-down.png");
    wait_picture(&gui, &down, "Page Down scrolls back down", |shot| {
        difference(&still, shot) > CHANGED
    });

    // Ctrl+K, a room none of alice's match, Enter: joined, and the cursor
    // is back in the composer of the new room.
    key(&gui, "ctrl+k");
    typed(&gui, "dev");
    std::thread::sleep(Duration::from_millis(300));
    gui.screenshot(&dir.join("keys-join.png"));
    key(&gui, "Return");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bob
        .client
        .members("dev")
        .await
        .unwrap()
        .iter()
        .any(|m| m.user == "alice")
    {
        assert!(Instant::now() < deadline, "alice never joined #dev");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(say(&gui, &mut bob, "hello dev").await, "dev");

    // Alt+Down: the next room in the sidebar (#dev, then #lobby).
    key(&gui, "alt+Down");
    assert_eq!(say(&gui, &mut bob, "back in the lobby").await, "lobby");
    key(&gui, "alt+Up");
    assert_eq!(say(&gui, &mut bob, "up again").await, "dev");

    // Ctrl+K: type to find a room, Enter opens it.
    key(&gui, "ctrl+k");
    typed(&gui, "lob");
    std::thread::sleep(Duration::from_millis(300));
    gui.screenshot(&dir.join("keys-switcher.png"));
    key(&gui, "Return");
    assert_eq!(say(&gui, &mut bob, "found by name").await, "lobby");

    // Escape closes the switcher where it was, and typing goes on.
    key(&gui, "ctrl+k");
    typed(&gui, "de");
    key(&gui, "Escape");
    assert_eq!(say(&gui, &mut bob, "still in the lobby").await, "lobby");
    gui.screenshot(&dir.join("keys-end.png"));
}
