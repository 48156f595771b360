//! The desktop client end to end, as a person uses it: a real window under
//! Xvfb, typed into with xdotool, checked through the relay and
//! `client-cli`. Screenshots land in target/gui-e2e/ to look at.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::child::KillOnDrop;
use confab_tests::{bin, Relay};

const ALICE_PASSWORD: &str = "alicepassword1";

/// An X server of our own, on a display it picks itself.
struct Xvfb {
    _child: KillOnDrop,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("Xvfb display number");
        Xvfb {
            _child: KillOnDrop(child),
            display: format!(":{}", line.trim()),
        }
    }
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success());
    assert!(
        found.unwrap_or(false),
        "the GUI end-to-end test needs {tool}: `make test` installs it (scripts/test-deps.sh)"
    );
}

/// Runs xdotool on the display, returning its output.
fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("run xdotool");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn screenshot(display: &str, window: &str, path: &Path) {
    let status = Command::new("import")
        .args(["-window", window])
        .arg(path)
        .env("DISPLAY", display)
        .status()
        .expect("run import");
    assert!(status.success(), "screenshot {}", path.display());
}

/// Polls the window title until `want` holds, failing after 20 s.
fn wait_title(display: &str, window: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let title = xdotool(display, &["getwindowname", window]);
        if want(&title) {
            return title;
        }
        assert!(Instant::now() < deadline, "window title stuck at {title:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

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

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/gui-e2e");
    std::fs::create_dir_all(&dir).expect("target/gui-e2e");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_logs_in_in_the_window_and_chats_with_a_terminal_user() {
    for tool in ["Xvfb", "xdotool", "import"] {
        require(tool);
    }
    let relay = Relay::start();
    let added = Command::new(bin("relay"))
        .args(["user", "add", "alice"])
        .args(relay.store_args())
        .env("CONFAB_PASSWORD", ALICE_PASSWORD)
        .output()
        .expect("relay user add");
    assert!(added.status.success(), "{added:?}");
    let mut bob = relay.register("bob").await;
    bob.joined("lobby").await;
    bob.client
        .send("lobby", "morning! anyone around?")
        .await
        .unwrap();

    let x = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(home.path().join("gui.log")).unwrap();
    let gui = Command::new(bin("client-gui"))
        .args(["--server", &relay.server(), "--user", "alice", "--ca"])
        .arg(relay.cert())
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", home.path())
        .env("XDG_CACHE_HOME", home.path())
        .env("CONFAB_GUI_SETTINGS", home.path().join("gui.json"))
        .env("CONFAB_KNOWN_RELAYS", home.path().join("known_relays"))
        .env("RUST_LOG", "warn,client_gui=debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start client-gui");
    let pid = gui.id().to_string();
    let _gui = KillOnDrop(gui);
    let window = xdotool(
        &x.display,
        &["search", "--sync", "--onlyvisible", "--pid", &pid],
    );
    let window = window.lines().next().expect("a window").to_owned();
    // Mapped a moment before the first frame; there is no window manager.
    std::thread::sleep(Duration::from_millis(700));
    xdotool(&x.display, &["windowfocus", "--sync", &window]);
    let dir = shots();
    screenshot(&x.display, &window, &dir.join("login.png"));

    // The name is filled in and the cursor waits in the password field.
    xdotool(&x.display, &["type", "--delay", "15", ALICE_PASSWORD]);
    xdotool(&x.display, &["key", "Return"]);
    wait_title(&x.display, &window, |t| t == "confab — alice");
    std::thread::sleep(Duration::from_millis(500));

    // The composer has the focus after login: type and press Enter.
    xdotool(
        &x.display,
        &["type", "--delay", "15", "hello bob, typed in the window"],
    );
    xdotool(&x.display, &["key", "Return"]);
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
    wait_title(&x.display, &window, |t| t == "(1) confab — alice");
    std::thread::sleep(Duration::from_millis(500));
    let chat = dir.join("chat.png");
    screenshot(&x.display, &window, &chat);
    if let Some(out) = std::env::var_os("CONFAB_SCREENSHOT") {
        std::fs::copy(&chat, out).expect("copy the screenshot");
    }
}
